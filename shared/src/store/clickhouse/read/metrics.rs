//! Time-series metrics: one source row per order, session, visitor or event (`ts` plus what the measures
//! read), aggregated per bucket and over the range into the facts of the metric's family.
//!
//! `visitors` and `product_views` read the `commerce_hourly` rollup when the range allows it (see
//! [`rollup_source`]); every other metric reads the raw events.

use serde::Deserialize;

use super::{
    ACQUIRED_IN_RANGE, Binds, IN_CURRENCY, Sql, base_filter, customer_orders, each_order,
    with_first_orders,
};
use crate::error::StoreError;
use crate::query::metrics::{BucketFacts, Metric, MetricFacts, MetricQuery};
use crate::query::params::Granularity;
use crate::store::clickhouse::{ClickHouseStore, classify};

/// The SQL aggregates that measure each fact of a metric's family, over the source's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measures {
    Count {
        count: &'static str,
    },
    Amount {
        amount: &'static str,
    },
    Money {
        amount: &'static str,
        orders: &'static str,
    },
    Rate {
        numerator: &'static str,
        denominator: &'static str,
    },
    PerCustomer {
        amount: &'static str,
        customers: &'static str,
    },
}

/// A result row: the bucket and the family's facts as columns `x` and `y` (see [`Measures::columns`],
/// read back by `Family::facts`).
#[derive(Debug, Deserialize, clickhouse::Row)]
struct FactsRow {
    b: i64,
    x: i64,
    y: i64,
}

impl Measures {
    /// `x` and `y` select clauses; [`Measures::facts`] reads them back by the same names.
    fn columns(self) -> String {
        let (x, y) = match self {
            Self::Count { count } => (count, "0"),
            Self::Amount { amount } => (amount, "0"),
            Self::Money { amount, orders } => (amount, orders),
            Self::Rate {
                numerator,
                denominator,
            } => (numerator, denominator),
            Self::PerCustomer { amount, customers } => (amount, customers),
        };
        format!("toInt64({x}) AS x, toInt64({y}) AS y")
    }
}

/// A metric's per-row source (columns `ts` plus what the measures read) and its measures.
#[derive(Debug, Clone, PartialEq)]
struct MetricSource {
    source: String,
    measures: Measures,
    /// Set when the source reads the hourly rollup: the whole UTC hours it covers.
    rollup_hours: Option<(i64, i64)>,
}

/// The bucketed and the total query of a metric, with their binds.
pub(super) fn sql(q: &MetricQuery) -> (Sql, Sql, Measures) {
    let MetricSource {
        source,
        measures,
        rollup_hours,
    } = rollup_source(q).unwrap_or_else(|| raw_source(q));
    let columns = measures.columns();
    let binds = Binds {
        currency: q.currency.clone(),
        country: q.country.clone(),
        product: q.product_id.clone(),
        rollup_hours,
        ..Binds::of_range(&q.store_id, &q.range, q.include_bots)
    };
    let bucketed = Sql {
        text: format!(
            "SELECT {} AS b, {columns} FROM ({source}) GROUP BY b ORDER BY b",
            bucket_expr(q.range.granularity)
        ),
        binds: binds.clone(),
    };
    let total = Sql {
        text: format!("SELECT toInt64(0) AS b, {columns} FROM ({source})"),
        binds,
    };
    (bucketed, total, measures)
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &MetricQuery,
) -> Result<MetricFacts, StoreError> {
    let (bucketed, total, _) = sql(q);
    let family = q.metric.family();
    let (rows, total) = tokio::join!(
        bucketed.query(store).fetch_all::<FactsRow>(),
        total.query(store).fetch_one::<FactsRow>(),
    );
    let total = total.map_err(classify)?;
    Ok(MetricFacts {
        buckets: rows
            .map_err(classify)?
            .iter()
            .map(|r| BucketFacts {
                start: r.b,
                facts: family.facts(r.x, r.y),
            })
            .collect(),
        total: family.facts(total.x, total.y),
    })
}

