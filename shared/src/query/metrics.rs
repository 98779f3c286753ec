//! The metric catalog (time series). Definitions, also in the README:
//!
//! | metric | value per bucket | notes |
//! |---|---|---|
//! | `revenue` | sum of `total` of `order.completed`, in `currency` | each `orderId` counted once, at its first completion event |
//! | `net_revenue` | `revenue` minus `order.refunded` `amount`s, in `currency` | a refund counts in the bucket where it happens |
//! | `orders` | distinct `orderId`s completed in `currency` | so revenue ÷ orders is the AOV beside them |
//! | `aov` | `revenue / orders` in `currency`, integer minor units (rounded half up) | |
//! | `sessions` | sessions (distinct `sessionId`) that start in the bucket | |
//! | `conversion_rate` | sessions with an `order.completed` / sessions, by session start; 0–1, 4 decimals | |
//! | `visitors` | distinct visitors active in the bucket: `customerId`, else `anonymousId`, else `sessionId` | total is distinct over the range |
//! | `product_views` | `product.viewed` events (`productId` filter: one product) | |
//! | `ltv` | lifetime revenue in `currency` (orders up to the period's end) per customer, for the customers whose first order falls in the bucket and who ordered in `currency`; integer minor units | customers by `customerId` |
//! | `add_to_cart_rate` | sessions with a `cart.item_added` / sessions with a `product.viewed`, by the session's first product view; 0–1 | `productId`: that product's views and adds |
//!
//! Money is integer minor units in one currency (`currency`, default the store's main currency: the one
//! most of its orders of the last 90 days use). Filters: `country`, `device`, `browser`, `source` (see
//! [`super::params::Filters`]; not on `ltv`), `productId` (`product_views` and `add_to_cart_rate`).

use serde::Serialize;
use serde_json::{Value, json};

use super::ReadStore;
use super::breakdown::{Breakdown, Dimension, Group};
use super::compare::{Change, Compare, Comparison, ComparisonSummary};
use super::params::{Params, Range};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Revenue,
    NetRevenue,
    Orders,
    Aov,
    Sessions,
    ConversionRate,
    Visitors,
    ProductViews,
    AddToCartRate,
    Ltv,
}

impl Metric {
    pub const ALL: [Metric; 10] = [
        Metric::Revenue,
        Metric::NetRevenue,
        Metric::Orders,
        Metric::Aov,
        Metric::Sessions,
        Metric::ConversionRate,
        Metric::Visitors,
        Metric::ProductViews,
        Metric::AddToCartRate,
        Metric::Ltv,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Revenue => "revenue",
            Self::NetRevenue => "net_revenue",
            Self::Orders => "orders",
            Self::Aov => "aov",
            Self::Sessions => "sessions",
            Self::ConversionRate => "conversion_rate",
            Self::Visitors => "visitors",
            Self::ProductViews => "product_views",
            Self::AddToCartRate => "add_to_cart_rate",
            Self::Ltv => "ltv",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| unknown_metric(s))
    }

    /// Money metrics are reported in one currency.
    /// Whether the metric counts in one currency (`currency`, default the store's main one): the money
    /// metrics, and `orders`, so that revenue ÷ orders is the AOV beside them.
    pub fn in_currency(self) -> bool {
        self.is_money() || self == Self::Orders
    }

    pub fn is_money(self) -> bool {
        matches!(
            self,
            Self::Revenue | Self::NetRevenue | Self::Aov | Self::Ltv
        )
    }

    /// What the store measures for this metric (the [`Facts`] variant it returns).
    pub fn family(self) -> Family {
        match self {
            Self::Orders | Self::Sessions | Self::Visitors | Self::ProductViews => Family::Count,
            Self::NetRevenue => Family::Amount,
            Self::Revenue | Self::Aov => Family::Money,
            Self::ConversionRate | Self::AddToCartRate => Family::Rate,
            Self::Ltv => Family::PerCustomer,
        }
    }

    /// Whether `facts` measure anything: false for a rate, an average or a per-customer figure over
    /// nothing (its denominator is 0); counts and amounts are always defined (0 is a real count).
    pub fn defined(self, facts: Facts) -> bool {
        match (self, facts) {
            (Self::Aov, Facts::Money { orders, .. }) => orders != 0,
            (_, Facts::Rate { denominator, .. }) => denominator != 0,
            (_, Facts::PerCustomer { customers, .. }) => customers != 0,
            _ => true,
        }
    }

    /// The reported value from the store's facts: counts and amounts as they are, averages as integer
    /// minor units rounded half up, rates as 0–1 with 4 decimals (0 when the denominator is 0).
    pub fn value(self, facts: Facts) -> Value {
        match (self, facts) {
            (Self::Aov, Facts::Money { amount, orders }) => json!(average(amount, orders)),
            (_, Facts::Money { amount, .. }) => json!(amount),
            (_, Facts::PerCustomer { amount, customers }) => json!(average(amount, customers)),
            (
                _,
                Facts::Rate {
                    numerator,
                    denominator,
                },
            ) => json!(rate(numerator, denominator)),
            (_, Facts::Count { count }) => json!(count),
            (_, Facts::Amount { amount }) => json!(amount),
        }
    }
}

