// Unit tests of the page's formatting (no browser: the locale is pinned to en-US).
import { test } from 'node:test';
import assert from 'node:assert/strict';

globalThis.navigator ??= { language: 'en-US' };
const { bucketLabel, compact, eventLabel, minorDigits, money } = await import('../src/format.js');

test('bucket labels follow the locale and name the year only when a chart spans years', () => {
  const cases = [
    ['2026-11-05', 'day', false, 'Nov 5'],
    ['2025-12-31', 'day', true, 'Dec 31, 2025'],
    ['2026-01-01', 'week', true, 'Jan 1, 2026'],
    ['2026-03-01', 'month', false, 'Mar'],
    ['2025-12-01', 'month', true, 'Dec 2025'],
    ['2026-03-29T02:00', 'hour', false, 'Mar 29, 02:00'],
  ];
  for (const [date, granularity, withYear, want] of cases) {
    assert.equal(bucketLabel(date, granularity, withYear), want, `${date} ${granularity}`);
  }
});

test('money uses the currency minor unit everywhere', () => {
  assert.deepEqual(['USD', 'JPY', 'KWD'].map(minorDigits), [2, 0, 3]);
  assert.equal(money(299800, 'JPY'), '¥299,800');
  assert.equal(money(1999, 'USD'), '$19.99');
  assert.equal(compact(2_500_000, 'money', 'JPY'), '2.5M');
  assert.equal(compact(2_500_000, 'money', 'USD'), '25K');
});

test('event types read as words, custom ones by the same rule', () => {
  for (const [type, want] of [
    ['page.viewed', 'Page viewed'],
    ['cart.item_added', 'Cart item added'],
    ['order.completed', 'Order completed'],
    ['wishlist.item_saved', 'Wishlist item saved'],
  ]) {
    assert.equal(eventLabel(type), want, type);
  }
});