/// Unix seconds of the bucket start of `ts` in the zone parameter `{tz:String}`.
fn bucket_expr(g: Granularity) -> &'static str {
    match g {
        Granularity::Hour => "toInt64(toUnixTimestamp(toStartOfHour(ts, {tz:String})))",
        Granularity::Day => {
            "toInt64(toUnixTimestamp(toDateTime(toDate(ts, {tz:String}), {tz:String})))"
        }
        Granularity::Week => {
            "toInt64(toUnixTimestamp(toDateTime(toMonday(ts, {tz:String}), {tz:String})))"
        }
        Granularity::Month => {
            "toInt64(toUnixTimestamp(toDateTime(toStartOfMonth(ts, {tz:String}), {tz:String})))"
        }
    }
}

/// ` AND product_id = {product:String}` when the query filters one product.
fn product_filter(q: &MetricQuery) -> &'static str {
    if q.product_id.is_some() {
        " AND product_id = {product:String}"
    } else {
        ""
    }
}

/// The metric's source from the raw events.
fn raw_source(q: &MetricQuery) -> MetricSource {
    let base = base_filter(q.country.is_some());
    let orders_in_currency = || {
        each_order(
            "min(timestamp) AS ts, any(amount) AS v",
            &format!("{base}{IN_CURRENCY}"),
        )
    };
    // One row per session: its start and whether it has an order.
    let sessions = format!(
        "SELECT min(timestamp) AS ts, max(type = 'order.completed') AS v FROM commerce_events \
         WHERE {base} AND session_id != '' GROUP BY cityHash64(session_id)"
    );
    let (source, measures) = match q.metric {
        Metric::Revenue | Metric::Aov => (
            orders_in_currency(),
            Measures::Money {
                amount: "sum(v)",
                orders: "count()",
            },
        ),
        Metric::Orders => (
            each_order("min(timestamp) AS ts", &base),
            Measures::Count { count: "count()" },
        ),
        Metric::NetRevenue => (
            // Orders in the currency, and each refund event once, negative.
            format!(
                "{} UNION ALL SELECT min(timestamp) AS ts, -any(amount) AS v FROM commerce_events \
                 WHERE {base} AND type = 'order.refunded'{IN_CURRENCY} GROUP BY id",
                orders_in_currency()
            ),
            Measures::Amount { amount: "sum(v)" },
        ),
        Metric::Sessions => (sessions, Measures::Count { count: "count()" }),
        Metric::ConversionRate => (
            sessions,
            Measures::Rate {
                numerator: "sum(v)",
                denominator: "count()",
            },
        ),
        Metric::Visitors => (
            format!(
                "SELECT timestamp AS ts, {VISITOR} AS visitor FROM commerce_events \
                 WHERE {base} AND visitor != ''"
            ),
            Measures::Count {
                count: "uniqExact(cityHash64(visitor))",
            },
        ),
        Metric::Ltv => (
            // One row per order of a customer acquired in the range; `ts` is the acquisition time.
            format!(
                "SELECT f.first_ts AS ts, if(o.cur = {{currency:String}}, o.amt, 0) AS v, o.cust AS cust, \
                 o.cur = {{currency:String}} AS in_cur FROM {} WHERE {ACQUIRED_IN_RANGE}",
                with_first_orders(&customer_orders(false))
            ),
            Measures::PerCustomer {
                amount: "sum(v)",
                customers: "uniqExactIf(cust, in_cur)",
            },
        ),
        Metric::AddToCartRate => (
            // One row per session with a product view: its first view and whether it added to cart.
            format!(
                "SELECT minIf(timestamp, type = 'product.viewed') AS ts, max(type = 'cart.item_added') AS v \
                 FROM commerce_events WHERE {base} AND session_id != '' \
                 AND type IN ('product.viewed', 'cart.item_added'){} \
                 GROUP BY cityHash64(session_id) HAVING countIf(type = 'product.viewed') > 0",
                product_filter(q)
            ),
            Measures::Rate {
                numerator: "sum(v)",
                denominator: "count()",
            },
        ),
        Metric::ProductViews => (
            format!(
                "SELECT timestamp AS ts, id FROM commerce_events \
                 WHERE {base} AND type = 'product.viewed'{}",
                product_filter(q)
            ),
            Measures::Count {
                count: "uniqExact(id)",
            },
        ),
    };
    MetricSource {
        source,
        measures,
        rollup_hours: None,
    }
}