/// `amount / n` in integer minor units, rounded half up; 0 when `n` is 0.
fn average(amount: i64, n: i64) -> i64 {
    if n == 0 {
        0
    } else {
        (2 * amount + n) / (2 * n)
    }
}

/// `numerator / denominator` as 0–1 with 4 decimals; 0 when the denominator is 0.
pub fn rate(numerator: i64, denominator: i64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        ((numerator as f64 / denominator as f64) * 10_000.0).round() / 10_000.0
    }
}

/// Which facts a metric needs from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Count,
    Amount,
    Money,
    Rate,
    PerCustomer,
}

impl Family {
    /// The facts of an empty bucket.
    pub fn zero(self) -> Facts {
        self.facts(0, 0)
    }

    /// The family's facts from an adapter's two measures, in the order the facts are declared (`count`;
    /// `amount`; `amount, orders`; `numerator, denominator`; `amount, customers`); one-fact families
    /// ignore the second.
    pub fn facts(self, first: i64, second: i64) -> Facts {
        match self {
            Self::Count => Facts::Count { count: first },
            Self::Amount => Facts::Amount { amount: first },
            Self::Money => Facts::Money {
                amount: first,
                orders: second,
            },
            Self::Rate => Facts::Rate {
                numerator: first,
                denominator: second,
            },
            Self::PerCustomer => Facts::PerCustomer {
                amount: first,
                customers: second,
            },
        }
    }
}

/// What the store measures for one bucket, or for the whole range, of a metric. Money is in minor units
/// of the query's `currency`; every count is distinct (an order, session, visitor or event once).
///
/// | metric | facts |
/// |---|---|
/// | `orders` | `Count`: distinct completed orders in `currency`, at their first completion |
/// | `sessions` | `Count`: sessions starting in the bucket |
/// | `visitors` | `Count`: distinct visitors active in the bucket (the range's total is distinct over the range) |
/// | `product_views` | `Count`: `product.viewed` events |
/// | `net_revenue` | `Amount`: order totals minus refund amounts |
/// | `revenue`, `aov` | `Money`: order totals and the orders they come from |
/// | `conversion_rate` | `Rate`: sessions with an order / sessions, by session start |
/// | `add_to_cart_rate` | `Rate`: sessions with an add to cart / sessions with a product view, by first view |
/// | `ltv` | `PerCustomer`: lifetime order totals (to the period's end) / customers acquired in the bucket who ordered in `currency` |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Facts {
    Count { count: i64 },
    Amount { amount: i64 },
    Money { amount: i64, orders: i64 },
    Rate { numerator: i64, denominator: i64 },
    PerCustomer { amount: i64, customers: i64 },
}

