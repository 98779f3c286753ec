// The dashboard page: sign-in with a read key, the built-in and custom dashboards, a live panel, a funnel
// builder and a dashboard editor. Everything comes from the same-origin API; every value drawn keeps the
// API's raw number in `data-raw` so tests (and curious people) can compare it with the API's answer.
import uPlot from 'uplot';
import { ApiError, call, download, get, keyStore } from './api.js';
import { bucketLabel, compact, count, eventLabel, kindOfColumn, kindOfMetric, label, percent, setZone, timeOfDay, value } from './format.js';

const METRICS = [
  'revenue', 'net_revenue', 'orders', 'aov', 'sessions', 'conversion_rate', 'visitors', 'ltv',
  'add_to_cart_rate', 'product_views', 'best_sellers', 'traffic_sources', 'campaign_performance',
  'new_vs_returning', 'stock_levels', 'sell_through_rate',
];
const EVENT_TYPES = [
  'page.viewed', 'product.viewed', 'cart.item_added', 'cart.item_removed', 'checkout.started',
  'order.completed', 'payment.captured', 'order.refunded', 'inventory.updated',
];
const PERIODS = [['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['30d', 'Last 30 days'], ['90d', 'Last 90 days'], ['12m', 'Last 12 months'], ['custom', 'Custom…']];
const CURRENCIES = ['', 'USD', 'EUR', 'GBP', 'JPY', 'CAD', 'AUD'];
const COMPARISONS = [['', 'No comparison'], ['previous_period', 'Previous period'], ['previous_year', 'Previous year']];
/// '' lets each chart keep its own buckets (the period's default: hourly for 24 hours, daily up to 90 days,
/// monthly for 12 months).
const GRANULARITIES = [['', 'Auto'], ['hour', 'Hourly'], ['day', 'Daily'], ['week', 'Weekly'], ['month', 'Monthly']];
/// The API's limit of buckets per chart.
const MAX_BUCKETS = 1000;
const PERIOD_DAYS = { '24h': 1, '7d': 7, '30d': 30, '90d': 90, '12m': 366 };
const LIVE_EVERY_MS = 5000;

const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
const ZONES = [...new Set(['UTC', browserZone, 'America/New_York', 'America/Los_Angeles', 'Europe/London', 'Europe/Paris', 'Asia/Kolkata', 'Asia/Tokyo', 'Australia/Sydney'])];

const state = {
  dashboards: [],
  period: '30d',
  from: '',
  to: '',
  timezone: 'UTC',
  currency: '',
  includeBots: false,
  /// Every currency converted into the chosen one at each day's ECB rate (`convert=true`), or each
  /// currency's own figures (the default).
  convert: false,
  /// The attribution widgets' model (`model`), or '' for each widget's own.
  model: '',
  compare: '',
  granularity: '',
  /// Filters on the whole dashboard (name → value; see FILTERS), set by clicking a value in a breakdown
  /// or a source in Traffic sources.
  filters: {},
  liveTimer: null,
  /// Ids of the live events already shown: only newer ones are announced to screen readers.
  liveSeen: null,
  charts: [],
};

// ---------------------------------------------------------------------------------------------- DOM helper

/// `h('div', {class: 'x'}, 'text', child)`: attributes, then children (strings become text nodes, never HTML).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const app = () => document.getElementById('app');

function select(attrs, options, current) {
  return h('select', attrs, options.map(([v, text]) => h('option', { value: v, selected: v === current }, text)));
}

// ------------------------------------------------------------------------------------------------ sign-in

function signIn(message) {
  stopLive();
  const input = h('input', { id: 'key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'sk_…', 'aria-describedby': 'key-help' });
  const error = h('p', { class: 'error', role: 'alert', id: 'signin-error' }, message || '');
  const form = h('form', { class: 'signin', onsubmit: async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    error.textContent = '';
    if (key.startsWith('pk_')) {
      error.textContent = 'This is a publishable write key (pk_…): it can only track events. Sign in with a secret read key (sk_…).';
      return;
    }
    try {
      const list = await get('/analytics/dashboards', key);
      keyStore.set(key);
      state.dashboards = list.dashboards;
      route();
    } catch (err) {
      error.textContent = err.status === 403
        ? 'This key cannot read analytics (it is a write key). Sign in with a secret read key (sk_…).'
        : err.status === 401 ? 'Unknown or revoked key.' : err.message;
    }
  } },
  h('h1', {}, 'Commerce analytics'),
  h('label', { for: 'key' }, 'Secret read key'),
  input,
  h('p', { id: 'key-help', class: 'help' }, 'Kept in this tab only (sessionStorage) and sent to this site\'s API; never put in the URL.'),
  h('button', { type: 'submit' }, 'Sign in'),
  error);
  app().replaceChildren(h('main', { id: 'main' }, form));
  input.focus();
}

function signOut() {
  keyStore.clear();
  state.dashboards = [];
  location.hash = '';
  signIn();
}

// ------------------------------------------------------------------------------------------------ layout

/// The period, zone, currency, bot, comparison and granularity parameters for a request (funnels take no
/// currency or granularity, cohorts no comparison or granularity).
function periodQuery(extra = {}, { currency = true, compare = true, granularity = true, filters = true, convert = true, model = false } = {}) {
  const q = new URLSearchParams();
  if (state.period === 'custom') {
    if (state.from) q.set('from', state.from);
    if (state.to) q.set('to', state.to);
  } else {
    q.set('period', state.period);
  }
  q.set('timezone', state.timezone);
  if (currency && state.currency) q.set('currency', state.currency);
  if (state.includeBots) q.set('includeBots', 'true');
  if (convert && state.convert) q.set('convert', 'true');
  if (compare && state.compare) q.set('compare', state.compare);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== '') q.set(k, v);
  // The page's attribution model replaces an attribution widget's own, as the dashboard request does.
  if (model && state.model) q.set('model', state.model);
  // The page's granularity replaces a widget's own, as the dashboard request does.
  if (granularity && state.granularity) q.set('granularity', state.granularity);
  if (filters) for (const k of FILTERS) if (state.filters[k]) q.set(k, state.filters[k]);
  return q.toString();
}

/// The view's state as URL parameters (never the key): period or range, zone, currency, bots, comparison.
function stateQuery() {
  const q = new URLSearchParams();
  if (state.period === 'custom') {
    q.set('period', 'custom');
    if (state.from) q.set('from', state.from);
    if (state.to) q.set('to', state.to);
  } else if (state.period !== '30d') {
    q.set('period', state.period);
  }
  if (state.timezone !== 'UTC') q.set('timezone', state.timezone);
  if (state.currency) q.set('currency', state.currency);
  if (state.includeBots) q.set('bots', 'true');
  if (state.convert) q.set('convert', 'true');
  if (state.model) q.set('model', state.model);
  if (state.compare) q.set('compare', state.compare);
  if (state.granularity) q.set('granularity', state.granularity);
  for (const k of FILTERS) if (state.filters[k]) q.set(k, state.filters[k]);
  return q.toString();
}

/// The dashboard-wide filters the API takes, in the order the filter bar shows them.
const FILTERS = ['country', 'device', 'browser', 'source', 'landingPage', 'referrer'];
/// The ranked tables whose first column is a filter: metric → (column, filter).
const FILTER_COLUMNS = { traffic_sources: 'source', landing_pages: 'landingPage', referrers: 'referrer' };
const DEVICES = ['desktop', 'mobile', 'tablet', 'bot', 'other'];
/// Attribution models (`model`), as the API names them, with how each splits an order's credit.
const MODELS = [
  ['last_non_direct', 'Last non-direct touch'],
  ['last_touch', 'Last touch'],
  ['first_touch', 'First touch'],
  ['linear', 'Linear (equal shares)'],
  ['position_based', 'Position-based (40/20/40)'],
  ['time_decay', 'Time decay (7-day half-life)'],
];
const LINKS = { session: 'in the visit', cart: 'by cart id', anonymous_id: 'by anonymous id', customer_id: 'by customer id' };

/// Whether `v` is a value the API takes for filter `k` (a link with anything else is ignored).
function validFilter(k, v) {
  if (!v) return false;
  if (k === 'country') return /^[A-Z]{2}$/.test(v);
  if (k === 'device') return DEVICES.includes(v);
  const max = { landingPage: 2048, referrer: 255 }[k] || 100;
  return v.length <= max && !/[\u0000-\u001f]/.test(v);
}

/// Applies the parameters of a shared or reloaded URL; values the page does not offer are ignored.
function applyStateQuery(query) {
  const q = new URLSearchParams(query || '');
  const period = q.get('period');
  if (period && PERIODS.some(([p]) => p === period)) state.period = period;
  for (const k of ['from', 'to']) if (/^\d{4}-\d{2}-\d{2}$/.test(q.get(k) || '')) state[k] = q.get(k);
  if (q.has('timezone')) state.timezone = q.get('timezone');
  if (q.has('currency') && CURRENCIES.includes(q.get('currency'))) state.currency = q.get('currency');
  if (q.has('bots')) state.includeBots = q.get('bots') === 'true';
  state.convert = q.get('convert') === 'true';
  state.model = MODELS.some(([m]) => m === q.get('model')) ? q.get('model') : '';
  if (q.has('compare') && COMPARISONS.some(([c]) => c === q.get('compare'))) state.compare = q.get('compare');
  if (q.has('granularity') && GRANULARITIES.some(([g]) => g === q.get('granularity'))) state.granularity = q.get('granularity');
  state.filters = {};
  for (const k of FILTERS) if (validFilter(k, q.get(k))) state.filters[k] = q.get(k);
  setZone(state.timezone);
}

/// Keeps the address bar on the current view (a reload keeps it, a copied link shares it).
function rememberView(path) {
  const query = stateQuery();
  history.replaceState(null, '', `#${path}${query ? '?' + query : ''}`);
}

/// What is wrong with the custom range or the granularity, if anything (checked before asking the API).
function rangeProblem() {
  let days = PERIOD_DAYS[state.period];
  if (state.period === 'custom') {
    const { from, to } = state;
    if (!from || !to) return 'Pick both dates.';
    if (to < from) return '"To" is before "From".';
    const today = new Date().toLocaleDateString('en-CA', { timeZone: state.timezone });
    if (from > today) return 'The range starts in the future: there is no data yet.';
    days = (Date.parse(to) - Date.parse(from)) / 86_400_000 + 1;
    if (days > MAX_BUCKETS) return `The range holds ${days} days; at most 1,000 days fit one chart (pick a shorter range).`;
  }
  const perDay = { hour: 24, day: 1 }[state.granularity];
  if (perDay && days * perDay > MAX_BUCKETS) {
    const name = state.granularity === 'hour' ? 'hourly' : 'daily';
    return `${days} days in ${name} buckets make ${days * perDay}; at most ${MAX_BUCKETS} fit one chart (pick a coarser granularity).`;
  }
  return '';
}

function controls(onChange) {
  const problem = h('span', { id: 'range-problem', class: 'error', role: 'alert' });
  // Asks the API only for a range it can answer; otherwise says why next to the dates.
  const changed = () => {
    problem.textContent = rangeProblem();
    if (!problem.textContent) onChange();
  };
  const custom = h('span', { class: 'custom', hidden: state.period !== 'custom' },
    h('label', { for: 'from' }, 'From'), h('input', { id: 'from', type: 'date', value: state.from, 'aria-describedby': 'range-problem', onchange: (e) => { state.from = e.target.value; changed(); } }),
    h('label', { for: 'to' }, 'To'), h('input', { id: 'to', type: 'date', value: state.to, 'aria-describedby': 'range-problem', onchange: (e) => { state.to = e.target.value; changed(); } }),
    problem);
  return h('div', { class: 'controls', role: 'group', 'aria-label': 'Period and units' },
    h('label', { for: 'period' }, 'Period'),
    select({ id: 'period', onchange: (e) => { state.period = e.target.value; custom.hidden = state.period !== 'custom'; problem.textContent = ''; if (state.period !== 'custom' || (state.from && state.to)) changed(); } }, PERIODS, state.period),
    custom,
    h('label', { for: 'timezone' }, 'Time zone'),
    select({ id: 'timezone', onchange: (e) => { state.timezone = e.target.value; setZone(state.timezone); onChange(); } }, [...new Set([...ZONES, state.timezone])].map((z) => [z, z]), state.timezone),
    h('label', { for: 'currency' }, 'Currency'),
    select({ id: 'currency', onchange: (e) => { state.currency = e.target.value; onChange(); } }, CURRENCIES.map((c) => [c, c || 'Store default']), state.currency),
    h('label', { class: 'check', title: 'Revenue, orders and AOV of every currency, each order converted at its day\'s ECB reference rate' },
      h('input', { id: 'convert', type: 'checkbox', checked: state.convert, onchange: (e) => { state.convert = e.target.checked; onChange(); } }), 'Convert all currencies'),
    h('label', { for: 'granularity' }, 'Granularity'),
    select({ id: 'granularity', 'aria-describedby': 'range-problem', onchange: (e) => { state.granularity = e.target.value; changed(); } }, GRANULARITIES, state.granularity),
    h('label', { for: 'compare' }, 'Compare with'),
    select({ id: 'compare', onchange: (e) => { state.compare = e.target.value; onChange(); } }, COMPARISONS, state.compare),
    h('label', { class: 'check' }, h('input', { id: 'bots', type: 'checkbox', checked: state.includeBots, onchange: (e) => { state.includeBots = e.target.checked; onChange(); } }), 'Include bots'));
}

function nav(active) {
  const link = (href, text, id) => h('li', {}, h('a', { href, 'aria-current': id === active ? 'page' : false }, text));
  return h('nav', { 'aria-label': 'Dashboards' },
    h('ul', {},
      state.dashboards.map((d) => link('#/d/' + encodeURIComponent(d.id), d.name, d.id)),
      link('#/funnel', 'Funnel builder', 'funnel'),
      link('#/edit', 'Edit dashboards', 'edit'),
      link('#/alerts', 'Alerts', 'alerts')),
    h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out'));
}

function shell(active, title, body) {
  for (const c of state.charts) c.destroy();
  state.charts = [];
  const live = h('aside', { id: 'live', 'aria-labelledby': 'live-title' }, h('h2', { id: 'live-title' }, 'Live'), h('p', { class: 'muted' }, 'Loading…'));
  // The one polite live region: it speaks when new events arrive, not at every 5-second redraw.
  const news = h('p', { id: 'live-news', class: 'sr-only', role: 'status', 'aria-live': 'polite' });
  const menu = nav(active);
  // On a phone the navigation folds behind this button (CSS shows it below 700 px).
  const toggle = h('button', { type: 'button', class: 'menu', 'aria-expanded': 'false', 'aria-controls': 'nav', onclick: () => {
    const open = menu.classList.toggle('open');
    toggle.setAttribute('aria-expanded', String(open));
  } }, 'Menu');
  menu.id = 'nav';
  app().replaceChildren(
    h('header', {}, h('span', { class: 'brand' }, 'Commerce analytics'), toggle, menu),
    h('div', { class: 'page' }, h('main', { id: 'main', tabindex: '-1' }, h('h1', {}, title), body), live), news);
  startLive(live, news);
}

// ------------------------------------------------------------------------------------------------ widgets

function errorBox(err) {
  return h('p', { class: 'error', role: 'alert' }, `${err.message}${err.code ? ` (${err.code})` : ''}`);
}

function empty() {
  return h('p', { class: 'empty' }, 'No data in this period.');
}

function dataTable(caption, columns, rows) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.label)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, columns.map((c, i) => (i === 0 ? h('th', { scope: 'row' }, c.cell(r)) : h('td', {}, c.cell(r))))))));
}

