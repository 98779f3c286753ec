// First render of a dashboard in Chromium: from navigation (with the key already in the tab) until every
// widget is drawn. Prints p50 / max over RUNS fresh page loads. Not a test: a figure for the README.
//
//   DASHBOARD_URL=http://127.0.0.1:3000 READ_KEY=sk_... [DASHBOARD=overview RUNS=9] npm run bench
import { chromium } from 'playwright-core';

const BASE = process.env.DASHBOARD_URL;
const KEY = process.env.READ_KEY;
const ID = process.env.DASHBOARD || 'overview';
const RUNS = Number(process.env.RUNS || 9);
if (!BASE || !KEY) throw new Error('set DASHBOARD_URL and READ_KEY');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const times = [];
for (let i = 0; i < RUNS; i++) {
  const context = await browser.newContext({ locale: 'en-US', timezoneId: 'UTC' });
  await context.addInitScript((k) => sessionStorage.setItem('commerce-analytics.read-key', k), KEY);
  const page = await context.newPage();
  const started = Date.now();
  await page.goto(`${BASE}/dashboard#/d/${ID}`);
  await page.locator('.grid[aria-busy="false"] section.card').first().waitFor({ timeout: 60_000 });
  await page.waitForFunction(() => document.querySelectorAll('.chart canvas, .card table, .funnel').length > 0);
  times.push(Date.now() - started);
  await context.close();
}
await browser.close();
times.sort((a, b) => a - b);
console.log(`${ID}: first render p50 ${times[Math.floor(times.length / 2)]} ms, min ${times[0]} ms, max ${times.at(-1)} ms over ${RUNS} page loads`);