impl Facts {
    /// The facts of two disjoint sets of rows together (a breakdown's `(other)`); both of one family
    /// (one metric has one family; facts of another family are left out).
    pub fn plus(self, other: Facts) -> Facts {
        use Facts::{Amount, Count, Money, PerCustomer, Rate};
        match (self, other) {
            (Count { count: a }, Count { count: b }) => Count { count: a + b },
            (Amount { amount: a }, Amount { amount: b }) => Amount { amount: a + b },
            (
                Money { amount, orders },
                Money {
                    amount: a,
                    orders: o,
                },
            ) => Money {
                amount: amount + a,
                orders: orders + o,
            },
            (
                Rate {
                    numerator,
                    denominator,
                },
                Rate {
                    numerator: n,
                    denominator: d,
                },
            ) => Rate {
                numerator: numerator + n,
                denominator: denominator + d,
            },
            (
                PerCustomer { amount, customers },
                PerCustomer {
                    amount: a,
                    customers: c,
                },
            ) => PerCustomer {
                amount: amount + a,
                customers: customers + c,
            },
            (mine, _) => mine,
        }
    }
}

/// A validated metric request.
#[derive(Debug, Clone)]
pub struct MetricQuery {
    pub store_id: String,
    pub metric: Metric,
    pub range: Range,
    /// Set for money metrics (resolved to the store's main currency when not given).
    pub currency: Option<String>,
    /// `country`, `device`, `browser`, `source` ([`super::params::Filters`]).
    pub filters: super::params::Filters,
    pub product_id: Option<String>,
    /// Count events flagged as bots too (`includeBots=true`).
    pub include_bots: bool,
    /// Compare with an earlier range ([`super::compare`]); the query side runs it as a second query, so
    /// adapters ignore it.
    pub compare: Option<Compare>,
    /// Split by a dimension ([`super::breakdown`]); the query side runs it through
    /// [`ReadStore::metric_groups`], so [`ReadStore::metric`] ignores it.
    pub breakdown: Option<Breakdown>,
    /// `convert=true`: every amount in `currency`, converted at its day's rate ([`super::convert`]); the
    /// query side runs it through [`ReadStore::money_by_currency`], so [`ReadStore::metric`] ignores it.
    pub convert: bool,
}

/// The facts of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketFacts {
    /// The bucket's start in the query's zone, as Unix seconds.
    pub start: i64,
    pub facts: Facts,
}

/// What the store returns for a metric: the buckets that have data, in order (missing ones are
/// zero-filled here), and the facts over the whole range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricFacts {
    pub buckets: Vec<BucketFacts>,
    pub total: Facts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataPoint {
    pub date: String,
    pub value: Value,
    /// With `compare`: the paired bucket of the comparison range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousPoint>,
    /// With `compare`: the change from `previous` (`null` when a value is missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<Change>,
    /// The range covers only part of the bucket (it starts before the range, or ends after it, as
    /// today's bucket does while the day is in progress).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The bucket starts after the moment the range was read: no data can exist yet (its value is 0).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub future: bool,
    /// A rate or an average over nothing (no sessions, orders or customers in the bucket): its value is
    /// reported as 0, but there is nothing to measure.
    #[serde(rename = "noData", skip_serializing_if = "std::ops::Not::not")]
    pub no_data: bool,
}

/// A bucket of the comparison range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviousPoint {
    pub date: String,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricResponse {
    pub metric: &'static str,
    pub period: String,
    pub granularity: &'static str,
    pub timezone: String,
    pub total: Value,
    pub currency: Option<String>,
    pub data_points: Vec<DataPoint>,
    /// With `compare`: the comparison range, its total and the change of the total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonSummary>,
    /// With `breakdown`: the dimension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakdown: Option<&'static str>,
    /// With `breakdown`: the top values, heaviest first, then `(other)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<Group>>,
    /// With `convert`: the rates used and what had none ([`super::convert::Conversion`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion: Option<super::convert::Conversion>,
}