function raw(text, rawValue, attrs = {}) {
  return h('span', { ...attrs, 'data-raw': JSON.stringify(rawValue) }, text);
}

function series(data, title) {
  const kind = kindOfMetric(data.metric);
  const points = data.dataPoints || [];
  const fmt = (v) => value(v, kind, data.currency);
  const cmp = data.comparison;
  // A count beside money (orders) is in the same currency, and says so; converted figures say so too.
  const converted = data.conversion ? ' (all currencies, converted)' : '';
  const unit = data.currency ? h('span', { class: 'muted currency' }, (kind === 'money' ? ' ' + data.currency : ` in ${data.currency}`) + converted) : null;
  const total = h('p', { class: 'total' }, raw(fmt(data.total), data.total, { class: 'total-value' }), unit,
    cmp ? changeBadge(cmp, kind, fmt) : null);
  const isEmpty = points.every((p) => !p.value && !p.previous?.value) && !data.total && !cmp?.total;
  const figure = h('figure', { class: 'chart', role: 'img', 'aria-label': `${title}: ${points.length} points, total ${fmt(data.total)}${cmp ? `, ${fmt(cmp.total)} in the ${comparisonName(cmp.compare)}` : ''}` });
  // A bucket the range only partly covers (today's, so far) is marked; one in the future, or a rate or an
  // average over nothing, is a gap on the chart and "no data" in the table, never a drop to 0.
  const shown = (p) => (p.future ? h('span', { class: 'muted' }, 'future') : p.noData ? h('span', { class: 'muted' }, 'no data') : fmt(p.value));
  const columns = [
    { label: 'Date', cell: (p) => (p.partial ? [p.date, ' ', h('span', { class: 'muted partial' }, '(partial)')] : p.date) },
    { label: label(data.metric), cell: (p) => raw(shown(p), p.value) },
  ];
  if (cmp) {
    columns.push({ label: comparisonName(cmp.compare), cell: (p) => (p.previous ? h('span', { 'data-previous': JSON.stringify(p.previous.value) }, `${fmt(p.previous.value)} (${p.previous.date})`) : '–') });
  }
  const table = h('details', {}, h('summary', {}, 'Data table'), h('div', { class: 'table-wrap' }, dataTable(title, columns, points)));
  // The latest bucket that has begun, when the range covers only part of it (today's, so far).
  const current = points.filter((p) => !p.future).at(-1);
  const note = current?.partial && points.length > 1 ? h('p', { class: 'muted note' }, `${current.date} is still in progress.`) : null;
  if (!isEmpty) {
    // Drawn once the card is in the document (uPlot measures its container).
    requestAnimationFrame(() => drawSeries(figure, points, kind, fmt, data.metric, data.currency, cmp, data.granularity));
  }
  // Amounts without an exchange rate are left out of a converted figure, and said here.
  const missing = (data.conversion?.unconverted || []).map((u) => `${count(u.orders)} ${u.currency} order${u.orders === 1 ? '' : 's'}`);
  const unconverted = missing.length ? h('p', { class: 'muted note unconverted', role: 'note' }, `Not included, no exchange rate: ${missing.join(', ')}.`) : null;
  return [total, unconverted, isEmpty ? empty() : figure, note, table];
}

