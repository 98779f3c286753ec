//! SQL for the read side ([`QueryStore`]). Every request value travels as a server-side query parameter
//! (`{name:Type}`), never pasted into SQL; the only text composed here comes from allow-lists (metric,
//! granularity, funnel mode, step count).
//!
//! Duplicates: the insert path stores each event once, and these queries are written to stay exact even
//! if a duplicate row slipped in (orders and refunds are deduplicated by `orderId` / event id, sessions
//! and visitors are distinct counts).
//!
//! `visitors` and `product_views` read the `commerce_hourly` rollup when the range allows it (see
//! [`rollup_sql`]); every other metric reads the raw events.
//!
//! Sessions and visitors are grouped and counted by their 64-bit `cityHash64`, not the string: about a
//! third faster on 10M events, and exact unless two ids collide (probability ≈ n²/2⁶⁵, below 10⁻⁷ at
//! 100 million sessions).

use async_trait::async_trait;
use serde::Deserialize;

use super::{ClickHouseStore, classify};
use crate::query::QueryStore;
use crate::query::cohorts::{CohortCells, CohortQuery};
use crate::query::dashboards::Dashboard;
use crate::query::funnel::{FunnelCounts, FunnelKey, FunnelQuery};
use crate::query::metrics::{Aggregates, Metric, MetricQuery};
use crate::query::params::Granularity;
use crate::query::ranked::{Ranked, RankedQuery, RankedRows};
use crate::store::StoreError;

#[derive(Debug, Deserialize, clickhouse::Row)]
struct BucketRow {
    b: i64,
    a: i64,
    c: i64,
}

#[derive(Debug, Deserialize, serde::Serialize, clickhouse::Row)]
struct DashboardRow {
    store_id: String,
    id: String,
    name: String,
    widgets: String,
    version: u64,
    deleted: u8,
}

