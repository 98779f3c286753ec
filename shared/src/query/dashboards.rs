//! Dashboards: the five built-in ones of the spec and each store's custom ones.
//!
//! A dashboard is a named list of widgets (at most [`MAX_WIDGETS`]; a store has at most
//! [`MAX_DASHBOARDS`] custom ones); a widget names an endpoint
//! (`metrics`, `funnel`, `cohorts`) and its parameters, minus the period ones (`period`, `from`, `to`,
//! `timezone`), which come from the dashboard request so every widget shows the same period. Widgets are
//! validated with the endpoint's own parser when saved. `GET /analytics/dashboards/{id}` runs every widget
//! concurrently and returns each one's data (the endpoint's own response) or its error.
//!
//! Built-in dashboards (ids `overview`, `products`, `customers`, `marketing`, `inventory`) are read-only;
//! custom ones get ids `dash_<ULID>` and are stored per store (`analytics_dashboards` table).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use async_trait::async_trait;

use super::breakdown::Breakdown;
use super::metrics::MetricQuery;
use super::{ReadStore, cohorts, funnel, metrics, params, ranked};
use crate::error::StoreError;
use crate::error::{Error, Result};

pub const MAX_WIDGETS: usize = 20;
/// Most custom dashboards per store: each render runs every widget, so the count bounds what one store
/// can ask of the warehouse.
pub const MAX_DASHBOARDS: usize = 100;
pub const BUILT_IN: [&str; 6] = [
    "overview",
    "products",
    "customers",
    "audience",
    "marketing",
    "inventory",
];
const PERIOD_PARAMS: [&str; 5] = ["period", "from", "to", "timezone", "compare"];

/// What `GET /analytics/dashboards/{id}` takes: the shared parameters, `compare` (metrics, ranked
/// metrics and funnels are compared; cohort widgets are not), `granularity` (the buckets of every
/// time-series widget, in place of its own; funnels and cohorts have none) and the filters `country`,
/// `device`, `browser`, `source`, `landingPage`, `referrer` ([`params::Filters`]: each on every widget, in place of its own; a
/// widget that cannot be filtered answers its own 400), `convert` (on the widgets that take it) and
/// `model` (the attribution widgets' model, in place of their own; the others ignore it).
pub const RENDER_PARAMS: [&str; 16] = params::concat::<10, 6, 16>(
    params::concat::<6, 4, 10>(
        params::SHARED,
        ["compare", "granularity", "convert", "model"],
    ),
    params::Filters::NAMES,
);

/// Whether `widget` is an attribution report (it takes the dashboard's `model`, and is not compared).
fn attributes(widget: &Widget) -> bool {
    widget.endpoint == Endpoint::Metrics
        && widget.params.get("metric").map(String::as_str) == Some(super::attribution::NAME)
}

/// Whether `widget` takes `convert` (a time series of [`super::convert::METRICS`]); the others read in
/// `currency` as they would without it, and their answers say so (no `conversion`).
fn converts(widget: &Widget) -> bool {
    widget.endpoint == Endpoint::Metrics
        && !widget.params.contains_key("breakdown")
        && widget
            .params
            .get("metric")
            .and_then(|m| metrics::Metric::parse(m).ok())
            .is_some_and(|m| super::convert::METRICS.contains(&m))
}

/// Whether `k` is a dashboard parameter that replaces a widget's own.
fn replaces_own(k: &str) -> bool {
    k == "granularity" || k == "model" || params::Filters::NAMES.contains(&k)
}