const comparisonName = (c) => (c === 'previous_year' ? 'Previous year' : 'Previous period');

/// "▲ 12.3% vs previous period" (or the absolute change when the previous value is 0; rates change in
/// percentage points).
function changeBadge(cmp, kind, fmt) {
  const c = cmp.change;
  const vs = ` vs ${comparisonName(cmp.compare).toLowerCase()}`;
  if (!c) return h('span', { class: 'change', 'data-change': 'null' }, ` – ${vs}`);
  const up = Number(c.absolute) > 0;
  const down = Number(c.absolute) < 0;
  const arrow = up ? '▲' : down ? '▼' : '■';
  let text;
  if (kind === 'rate') text = `${c.absolute > 0 ? '+' : ''}${(100 * c.absolute).toFixed(1)} pp`;
  else if (c.relative === null) text = `${c.absolute > 0 ? '+' : ''}${fmt(c.absolute)}`;
  else text = `${c.relative > 0 ? '+' : ''}${(100 * c.relative).toFixed(1)}%`;
  return h('span', { class: `change ${up ? 'up' : down ? 'down' : 'flat'}`, 'data-change': JSON.stringify(c) }, ` ${arrow} ${text}${vs}`);
}

/// The value axis' labels, also kept on the figure (the canvas has no text to read back).
function yTicks(figure, labels) {
  figure.dataset.yTicks = JSON.stringify(labels);
  return labels;
}