fn version_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct CohortRow {
    cohort: i64,
    k: i64,
    customers: i64,
    revenue: i64,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct RankedRow {
    key: String,
    a: i64,
    b: i64,
    c: i64,
}

/// The store, `[from, to)` and bot conditions every read shares, plus the optional country filter. Bots:
/// `is_bot <= {bots:UInt8}` keeps humans only unless the query includes bots (`bots` = 1).
fn base_filter(country: bool) -> String {
    let mut base = String::from(
        "store_id = {store:String} AND timestamp >= fromUnixTimestamp64Milli({from:Int64}) \
         AND timestamp < fromUnixTimestamp64Milli({to:Int64}) AND is_bot <= {bots:UInt8}",
    );
    if country {
        base.push_str(" AND country = {country:String}");
    }
    base
}

/// Each customer's first order ever (`customer_id`, `first_ts`).
const FIRST_ORDERS: &str = "SELECT customer_id, min(timestamp) AS first_ts FROM commerce_events \
    WHERE store_id = {store:String} AND is_bot <= {bots:UInt8} AND type = 'order.completed' AND customer_id != '' \
    GROUP BY customer_id";

/// Units of an order item: `quantity`, 1 when absent.
const ITEM_QTY: &str = "if(JSONHas(item, 'quantity'), JSONExtractInt(item, 'quantity'), 1)";

fn ranked_sql(q: &RankedQuery) -> String {
    let base = base_filter(q.country.is_some());
    let orders = |currency: bool| {
        format!(
            "SELECT order_id, any(properties) AS p FROM commerce_events WHERE {base} AND type = 'order.completed'{} \
             GROUP BY order_id",
            if currency {
                " AND currency = {currency:String}"
            } else {
                ""
            }
        )
    };
    let stock = "SELECT product_id AS key, argMax(quantity, timestamp) AS stock, max(timestamp) AS at \
                 FROM commerce_events WHERE store_id = {store:String} AND is_bot <= {bots:UInt8} \
                 AND type = 'inventory.updated' \
                 AND timestamp < fromUnixTimestamp64Milli({to:Int64}) GROUP BY key";
    let sessions = |key: &str| {
        format!(
            "SELECT key, toInt64(count()) AS a, toInt64(countIf(orders > 0)) AS b, toInt64(sum(revenue)) AS c FROM ( \
               SELECT {key} AS key, max(type = 'order.completed') AS orders, \
                 arraySum(arrayMap(x -> x.2, groupUniqArrayIf((order_id, amount), \
                   type = 'order.completed' AND currency = {{currency:String}}))) AS revenue \
               FROM commerce_events WHERE {base} AND session_id != '' GROUP BY cityHash64(session_id)) \
             WHERE key != '' GROUP BY key ORDER BY a DESC, key LIMIT {{limit:UInt32}}"
        )
    };
    match q.metric {
        Ranked::BestSellers => format!(
            "SELECT JSONExtractString(item, 'productId') AS key, toInt64(sum({ITEM_QTY})) AS a, \
             toInt64(sum({ITEM_QTY} * JSONExtractInt(item, 'price'))) AS b, toInt64(uniqExact(order_id)) AS c \
             FROM ({}) ARRAY JOIN JSONExtractArrayRaw(p, 'items') AS item \
             GROUP BY key ORDER BY b DESC, a DESC, key LIMIT {{limit:UInt32}}",
            orders(true)
        ),
        Ranked::TrafficSources => sessions(
            "if(argMinIf(utm_source, timestamp, utm_source != '') != '', \
                argMinIf(utm_source, timestamp, utm_source != ''), \
                if(argMinIf(referrer, timestamp, referrer != '') != '', \
                   domainWithoutWWW(argMinIf(referrer, timestamp, referrer != '')), 'direct'))",
        ),
        Ranked::CampaignPerformance => {
            sessions("argMinIf(utm_campaign, timestamp, utm_campaign != '')")
        }
        Ranked::NewVsReturning => format!(
            "SELECT if(f.first_ts >= fromUnixTimestamp64Milli({{from:Int64}}), 'new', 'returning') AS key, \
               toInt64(uniqExact(o.cust)) AS a, toInt64(count()) AS b, \
               toInt64(sumIf(o.amt, o.cur = {{currency:String}})) AS c \
             FROM ( \
               SELECT order_id, any(customer_id) AS cust, any(amount) AS amt, any(currency) AS cur \
               FROM commerce_events WHERE {base} AND type = 'order.completed' AND customer_id != '' \
               GROUP BY order_id) AS o \
             INNER JOIN ({FIRST_ORDERS}) AS f ON o.cust = f.customer_id \
             GROUP BY key ORDER BY key LIMIT {{limit:UInt32}}"
        ),
        Ranked::StockLevels => format!(
            "SELECT key, toInt64(stock) AS a, toInt64(toUnixTimestamp(at)) AS b, toInt64(0) AS c FROM ({stock}) \
             ORDER BY a, key LIMIT {{limit:UInt32}}"
        ),
        Ranked::SellThroughRate => format!(
            "SELECT key, toInt64(sold) AS a, toInt64(stock) AS b, toInt64(0) AS c FROM ({stock}) AS s \
             FULL OUTER JOIN ( \
               SELECT JSONExtractString(item, 'productId') AS key, sum({ITEM_QTY}) AS sold \
               FROM ({}) ARRAY JOIN JSONExtractArrayRaw(p, 'items') AS item GROUP BY key) AS o USING key \
             WHERE key != '' ORDER BY if(a + b = 0, 0, a / (a + b)) DESC, key LIMIT {{limit:UInt32}}",
            orders(false)
        ),
    }
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct FunnelRow {
    reached: Vec<u64>,
    medians: Vec<f64>,
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

/// The per-row source of a metric (columns `ts` plus what the aggregates read) and its two aggregates.
fn metric_sql(q: &MetricQuery) -> (String, &'static str, &'static str) {
    let base = base_filter(q.country.is_some());
    let orders = |currency: bool| {
        format!(
            "SELECT min(timestamp) AS ts, any(amount) AS v FROM commerce_events \
             WHERE {base} AND type = 'order.completed'{} GROUP BY order_id",
            if currency {
                " AND currency = {currency:String}"
            } else {
                ""
            }
        )
    };
    match q.metric {
        Metric::Revenue | Metric::Aov => (orders(true), "sum(v)", "count()"),
        Metric::Orders => (orders(false), "count()", "0"),
        Metric::NetRevenue => (
            format!(
                "{} UNION ALL SELECT min(timestamp) AS ts, -any(amount) AS v FROM commerce_events \
                 WHERE {base} AND type = 'order.refunded' AND currency = {{currency:String}} GROUP BY id",
                orders(true)
            ),
            "sum(v)",
            "0",
        ),
        Metric::Sessions | Metric::ConversionRate => (
            format!(
                "SELECT min(timestamp) AS ts, max(type = 'order.completed') AS v FROM commerce_events \
                 WHERE {base} AND session_id != '' GROUP BY cityHash64(session_id)"
            ),
            "count()",
            "sum(v)",
        ),
        Metric::Visitors => (
            format!(
                "SELECT timestamp AS ts, if(customer_id != '', customer_id, if(anonymous_id != '', anonymous_id, \
                 session_id)) AS visitor FROM commerce_events WHERE {base} AND visitor != ''"
            ),
            "uniqExact(cityHash64(visitor))",
            "0",
        ),
        Metric::Ltv => (
            // One row per order of a customer acquired in the range; `ts` is the acquisition time.
            format!(
                "SELECT f.first_ts AS ts, if(o.cur = {{currency:String}}, o.amt, 0) AS v, o.cust AS cust, \
                   o.cur = {{currency:String}} AS in_cur FROM ( \
                   SELECT order_id, any(customer_id) AS cust, any(amount) AS amt, any(currency) AS cur \
                   FROM commerce_events WHERE store_id = {{store:String}} AND is_bot <= {{bots:UInt8}} \
                     AND type = 'order.completed' \
                     AND customer_id != '' AND timestamp >= fromUnixTimestamp64Milli({{from:Int64}}) \
                     AND timestamp < fromUnixTimestamp64Milli({{to:Int64}}) GROUP BY order_id) AS o \
                 INNER JOIN ({FIRST_ORDERS}) AS f ON o.cust = f.customer_id \
                 WHERE f.first_ts >= fromUnixTimestamp64Milli({{from:Int64}}) \
                   AND f.first_ts < fromUnixTimestamp64Milli({{to:Int64}})"
            ),
            "sum(v)",
            "uniqExactIf(cust, in_cur)",
        ),
        Metric::AddToCartRate => (
            format!(
                "SELECT minIf(timestamp, type = 'product.viewed') AS ts, max(type = 'cart.item_added') AS v \
                 FROM commerce_events WHERE {base} AND session_id != '' \
                 AND type IN ('product.viewed', 'cart.item_added'){} \
                 GROUP BY cityHash64(session_id) HAVING countIf(type = 'product.viewed') > 0",
                if q.product_id.is_some() {
                    " AND product_id = {product:String}"
                } else {
                    ""
                }
            ),
            "count()",
            "sum(v)",
        ),
        Metric::ProductViews => (
            format!(
                "SELECT timestamp AS ts, id FROM commerce_events WHERE {base} AND type = 'product.viewed'{}",
                if q.product_id.is_some() {
                    " AND product_id = {product:String}"
                } else {
                    ""
                }
            ),
            "uniqExact(id)",
            "0",
        ),
    }
}

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
/// `product_views` (without a product filter), with bucket boundaries on whole UTC hours. The whole hours come from the rollup's
/// distinct sets; the partial hours at either end (a `24h` period starts mid-hour, `to` is usually "now")
/// from the raw events, as states of the same type, so buckets and total stay exact distinct counts.
fn rollup_sql(q: &MetricQuery) -> Option<(String, &'static str, &'static str)> {
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
    let mut rollup = String::from(
        "store_id = {store:String} AND hour >= fromUnixTimestamp64Milli({rfrom:Int64}) \
         AND hour < fromUnixTimestamp64Milli({rto:Int64})",
    );
    if q.country.is_some() {
        rollup.push_str(" AND country = {country:String}");
    }
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
               SELECT timestamp, if(customer_id != '', customer_id, if(anonymous_id != '', anonymous_id, \
               session_id)) AS visitor FROM commerce_events WHERE {edges}) WHERE visitor != '' GROUP BY ts"
        ),
        _ => format!(
            "SELECT hour AS ts, events AS s FROM commerce_hourly \
             WHERE {rollup} AND type = 'product.viewed' \
             UNION ALL \
             SELECT toStartOfHour(timestamp) AS ts, uniqExactState(cityHash64(id)) AS s \
             FROM commerce_events WHERE {edges} AND type = 'product.viewed' GROUP BY ts"
        ),
    };
    Some((source, "uniqExactMerge(s)", "0"))
}

