//! The metric catalog (time series). Definitions, also in the README:
//!
//! | metric | value per bucket | notes |
//! |---|---|---|
//! | `revenue` | sum of `total` of `order.completed`, in `currency` | each `orderId` counted once, at its first completion event |
//! | `net_revenue` | `revenue` minus `order.refunded` `amount`s, in `currency` | a refund counts in the bucket where it happens |
//! | `orders` | distinct `orderId`s completed (all currencies) | |
//! | `aov` | `revenue / orders` in `currency`, integer minor units (rounded half up) | |
//! | `sessions` | sessions (distinct `sessionId`) that start in the bucket | |
//! | `conversion_rate` | sessions with an `order.completed` / sessions, by session start; 0–1, 4 decimals | |
//! | `visitors` | distinct visitors active in the bucket: `customerId`, else `anonymousId`, else `sessionId` | total is distinct over the range |
//! | `product_views` | `product.viewed` events (`productId` filter: one product) | |
//! | `ltv` | lifetime revenue in `currency` (orders up to the period's end) per customer, for the customers whose first order falls in the bucket and who ordered in `currency`; integer minor units | customers by `customerId` |
//! | `add_to_cart_rate` | sessions with a `cart.item_added` / sessions with a `product.viewed`, by the session's first product view; 0–1 | `productId`: that product's views and adds |
//!
//! Money is integer minor units in one currency (`currency`, default the store's main currency: the one
//! most of its orders of the last 90 days use). Filters: `country` (the event's `context.country`),
//! `productId` (`product_views` only).

use serde::Serialize;
use serde_json::{Value, json};

use super::QueryStore;
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
    pub fn is_money(self) -> bool {
        matches!(
            self,
            Self::Revenue | Self::NetRevenue | Self::Aov | Self::Ltv
        )
    }

    /// The value from the store's two raw aggregates `(a, c)` (see the adapter for what they hold).
    pub fn value(self, a: i64, c: i64) -> Value {
        match self {
            Self::Aov | Self::Ltv => json!(if c == 0 { 0 } else { (2 * a + c) / (2 * c) }),
            Self::ConversionRate | Self::AddToCartRate => {
                let rate = if a == 0 { 0.0 } else { c as f64 / a as f64 };
                json!((rate * 10_000.0).round() / 10_000.0)
            }
            _ => json!(a),
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
    pub country: Option<String>,
    pub product_id: Option<String>,
    /// Count events flagged as bots too (`includeBots=true`).
    pub include_bots: bool,
}

/// Raw aggregates: per bucket `(bucket start as Unix seconds, a, c)`, and over the whole range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Aggregates {
    pub buckets: Vec<(i64, i64, i64)>,
    pub total: (i64, i64),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataPoint {
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
    "productId",
    "limit",
    "includeBots",
];

/// A parsed metrics request: a time series or a ranked metric.
#[derive(Debug, Clone)]
pub enum Request {
    Series(MetricQuery),
    Ranked(super::ranked::RankedQuery),
}

fn unknown_metric(s: &str) -> Error {
    let names: Vec<&str> = Metric::ALL
        .iter()
        .map(|m| m.name())
        .chain(super::ranked::Ranked::ALL.iter().map(|m| m.name()))
        .collect();
    Error::invalid(
        "unknown_metric",
        "metric",
        format!("unknown metric {s:?}; valid metrics: {}", names.join(", ")),
    )
}

/// Parses and validates a metrics request for `store_id`.
pub async fn parse(
    store: &dyn QueryStore,
    store_id: &str,
    query: &str,
    now: jiff::Timestamp,
) -> Result<Request> {
    let p = Params::parse(query, PARAMS)?;
    let name = p.require("metric")?;
    if let Some(ranked) = super::ranked::Ranked::parse(name) {
        let range = p.range(now)?;
        let currency = currency_param(store, store_id, &p, ranked.uses_currency()).await?;
        if p.get("productId").is_some() {
            return Err(Error::invalid(
                "invalid_parameter",
                "productId",
                "productId filters product_views and add_to_cart_rate only",
            ));
        }
        if p.get("country").is_some()
            && matches!(
                ranked,
                super::ranked::Ranked::StockLevels | super::ranked::Ranked::SellThroughRate
            )
        {
            return Err(Error::invalid(
                "invalid_parameter",
                "country",
                "inventory metrics have no country filter",
            ));
        }
        return Ok(Request::Ranked(super::ranked::RankedQuery {
            store_id: store_id.to_owned(),
            metric: ranked,
            range,
            currency,
            country: country_param(&p)?,
            limit: super::ranked::parse_limit(p.get("limit"))?,
            include_bots: p.include_bots()?,
        }));
    }
    let metric = Metric::parse(name)?;
    if p.get("limit").is_some() {
        return Err(Error::invalid(
            "invalid_parameter",
            "limit",
            "limit applies to ranked metrics only",
        ));
    }
    let range = p.range(now)?;
    let currency = currency_param(store, store_id, &p, metric.is_money()).await?;
    let country = country_param(&p)?;
    if country.is_some() && metric == Metric::Ltv {
        return Err(Error::invalid(
            "invalid_parameter",
            "country",
            "ltv has no country filter",
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
        country,
        product_id,
        include_bots: p.include_bots()?,
    }))
}

/// `currency` for money metrics: as given, else the store's main currency.
async fn currency_param(
    store: &dyn QueryStore,
    store_id: &str,
    p: &Params,
    money: bool,
) -> Result<Option<String>> {
    Ok(match (money, p.get("currency")) {
        (_, Some(c)) if !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())) => {
            return Err(Error::invalid(
                "invalid_parameter",
                "currency",
                "currency must be an ISO 4217 code, e.g. USD",
            ));
        }
        (true, Some(c)) => Some(c.to_owned()),
        (true, None) => Some(
            store
                .main_currency(store_id)
                .await?
                .unwrap_or_else(|| "USD".into()),
        ),
        (false, _) => None,
    })
}

fn country_param(p: &Params) -> Result<Option<String>> {
    match p.get("country") {
        Some(c) if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
            Ok(Some(c.to_owned()))
        }
        Some(_) => Err(Error::invalid(
            "invalid_parameter",
            "country",
            "country must be an ISO 3166-1 alpha-2 code, e.g. US",
        )),
        None => Ok(None),
    }
}

/// Runs a metric query: every bucket present (zero-filled), total over the range.
pub async fn run(store: &dyn QueryStore, q: &MetricQuery) -> Result<MetricResponse> {
    let agg = store.metric(q).await?;
    let mut data_points = Vec::new();
    let mut found = agg.buckets.iter().peekable();
    for bucket in q.range.buckets()? {
        let start = bucket.timestamp().as_second();
        while found.peek().is_some_and(|(b, _, _)| *b < start) {
            found.next();
        }
        let (a, c) = match found.peek() {
            Some((b, a, c)) if *b == start => (*a, *c),
            _ => (0, 0),
        };
        data_points.push(DataPoint {
            date: q.range.label_of(&bucket),
            value: q.metric.value(a, c),
        });
    }
    Ok(MetricResponse {
        metric: q.metric.name(),
        period: q.range.label.clone(),
        granularity: q.range.granularity.as_str(),
        timezone: q.range.tz_name.clone(),
        total: q.metric.value(agg.total.0, agg.total.1),
        currency: q.currency.clone(),
        data_points,
    })
}