pub const PARAMS: &[&str] = &[
    "metric",
    "period",
    "from",
    "to",
    "granularity",
    "timezone",
    "currency",
    "country",
    "device",
    "browser",
    "landingPage",
    "referrer",
    "productId",
    "limit",
    "includeBots",
    "compare",
    "source",
    "sort",
    "order",
    "breakdown",
    "convert",
    "model",
    "by",
    "lookback",
    "halfLife",
];

/// A parsed metrics request: a time series or a ranked metric.
#[derive(Debug, Clone)]
pub enum Request {
    Series(MetricQuery),
    Ranked(super::ranked::RankedQuery),
    Products(super::products::ProductQuery),
    Sales(super::sales::SalesQuery),
    Attribution(super::attribution::AttributionQuery),
}

fn unknown_metric(s: &str) -> Error {
    let names: Vec<&str> = Metric::ALL
        .iter()
        .map(|m| m.name())
        .chain(super::ranked::Ranked::ALL.iter().map(|m| m.name()))
        .chain([
            super::products::NAME,
            super::sales::NAME,
            super::attribution::NAME,
        ])
        .collect();
    Error::invalid(
        "unknown_metric",
        "metric",
        format!("unknown metric {s:?}; valid metrics: {}", names.join(", ")),
    )
}