function drawSeries(figure, points, kind, fmt, metric, currency, cmp, granularity) {
  if (!figure.isConnected) return;
  const xs = points.map((_, i) => i);
  const gap = (p) => p.future || p.noData;
  const ys = points.map((p) => (gap(p) ? null : p.value));
  figure.dataset.gaps = JSON.stringify(points.flatMap((p, i) => (gap(p) ? [i] : [])));
  figure.dataset.partial = JSON.stringify(points.flatMap((p, i) => (p.partial ? [i] : [])));
  const previous = cmp ? points.map((p) => (p.previous ? p.previous.value : null)) : null;
  // A year on date labels only where it is ambiguous: when the points span more than one year.
  const withYear = points.length > 0 && points[0].date.slice(0, 4) !== points[points.length - 1].date.slice(0, 4);
  const css = getComputedStyle(document.documentElement);
  const axis = css.getPropertyValue('--muted').trim() || '#475569';
  const gridLine = css.getPropertyValue('--line').trim() || '#e2e8f0';
  const bars = kind === 'count' && metric !== 'visitors';
  const width = Math.max(figure.clientWidth, 240);
  const chart = new uPlot({
    width,
    height: 180,
    // With a comparison the legend follows the cursor: date, value and the comparison's value.
    legend: { show: Boolean(cmp), live: true },
    cursor: { drag: { x: false, y: false } },
    // Values start at zero: a bar or a line floating on a cropped axis exaggerates changes.
    scales: { x: { time: false }, y: { range: (_, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
    axes: [
      { values: (_, ticks) => xTicks(figure, ticks.map((t) => (points[t] ? bucketLabel(points[t].date, granularity, withYear) : ''))), stroke: axis, grid: { show: false } },
      { values: (_, ticks) => yTicks(figure, ticks.map((t) => compact(t, kind, currency))), stroke: axis, size: 60, grid: { stroke: gridLine } },
    ],
    series: [{ label: 'Date', value: (_, i) => (points[i] ? points[i].date : '') }, {
      label: label(metric), stroke: '#1d4ed8', width: 2, fill: bars ? '#3b82f6' : 'rgba(59,130,246,0.12)',
      paths: bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined, points: { show: !bars && points.length < 40 },
      value: (_, v) => (v === null ? '–' : fmt(v)),
    }, ...(previous ? [{
      label: comparisonName(cmp.compare), stroke: '#94a3b8', width: 1.5, dash: [6, 4], points: { show: false },
      value: (_, v) => (v === null || v === undefined ? '–' : fmt(v)),
    }] : [])],
  }, previous ? [xs, ys, previous] : [xs, ys], figure);
  figure.dataset.series = String(chart.series.length - 1);
  state.charts.push(chart);
}

/// The time axis' labels, kept on the figure like the value axis'.
function xTicks(figure, labels) {
  figure.dataset.xTicks = JSON.stringify(labels);
  return labels;
}

function ranked(data, title, onFilter) {
  const rows = data.rows || [];
  if (!rows.length) return [empty()];
  // A product's name sits in its id's cell, above the id (which keeps the raw value).
  const keys = Object.keys(rows[0]).filter((k) => k !== 'productName');
  const columns = keys.map((k) => {
    if (k === 'productId') return { label: 'Product', cell: productCell };
    // A traffic source, landing page or referrer filters the whole dashboard to its sessions.
    if (k === FILTER_COLUMNS[data.metric] && onFilter) {
      return { label: label(k), cell: (r) => filterButton(k, r[k], onFilter, raw(r[k], r[k])) };
    }
    const kind = kindOfColumn(k);
    return { label: label(k), cell: (r) => raw(value(r[k], kind, data.currency), r[k]) };
  });
  return [h('div', { class: 'table-wrap' }, dataTable(title, columns, rows))];
}

/// A product as people know it: its name (when the store's events carried one) over its id.
function productCell(r) {
  const id = raw(r.productId, r.productId, { class: 'product-id' });
  if (!r.productName) return id;
  return h('span', { class: 'product' }, h('span', { class: 'product-name' }, r.productName), id);
}

function funnelChart(data, title) {
  const steps = data.steps || [];
  if (!steps.length || !steps[0].count) return [empty()];
  const first = steps[0].count;
  return [h('ol', { class: 'funnel', 'aria-label': title }, steps.map((s, i) => h('li', {},
    h('div', { class: 'step' }, h('span', { class: 'name', 'data-type': s.step, title: s.step }, eventLabel(s.step)), raw(count(s.count), s.count, { class: 'count' })),
    h('div', { class: 'bar', role: 'presentation' }, h('span', { style: `width:${Math.max(1, (100 * s.count) / first).toFixed(1)}%` })),
    h('div', { class: 'muted' },
      raw(percent(s.conversionRate), s.conversionRate), ' of step 1',
      i > 0 ? [' · ', raw(percent(s.stepConversionRate), s.stepConversionRate), ' from previous · ', raw(count(s.dropOff), s.dropOff), ' dropped'] : null,
      s.medianSecondsToConvert !== null && s.medianSecondsToConvert !== undefined ? ` · median ${duration(s.medianSecondsToConvert)}` : null))))];
}

function duration(secs) {
  if (secs < 90) return `${Math.round(secs)} s`;
  if (secs < 5400) return `${Math.round(secs / 60)} min`;
  return `${(secs / 3600).toFixed(1)} h`;
}

function cohortGrid(data, title) {
  const cohorts = data.cohorts || [];
  if (!cohorts.length) return [empty()];
  const width = Math.max(...cohorts.map((c) => c.periods.length));
  const unit = data.interval === 'week' ? 'Week' : 'Month';
  const cell = (p) => {
    if (!p) return h('td', { class: 'none' }, '');
    const a = Math.min(1, p.retention);
    const style = `background:rgba(29,78,216,${(0.08 + 0.92 * a).toFixed(2)});color:${a > 0.45 ? '#fff' : 'var(--fg)'}`;
    const tip = `${count(p.customers)} customers, ${value(p.revenue, 'money', data.currency)}`;
    return h('td', { style, title: tip }, raw(percent(p.retention), p.retention));
  };
  const head = h('tr', {}, h('th', { scope: 'col' }, 'Cohort'), h('th', { scope: 'col' }, 'Customers'),
    Array.from({ length: width }, (_, i) => h('th', { scope: 'col' }, `${unit} ${i}`)));
  const body = cohorts.map((c) => h('tr', {},
    h('th', { scope: 'row' }, c.cohort),
    h('td', {}, raw(count(c.size), c.size)),
    Array.from({ length: width }, (_, i) => cell(c.periods[i]))));
  const caption = `${title}: share of each cohort's customers ordering again, by ${unit.toLowerCase()} since their first order`;
  return [h('div', { class: 'table-wrap' },
    h('table', { class: 'cohorts' }, h('caption', {}, caption), h('thead', {}, head), h('tbody', {}, body)))];
}

function widgetBody(w, retry, onFilter, onModel) {
  if (w.error) return [errorBox(w.error), retry ? h('button', { type: 'button', class: 'retry', onclick: retry }, 'Retry') : null];
  const d = w.data;
  if (w.endpoint === 'funnel') return funnelChart(d, w.title);
  if (w.endpoint === 'cohorts') return cohortGrid(d, w.title);
  if (d.metric === 'attribution') return attributionTable(d, w.title, onModel);
  if (d.rows) return ranked(d, w.title, onFilter);
  if (d.groups) return breakdownTable(d, w.title, onFilter);
  return series(d, w.title);
}

/// A broken-down metric as a table: each value with its total and, for additive metrics, its share of the
/// metric's total; a country, device, browser or source is a button that filters the whole dashboard to it.
function breakdownTable(data, title, onFilter) {
  const groups = data.groups || [];
  if (!groups.length) return [empty()];
  const kind = kindOfMetric(data.metric);
  const fmt = (v) => value(v, kind, data.currency);
  const additive = kind !== 'rate' && !['aov', 'visitors', 'ltv'].includes(data.metric);
  const filterable = FILTERS.includes(data.breakdown) && onFilter;
  const name = (g) => (filterable && !g.other && g.key !== '(none)' ? filterButton(data.breakdown, g.key, onFilter) : g.key);
  const columns = [{ label: label(data.breakdown), cell: name }, { label: label(data.metric), cell: (g) => raw(fmt(g.total), g.total) }];
  if (additive && data.total) columns.push({ label: 'Share', cell: (g) => percent(g.total / data.total) });
  const total = h('p', { class: 'total' }, raw(fmt(data.total), data.total, { class: 'total-value' }), data.currency ? h('span', { class: 'muted' }, ' ' + data.currency) : null);
  return [total, h('div', { class: 'table-wrap' }, dataTable(title, columns, groups))];
}

/// Revenue by channel under a model the reader picks: the channels' credited orders, revenue and share of
/// orders, and how much of the revenue could be tied to visits (and how).
function attributionTable(data, title, onModel) {
  const id = cardId(title) + '-model';
  const picker = h('p', { class: 'model' }, h('label', { for: id }, 'Model '),
    h('select', { id, class: 'model-picker', onchange: (e) => onModel && onModel(e.target.value) },
      MODELS.map(([m, name]) => h('option', { value: m, selected: m === data.model }, name))),
    h('span', { class: 'muted' }, ` · ${data.lookback} lookback`));
  const a = data.attributed || {};
  const how = (a.byLink || []).map((l) => `${percent(data.total.revenue ? l.revenue / data.total.revenue : 0)} ${LINKS[l.link] || l.link}`);
  const note = data.total?.orders
    ? h('p', { class: 'muted note attributed' }, raw(percent(a.share || 0), a.share), ' of revenue tied to visits', how.length ? ` (${how.join(', ')})` : '', '.')
    : null;
  return [picker, note, ...ranked(data, title)];
}

/// A value that filters the whole dashboard to it when clicked (showing `content`, by default the value).
function filterButton(dimension, key, onFilter, content = key) {
  return h('button', { type: 'button', class: 'link filter', 'data-key': key, 'data-dimension': dimension, title: `Show only ${key}`, onclick: () => onFilter(dimension, key) }, content);
}

/// A widget's card: title, a CSV download of exactly what it shows, its body (or its error and a retry).
function card(w, retry, onFilter, onModel) {
  const csvError = h('span', { class: 'error', role: 'alert' });
  const csv = h('button', { type: 'button', class: 'link csv', 'aria-label': `Download ${w.title} as CSV`, onclick: async () => {
    csvError.textContent = '';
    try {
      await download(`/analytics/${w.endpoint}?${widgetQuery(w)}&format=csv`);
    } catch (err) {
      csvError.textContent = err.message;
    }
  } }, 'CSV');
  return h('section', { class: 'card', 'data-widget': w.title, 'aria-labelledby': cardId(w.title) },
    h('div', { class: 'card-head' }, h('h2', { id: cardId(w.title) }, w.title), csv, csvError), widgetBody(w, retry, onFilter, onModel));
}

/// A widget's own request: its parameters with the page's period (as the dashboard request hands them).
function widgetQuery(w) {
  const metrics = w.endpoint === 'metrics';
  // As the dashboard request does: cohorts and breakdowns are not compared.
  const compare = w.endpoint !== 'cohorts' && !w.params?.breakdown;
  return periodQuery(w.params || {}, { currency: w.endpoint !== 'funnel', compare: compare && !attributes(w), granularity: metrics, filters: metrics, convert: converts(w), model: attributes(w) });
}

/// Whether a widget is an attribution report (it takes the page's model, and is not compared).
function attributes(w) {
  return w.endpoint === 'metrics' && w.params?.metric === 'attribution';
}

/// Whether a widget takes `convert` (as the dashboard request decides: money time series and orders).
function converts(w) {
  return w.endpoint === 'metrics' && !w.params?.breakdown && ['revenue', 'net_revenue', 'aov', 'orders'].includes(w.params?.metric);
}

const cardId = (title) => 'w-' + title.toLowerCase().replace(/[^a-z0-9]+/g, '-');

// ------------------------------------------------------------------------------------------------ views

async function dashboardView(id) {
  const d = state.dashboards.find((x) => x.id === id);
  if (!d) {
    shell('', 'Unknown dashboard', [h('p', { class: 'error', role: 'alert' }, `There is no dashboard "${id}" for this store.`),
      h('p', {}, 'Open one of: ', state.dashboards.map((x, i) => [i ? ', ' : '', h('a', { href: '#/d/' + encodeURIComponent(x.id) }, x.name)]))]);
    return;
  }
  const grid = h('div', { class: 'grid', 'aria-busy': 'true' });
  const status = h('p', { class: 'status', role: 'status' });
  let latest = 0;
  const load = async () => {
    // Only the newest request may draw: an older one answering late must not overwrite it.
    const mine = ++latest;
    grid.setAttribute('aria-busy', 'true');
    grid.replaceChildren(...d.widgets.map((w) => h('section', { class: 'card loading' }, h('h2', {}, w.title), h('progress', { 'aria-label': `Loading ${w.title}` }))));
    const started = performance.now();
    rememberView('/d/' + encodeURIComponent(d.id));
    filterBar();
    try {
      const data = await get(`/analytics/dashboards/${encodeURIComponent(d.id)}?${periodQuery({}, { model: true })}`);
      if (mine !== latest) return;
      const onFilter = (k, v) => { state.filters = { ...state.filters, [k]: v }; load(); };
      const onModel = (m) => { state.model = m; load(); };
      grid.replaceChildren(...data.widgets.map((w) => card(w, load, onFilter, onModel)));
      status.textContent = `Updated ${timeOfDay(Date.now())} (${state.timezone}) in ${Math.round(performance.now() - started)} ms`;
    } catch (err) {
      if (mine !== latest) return;
      if (err.status === 401) return signIn('Your key is no longer valid; sign in again.');
      grid.replaceChildren(errorBox(err));
    } finally {
      if (mine === latest) grid.setAttribute('aria-busy', 'false');
    }
  };
  // The active filters, each with a button that removes it.
  const filters = h('div', { class: 'filters', role: 'group', 'aria-label': 'Filters' });
  const filterBar = () => {
    const active = FILTERS.filter((k) => state.filters[k]);
    filters.replaceChildren(...active.map((k) => h('span', { class: 'filter-chip' },
      label(k), ': ', h('strong', { 'data-filter': k }, state.filters[k]), ' ',
      h('button', { type: 'button', class: 'link clear-filter', 'aria-label': `Remove the ${k} filter ${state.filters[k]}`, onclick: () => {
        const { [k]: _, ...rest } = state.filters;
        state.filters = rest;
        load();
      } }, '✕ Clear'))));
    filters.hidden = !active.length;
  };
  filterBar();
  shell(d.id, d.name, [controls(load), filters, status, grid]);
  await load();
}

/// Why a funnel step may count nothing: not an event type name, or not one of the built-in types.
function stepNote(s) {
  if (!/^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/.test(s)) return 'Not an event type name (like order.completed).';
  if (!EVENT_TYPES.includes(s)) return `"${s}" is not a built-in event type: it counts only if your store sends it.`;
  return '';
}

function stepsEditor(steps, onChange) {
  const list = h('ol', { class: 'steps' });
  const datalist = h('datalist', { id: 'event-types' }, EVENT_TYPES.map((t) => h('option', { value: t })));
  const redraw = () => {
    list.replaceChildren(...steps.map((s, i) => {
      const note = h('span', { id: `step-${i}-note`, class: 'muted' }, stepNote(s));
      return h('li', {},
        h('label', { for: `step-${i}` }, `Step ${i + 1}`),
        h('input', { id: `step-${i}`, list: 'event-types', value: s, required: true, 'aria-describedby': `step-${i}-note`, oninput: (e) => { steps[i] = e.target.value.trim(); note.textContent = stepNote(steps[i]); onChange?.(); } }),
        h('button', { type: 'button', disabled: steps.length <= 2, 'aria-label': `Remove step ${i + 1}`, onclick: () => { steps.splice(i, 1); redraw(); onChange?.(); } }, 'Remove'),
        note);
    }));
  };
  redraw();
  const add = h('button', { type: 'button', onclick: () => { if (steps.length < 10) { steps.push('order.completed'); redraw(); onChange?.(); } } }, 'Add step');
  return h('div', {}, datalist, list, add);
}

async function funnelView() {
  const steps = ['product.viewed', 'cart.item_added', 'checkout.started', 'order.completed'];
  const opts = { window: '1d', by: 'session', mode: 'ordered' };
  const result = h('section', { class: 'card wide', 'aria-live': 'polite' }, h('h2', {}, 'Result'), h('p', { class: 'muted' }, 'Pick 2 to 10 steps and run the funnel.'));
  let latest = 0;
  const run = async (e) => {
    e?.preventDefault();
    const mine = ++latest;
    result.replaceChildren(h('h2', {}, 'Result'), h('progress', { 'aria-label': 'Running the funnel' }));
    try {
      const data = await get(`/analytics/funnel?${periodQuery({ steps: steps.join(','), ...opts }, { currency: false, granularity: false, filters: false, convert: false })}`);
      if (mine === latest) result.replaceChildren(h('h2', {}, 'Result'), ...funnelChart(data, 'Funnel'));
    } catch (err) {
      if (mine === latest) result.replaceChildren(h('h2', {}, 'Result'), errorBox(err));
    }
  };
  const form = h('form', { class: 'builder', onsubmit: run },
    stepsEditor(steps),
    h('div', { class: 'row' },
      h('label', { for: 'window' }, 'Window'),
      select({ id: 'window', onchange: (e) => { opts.window = e.target.value; run(); } }, [['30m', '30 minutes'], ['1h', '1 hour'], ['1d', '1 day'], ['7d', '7 days'], ['30d', '30 days']], opts.window),
      h('label', { for: 'by' }, 'Count'),
      select({ id: 'by', onchange: (e) => { opts.by = e.target.value; run(); } }, [['session', 'Sessions'], ['customer', 'Customers']], opts.by),
      h('label', { for: 'mode' }, 'Order'),
      select({ id: 'mode', onchange: (e) => { opts.mode = e.target.value; run(); } }, [['ordered', 'In order'], ['strict', 'Strictly consecutive']], opts.mode)),
    h('button', { type: 'submit' }, 'Run funnel'));
  shell('funnel', 'Funnel builder', [controls(run), form, result]);
  await run();
}

function widgetEditor(w, i, widgets, redraw) {
  const param = () => {
    if (w.endpoint === 'metrics') {
      return [h('label', { for: `wm-${i}` }, 'Metric'), select({ id: `wm-${i}`, onchange: (e) => { w.params = { metric: e.target.value }; } }, METRICS.map((m) => [m, label(m)]), w.params.metric)];
    }
    if (w.endpoint === 'cohorts') {
      return [h('label', { for: `wi-${i}` }, 'Interval'), select({ id: `wi-${i}`, onchange: (e) => { w.params = { interval: e.target.value }; } }, [['month', 'Monthly'], ['week', 'Weekly']], w.params.interval || 'month')];
    }
    return [h('label', { for: `ws-${i}` }, 'Steps'), h('input', { id: `ws-${i}`, value: w.params.steps || '', size: 50, oninput: (e) => { w.params = { steps: e.target.value.replace(/\s+/g, '') }; } })];
  };
  const move = (to) => { const [x] = widgets.splice(i, 1); widgets.splice(to, 0, x); redraw(); };
  return h('li', { class: 'widget-editor' },
    h('label', { for: `wt-${i}` }, 'Title'),
    h('input', { id: `wt-${i}`, value: w.title, required: true, oninput: (e) => { w.title = e.target.value; } }),
    h('label', { for: `we-${i}` }, 'Shows'),
    select({ id: `we-${i}`, onchange: (e) => {
      w.endpoint = e.target.value;
      w.params = w.endpoint === 'metrics' ? { metric: 'revenue' } : w.endpoint === 'cohorts' ? { interval: 'month' } : { steps: 'product.viewed,order.completed' };
      redraw();
    } }, [['metrics', 'A metric'], ['funnel', 'A funnel'], ['cohorts', 'Cohorts']], w.endpoint),
    param(),
    h('span', { class: 'buttons' },
      h('button', { type: 'button', disabled: i === 0, onclick: () => move(i - 1), 'aria-label': `Move widget ${i + 1} up` }, '↑'),
      h('button', { type: 'button', disabled: i === widgets.length - 1, onclick: () => move(i + 1), 'aria-label': `Move widget ${i + 1} down` }, '↓'),
      h('button', { type: 'button', onclick: () => { widgets.splice(i, 1); redraw(); }, 'aria-label': `Remove widget ${i + 1}` }, 'Remove')));
}

async function refreshList() {
  state.dashboards = (await get('/analytics/dashboards')).dashboards;
}

async function editView(id) {
  const custom = state.dashboards.filter((d) => !d.builtIn);
  const existing = id ? custom.find((d) => d.id === id) : null;
  const draft = existing
    ? { name: existing.name, widgets: existing.widgets.map((w) => ({ ...w, params: { ...w.params } })) }
    : { name: '', widgets: [{ title: 'Revenue', endpoint: 'metrics', params: { metric: 'revenue' } }] };
  const list = h('ol', { class: 'widgets' });
  const redraw = () => list.replaceChildren(...draft.widgets.map((w, i) => widgetEditor(w, i, draft.widgets, redraw)));
  redraw();
  const message = h('p', { role: 'status', class: 'status' });
  const save = async (e) => {
    e.preventDefault();
    message.textContent = 'Saving…';
    try {
      const saved = existing
        ? await call('PUT', `/analytics/dashboards/${encodeURIComponent(existing.id)}`, draft)
        : await call('POST', '/analytics/dashboards', draft);
      await refreshList();
      location.hash = '#/d/' + encodeURIComponent(saved.id || existing.id);
    } catch (err) {
      message.replaceChildren(errorBox(err));
    }
  };
  const remove = async () => {
    if (!existing || !confirm(`Delete the dashboard "${existing.name}"?`)) return;
    try {
      await call('DELETE', `/analytics/dashboards/${encodeURIComponent(existing.id)}`);
      await refreshList();
      location.hash = '#/edit';
    } catch (err) {
      message.replaceChildren(errorBox(err));
    }
  };
  const picker = h('ul', { class: 'picker' },
    custom.map((d) => h('li', {}, h('a', { href: '#/edit/' + encodeURIComponent(d.id), 'aria-current': d.id === id ? 'page' : false }, d.name))),
    h('li', {}, h('a', { href: '#/edit', 'aria-current': !id ? 'page' : false }, 'New dashboard')));
  const form = h('form', { class: 'editor', onsubmit: save },
    h('label', { for: 'dash-name' }, 'Name'),
    h('input', { id: 'dash-name', value: draft.name, required: true, maxlength: 100, oninput: (e) => { draft.name = e.target.value; } }),
    h('h2', {}, 'Widgets'),
    list,
    h('button', { type: 'button', onclick: () => { if (draft.widgets.length < 20) { draft.widgets.push({ title: 'Orders', endpoint: 'metrics', params: { metric: 'orders' } }); redraw(); } } }, 'Add widget'),
    h('div', { class: 'row' },
      h('button', { type: 'submit', class: 'primary' }, existing ? 'Save changes' : 'Create dashboard'),
      existing ? h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete dashboard') : null),
    message);
  shell('edit', existing ? `Edit “${existing.name}”` : 'New dashboard', [picker, form]);
}

// ------------------------------------------------------------------------------------------------ alerts

/// The time-series metrics an alert can watch.
const ALERT_METRICS = ['orders', 'revenue', 'net_revenue', 'aov', 'sessions', 'visitors', 'conversion_rate', 'add_to_cart_rate', 'product_views'];
const CONDITIONS = [['below', 'Falls below'], ['above', 'Rises above'], ['change', 'Changes by (%)'], ['anomaly', 'Is unusual for the hour of the week']];

/// What a rule watches, in words.
function conditionText(a) {
  if (a.builtIn) return a.description;
  const c = a.condition || {};
  const what = `${label(a.metric)} over ${a.window}`;
  switch (c.type) {
    case 'below': return `${what} below ${c.threshold}`;
    case 'above': return `${what} above ${c.threshold}`;
    case 'change': return `${what} changes by ${c.percent}% against the ${a.window} before`;
    default: return `${what} outside its usual band (same hour of the week, last ${c.weeks} weeks, k = ${c.k})`;
  }
}

/// A rule's body for PUT, from its answer (without the fields the server sets).
function ruleBody(a) {
  const { id, builtIn, signingSecret, description, name, ...rest } = a;
  return a.builtIn ? { channels: a.channels || [], muted: !!a.muted } : { name, ...rest };
}

function alertCard(a, reload) {
  const status = h('p', { class: 'status', role: 'status' });
  const history = h('div', { class: 'history' });
  const act = async (what, fn) => {
    status.textContent = what;
    try {
      status.textContent = await fn();
    } catch (err) {
      status.replaceChildren(errorBox(err));
    }
  };
  const test = () => act('Sending…', async () => {
    const r = await call('POST', `/analytics/alerts/${encodeURIComponent(a.id)}/test`);
    const ok = r.deliveries.filter((d) => d.delivered).length;
    return `Test sent: ${ok} of ${r.deliveries.length} channel${r.deliveries.length === 1 ? '' : 's'} answered` +
      r.deliveries.filter((d) => !d.delivered).map((d) => ` · ${d.channel}: ${d.detail}`).join('');
  });
  const mute = () => act('Saving…', async () => {
    await call('PUT', `/analytics/alerts/${encodeURIComponent(a.id)}`, { ...ruleBody(a), muted: !a.muted });
    reload();
    return '';
  });
  const remove = () => act('Deleting…', async () => {
    if (!confirm(`Delete the alert "${a.name}"?`)) return '';
    await call('DELETE', `/analytics/alerts/${encodeURIComponent(a.id)}`);
    reload();
    return '';
  });
  const showHistory = () => act('Loading…', async () => {
    const r = await get(`/analytics/alerts/${encodeURIComponent(a.id)}/history?limit=20`);
    const rows = r.evaluations;
    history.replaceChildren(rows.length
      ? dataTable(`${a.name}: latest evaluations`, [
        { label: 'Window ends', cell: (e) => new Date(e.windowTo).toLocaleString() },
        { label: 'Value', cell: (e) => raw(e.value === null ? '–' : count(Math.round(e.value * 100) / 100), e.value) },
        { label: 'Expected', cell: (e) => (e.expected ? `${count(Math.round(e.expected.median))} (${count(Math.max(0, Math.round(e.expected.lower)))}–${count(Math.round(e.expected.upper))})` : '–') },
        { label: 'State', cell: (e) => (e.firing ? 'Firing' : 'OK') },
        { label: 'Notified', cell: (e) => e.notification || '' },
        { label: 'Detail', cell: (e) => e.detail },
      ], rows)
      : h('p', { class: 'muted' }, 'Not evaluated yet (every 5 minutes).'));
    return '';
  });
  const channels = a.channels || [];
  return h('section', { class: 'card alert', 'data-alert': a.id },
    h('div', { class: 'card-head' }, h('h2', {}, a.name), a.builtIn ? h('span', { class: 'muted' }, 'Built-in') : null, a.muted ? h('span', { class: 'muted muted-flag' }, 'Muted') : null),
    h('p', {}, conditionText(a)),
    h('p', { class: 'muted channels' }, channels.length ? `Notifies ${channels.map((c) => c.url || c.topicArn).join(', ')}` : 'No channel: evaluations are logged, nobody is notified.'),
    h('div', { class: 'row' },
      h('button', { type: 'button', class: 'test', disabled: !channels.length, onclick: test }, 'Send a test'),
      h('button', { type: 'button', class: 'mute', onclick: mute }, a.muted ? 'Unmute' : 'Mute'),
      h('button', { type: 'button', class: 'show-history', onclick: showHistory }, 'History'),
      a.builtIn ? null : h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete')),
    status, history);
}

async function alertsView() {
  const list = h('div', { class: 'grid alerts' });
  const load = async () => {
    try {
      const data = await get('/analytics/alerts');
      list.replaceChildren(...data.alerts.map((a) => alertCard(a, load)));
    } catch (err) {
      list.replaceChildren(errorBox(err));
    }
  };
  const draft = { name: '', metric: 'orders', type: 'below', amount: '1', window: '1h', url: '' };
  const message = h('p', { role: 'status', class: 'status' });
  const field = (id, text, control) => [h('label', { for: id }, text), control];
  const input = (id, key, attrs = {}) => h('input', { id, value: draft[key], oninput: (e) => { draft[key] = e.target.value; }, ...attrs });
  const create = async (e) => {
    e.preventDefault();
    const amount = Number(draft.amount);
    const condition = {
      below: { type: 'below', threshold: amount },
      above: { type: 'above', threshold: amount },
      change: { type: 'change', percent: amount },
      anomaly: { type: 'anomaly', weeks: 4, k: amount || 3, direction: 'both' },
    }[draft.type];
    const body = { name: draft.name, metric: draft.metric, window: draft.window, condition, channels: draft.url ? [{ type: 'webhook', url: draft.url }] : [] };
    form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
    message.textContent = 'Creating…';
    try {
      await call('POST', '/analytics/alerts', body);
      message.textContent = `Created “${draft.name}”.`;
      await load();
    } catch (err) {
      message.replaceChildren(errorBox(err));
      const id = { name: 'alert-name', metric: 'alert-metric', window: 'alert-window', 'channels[0].url': 'alert-url' }[err.field] || (err.field?.startsWith('condition') ? 'alert-amount' : null);
      if (id) document.getElementById(id)?.setAttribute('aria-invalid', 'true');
    }
  };
  const form = h('form', { class: 'editor alert-form', onsubmit: create },
    h('div', { class: 'row' },
      ...field('alert-name', 'Name', input('alert-name', 'name', { required: true, maxlength: 100 })),
      ...field('alert-metric', 'Metric', select({ id: 'alert-metric', onchange: (e) => { draft.metric = e.target.value; } }, ALERT_METRICS.map((m) => [m, label(m)]), draft.metric))),
    h('div', { class: 'row' },
      ...field('alert-type', 'When it', select({ id: 'alert-type', onchange: (e) => { draft.type = e.target.value; } }, CONDITIONS, draft.type)),
      ...field('alert-amount', 'Value (threshold, %, or k for unusual)', input('alert-amount', 'amount', { type: 'number', step: 'any', required: true })),
      ...field('alert-window', 'Over', select({ id: 'alert-window', onchange: (e) => { draft.window = e.target.value; } }, [['1h', 'the last hour'], ['2h', '2 hours'], ['6h', '6 hours'], ['24h', '24 hours']], draft.window))),
    h('div', { class: 'row' },
      ...field('alert-url', 'Webhook (https)', input('alert-url', 'url', { type: 'url', placeholder: 'https://hooks.example.com/…', size: 50 }))),
    h('button', { type: 'submit', class: 'primary' }, 'Create alert'),
    message);
  shell('alerts', 'Alerts', [
    h('p', { class: 'muted' }, 'Rules are evaluated every 5 minutes; the built-in guards watch every store with recent events. Webhooks are signed (X-Analytics-Signature).'),
    list, h('h2', {}, 'New alert'), form]);
  await load();
}

// ------------------------------------------------------------------------------------------------ live

function stopLive() {
  if (state.liveTimer) clearInterval(state.liveTimer);
  state.liveTimer = null;
}

function startLive(panel, news) {
  stopLive();
  state.liveSeen = null;
  const tick = async () => {
    if (!panel.isConnected) return stopLive();
    try {
      const q = state.includeBots ? '?minutes=30&includeBots=true' : '?minutes=30';
      const live = await get('/analytics/live' + q);
      renderLive(panel, live);
      announce(news, live.recent);
    } catch (err) {
      panel.replaceChildren(h('h2', { id: 'live-title' }, 'Live'), errorBox(err));
    }
  };
  tick();
  state.liveTimer = setInterval(tick, LIVE_EVERY_MS);
}

/// Tells screen readers about events that were not shown before ("2 new events: order.completed, …").
function announce(news, recent) {
  const ids = new Set(recent.map((e) => e.id));
  if (state.liveSeen) {
    const fresh = recent.filter((e) => !state.liveSeen.has(e.id));
    if (fresh.length) {
      news.textContent = `${fresh.length} new event${fresh.length > 1 ? 's' : ''}: ${fresh.slice(0, 3).map((e) => eventLabel(e.type)).join(', ')}`;
    }
  }
  state.liveSeen = ids;
}

function renderLive(panel, live) {
  const max = Math.max(1, ...live.perMinute.map((m) => m.events));
  panel.replaceChildren(
    h('h2', { id: 'live-title' }, 'Live'),
    h('p', { class: 'total' }, raw(count(live.total), live.total, { 'data-testid': 'live-total' }), h('span', { class: 'muted' }, ` events in the last ${live.minutes} minutes`)),
    h('div', { class: 'spark', role: 'img', 'aria-label': `Events per minute, last ${live.minutes} minutes: ${live.perMinute.map((m) => m.events).join(', ')}` },
      live.perMinute.map((m) => h('span', { style: `height:${Math.round((100 * m.events) / max)}%`, title: `${timeOfDay(m.minute)}: ${m.events}` }))),
    live.recent.length
      ? h('ul', { class: 'recent', 'aria-label': 'Most recent events' }, live.recent.map((e) => h('li', { 'data-id': e.id },
        h('span', { class: 'type', 'data-type': e.type, title: e.type }, eventLabel(e.type)), ' ', h('span', { class: 'muted' }, e.detail), h('time', { datetime: e.timestamp }, timeOfDay(e.timestamp)))))
      : h('p', { class: 'empty' }, 'No events in the last minutes.'),
    h('p', { class: 'muted small' }, `Refreshes every ${LIVE_EVERY_MS / 1000} s.`));
}

// ------------------------------------------------------------------------------------------------ router

async function route() {
  if (!keyStore.get()) return signIn();
  try {
    if (!state.dashboards.length) await refreshList();
  } catch (err) {
    return signIn(err instanceof ApiError && err.status === 401 ? 'Your key is no longer valid; sign in again.' : err.message);
  }
  const [path, query] = location.hash.split('?');
  applyStateQuery(query);
  const [, kind, id] = path.split('/').map(decodeURIComponent);
  if (kind === 'funnel') return funnelView();
  if (kind === 'edit') return editView(id);
  if (kind === 'alerts') return alertsView();
  return dashboardView(kind === 'd' && id ? id : 'overview');
}

window.addEventListener('hashchange', route);
// The skip link moves focus to the content; it must not navigate (its `#main` is not a route).
document.querySelector('.skip')?.addEventListener('click', (e) => {
  e.preventDefault();
  document.getElementById('main')?.focus();
});
// Charts follow their card's width when the window changes (a phone turned, a window resized).
let resizing = null;
window.addEventListener('resize', () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => {
    for (const c of state.charts) {
      const figure = c.root.parentElement;
      if (figure) c.setSize({ width: Math.max(figure.clientWidth, 240), height: 180 });
    }
  }, 100);
});
route();
