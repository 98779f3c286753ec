// Number formatting: money from minor units in the response's currency, percents from 0–1 rates, counts.

const locale = () => navigator.language || 'en-US';
const MONEY_METRICS = new Set(['revenue', 'net_revenue', 'aov', 'ltv']);
const RATE_METRICS = new Set(['conversion_rate', 'add_to_cart_rate']);

export function money(minor, currency) {
  if (!currency) return count(minor);
  const f = new Intl.NumberFormat(locale(), { style: 'currency', currency });
  const digits = f.resolvedOptions().maximumFractionDigits;
  return f.format(minor / 10 ** digits);
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
  if (key === 'revenue') return 'money';
  if (/Rate$/.test(key) || key === 'retention') return 'rate';
  if (key === 'updatedAt') return 'time';
  return typeof key === 'string' && /^(units|orders|sessions|customers|quantity|unitsSold|stockOnHand|count)$/.test(key) ? 'count' : 'text';
}

export function value(v, kind, currency) {
  if (v === null || v === undefined) return '–';
  switch (kind) {
    case 'money': return money(v, currency);
    case 'rate': return percent(v);
    case 'count': return count(v);
    case 'time': return new Date(v).toLocaleString(locale());
    default: return String(v);
  }
}

/// "Best sellers" from "best_sellers"; "Unit sold" from "unitsSold".
export const label = (key) =>
  key.replace(/_/g, ' ').replace(/([a-z])([A-Z])/g, '$1 $2').replace(/^./, (c) => c.toUpperCase());