/// Parses and validates a metrics request for `store_id`.
pub async fn parse(
    store: &dyn ReadStore,
    store_id: &str,
    query: &str,
    now: jiff::Timestamp,
) -> Result<Request> {
    let p = Params::parse(query, PARAMS)?;
    let name = p.require("metric")?;
    if p.get("breakdown").is_some() && Metric::parse(name).is_err() {
        return Err(Error::invalid(
            "invalid_parameter",
            "breakdown",
            "breakdown applies to time-series metrics only",
        ));
    }
    if parse_convert(&p)? && Metric::parse(name).is_err() {
        return Err(Error::invalid(
            "invalid_parameter",
            "convert",
            "convert applies to revenue, net_revenue, aov and orders",
        ));
    }
    if name == super::products::NAME {
        if p.get("productId").is_some() {
            return Err(Error::invalid(
                "invalid_parameter",
                "productId",
                "productId filters product_views and add_to_cart_rate only",
            ));
        }
        let range = p.range(now)?;
        let currency = currency_param(store, store_id, &p, true, now)
            .await?
            .unwrap_or_else(|| NO_ORDERS_CURRENCY.into());
        let limit = super::ranked::parse_limit(p.get("limit"))?;
        return Ok(Request::Products(super::products::parse(
            &p, store_id, range, currency, limit,
        )?));
    }
    if name != super::attribution::NAME
        && let Some(k) = super::attribution::PARAMS
            .into_iter()
            .find(|k| p.get(k).is_some())
    {
        return Err(Error::invalid(
            "invalid_parameter",
            k,
            format!("{k} applies to metric=attribution only"),
        ));
    }
    if name == super::attribution::NAME {
        let currency = currency_param(store, store_id, &p, true, now)
            .await?
            .unwrap_or_else(|| NO_ORDERS_CURRENCY.into());
        return Ok(Request::Attribution(super::attribution::parse(
            &p,
            store_id,
            p.range(now)?,
            currency,
        )?));
    }
    if name == super::sales::NAME {
        if let Some(k) = ["productId", "compare", "limit"]
            .into_iter()
            .find(|k| p.get(k).is_some())
        {
            return Err(Error::invalid(
                "invalid_parameter",
                k,
                format!("the sales report takes no {k}"),
            ));
        }
        let currency = currency_param(store, store_id, &p, true, now)
            .await?
            .unwrap_or_else(|| NO_ORDERS_CURRENCY.into());
        return Ok(Request::Sales(super::sales::SalesQuery {
            store_id: store_id.to_owned(),
            range: p.range(now)?,
            currency,
            filters: p.filters()?,
            include_bots: p.include_bots()?,
        }));
    }
    if let Some(k) = ["sort", "order"].into_iter().find(|k| p.get(k).is_some()) {
        return Err(Error::invalid(
            "invalid_parameter",
            k,
            format!("{k} applies to product_performance only"),
        ));
    }
    if let Some(ranked) = super::ranked::Ranked::parse(name) {
        let range = p.range(now)?;
        let currency = currency_param(store, store_id, &p, ranked.uses_currency(), now).await?;
        if p.get("productId").is_some() {
            return Err(Error::invalid(
                "invalid_parameter",
                "productId",
                "productId filters product_views and add_to_cart_rate only",
            ));
        }
        let filters = p.filters()?;
        if let Some(k) = filters.first_given()
            && matches!(
                ranked,
                super::ranked::Ranked::StockLevels | super::ranked::Ranked::SellThroughRate
            )
        {
            return Err(Error::invalid(
                "invalid_parameter",
                k,
                format!("inventory metrics have no {k} filter"),
            ));
        }
        return Ok(Request::Ranked(super::ranked::RankedQuery {
            store_id: store_id.to_owned(),
            metric: ranked,
            range,
            currency,
            filters,
            limit: super::ranked::parse_limit(p.get("limit"))?,
            include_bots: p.include_bots()?,
            compare: Compare::from_params(&p)?,
        }));
    }
    let metric = Metric::parse(name)?;
    let breakdown = match p.get("breakdown") {
        Some(b) => Some(Breakdown {
            dimension: Dimension::parse(b, metric)?,
            limit: super::ranked::parse_limit(p.get("limit"))?,
        }),
        None if p.get("limit").is_some() => {
            return Err(Error::invalid(
                "invalid_parameter",
                "limit",
                "limit applies to ranked metrics and breakdowns only",
            ));
        }
        None => None,
    };
    let compare = Compare::from_params(&p)?;
    let convert = parse_convert(&p)?;
    if convert {
        super::convert::check(metric)?;
        if breakdown.is_some() {
            return Err(Error::invalid(
                "invalid_parameter",
                "convert",
                "convert cannot be combined with breakdown",
            ));
        }
    }
    if breakdown.is_some() && compare.is_some() {
        return Err(Error::invalid(
            "invalid_parameter",
            "compare",
            "compare cannot be combined with breakdown",
        ));
    }
    let range = p.range(now)?;
    let currency = currency_param(store, store_id, &p, metric.in_currency(), now).await?;
    let filters = p.filters()?;
    if let Some(k) = filters.first_given()
        && metric == Metric::Ltv
    {
        return Err(Error::invalid(
            "invalid_parameter",
            k,
            format!("ltv has no {k} filter"),
        ));
    }
    let product_id = p.get("productId").map(str::to_owned);
    if product_id.is_some() && !matches!(metric, Metric::ProductViews | Metric::AddToCartRate) {
        return Err(Error::invalid(
            "invalid_parameter",
            "productId",
            "productId filters product_views and add_to_cart_rate only",
        ));
    }
    Ok(Request::Series(MetricQuery {
        store_id: store_id.to_owned(),
        metric,
        range,
        currency,
        filters,
        product_id,
        include_bots: p.include_bots()?,
        compare,
        breakdown,
        convert,
    }))
}

/// `convert`: `true` converts every amount into `currency` ([`super::convert`]); default `false`.
pub(super) fn parse_convert(p: &Params) -> Result<bool> {
    match p.get("convert") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Error::invalid(
            "invalid_parameter",
            "convert",
            format!("convert must be true or false, not {other:?}"),
        )),
    }
}

/// The store's main currency a metrics request (`query`, as [`parse`] takes it) would look up: when it
/// reads in a currency and names none. `None` when it names one, reads none, or is not valid (then
/// [`parse`] says why).
pub fn main_currency_needed(store_id: &str, query: &str) -> Option<super::currency::Needed> {
    let p = Params::parse(query, PARAMS).ok()?;
    let name = p.get("metric")?;
    let in_currency = [
        super::products::NAME,
        super::attribution::NAME,
        super::sales::NAME,
    ]
    .contains(&name)
        || super::ranked::Ranked::parse(name).is_some_and(|r| r.uses_currency())
        || Metric::parse(name).is_ok_and(|m| m.in_currency());
    in_currency
        .then(|| super::currency::Needed::unless_named(store_id, &p))
        .flatten()
}

