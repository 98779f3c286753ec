// @vitest-environment jsdom
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createAnalytics, TrackError } from '../src/index';

type Reply = { status: number; body?: unknown; headers?: Record<string, string> };

/** A fetch that answers from `replies` in order (the last one repeats) and records every request. */
function fakeFetch(...replies: Reply[]) {
  const calls: { events: any[]; init: RequestInit }[] = [];
  const fn = vi.fn(async (_url: string, init: RequestInit) => {
    calls.push({ events: JSON.parse(init.body as string).events, init });
    const r = replies[Math.min(calls.length - 1, replies.length - 1)];
    return new Response(r.body === undefined ? null : JSON.stringify(r.body), { status: r.status, headers: r.headers });
  });
  vi.stubGlobal('fetch', fn);
  return calls;
}

const accepted = (n: number, from = 0) => ({
  status: 202,
  body: { accepted: Array.from({ length: n }, (_, i) => ({ index: i + from, id: `id${i}` })), rejected: [] },
});

const view = { type: 'product.viewed' as const, properties: { productId: 'p1', price: 100, currency: 'USD' } };

beforeEach(() => {
  vi.useFakeTimers();
  localStorage.clear();
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe('queueing', () => {
  it('sends one request when batchSize events are waiting', async () => {
    const calls = fakeFetch(accepted(3));
    const a = createAnalytics({ endpoint: 'https://api.example/', writeKey: 'pk_x', batchSize: 3 });
    const results = Promise.all([a.track(view), a.track(view), a.track(view)]);
    await vi.runAllTimersAsync();
    expect((await results).map((r) => r.status)).toEqual(['accepted', 'accepted', 'accepted']);
    expect(calls).toHaveLength(1);
    expect(calls[0].events).toHaveLength(3);
    expect((calls[0].init.headers as Record<string, string>).authorization).toBe('Bearer pk_x');
  });

  it('sends a partial batch once the flush interval passes, not before', async () => {
    const calls = fakeFetch(accepted(1));
    const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x', flushIntervalMs: 1000 });
    const r = a.track(view);
    await vi.advanceTimersByTimeAsync(999);
    expect(calls).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(1);
    expect((await r).status).toBe('accepted');
    expect(calls).toHaveLength(1);
  });

  it('gives every event an id, a timestamp, the session and the page context', async () => {
    const calls = fakeFetch(accepted(1));
    const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x' });
    a.identify('cust_1');
    void a.track(view);
    await a.flush();
    const e = calls[0].events[0];
    expect(e.id).toMatch(/^e_/);
    expect(Date.parse(e.timestamp)).not.toBeNaN();
    expect(e.sessionId).toBe(a.sessionId());
    expect(e.anonymousId).toMatch(/^a_/);
    expect(e.customerId).toBe('cust_1');
    expect(e.context.page.url).toBe(location.href);
    expect(e.context.userAgent).toBe(navigator.userAgent);
  });
});

describe('retries', () => {
  it('retries a 503 after Retry-After with the same ids, and the promise says queued', async () => {
    const calls = fakeFetch({ status: 503, headers: { 'retry-after': '2' }, body: { error: { code: 'unavailable' } } }, accepted(1));
    const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x' });
    const r = a.track(view);
    const flushed = a.flush();
    expect(await r).toMatchObject({ status: 'queued' });
    await vi.advanceTimersByTimeAsync(1999);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await flushed;
    expect(calls).toHaveLength(2);
    expect(calls[1].events).toEqual(calls[0].events);
  });

  it('resends only the events a 503 names as not accepted', async () => {
    const calls: any[][] = [];
    vi.stubGlobal('fetch', vi.fn(async (_u: string, init: RequestInit) => {
      const events = JSON.parse(init.body as string).events;
      calls.push(events);
      const body = calls.length === 1
        ? { error: { code: 'unavailable' }, failedIds: [events[1].id] }
        : accepted(events.length).body;
      return new Response(JSON.stringify(body), { status: calls.length === 1 ? 503 : 202 });
    }));
    const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x' });
    const r1 = a.track(view);
    const r2 = a.track(view);
    const flushed = a.flush();
    await vi.runAllTimersAsync();
    await flushed;
    expect((await r1).status).toBe('accepted');
    expect((await r2).status).toBe('queued');
    expect(calls[1].map((e) => e.id)).toEqual([calls[0][1].id]);
  });

  it('never retries a 4xx and rejects with the API error', async () => {
    const calls = fakeFetch({ status: 401, body: { error: { code: 'unauthorized', message: 'unknown or revoked API key' } } });
    const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_bad' });
    const r = a.track(view);
    const refused = expect(r).rejects.toMatchObject({ name: 'TrackError', code: 'unauthorized', status: 401 });
    await a.flush();
    await vi.runAllTimersAsync();
    await refused;
    expect(calls).toHaveLength(1);
  });

  it('rejects only the events the API refused, naming the field', async () => {
    fakeFetch({
      status: 202,
      body: { accepted: [{ index: 0, id: 'ok' }], rejected: [{ index: 1, error: { code: 'missing_field', message: 'orderId is required', field: 'properties.orderId' } }] },
    });
    const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x' });
    const ok = a.track(view);
    const bad = a.track({ type: 'order.completed', properties: { orderId: '', total: 1, currency: 'USD' } }).catch((e) => e);
    await a.flush();
    expect(await ok).toEqual({ id: 'ok', status: 'accepted' });
    const err = await bad;
    expect(err).toBeInstanceOf(TrackError);
    expect(err.field).toBe('properties.orderId');
  });

  it('gives up after maxRetries with exponential backoff', async () => {
    const calls = fakeFetch({ status: 500 });
    const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x', maxRetries: 3 });
    const r = a.track(view);
    const flushed = a.flush();
    await vi.runAllTimersAsync();
    await flushed;
    await expect(r).resolves.toMatchObject({ status: 'queued' });
    expect(calls).toHaveLength(4);
  });

  it('retries network errors', async () => {
    let n = 0;
    vi.stubGlobal('fetch', vi.fn(async () => {
      n += 1;
      if (n === 1) throw new TypeError('Failed to fetch');
      return new Response(JSON.stringify(accepted(1).body), { status: 202 });
    }));
    const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x' });
    const r = a.track(view);
    const flushed = a.flush();
    await vi.runAllTimersAsync();
    await flushed;
    expect((await r).status).toBe('queued');
    expect(n).toBe(2);
  });
});

describe('sessions', () => {
  it('keeps the session while active and starts a new one after 30 minutes of inactivity', () => {
    vi.setSystemTime(new Date('2026-11-26T10:00:00Z'));
    const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x' });
    const first = a.sessionId();
    vi.setSystemTime(new Date('2026-11-26T10:29:00Z'));
    expect(a.sessionId()).toBe(first);
    vi.setSystemTime(new Date('2026-11-26T10:58:00Z'));
    expect(a.sessionId()).toBe(first); // 29 minutes after the last activity
    vi.setSystemTime(new Date('2026-11-26T11:29:00Z'));
    expect(a.sessionId()).not.toBe(first);
  });

  it('survives a page load (a new SDK instance) through localStorage', () => {
    const a = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x' });
    const b = createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x' });
    expect(b.sessionId()).toBe(a.sessionId());
  });
});

describe('pages', () => {
  it('tracks page views on load and on SPA navigation, and flushes with keepalive when hidden', async () => {
    const calls = fakeFetch(accepted(2));
    createAnalytics({ endpoint: 'https://api.example', writeKey: 'pk_x', autoPageViews: true });
    history.pushState({}, '', '/products/p1?utm_source=newsletter');
    Object.defineProperty(document, 'visibilityState', { value: 'hidden', configurable: true });
    document.dispatchEvent(new Event('visibilitychange'));
    await vi.runAllTimersAsync();
    expect(calls).toHaveLength(1);
    expect(calls[0].init.keepalive).toBe(true);
    expect(calls[0].events.map((e: any) => e.type)).toEqual(['page.viewed', 'page.viewed']);
    expect(calls[0].events[1].properties.url).toContain('/products/p1?utm_source=newsletter');
  });
});