/// The dashboards port: a store's custom dashboards (the built-in ones live in code).
#[async_trait]
pub trait DashboardStore: Send + Sync + std::fmt::Debug {
    /// The store's custom dashboards, by name then id.
    async fn dashboards(&self, store_id: &str) -> Result<Vec<Dashboard>, StoreError>;
    /// Creates or replaces a custom dashboard; `at` orders saves of the same dashboard (the latest wins).
    async fn save_dashboard(
        &self,
        store_id: &str,
        d: &Dashboard,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError>;
    /// Deletes a custom dashboard as of `at`; false when it did not exist.
    async fn delete_dashboard(
        &self,
        store_id: &str,
        id: &str,
        at: jiff::Timestamp,
    ) -> Result<bool, StoreError>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Metrics,
    Funnel,
    Cohorts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Widget {
    pub title: String,
    pub endpoint: Endpoint,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dashboard {
    pub id: String,
    pub name: String,
    pub built_in: bool,
    pub widgets: Vec<Widget>,
}

impl Dashboard {
    /// A custom dashboard as a store keeps it: its widgets as JSON text ([`Dashboard::widgets_json`]).
    pub fn stored(id: String, name: String, widgets: &str) -> Result<Self, StoreError> {
        let widgets = serde_json::from_str(widgets).map_err(|e| {
            StoreError::Rejected(format!("dashboard {id} has unreadable widgets: {e}"))
        })?;
        Ok(Self {
            id,
            name,
            built_in: false,
            widgets,
        })
    }

    /// The widgets as the JSON text a store keeps.
    pub fn widgets_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(&self.widgets)
            .map_err(|e| StoreError::Rejected(format!("dashboard widgets: {e}")))
    }
}

/// Body of `POST` / `PUT /analytics/dashboards[/{id}]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardInput {
    pub name: String,
    pub widgets: Vec<Widget>,
}

fn w(title: &str, endpoint: Endpoint, params: &[(&str, &str)]) -> Widget {
    Widget {
        title: title.to_owned(),
        endpoint,
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

/// The spec's five dashboards, and Audience (where sessions and revenue come from: countries, devices,
/// browsers, sources, landing pages, referrers).
pub fn built_in() -> Vec<Dashboard> {
    use Endpoint::*;
    let d = |id: &str, name: &str, widgets: Vec<Widget>| Dashboard {
        id: id.to_owned(),
        name: name.to_owned(),
        built_in: true,
        widgets,
    };
    vec![
        d(
            "overview",
            "Overview",
            vec![
                w("Revenue", Metrics, &[("metric", "revenue")]),
                w("Orders", Metrics, &[("metric", "orders")]),
                w("Average order value", Metrics, &[("metric", "aov")]),
                w("Conversion rate", Metrics, &[("metric", "conversion_rate")]),
            ],
        ),
        d(
            "products",
            "Products",
            vec![
                w("Best sellers", Metrics, &[("metric", "best_sellers")]),
                w(
                    "Product performance",
                    Metrics,
                    &[("metric", "product_performance")],
                ),
                w("Product views", Metrics, &[("metric", "product_views")]),
                w(
                    "Add-to-cart rate",
                    Metrics,
                    &[("metric", "add_to_cart_rate")],
                ),
            ],
        ),
        d(
            "customers",
            "Customers",
            vec![
                w(
                    "New vs returning",
                    Metrics,
                    &[("metric", "new_vs_returning")],
                ),
                w("Lifetime value", Metrics, &[("metric", "ltv")]),
                w(
                    "Retention by monthly cohort",
                    Cohorts,
                    &[("interval", "month")],
                ),
            ],
        ),
        d(
            "audience",
            "Audience",
            vec![
                w(
                    "Countries",
                    Metrics,
                    &[("metric", "sessions"), ("breakdown", "country")],
                ),
                w(
                    "Devices",
                    Metrics,
                    &[("metric", "sessions"), ("breakdown", "device")],
                ),
                w(
                    "Browsers",
                    Metrics,
                    &[("metric", "sessions"), ("breakdown", "browser")],
                ),
                w(
                    "Revenue by source",
                    Metrics,
                    &[("metric", "revenue"), ("breakdown", "source")],
                ),
                w("Landing pages", Metrics, &[("metric", "landing_pages")]),
                w("Referrers", Metrics, &[("metric", "referrers")]),
            ],
        ),
        d(
            "marketing",
            "Marketing",
            vec![
                w("Traffic sources", Metrics, &[("metric", "traffic_sources")]),
                w(
                    "Campaign performance",
                    Metrics,
                    &[("metric", "campaign_performance")],
                ),
                w(
                    "Revenue attribution",
                    Metrics,
                    &[("metric", "attribution"), ("model", "last_non_direct")],
                ),
                w(
                    "Funnel",
                    Funnel,
                    &[(
                        "steps",
                        "page.viewed,product.viewed,cart.item_added,checkout.started,order.completed",
                    )],
                ),
            ],
        ),
        d(
            "inventory",
            "Inventory",
            vec![
                w("Stock levels", Metrics, &[("metric", "stock_levels")]),
                w(
                    "Sell-through rate",
                    Metrics,
                    &[("metric", "sell_through_rate")],
                ),
            ],
        ),
    ]
}

fn query_string(params: &BTreeMap<String, String>, period: &BTreeMap<String, String>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter().chain(period.iter()) {
        q.append_pair(k, v);
    }
    q.finish()
}

/// A widget's query string: its own parameters, but those the dashboard's replace, and the period's.
fn widget_query(widget: &Widget, period: &BTreeMap<String, String>) -> Result<String> {
    // The dashboard's granularity and filters, when given, replace the widget's own.
    let own: BTreeMap<String, String> = widget
        .params
        .iter()
        .filter(|(k, _)| !(replaces_own(k) && period.contains_key(k.as_str())))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(k) = params::Filters::NAMES
        .into_iter()
        .find(|k| period.contains_key(*k))
        && widget.endpoint != Endpoint::Metrics
    {
        return Err(Error::invalid(
            "invalid_parameter",
            k,
            format!("funnels and cohorts have no {k} filter"),
        ));
    }
    let mut period = period.clone();
    if !converts(widget) {
        period.remove("convert");
    }
    if !attributes(widget) {
        period.remove("model");
    }
    Ok(query_string(&own, &period))
}

/// A widget's request, parsed by its endpoint's own parser.
#[derive(Debug)]
enum Parsed {
    Metrics(metrics::Request),
    Funnel(funnel::FunnelQuery),
    Cohorts(cohorts::CohortQuery),
}

/// Parses one widget's query ([`widget_query`]) as its endpoint does.
async fn parse_widget(
    store: &dyn ReadStore,
    store_id: &str,
    widget: &Widget,
    q: Result<String>,
    now: jiff::Timestamp,
) -> Result<Parsed> {
    let q = q?;
    Ok(match widget.endpoint {
        Endpoint::Metrics => Parsed::Metrics(metrics::parse(store, store_id, &q, now).await?),
        Endpoint::Funnel => Parsed::Funnel(funnel::parse(store_id, &q, now)?),
        Endpoint::Cohorts => Parsed::Cohorts(cohorts::parse(store, store_id, &q, now).await?),
    })
}

/// Runs one parsed widget; its endpoint's response, or the error.
async fn run_widget(store: &dyn ReadStore, parsed: Parsed) -> Result<Value> {
    match parsed {
        Parsed::Metrics(request) => match request {
            metrics::Request::Series(m) => to_value(metrics::run(store, &m).await?),
            metrics::Request::Ranked(r) => ranked::run(store, &r).await,
            metrics::Request::Products(r) => super::products::run(store, &r).await,
            metrics::Request::Sales(r) => super::sales::run(store, &r).await,
            metrics::Request::Attribution(r) => super::attribution::run(store, &r).await,
        },
        Parsed::Funnel(f) => to_value(funnel::run(store, &f).await?),
        Parsed::Cohorts(c) => to_value(cohorts::run(store, &c).await?),
    }
}

fn to_value(v: impl Serialize) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Internal(e.to_string()))
}

/// Widgets that run as one ([`together`]).
#[derive(Debug)]
enum Together {
    /// Breakdowns of one metric over one query but for the dimension and its limit
    /// ([`metrics::run_each`]).
    Breakdowns(Vec<(usize, MetricQuery)>),
    /// Ranked metrics over one query but for the metric and its limit ([`ranked::run_each`]).
    Ranked(Vec<(usize, ranked::RankedQuery)>),
}

impl Together {
    fn widgets(&self) -> Vec<usize> {
        match self {
            Self::Breakdowns(g) => g.iter().map(|(i, _)| *i).collect(),
            Self::Ranked(g) => g.iter().map(|(i, _)| *i).collect(),
        }
    }
}

/// `q` without the parameters named in `except`.
fn query_without(q: &str, except: &[&str]) -> String {
    let rest: BTreeMap<String, String> = url::form_urlencoded::parse(q.as_bytes())
        .filter(|(k, _)| !except.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    query_string(&rest, &BTreeMap::new())
}

/// The widgets that run as one, in groups of two or more, from their queries ([`widget_query`]) and
/// parsed requests: breakdowns of one metric over one query but for the dimension (and its limit), and
/// ranked metrics over one query but for the metric (and its limit). The store reads each group in one
/// pass when it can: the Audience dashboard's sessions by country, by device and by browser group the
/// range's sessions once instead of three times, and its landing pages and referrers once instead of
/// twice.
fn together(queries: &[Option<String>], parsed: &[Result<Parsed>]) -> Vec<Together> {
    let mut breakdowns: BTreeMap<String, Vec<(usize, MetricQuery)>> = BTreeMap::new();
    let mut ranked: BTreeMap<String, Vec<(usize, ranked::RankedQuery)>> = BTreeMap::new();
    for (i, (q, p)) in queries.iter().zip(parsed).enumerate() {
        let (Some(q), Ok(Parsed::Metrics(request))) = (q, p) else {
            continue;
        };
        match request {
            metrics::Request::Series(m) if m.breakdown.is_some() => breakdowns
                .entry(query_without(q, &["breakdown", "limit"]))
                .or_default()
                .push((i, m.clone())),
            metrics::Request::Ranked(r) => ranked
                .entry(query_without(q, &["metric", "limit"]))
                .or_default()
                .push((i, r.clone())),
            _ => {}
        }
    }
    let breakdowns = breakdowns.into_values().map(Together::Breakdowns);
    let ranked = ranked.into_values().map(Together::Ranked);
    breakdowns
        .chain(ranked)
        .filter(|t| t.widgets().len() > 1)
        .collect()
}

/// A dashboard name or widget title: 1 to 100 characters once trimmed, no control characters (a NUL or
/// a line break in a name breaks the page and every export).
fn is_label(s: &str) -> bool {
    let s = s.trim();
    !s.is_empty() && s.chars().count() <= 100 && !s.chars().any(char::is_control)
}

/// Checks a dashboard before it is saved; errors name `widgets[i].…`.
pub async fn validate(
    store: &dyn ReadStore,
    store_id: &str,
    input: &DashboardInput,
    now: jiff::Timestamp,
) -> Result<()> {
    if !is_label(&input.name) {
        return Err(Error::invalid(
            "invalid_value",
            "name",
            "name must be 1 to 100 characters without control characters",
        ));
    }
    if input.widgets.is_empty() || input.widgets.len() > MAX_WIDGETS {
        return Err(Error::invalid(
            "invalid_value",
            "widgets",
            format!("a dashboard has 1 to {MAX_WIDGETS} widgets"),
        ));
    }
    for (i, widget) in input.widgets.iter().enumerate() {
        if !is_label(&widget.title) {
            return Err(Error::invalid(
                "invalid_value",
                format!("widgets[{i}].title"),
                "title must be 1 to 100 characters without control characters",
            ));
        }
        if let Some(k) = widget
            .params
            .keys()
            .find(|k| PERIOD_PARAMS.contains(&k.as_str()))
        {
            return Err(Error::invalid(
                "invalid_parameter",
                format!("widgets[{i}].params.{k}"),
                "the period comes from the dashboard request, not from a widget",
            ));
        }
        let q = query_string(&widget.params, &BTreeMap::new());
        let checked = match widget.endpoint {
            Endpoint::Metrics => metrics::parse(store, store_id, &q, now).await.map(|_| ()),
            Endpoint::Funnel => funnel::parse(store_id, &q, now).map(|_| ()),
            Endpoint::Cohorts => cohorts::parse(store, store_id, &q, now).await.map(|_| ()),
        };
        if let Err(Error::Invalid(mut fe)) = checked {
            fe.field = format!("widgets[{i}].params.{}", fe.field);
            return Err(Error::Invalid(fe));
        }
        checked?;
    }
    Ok(())
}

/// Every widget's data for the dashboard, queries run concurrently; in the store's main currency when
/// the query names none, guessed from `currencies` while the lookup confirms it
/// ([`super::currency`]).
pub async fn render(
    store: &dyn ReadStore,
    currencies: &super::currency::Guesses,
    store_id: &str,
    dashboard: &Dashboard,
    query: &str,
    now: jiff::Timestamp,
) -> Result<Value> {
    let mut period = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if !RENDER_PARAMS.contains(&k.as_ref()) {
            return Err(Error::invalid(
                "unknown_parameter",
                k.to_string(),
                format!(
                    "unknown parameter {k:?}; a dashboard takes {}",
                    RENDER_PARAMS.join(", ")
                ),
            ));
        }
        period.insert(k.into_owned(), v.into_owned());
    }
    // Validate the period once, for a clear error instead of one per widget.
    let shared = params::Params::parse(&query_string(&period, &BTreeMap::new()), &RENDER_PARAMS)?;
    shared.include_bots()?;
    shared.currency()?;
    shared.filters()?;
    metrics::parse_convert(&shared)?;
    super::compare::Compare::from_params(&shared)?;
    // The period and zone as every widget will read them; without a `granularity` the bucket count
    // depends on each widget's own, so that one is left to the widgets.
    match shared.range(now) {
        Err(e) if e.code() != "too_many_buckets" || period.contains_key("granularity") => {
            return Err(e);
        }
        _ => {}
    }
    // The store's main currency, when none is given, resolved once for every widget (each would
    // resolve the same one: an Overview would read it three times).
    if !period.contains_key("currency")
        && dashboard
            .widgets
            .iter()
            .any(|w| w.endpoint != Endpoint::Funnel)
    {
        let needed = super::currency::Needed {
            store_id: store_id.to_owned(),
            include_bots: shared.include_bots()?,
        };
        return currencies
            .answer(store, &needed, now, |main| {
                let mut period = period.clone();
                period.insert("currency".into(), main);
                render_widgets(store, store_id, dashboard, period, now)
            })
            .await;
    }
    render_widgets(store, store_id, dashboard, period, now).await
}

/// Every widget's data over `period` (the render parameters, checked).
async fn render_widgets(
    store: &dyn ReadStore,
    store_id: &str,
    dashboard: &Dashboard,
    period: BTreeMap<String, String>,
    now: jiff::Timestamp,
) -> Result<Value> {
    // Funnels take no currency; every other endpoint does. Cohorts are not compared (a cohort table
    // already compares its cohorts with each other).
    let periods: Vec<BTreeMap<String, String>> = dashboard
        .widgets
        .iter()
        .map(|w| {
            let mut p = period.clone();
            match w.endpoint {
                Endpoint::Funnel => {
                    p.remove("currency");
                    p.remove("granularity");
                }
                Endpoint::Cohorts => {
                    p.remove("compare");
                    p.remove("granularity");
                }
                // A breakdown is not compared (the API refuses the two together): its widget shows
                // its values without the comparison rather than an error.
                Endpoint::Metrics if w.params.contains_key("breakdown") || attributes(w) => {
                    p.remove("compare");
                }
                Endpoint::Metrics => {}
            };
            p
        })
        .collect();
    let queries: Vec<Result<String>> = dashboard
        .widgets
        .iter()
        .zip(&periods)
        .map(|(w, p)| widget_query(w, p))
        .collect();
    // Every widget parsed once: what runs together is told from the parsed requests.
    let texts: Vec<Option<String>> = queries.iter().map(|q| q.as_ref().ok().cloned()).collect();
    let parsed: Vec<Result<Parsed>> = futures_util::future::join_all(
        dashboard
            .widgets
            .iter()
            .zip(queries)
            .map(|(w, q)| parse_widget(store, store_id, w, q, now)),
    )
    .await;
    let together = together(&texts, &parsed);
    // Each widget's data, or its error as shown (code and message).
    type Shown = std::result::Result<Value, (&'static str, String)>;
    let shown = |r: Result<Value>| r.map_err(|e| (e.code(), e.public_message()));
    let mut runs: Vec<futures_util::future::BoxFuture<'_, Vec<(usize, Shown)>>> = Vec::new();
    for group in &together {
        runs.push(Box::pin(async move {
            let answers: Result<Vec<Value>> = match group {
                Together::Breakdowns(g) => {
                    let plain = MetricQuery {
                        breakdown: None,
                        ..g[0].1.clone()
                    };
                    let bys: Vec<Breakdown> = g.iter().filter_map(|(_, m)| m.breakdown).collect();
                    match metrics::run_each(store, &plain, &bys).await {
                        Ok(answers) => answers.into_iter().map(to_value).collect(),
                        Err(e) => Err(e),
                    }
                }
                Together::Ranked(g) => {
                    let qs: Vec<ranked::RankedQuery> = g.iter().map(|(_, q)| q.clone()).collect();
                    ranked::run_each(store, &qs).await
                }
            };
            let widgets = group.widgets();
            match answers {
                Ok(answers) => widgets
                    .into_iter()
                    .zip(answers)
                    .map(|(i, a)| (i, Ok(a)))
                    .collect(),
                // Every widget of the group shows the one read's error.
                Err(e) => widgets
                    .into_iter()
                    .map(|i| (i, Err((e.code(), e.public_message()))))
                    .collect(),
            }
        }));
    }
    let grouped: std::collections::HashSet<usize> =
        together.iter().flat_map(Together::widgets).collect();
    for (i, p) in parsed.into_iter().enumerate() {
        if grouped.contains(&i) {
            continue;
        }
        runs.push(Box::pin(async move {
            let r = match p {
                Ok(p) => run_widget(store, p).await,
                Err(e) => Err(e),
            };
            vec![(i, shown(r))]
        }));
    }
    // Every widget ran exactly once: in its group or alone.
    let mut results: Vec<(usize, Shown)> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    results.sort_by_key(|(i, _)| *i);
    let widgets: Vec<Value> = dashboard
        .widgets
        .iter()
        .zip(results)
        .map(|(w, (_, r))| match r {
            Ok(data) => {
                json!({"title": w.title, "endpoint": w.endpoint, "params": w.params, "data": data})
            }
            Err((code, message)) => {
                json!({"title": w.title, "endpoint": w.endpoint, "params": w.params,
                             "error": {"code": code, "message": message}})
            }
        })
        .collect();
    Ok(
        json!({"id": dashboard.id, "name": dashboard.name, "builtIn": dashboard.built_in, "widgets": widgets}),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::query::fakes::{CurrencyStore, MainCurrencyOnly};

    #[derive(Debug)]
    struct Usd;

    #[async_trait]
    impl MainCurrencyOnly for Usd {
        async fn main_currency(&self, _: &str) -> Result<Option<String>, StoreError> {
            Ok(Some("USD".into()))
        }
    }

    #[tokio::test]
    async fn breakdowns_of_one_metric_and_ranked_metrics_over_one_query_run_together() {
        use Endpoint::*;
        let widgets = vec![
            w(
                "Countries",
                Metrics,
                &[("metric", "sessions"), ("breakdown", "country")],
            ),
            w("Revenue", Metrics, &[("metric", "revenue")]),
            w(
                "Devices",
                Metrics,
                &[
                    ("metric", "sessions"),
                    ("breakdown", "device"),
                    ("limit", "3"),
                ],
            ),
            w(
                "Sources",
                Metrics,
                &[("metric", "revenue"), ("breakdown", "source")],
            ),
            w(
                "US browsers",
                Metrics,
                &[
                    ("metric", "sessions"),
                    ("breakdown", "browser"),
                    ("country", "US"),
                ],
            ),
            w(
                "Browsers",
                Metrics,
                &[("metric", "sessions"), ("breakdown", "browser")],
            ),
            w(
                "Funnel",
                Funnel,
                &[("steps", "page.viewed,order.completed")],
            ),
            w("Referrers", Metrics, &[("metric", "referrers")]),
            w(
                "Landing pages",
                Metrics,
                &[("metric", "landing_pages"), ("limit", "5")],
            ),
            w(
                "US landing pages",
                Metrics,
                &[("metric", "landing_pages"), ("country", "US")],
            ),
        ];
        let period: BTreeMap<String, String> = [("period", "30d"), ("currency", "USD")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let store = CurrencyStore(Arc::new(Usd));
        let now = jiff::Timestamp::UNIX_EPOCH;
        let mut texts = Vec::new();
        let mut parsed = Vec::new();
        for w in &widgets {
            let q = widget_query(w, &period);
            texts.push(q.as_ref().ok().cloned());
            parsed.push(parse_widget(&store, "shop", w, q, now).await);
        }
        let groups: Vec<Vec<(usize, String)>> = together(&texts, &parsed)
            .iter()
            .map(|t| match t {
                Together::Breakdowns(g) => g
                    .iter()
                    .map(|(i, m)| {
                        let by = m.breakdown.expect("a breakdown");
                        (
                            *i,
                            format!("{} by {}", m.metric.name(), by.dimension.name()),
                        )
                    })
                    .collect(),
                Together::Ranked(g) => g
                    .iter()
                    .map(|(i, r)| (*i, format!("{} top {}", r.metric.name(), r.limit)))
                    .collect(),
            })
            .collect();
        // Sessions by country, device and browser; referrers and landing pages (each its own limit).
        // Not the US browsers nor the US landing pages (another query), nor revenue by source (alone of
        // its metric), nor what has no breakdown and is not ranked.
        let want: [&[(usize, &str)]; 2] = [
            &[
                (0, "sessions by country"),
                (2, "sessions by device"),
                (5, "sessions by browser"),
            ],
            &[(7, "referrers top 10"), (8, "landing_pages top 5")],
        ];
        let want: Vec<Vec<(usize, String)>> = want
            .iter()
            .map(|g| g.iter().map(|(i, s)| (*i, (*s).to_owned())).collect())
            .collect();
        assert_eq!(groups, want);
    }
}