/// The main currency of a store without orders in the last 90 days.
pub const NO_ORDERS_CURRENCY: &str = "USD";

/// `currency` for money metrics: as given, else the store's main currency (USD for a store without
/// orders). `None` for metrics without money, after checking a given code all the same.
pub(super) async fn currency_param(
    store: &dyn ReadStore,
    store_id: &str,
    p: &Params,
    money: bool,
    now: jiff::Timestamp,
) -> Result<Option<String>> {
    Ok(match (money, p.currency()?) {
        (true, Some(c)) => Some(c.to_owned()),
        (true, None) => Some(
            store
                .main_currency(store_id, now, p.include_bots()?)
                .await?
                .unwrap_or_else(|| NO_ORDERS_CURRENCY.into()),
        ),
        (false, _) => None,
    })
}

/// Runs a metric query: every bucket present (zero-filled), total over the range; with `compare`, the
/// comparison range's buckets paired with them (both queries run concurrently).
pub async fn run(store: &dyn ReadStore, q: &MetricQuery) -> Result<MetricResponse> {
    if let Some(by) = q.breakdown {
        let plain = MetricQuery {
            breakdown: None,
            ..q.clone()
        };
        let (whole, groups) = super::breakdown::run(store, &plain, by).await?;
        return Ok(broken_down(whole, by, groups));
    }
    run_plain(store, q).await
}

/// [`run`] for each of `bys`, the breakdowns of one metric `q` (without a breakdown of its own; see
/// [`super::breakdown::run_each`]), in their order.
pub async fn run_each(
    store: &dyn ReadStore,
    q: &MetricQuery,
    bys: &[super::breakdown::Breakdown],
) -> Result<Vec<MetricResponse>> {
    let answers = super::breakdown::run_each(store, q, bys).await?;
    Ok(answers
        .into_iter()
        .zip(bys)
        .map(|((whole, groups), by)| broken_down(whole, *by, groups))
        .collect())
}

/// The metric's answer with its groups by `by`.
fn broken_down(
    mut whole: MetricResponse,
    by: super::breakdown::Breakdown,
    groups: Vec<super::breakdown::Group>,
) -> MetricResponse {
    whole.breakdown = Some(by.dimension.name());
    whole.groups = Some(groups);
    whole
}

/// [`run`] without a breakdown.
pub(super) async fn run_plain(store: &dyn ReadStore, q: &MetricQuery) -> Result<MetricResponse> {
    let Some(compare) = q.compare else {
        let current = series(store, q).await?;
        let mut out = response(q, current.buckets, current.total, None);
        out.conversion = current.conversion;
        return Ok(out);
    };
    let comparison = Comparison::of(&q.range, compare)?;
    let previous_query = MetricQuery {
        range: comparison.range.clone(),
        compare: None,
        ..q.clone()
    };
    let (current, earlier) =
        futures_util::future::try_join(series(store, q), series(store, &previous_query)).await?;
    let (buckets, total) = (current.buckets, current.total);
    let previous: std::collections::HashMap<i64, (String, Value)> = earlier
        .buckets
        .into_iter()
        .map(|p| (p.start, (p.label, p.value)))
        .collect();
    let mut buckets = buckets;
    for b in &mut buckets {
        let paired = comparison.paired_bucket(&b.zoned)?;
        if let Some((date, value)) = previous.get(&paired.timestamp().as_second()) {
            b.change = Change::between(&b.value, value);
            b.previous = Some(PreviousPoint {
                date: date.clone(),
                value: value.clone(),
            });
        }
    }
    let summary = comparison.summary(earlier.total, &total);
    let mut out = response(q, buckets, total, Some(summary));
    out.conversion = current.conversion;
    Ok(out)
}