impl ClickHouseStore {
    /// One row into `analytics_dashboards` (saves and deletions are both new versions of the row).
    async fn write_dashboard_row(&self, row: &DashboardRow) -> Result<(), StoreError> {
        let mut insert = self
            .client()
            .insert::<DashboardRow>("analytics_dashboards")
            .await
            .map_err(classify)?;
        insert.write(row).await.map_err(classify)?;
        insert.end().await.map_err(classify)
    }

    fn metric_query(&self, sql: &str, q: &MetricQuery) -> clickhouse::query::Query {
        let mut query = self
            .client()
            .query(sql)
            .param("store", &q.store_id)
            .param("from", q.range.from_ms())
            .param("to", q.range.to_ms())
            .param("tz", &q.range.tz_name)
            .param("bots", u8::from(q.include_bots));
        if sql.contains("{rfrom:Int64}") {
            let (rfrom, rto) = whole_hours(q);
            query = query.param("rfrom", rfrom).param("rto", rto);
        }
        if let Some(c) = &q.currency {
            query = query.param("currency", c);
        }
        if let Some(c) = &q.country {
            query = query.param("country", c);
        }
        if let Some(p) = &q.product_id {
            query = query.param("product", p);
        }
        query
    }
}

#[async_trait]
impl QueryStore for ClickHouseStore {
    async fn erase_customer(
        &self,
        store_id: &str,
        customer_id: &str,
    ) -> Result<crate::erasure::ErasureReport, StoreError> {
        self.erase(store_id, customer_id).await
    }

