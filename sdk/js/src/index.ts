// commerce-analytics storefront SDK. No runtime dependencies.
//
// - Sessions: an id kept in localStorage, renewed after `sessionTimeoutMs` (30 min) without events; an
//   anonymous id kept for the browser; `identify(customerId)` adds the customer to every later event.
// - Every event gets an id and a timestamp when it is tracked, so a retried request never double-counts
//   (the API deduplicates by id).
// - Batching: events are queued and sent to `POST /analytics/events` when `batchSize` are waiting or
//   `flushIntervalMs` has passed, and with `fetch(…, {keepalive: true})` when the page is hidden (a beacon
//   cannot carry the Authorization header). Network errors, 5xx and 429 are retried with exponential backoff
//   and jitter (honouring `Retry-After`), at most `maxRetries` times; a 4xx is never retried: the promise of
//   each refused event rejects with the API's error.
import type { CustomEvent, KnownEvent, KnownType, Options, TrackResult } from './types';
import { TrackError } from './types';

export type * from './types';
export { TrackError };

interface Pending {
  event: Record<string, unknown>;
  resolve: (r: TrackResult) => void;
  reject: (e: TrackError) => void;
  queued?: boolean;
}

export interface Analytics {
  track<T extends KnownType>(event: KnownEvent<T>): Promise<TrackResult>;
  track<T extends string>(event: CustomEvent<T>): Promise<TrackResult>;
  /** Tracks `page.viewed` for the current page (URL, path, title; the API reads UTM parameters from the URL). */
  page(properties?: { title?: string }): Promise<TrackResult>;
  /** Every later event carries this customer id (kept across page loads). */
  identify(customerId: string): void;
  /** Sends everything queued now; resolves when the requests have answered. */
  flush(): Promise<void>;
  /** The current session id (a new one after 30 minutes without events). */
  sessionId(): string;
}

const PREFIX = 'ca_';

function randomId(prefix: string): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(36).padStart(2, '0')).join('');
}

function storage(): Storage | null {
  try {
    return localStorage;
  } catch {
    return null; // storage disabled: ids live for the page only
  }
}