/// The answer for facts the query side already holds (a breakdown's groups added up).
pub(super) fn answer(q: &MetricQuery, facts: &MetricFacts) -> Result<MetricResponse> {
    Ok(response(
        q,
        buckets(q, &facts.buckets)?,
        q.metric.value(facts.total),
        None,
    ))
}

/// One bucket of a series while it is assembled.
struct Bucket {
    zoned: jiff::ZonedDateTime,
    start: i64,
    label: String,
    value: Value,
    previous: Option<PreviousPoint>,
    change: Option<Change>,
    partial: bool,
    future: bool,
    no_data: bool,
}

impl Bucket {
    fn point(self) -> DataPoint {
        DataPoint {
            date: self.label,
            value: self.value,
            previous: self.previous,
            change: self.change,
            partial: self.partial,
            future: self.future,
            no_data: self.no_data,
        }
    }
}

/// A metric's series as read: every bucket of the range with its value (zero-filled), the total, and
/// (converted) what the conversion used and missed.
struct Series {
    buckets: Vec<Bucket>,
    total: Value,
    conversion: Option<super::convert::Conversion>,
}

async fn series(store: &dyn ReadStore, q: &MetricQuery) -> Result<Series> {
    let (facts, conversion) = if q.convert {
        let (facts, conversion) = super::convert::facts(store, q).await?;
        (facts, Some(conversion))
    } else {
        (store.metric(q).await?, None)
    };
    Ok(Series {
        buckets: buckets(q, &facts.buckets)?,
        total: q.metric.value(facts.total),
        conversion,
    })
}

/// The data points of `found` (buckets with data, in order) over every bucket of `q`'s range
/// (zero-filled), and the value of `total`: a breakdown's group as a series.
pub(super) fn fill(
    q: &MetricQuery,
    found: &[BucketFacts],
    total: Facts,
) -> (Result<Vec<DataPoint>>, Value) {
    let points = buckets(q, found).map(|b| b.into_iter().map(Bucket::point).collect());
    (points, q.metric.value(total))
}

/// Every bucket of `q`'s range with the value of `found`'s facts there (zero when absent).
fn buckets(q: &MetricQuery, found: &[BucketFacts]) -> Result<Vec<Bucket>> {
    let zero = q.metric.family().zero();
    let mut out = Vec::new();
    let mut found = found.iter().peekable();
    for bucket in q.range.buckets()? {
        let start = bucket.timestamp().as_second();
        while found.peek().is_some_and(|b| b.start < start) {
            found.next();
        }
        let here = match found.peek() {
            Some(b) if b.start == start => b.facts,
            _ => zero,
        };
        let end = q.range.bucket_end(&bucket)?.timestamp();
        let r = &q.range;
        out.push(Bucket {
            label: r.label_of(&bucket),
            partial: bucket.timestamp() < r.from
                || end > r.to
                || (bucket.timestamp() <= r.now && r.now < end),
            future: bucket.timestamp() > r.now,
            no_data: !q.metric.defined(here),
            zoned: bucket,
            start,
            value: q.metric.value(here),
            previous: None,
            change: None,
        });
    }
    Ok(out)
}