    async fn metric(&self, q: &MetricQuery) -> Result<Aggregates, StoreError> {
        let (source, a, c) = rollup_sql(q).unwrap_or_else(|| metric_sql(q));
        let bucketed = format!(
            "SELECT {} AS b, toInt64({a}) AS a, toInt64({c}) AS c FROM ({source}) GROUP BY b ORDER BY b",
            bucket_expr(q.range.granularity)
        );
        let total =
            format!("SELECT toInt64(0) AS b, toInt64({a}) AS a, toInt64({c}) AS c FROM ({source})");
        let (rows, total) = tokio::join!(
            self.metric_query(&bucketed, q).fetch_all::<BucketRow>(),
            self.metric_query(&total, q).fetch_one::<BucketRow>(),
        );
        let total = total.map_err(classify)?;
        Ok(Aggregates {
            buckets: rows
                .map_err(classify)?
                .into_iter()
                .map(|r| (r.b, r.a, r.c))
                .collect(),
            total: (total.a, total.c),
        })
    }

    async fn ranked(&self, q: &RankedQuery) -> Result<RankedRows, StoreError> {
        let mut query = self
            .client()
            .query(&ranked_sql(q))
            .param("store", &q.store_id)
            .param("from", q.range.from_ms())
            .param("to", q.range.to_ms())
            .param("bots", u8::from(q.include_bots))
            .param("limit", q.limit);
        if let Some(c) = &q.currency {
            query = query.param("currency", c);
        }
        if let Some(c) = &q.country {
            query = query.param("country", c);
        }
        let rows = query.fetch_all::<RankedRow>().await.map_err(classify)?;
        Ok(rows.into_iter().map(|r| (r.key, r.a, r.b, r.c)).collect())
    }

