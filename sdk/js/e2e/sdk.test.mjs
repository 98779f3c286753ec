// The built SDK in Debian's Chromium, on a storefront page served from another origin than the API (so
// CORS is exercised), against the local server; the events are then read back from ClickHouse.
//
// Run by `tests/it/sdk_browser.rs`, which starts the server and passes API_URL, WRITE_KEY, CLICKHOUSE_URL and
// CLICKHOUSE_DATABASE.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const { API_URL, WRITE_KEY, CLICKHOUSE_URL, CLICKHOUSE_DATABASE } = process.env;
assert.ok(API_URL && WRITE_KEY && CLICKHOUSE_URL && CLICKHOUSE_DATABASE, 'API_URL, WRITE_KEY, CLICKHOUSE_URL, CLICKHOUSE_DATABASE');
const SDK = readFileSync(new URL('../dist/analytics.min.js', import.meta.url), 'utf8');
// A shopper's browser: HeadlessChrome's own user agent would (rightly) be flagged as a bot.
const SHOPPER_UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

let server;
let shop;
let browser;

before(async () => {
  server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/analytics.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(SDK);
    } else if (url.pathname === '/') {
      res.writeHead(200, { 'content-type': 'text/html' })
        .end('<title>Home</title><a id="go" href="/products/p1?utm_source=newsletter&utm_medium=email&utm_campaign=bf">Shirt</a>');
    } else {
      res.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html><title>Premium T-Shirt</title>
<script src="/analytics.min.js"></script>
<script>
  const analytics = CommerceAnalytics.createAnalytics({ endpoint: ${JSON.stringify(API_URL)}, writeKey: ${JSON.stringify(WRITE_KEY)}, autoPageViews: true });
  window.run = async () => {
    analytics.identify('cust_e2e');
    const results = await Promise.all([
      analytics.track({ type: 'product.viewed', properties: { productId: 'p1', price: 2999, currency: 'USD' } }),
      analytics.track({ type: 'order.completed', properties: { orderId: 'o_e2e', total: 2999, currency: 'USD' } }),
      analytics.track({ type: 'order.completed', properties: { total: 1, currency: 'USD' } }).catch((e) => ({ error: e.code, field: e.field })),
      analytics.flush(),
    ]);
    return { results: results.slice(0, 3), session: analytics.sessionId() };
  };
</script>`);
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  shop = `http://127.0.0.1:${server.address().port}`;
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
});

after(async () => {
  await browser?.close();
  server?.close();
});

async function rows(sql) {
  const resp = await fetch(`${CLICKHOUSE_URL}/?database=${CLICKHOUSE_DATABASE}`, { method: 'POST', body: sql + ' FORMAT JSON' });
  assert.ok(resp.ok, await resp.clone().text());
  return (await resp.json()).data;
}

test('a storefront page tracks through the built SDK and ClickHouse holds the events with their context', async () => {
  const context = await browser.newContext({ userAgent: SHOPPER_UA });
  const page = await context.newPage();
  await page.goto(shop + '/');
  await page.click('#go');
  await page.waitForFunction(() => typeof window.run === 'function');
  const { results, session } = await page.evaluate(() => window.run());
  assert.deepEqual(results.slice(0, 2).map((r) => r.status), ['accepted', 'accepted']);
  assert.deepEqual(results[2], { error: 'missing_field', field: 'properties.orderId' }, 'a refused event rejects with the field');

  let stored = [];
  for (let i = 0; i < 50 && stored.length < 3; i++) {
    stored = await rows(`SELECT type, session_id, customer_id, anonymous_id, referrer, user_agent, page_path,
      utm_source, utm_medium, utm_campaign, toUInt8(is_bot) AS bot, amount FROM commerce_events
      WHERE store_id = 'shop-a' ORDER BY timestamp, type`);
    if (stored.length < 3) await new Promise((r) => setTimeout(r, 200));
  }
  assert.deepEqual(stored.map((r) => r.type).sort(), ['order.completed', 'page.viewed', 'product.viewed']);
  for (const r of stored) {
    assert.equal(r.session_id, session);
    assert.match(r.anonymous_id, /^a_/);
    assert.equal(r.referrer, shop + '/', 'the referrer is the page the shopper came from');
    assert.equal(r.user_agent, SHOPPER_UA);
    assert.equal(r.page_path, '/products/p1');
    assert.deepEqual([r.utm_source, r.utm_medium, r.utm_campaign], ['newsletter', 'email', 'bf']);
    assert.equal(r.bot, 0);
  }
  const order = stored.find((r) => r.type === 'order.completed');
  assert.equal(order.customer_id, 'cust_e2e');
  assert.equal(Number(order.amount), 2999);
  await context.close();
});

test('events are never counted twice when the SDK resends them after a failure', async () => {
  const context = await browser.newContext({ userAgent: SHOPPER_UA });
  const page = await context.newPage();
  let failed = 0;
  // The first request reaches the API but its answer is lost: the SDK must resend the same events.
  await page.route(`${API_URL}/analytics/events`, async (route) => {
    const resp = await route.fetch();
    if (failed++ === 0) return route.fulfill({ status: 503, headers: { 'retry-after': '1', 'access-control-allow-origin': '*' }, body: '{}' });
    return route.fulfill({ response: resp });
  });
  await page.goto(shop + '/products/p2');
  await page.waitForFunction(() => typeof window.run === 'function');
  const sent = await page.evaluate(async ([api, key]) => {
    const a = CommerceAnalytics.createAnalytics({ endpoint: api, writeKey: key, batchSize: 1 });
    const r = await a.track({ type: 'product.viewed', id: 'evt_resent_once', properties: { productId: 'p2' } });
    await a.flush();
    await new Promise((res) => setTimeout(res, 2500));
    return r.status;
  }, [API_URL, WRITE_KEY]);
  assert.equal(sent, 'queued');
  assert.ok(failed >= 2, 'resent');
  let n = [];
  for (let i = 0; i < 50; i++) {
    n = await rows(`SELECT uniqExact(id) AS ids, count() AS copies FROM commerce_events WHERE store_id = 'shop-a' AND id = 'evt_resent_once'`);
    if (Number(n[0].ids) === 1) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(Number(n[0].copies), 1, 'stored once');
  await context.close();
});