fn response(
    q: &MetricQuery,
    buckets: Vec<Bucket>,
    total: Value,
    comparison: Option<ComparisonSummary>,
) -> MetricResponse {
    MetricResponse {
        metric: q.metric.name(),
        period: q.range.label.clone(),
        granularity: q.range.granularity.as_str(),
        timezone: q.range.tz_name.clone(),
        total,
        currency: q.currency.clone(),
        data_points: buckets.into_iter().map(Bucket::point).collect(),
        comparison,
        breakdown: None,
        groups: None,
        conversion: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(metric: Metric, params: &str, now: &str) -> MetricQuery {
        let p = Params::parse(params, PARAMS).expect("params");
        MetricQuery {
            store_id: "shop-a".into(),
            metric,
            range: p.range(now.parse().expect("now")).expect("range"),
            currency: None,
            filters: Default::default(),
            product_id: None,
            include_bots: false,
            compare: None,
            breakdown: None,
            convert: false,
        }
    }

    #[test]
    fn the_main_currency_is_needed_by_reads_in_a_currency_that_name_none() {
        // (query, bots included when needed)
        let cases: [(&str, Option<bool>); 14] = [
            ("metric=revenue", Some(false)),
            ("metric=orders&includeBots=true", Some(true)),
            ("metric=aov&period=7d", Some(false)),
            ("metric=best_sellers", Some(false)),
            ("metric=traffic_sources", Some(false)),
            ("metric=product_performance", Some(false)),
            ("metric=sales", Some(false)),
            ("metric=attribution", Some(false)),
            ("metric=revenue&currency=EUR", None),
            ("metric=sessions", None),
            ("metric=stock_levels", None),
            ("metric=sell_through_rate", None),
            ("metric=nope", None),
            ("metric=revenue&includeBots=maybe", None),
        ];
        for (query, bots) in cases {
            let needed = main_currency_needed("shop-a", query);
            assert_eq!(needed.as_ref().map(|n| n.include_bots), bots, "{query}");
            assert!(needed.is_none_or(|n| n.store_id == "shop-a"), "{query}");
        }
    }

    /// (date, partial, future, noData) of every bucket with nothing found.
    fn flags(q: &MetricQuery, found: &[BucketFacts]) -> Vec<(String, bool, bool, bool)> {
        buckets(q, found)
            .expect("buckets")
            .into_iter()
            .map(|b| (b.label, b.partial, b.future, b.no_data))
            .collect()
    }

    #[test]
    fn todays_bucket_is_partial_and_later_ones_are_future() {
        let q = query(
            Metric::Orders,
            "from=2026-12-01&to=2026-12-05",
            "2026-12-03T10:00:00Z",
        );
        let f = |d: &str, partial, future| (d.to_owned(), partial, future, false);
        assert_eq!(
            flags(&q, &[]),
            [
                f("2026-12-01", false, false),
                f("2026-12-02", false, false),
                f("2026-12-03", true, false),
                f("2026-12-04", false, true),
                f("2026-12-05", false, true),
            ]
        );
        // A 24-hour period starts and ends mid-hour: both edge hours are partial.
        let q = query(Metric::Orders, "period=24h", "2026-12-03T10:30:00Z");
        let all = flags(&q, &[]);
        assert_eq!(all.len(), 25);
        assert!(all[0].1 && all[24].1, "{all:?}");
        assert!(all[1..24].iter().all(|b| !b.1 && !b.2), "{all:?}");
    }

    #[test]
    fn a_rate_or_average_over_nothing_has_no_data_and_a_count_of_zero_is_a_value() {
        let found = |facts| {
            vec![BucketFacts {
                start: "2026-12-01T00:00:00Z"
                    .parse::<jiff::Timestamp>()
                    .expect("ts")
                    .as_second(),
                facts,
            }]
        };
        for (metric, facts, no_data) in [
            (
                Metric::ConversionRate,
                Facts::Rate {
                    numerator: 0,
                    denominator: 0,
                },
                true,
            ),
            (
                Metric::ConversionRate,
                Facts::Rate {
                    numerator: 0,
                    denominator: 4,
                },
                false,
            ),
            (
                Metric::Aov,
                Facts::Money {
                    amount: 0,
                    orders: 0,
                },
                true,
            ),
            (Metric::Orders, Facts::Count { count: 0 }, false),
        ] {
            let q = query(
                metric,
                "from=2026-12-01&to=2026-12-01",
                "2026-12-03T10:00:00Z",
            );
            assert_eq!(
                flags(&q, &found(facts))[0].3,
                no_data,
                "{metric:?} {facts:?}"
            );
        }
    }
}