    async fn cohorts(&self, q: &CohortQuery) -> Result<CohortCells, StoreError> {
        let (start, offset) = match q.range.granularity {
            Granularity::Week => (
                "toMonday(f.first_ts, {tz:String})",
                "intDiv(dateDiff('day', toMonday(f.first_ts, {tz:String}), toMonday(o.ts, {tz:String})), 7)",
            ),
            _ => (
                "toStartOfMonth(f.first_ts, {tz:String})",
                "dateDiff('month', toStartOfMonth(f.first_ts, {tz:String}), toStartOfMonth(o.ts, {tz:String}))",
            ),
        };
        let sql = format!(
            "SELECT toInt64(toUnixTimestamp(toDateTime({start}, {{tz:String}}))) AS cohort, toInt64({offset}) AS k, \
               toInt64(uniqExact(o.cust)) AS customers, \
               toInt64(sumIf(o.amt, o.cur = {{currency:String}})) AS revenue \
             FROM ( \
               SELECT order_id, any(customer_id) AS cust, min(timestamp) AS ts, any(amount) AS amt, \
                 any(currency) AS cur \
               FROM commerce_events WHERE store_id = {{store:String}} AND is_bot <= {{bots:UInt8}} \
                     AND type = 'order.completed' \
                 AND customer_id != '' AND timestamp >= fromUnixTimestamp64Milli({{from:Int64}}) \
                 AND timestamp < fromUnixTimestamp64Milli({{to:Int64}}) \
               GROUP BY order_id) AS o \
             INNER JOIN ({FIRST_ORDERS}) AS f ON o.cust = f.customer_id \
             WHERE f.first_ts >= fromUnixTimestamp64Milli({{from:Int64}}) \
               AND f.first_ts < fromUnixTimestamp64Milli({{to:Int64}}) \
             GROUP BY cohort, k ORDER BY cohort, k"
        );
        let rows = self
            .client()
            .query(&sql)
            .param("store", &q.store_id)
            .param("from", q.range.from_ms())
            .param("to", q.range.to_ms())
            .param("tz", &q.range.tz_name)
            .param("bots", u8::from(q.include_bots))
            .param("currency", &q.currency)
            .fetch_all::<CohortRow>()
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|r| (r.cohort, r.k, r.customers, r.revenue))
            .collect())
    }

    async fn dashboards(&self, store_id: &str) -> Result<Vec<Dashboard>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT store_id, id, name, widgets, version, deleted FROM analytics_dashboards FINAL \
                 WHERE store_id = {store:String} AND deleted = 0 ORDER BY name, id",
            )
            .param("store", store_id)
            .fetch_all::<DashboardRow>()
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|r| {
                let widgets = serde_json::from_str(&r.widgets).map_err(|e| {
                    StoreError::Rejected(format!("dashboard {} has unreadable widgets: {e}", r.id))
                })?;
                Ok(Dashboard {
                    id: r.id,
                    name: r.name,
                    built_in: false,
                    widgets,
                })
            })
            .collect()
    }

    async fn save_dashboard(&self, store_id: &str, d: &Dashboard) -> Result<(), StoreError> {
        let row = DashboardRow {
            store_id: store_id.to_owned(),
            id: d.id.clone(),
            name: d.name.clone(),
            widgets: serde_json::to_string(&d.widgets).unwrap_or_else(|_| "[]".into()),
            version: version_now(),
            deleted: 0,
        };
        self.write_dashboard_row(&row).await
    }

    async fn delete_dashboard(&self, store_id: &str, id: &str) -> Result<bool, StoreError> {
        let exists = self.dashboards(store_id).await?.iter().any(|d| d.id == id);
        if !exists {
            return Ok(false);
        }
        let row = DashboardRow {
            store_id: store_id.to_owned(),
            id: id.to_owned(),
            name: String::new(),
            widgets: "[]".into(),
            version: version_now(),
            deleted: 1,
        };
        self.write_dashboard_row(&row).await?;
        Ok(true)
    }

    async fn main_currency(&self, store_id: &str) -> Result<Option<String>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT currency FROM commerce_events WHERE store_id = {store:String} \
                 AND type = 'order.completed' AND timestamp >= now() - INTERVAL 90 DAY \
                 GROUP BY currency ORDER BY count() DESC, currency LIMIT 1",
            )
            .param("store", store_id)
            .fetch_all::<String>()
            .await
            .map_err(classify)?;
        Ok(rows.into_iter().next())
    }

    async fn live(
        &self,
        q: &crate::query::live::LiveQuery,
    ) -> Result<crate::query::live::LiveData, StoreError> {
        #[derive(Debug, Deserialize, clickhouse::Row)]
        struct Recent {
            id: String,
            event_type: String,
            ms: i64,
            detail: String,
        }
        let filter = "store_id = {store:String} AND timestamp >= fromUnixTimestamp64Milli({from:Int64}) \
                      AND is_bot <= {bots:UInt8}";
        let query = |sql: String| {
            self.client()
                .query(&sql)
                .param("store", &q.store_id)
                .param("from", q.from_ms)
                .param("bots", u8::from(q.include_bots))
        };
        let (minutes, recent) = tokio::join!(
            query(format!(
                "SELECT toInt64(toUnixTimestamp(toStartOfMinute(timestamp))) AS m, uniqExact(id) AS n \
                 FROM commerce_events WHERE {filter} GROUP BY m ORDER BY m"
            ))
            .fetch_all::<(i64, u64)>(),
            query(format!(
                "SELECT id, toString(type) AS event_type, toInt64(toUnixTimestamp64Milli(timestamp)) AS ms, \
                 multiIf(product_id != '', product_id, page_path != '', page_path, path(page_url)) AS detail \
                 FROM commerce_events WHERE {filter} \
                 ORDER BY timestamp DESC, id LIMIT 1 BY id LIMIT {}",
                crate::query::live::RECENT
            ))
            .fetch_all::<Recent>(),
        );
        Ok(crate::query::live::LiveData {
            per_minute: minutes.map_err(classify)?,
            recent: recent
                .map_err(classify)?
                .into_iter()
                .map(|r| crate::query::live::RecentEvent {
                    id: r.id,
                    event_type: r.event_type,
                    timestamp: jiff::Timestamp::from_millisecond(r.ms)
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    detail: r.detail,
                })
                .collect(),
        })
    }

    async fn funnel(&self, q: &FunnelQuery) -> Result<FunnelCounts, StoreError> {
        let n = q.steps.len();
        let key = match q.by {
            FunnelKey::Session => "session_id",
            FunnelKey::Customer => "customer_id",
        };
        let conditions: Vec<String> = (0..n).map(|i| format!("type = {{s{i}:String}}")).collect();
        let firsts: Vec<String> = (0..n)
            .map(|i| format!("minIf(timestamp, type = {{s{i}:String}}) AS t{i}"))
            .collect();
        let reached: Vec<String> = (1..=n).map(|k| format!("countIf(level >= {k})")).collect();
        let medians: Vec<String> = (0..n)
            .map(|i| {
                if i == 0 {
                    "nan".to_owned()
                } else {
                    format!(
                        "quantileExactIf(0.5)(toFloat64(dateDiff('millisecond', t{p}, t{i})) / 1000, level >= {k})",
                        p = i - 1,
                        k = i + 1
                    )
                }
            })
            .collect();
        let sql = format!(
            "SELECT [{reached}] AS reached, [{medians}] AS medians FROM ( \
               SELECT {key} AS k, windowFunnel({{window:UInt64}}{mode})(toDateTime(timestamp), {conds}) AS level, {firsts} \
               FROM commerce_events \
               WHERE store_id = {{store:String}} AND is_bot <= {{bots:UInt8}} AND type IN {{steps:Array(String)}} \
                 AND timestamp >= fromUnixTimestamp64Milli({{from:Int64}}) AND timestamp < fromUnixTimestamp64Milli({{to:Int64}}) \
                 AND {key} != '' \
               GROUP BY k)",
            reached = reached.join(", "),
            medians = medians.join(", "),
            mode = if q.strict { ", 'strict_order'" } else { "" },
            conds = conditions.join(", "),
            firsts = firsts.join(", "),
        );
        let mut query = self
            .client()
            .query(&sql)
            .param("store", &q.store_id)
            .param("from", q.range.from_ms())
            .param("to", q.range.to_ms())
            .param("window", q.window_secs)
            .param("bots", u8::from(q.include_bots))
            .param("steps", &q.steps);
        for (i, s) in q.steps.iter().enumerate() {
            query = query.param(&format!("s{i}"), s);
        }
        let row = query.fetch_one::<FunnelRow>().await.map_err(classify)?;
        Ok(FunnelCounts {
            reached: row.reached,
            median_secs: row
                .medians
                .into_iter()
                .map(|m| m.is_finite().then_some(m))
                .collect(),
        })
    }
}
