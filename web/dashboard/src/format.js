// Number formatting: money from minor units in the response's currency, percents from 0–1 rates, counts.

const locale = () => navigator.language || 'en-US';

/// The zone every displayed time is shown in: the one the page's controls chose (not the browser's).
let zone = 'UTC';
export const setZone = (z) => { zone = z; };

/// A time of day in the chosen zone ("6:04:29 PM").
export const timeOfDay = (t) => new Date(t).toLocaleTimeString(locale(), { timeZone: zone });
const MONEY_METRICS = new Set(['revenue', 'net_revenue', 'aov', 'ltv']);
const RATE_METRICS = new Set(['conversion_rate', 'add_to_cart_rate']);

/// Digits of the currency's minor unit (ISO 4217 exponent, as the browser knows it): USD 2, JPY 0, KWD 3.
export function minorDigits(currency) {
  return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
}

export function money(minor, currency) {
  if (!currency) return count(minor);
  const f = new Intl.NumberFormat(locale(), { style: 'currency', currency });
  return f.format(minor / 10 ** minorDigits(currency));
}

/// A short axis label: "1.2K", "35%", money in major units of its currency ("¥12K", not 100× too low).
export function compact(v, kind, currency) {
  if (kind === 'rate') return percent(v);
  const n = kind === 'money' && currency ? v / 10 ** minorDigits(currency) : v;
  return new Intl.NumberFormat(locale(), { notation: 'compact', maximumFractionDigits: 1 }).format(n);
}

export const percent = (rate) =>
  new Intl.NumberFormat(locale(), { style: 'percent', maximumFractionDigits: 1 }).format(rate);

export const count = (n) => new Intl.NumberFormat(locale()).format(n);

/// How a metric's values read: 'money', 'rate' or 'count'.
export function kindOfMetric(metric) {
  if (MONEY_METRICS.has(metric)) return 'money';
  if (RATE_METRICS.has(metric)) return 'rate';
  return 'count';
}

/// How a column of a ranked table reads, by its key.
export function kindOfColumn(key) {
  if (key === 'revenue' || key === 'netRevenue' || key === 'refundedAmount') return 'money';
  if (/Rate$/.test(key) || key === 'retention' || key === 'share') return 'rate';
  if (key === 'updatedAt') return 'time';
  return typeof key === 'string' && /^(units|orders|sessions|customers|quantity|unitsSold|stockOnHand|count|views|viewSessions|addToCarts|cartSessions|purchaseSessions|refunds|bounces)$/.test(key) ? 'count' : 'text';
}

export function value(v, kind, currency) {
  if (v === null || v === undefined) return '–';
  switch (kind) {
    case 'money': return money(v, currency);
    case 'rate': return percent(v);
    case 'count': return count(v);
    case 'time': return new Date(v).toLocaleString(locale(), { timeZone: zone });
    default: return String(v);
  }
}

/// "Best sellers" from "best_sellers"; "Unit sold" from "unitsSold".
export const label = (key) =>
  key.replace(/_/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2').replace(/^./, (c) => c.toUpperCase());

/// A bucket's label on a chart axis, in the reader's locale: "Nov 5" (days, weeks), "Nov" (months),
/// "Nov 5, 14:00" (hours); with the year ("Nov 5, 2026", "Nov 2026") when the chart spans more than one
/// year. `date` is the API's bucket label (`YYYY-MM-DD` or `YYYY-MM-DDTHH:00`), already in the chosen
/// zone, so it is formatted as a calendar date, not converted again.
export function bucketLabel(date, granularity, withYear) {
  const [y, m, d] = date.slice(0, 10).split('-').map(Number);
  const hour = date.length > 10 ? Number(date.slice(11, 13)) : 0;
  const opts = granularity === 'month' ? { month: 'short' } : { month: 'short', day: 'numeric' };
  if (withYear) opts.year = 'numeric';
  if (granularity === 'hour') Object.assign(opts, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  return new Intl.DateTimeFormat(locale(), { ...opts, timeZone: 'UTC' }).format(Date.UTC(y, m - 1, d, hour));
}

/// An event type as people read it: "page.viewed" → "Page viewed", "cart.item_added" → "Cart item added"
/// (custom types by the same rule); the type itself stays in the element's `data-type`.
export function eventLabel(type) {
  const words = String(type).replace(/[._]+/g, ' ').trim();
  return words ? words[0].toUpperCase() + words.slice(1) : '';
}