export function createAnalytics(options: Options): Analytics {
  const endpoint = options.endpoint.replace(/\/+$/, '') + '/analytics/events';
  const batchSize = Math.min(options.batchSize ?? 20, 500);
  const flushMs = options.flushIntervalMs ?? 1000;
  const maxRetries = options.maxRetries ?? 6;
  const timeout = options.sessionTimeoutMs ?? 30 * 60 * 1000;
  const store = storage();
  const memory: Record<string, string> = {};
  const read = (k: string) => store?.getItem(PREFIX + k) ?? memory[k] ?? null;
  const write = (k: string, v: string) => {
    memory[k] = v;
    store?.setItem(PREFIX + k, v);
  };

  let queue: Pending[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;

  function sessionId(): string {
    const now = Date.now();
    let id = read('sid');
    if (!id || now - Number(read('seen') || 0) > timeout) {
      id = randomId('s_');
      write('sid', id);
    }
    write('seen', String(now));
    return id;
  }

  function anonymousId(): string {
    let id = read('aid');
    if (!id) write('aid', (id = randomId('a_')));
    return id;
  }

  function context(): Record<string, unknown> {
    if (typeof location === 'undefined') return {};
    return {
      page: { url: location.href, path: location.pathname, title: document.title || undefined },
      referrer: document.referrer || undefined,
      userAgent: navigator.userAgent,
    };
  }

  function track(input: Record<string, unknown>): Promise<TrackResult> {
    const event: Record<string, unknown> = {
      id: randomId('e_'),
      timestamp: new Date().toISOString(),
      sessionId: sessionId(),
      anonymousId: anonymousId(),
      ...input,
      context: { ...context(), ...(input.context as object) },
    };
    const customer = read('cid');
    if (customer && !event.customerId) event.customerId = customer;
    return new Promise((resolve, reject) => {
      queue.push({ event, resolve, reject });
      if (queue.length >= batchSize) void flush();
      else timer ??= setTimeout(() => void flush(), flushMs);
    });
  }

  async function send(batch: Pending[], attempt: number, keepalive = false): Promise<void> {
    let status = 0;
    let body: any = null;
    let retryAfter = 0;
    try {
      const resp = await fetch(endpoint, {
        method: 'POST',
        keepalive,
        headers: { 'content-type': 'application/json', authorization: `Bearer ${options.writeKey}` },
        body: JSON.stringify({ events: batch.map((p) => p.event) }),
      });
      status = resp.status;
      retryAfter = Number(resp.headers.get('retry-after')) || 0;
      body = await resp.json().catch(() => null);
    } catch {
      status = 0; // network error: retried
    }
    if (status === 202 || status === 400) {
      // Per-event report: accepted ones resolve, rejected ones reject with their error.
      for (const a of body?.accepted ?? []) batch[a.index]?.resolve({ id: a.id, status: 'accepted' });
      for (const r of body?.rejected ?? []) {
        const e = r.error ?? {};
        batch[r.index]?.reject(new TrackError(e.message ?? 'rejected', e.code ?? 'invalid', e.field, status));
      }
      if (status === 202 || body?.rejected) return;
    }
    const retryable = status === 0 || status === 429 || status >= 500;
    if (!retryable) {
      const e = body?.error ?? {};
      const err = new TrackError(e.message ?? `HTTP ${status}`, e.code ?? 'http_' + status, e.field, status);
      for (const p of batch) p.reject(err);
      return;
    }
    // A 503 names the events it did not take; the others are in.
    let again = batch;
    if (Array.isArray(body?.failedIds)) {
      const failed = new Set(body.failedIds);
      again = batch.filter((p) => failed.has(p.event.id));
      for (const p of batch) if (!failed.has(p.event.id)) p.resolve({ id: p.event.id as string, status: 'accepted' });
    }
    if (attempt >= maxRetries) {
      const err = new TrackError(`not delivered after ${attempt + 1} attempts`, 'unavailable', undefined, status);
      for (const p of again) p.reject(err);
      return;
    }
    for (const p of again) {
      if (!p.queued) p.resolve({ id: p.event.id as string, status: 'queued' });
      p.queued = true;
    }
    const backoff = Math.min(30_000, 500 * 2 ** attempt);
    const delay = Math.max(retryAfter * 1000, backoff / 2 + Math.random() * (backoff / 2));
    await new Promise((r) => setTimeout(r, delay));
    await send(again, attempt + 1, keepalive);
  }

  async function flush(keepalive = false): Promise<void> {
    clearTimeout(timer);
    timer = undefined;
    const sends: Promise<void>[] = [];
    while (queue.length) sends.push(send(queue.splice(0, batchSize), 0, keepalive));
    await Promise.all(sends);
  }

  function page(properties: { title?: string } = {}): Promise<TrackResult> {
    const c = context().page as Record<string, string> | undefined;
    return track({ type: 'page.viewed', properties: { url: c?.url, path: c?.path, title: c?.title, ...properties } });
  }

  if (typeof document !== 'undefined') {
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'hidden') void flush(true);
    });
    if (options.autoPageViews) {
      let last = location.href;
      const changed = () => {
        if (location.href !== last) {
          last = location.href;
          void page().catch(() => {});
        }
      };
      for (const m of ['pushState', 'replaceState'] as const) {
        const original = history[m];
        history[m] = function (this: History, ...args: Parameters<History['pushState']>) {
          original.apply(this, args);
          changed();
        };
      }
      addEventListener('popstate', changed);
      void page().catch(() => {});
    }
  }

  return {
    track: track as unknown as Analytics['track'],
    page,
    identify: (customerId: string) => write('cid', customerId),
    flush: () => flush(),
    sessionId,
  };
}