/// A visitor: `customerId`, else `anonymousId`, else `sessionId`.
const VISITOR: &str =
    "if(customer_id != '', customer_id, if(anonymous_id != '', anonymous_id, session_id))";

/// `[from, to)` shrunk to whole UTC hours, in milliseconds: what the hourly rollup can answer.
fn whole_hours(q: &MetricQuery) -> (i64, i64) {
    const HOUR: i64 = 3_600_000;
    let (from, to) = (q.range.from_ms(), q.range.to_ms());
    (
        from.div_euclid(HOUR) * HOUR + if from % HOUR == 0 { 0 } else { HOUR },
        to.div_euclid(HOUR) * HOUR,
    )
}

/// The metric's source from the `commerce_hourly` rollup, when it can answer exactly: `visitors` and
/// `product_views` (without a product filter), humans only, with bucket boundaries on whole UTC hours.
/// The whole hours come from the rollup's distinct sets; the partial hours at either end (a `24h` period
/// starts mid-hour, `to` is usually "now") from the raw events, as states of the same type, so buckets
/// and total stay exact distinct counts.
fn rollup_source(q: &MetricQuery) -> Option<MetricSource> {
    let servable = match q.metric {
        Metric::Visitors => true,
        // The rollup has no product dimension: a product filter reads the raw events.
        Metric::ProductViews => q.product_id.is_none(),
        _ => false,
    };
    // The rollup counts humans only.
    if !servable || q.include_bots || !q.range.hour_aligned() {
        return None;
    }
    let (inner_from, inner_to) = whole_hours(q);
    if inner_from >= inner_to {
        return None;
    }
    let country = if q.country.is_some() {
        " AND country = {country:String}"
    } else {
        ""
    };
    let rollup = format!(
        "store_id = {{store:String}} AND hour >= fromUnixTimestamp64Milli({{rfrom:Int64}}) \
         AND hour < fromUnixTimestamp64Milli({{rto:Int64}}){country}"
    );
    let edges = format!(
        "{} AND (timestamp < fromUnixTimestamp64Milli({{rfrom:Int64}}) \
         OR timestamp >= fromUnixTimestamp64Milli({{rto:Int64}}))",
        base_filter(q.country.is_some())
    );
    let source = match q.metric {
        Metric::Visitors => format!(
            "SELECT hour AS ts, visitors AS s FROM commerce_hourly WHERE {rollup} AND type = '*' \
             UNION ALL \
             SELECT toStartOfHour(timestamp) AS ts, uniqExactState(cityHash64(visitor)) AS s FROM ( \
               SELECT timestamp, {VISITOR} AS visitor FROM commerce_events WHERE {edges}) \
             WHERE visitor != '' GROUP BY ts"
        ),
        _ => format!(
            "SELECT hour AS ts, events AS s FROM commerce_hourly \
             WHERE {rollup} AND type = 'product.viewed' \
             UNION ALL \
             SELECT toStartOfHour(timestamp) AS ts, uniqExactState(cityHash64(id)) AS s \
             FROM commerce_events WHERE {edges} AND type = 'product.viewed' GROUP BY ts"
        ),
    };
    Some(MetricSource {
        source,
        measures: Measures::Count {
            count: "uniqExactMerge(s)",
        },
        rollup_hours: Some((inner_from, inner_to)),
    })
}
