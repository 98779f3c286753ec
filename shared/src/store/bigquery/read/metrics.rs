//! Time-series metrics on BigQuery: the same sources and measures as the ClickHouse adapter
//! (`store/clickhouse/read/metrics.rs`), in BigQuery's SQL; the query side computes the values. Buckets
//! are computed in the request's zone with DST: the local `DATETIME(ts, zone)` truncated, and back with
//! `TIMESTAMP(datetime, zone)`; Monday weeks arithmetically from `DAYOFWEEK` (the emulator's
//! `DATE_TRUNC(d, WEEK(MONDAY))` returns the Sunday; its `TIMESTAMP_TRUNC(ts, HOUR, zone)` ignores
//! half-hour zones such as Kolkata).

use super::{
    CUSTOMER_ORDERS_WITH_FIRST, Sql, VISITOR, all_events, events_in_range, local_start,
    zone_literal,
};
use crate::error::StoreError;
use crate::query::breakdown::{Dimension, GroupFacts, GroupKey, Groups};
use crate::query::metrics::{BucketFacts, Family, Metric, MetricFacts, MetricQuery};
use crate::query::params::Granularity;
use crate::store::bigquery::BigQueryStore;
use crate::store::bigquery::client::{Param, Rows};

/// A metric's per-row source and the aggregates that measure its family's facts over those rows (`x`,
/// `y`, in the order of [`Family::facts`]).
#[derive(Debug, Clone, PartialEq)]
struct Source {
    /// Rows with `ts` plus what the measures read.
    rows: String,
    /// The first and second fact (`y` is `0` for one-fact families).
    x: &'static str,
    y: &'static str,
}

/// What a broken-down source's rows carry besides their measures: their session (`sid`, joined to the
/// session's value of the dimension), or for `product` the row's own product (`g`); as on ClickHouse.
fn by_column(by: Option<Dimension>, per_order: bool) -> &'static str {
    match (by, per_order) {
        (None, _) => "",
        (Some(Dimension::Product), _) => ", product_id AS g",
        (Some(_), true) => ", ANY_VALUE(session_id) AS sid",
        (Some(_), false) => ", session_id AS sid",
    }
}

fn source(q: &MetricQuery, by: Option<Dimension>) -> Source {
    let s = |rows: String, x, y| Source { rows, x, y };
    let product = if q.product_id.is_some() {
        " AND product_id = @product"
    } else {
        ""
    };
    let (order_by, row_by) = (by_column(by, true), by_column(by, false));
    let orders_in_currency = format!(
        "SELECT MIN(timestamp) AS ts, ANY_VALUE(amount) AS v{order_by} FROM ev \
         WHERE type = 'order.completed' AND currency = @currency GROUP BY order_id"
    );
    let sessions = format!(
        "SELECT MIN(timestamp) AS ts, MAX(IF(type = 'order.completed', 1, 0)) AS v{row_by} FROM ev \
         WHERE session_id != '' GROUP BY session_id"
    );
    match q.metric {
        Metric::Revenue | Metric::Aov => s(orders_in_currency.clone(), "SUM(v)", "COUNT(*)"),
        Metric::Orders => s(
            format!(
                "SELECT MIN(timestamp) AS ts{order_by} FROM ev WHERE type = 'order.completed' \
                 AND currency = @currency GROUP BY order_id"
            ),
            "COUNT(*)",
            "0",
        ),
        Metric::NetRevenue => s(
            format!(
                "{orders_in_currency} UNION ALL SELECT MIN(timestamp) AS ts, -ANY_VALUE(amount) AS v FROM ev \
                 WHERE type = 'order.refunded' AND currency = @currency GROUP BY id"
            ),
            "SUM(v)",
            "0",
        ),
        Metric::Sessions => s(sessions, "COUNT(*)", "0"),
        Metric::ConversionRate => s(sessions, "SUM(v)", "COUNT(*)"),
        Metric::Visitors => s(
            format!(
                "SELECT * FROM (SELECT timestamp AS ts, {VISITOR} AS visitor{row_by} FROM ev) \
                 WHERE visitor != ''"
            ),
            "COUNT(DISTINCT visitor)",
            "0",
        ),
        Metric::ProductViews => s(
            format!(
                "SELECT timestamp AS ts, id{row_by} FROM ev WHERE type = 'product.viewed'{product}"
            ),
            "COUNT(DISTINCT id)",
            "0",
        ),
        Metric::AddToCartRate => s(
            format!(
                "SELECT MIN(IF(type = 'product.viewed', timestamp, NULL)) AS ts, \
                 MAX(IF(type = 'cart.item_added', 1, 0)) AS v{row_by} FROM ev WHERE session_id != '' \
                 AND type IN ('product.viewed', 'cart.item_added'){product} \
                 GROUP BY session_id HAVING COUNTIF(type = 'product.viewed') > 0"
            ),
            "SUM(v)",
            "COUNT(*)",
        ),
        Metric::Ltv => s(
            // One row per order (in the range) of a customer acquired in the range; `ts` is the acquisition.
            format!(
                "SELECT f.first_ts AS ts, IF(o.cur = @currency, o.amt, 0) AS v, o.cust AS cust, \
                 o.cur = @currency AS in_cur FROM {CUSTOMER_ORDERS_WITH_FIRST} \
                 WHERE f.first_ts >= @from AND f.first_ts < @to"
            ),
            "SUM(v)",
            "COUNT(DISTINCT IF(in_cur, cust, NULL))",
        ),
    }
}

/// Unix seconds of the bucket start of `ts` in the zone `tz` (a literal from [`zone_literal`]).
fn bucket_expr(g: Granularity, tz: &str) -> String {
    format!(
        "UNIX_SECONDS(TIMESTAMP({}, {tz}))",
        local_start("ts", g, tz)
    )
}

/// A money metric's amounts per bucket, currency and UTC day, in every currency
/// ([`crate::query::convert`]): each order once and, for `net_revenue`, each refund event once, negative.
pub fn money_by_currency_sql(store: &BigQueryStore, q: &MetricQuery) -> Result<Sql, StoreError> {
    let tz = zone_literal(&q.range.tz_name)?;
    let orders = "SELECT MIN(timestamp) AS ts, ANY_VALUE(amount) AS v, ANY_VALUE(currency) AS cur, 1 AS o \
                  FROM ev WHERE type = 'order.completed' GROUP BY order_id";
    let source = if q.metric == Metric::NetRevenue {
        format!(
            "{orders} UNION ALL SELECT MIN(timestamp) AS ts, -ANY_VALUE(amount) AS v, \
             ANY_VALUE(currency) AS cur, 0 AS o FROM ev WHERE type = 'order.refunded' GROUP BY id"
        )
    } else {
        orders.to_owned()
    };
    let params = super::range_params(&q.store_id, &q.range, q.include_bots, &q.filters);
    Ok(Sql {
        text: format!(
            "{} SELECT {} AS b, cur, CAST(DATE(ts) AS STRING) AS d, CAST(SUM(v) AS INT64) AS x, \
             CAST(SUM(o) AS INT64) AS y FROM ({source}) GROUP BY b, cur, d ORDER BY b, cur, d",
            events_in_range(store, &q.filters),
            bucket_expr(q.range.granularity, &tz)
        ),
        params,
    })
}

/// [`money_by_currency_sql`], run.
pub async fn money_by_currency(
    store: &BigQueryStore,
    q: &MetricQuery,
) -> Result<Vec<crate::query::convert::CurrencyDayFacts>, StoreError> {
    let sql = money_by_currency_sql(store, q)?;
    let rows = store.client().read(&sql.text, &sql.params).await?;
    (0..rows.rows.len())
        .map(|i| {
            let day = rows.string(i, 2);
            Ok(crate::query::convert::CurrencyDayFacts {
                bucket: rows.i64(i, 0)?,
                currency: rows.string(i, 1),
                day: day
                    .parse()
                    .map_err(|e| StoreError::Rejected(format!("day {day}: {e}")))?,
                amount: rows.i64(i, 3)?,
                orders: rows.i64(i, 4)?,
            })
        })
        .collect()
}

/// The sales report's sums per bucket ([`crate::query::sales`]); the total is the sum of the buckets
/// (every figure is a sum), so the events are scanned once.
pub fn sales_sql(
    store: &BigQueryStore,
    q: &crate::query::sales::SalesQuery,
) -> Result<Sql, StoreError> {
    let tz = zone_literal(&q.range.tz_name)?;
    let int = |k: &str| format!("IFNULL(SAFE_CAST(JSON_VALUE(p, '$.{k}') AS INT64), 0)");
    let mut params = super::range_params(&q.store_id, &q.range, q.include_bots, &q.filters);
    params.extend([("currency", Param::String(q.currency.clone()))]);
    Ok(Sql {
        text: format!(
            "{} SELECT {} AS b, SUM(g) AS gross, SUM(d) AS discounts, SUM(r) AS returns, SUM(s) AS shipping, \
               SUM(x) AS taxes, SUM(o) AS orders FROM ( \
               SELECT ts, IF(JSON_VALUE(p, '$.subtotal') IS NOT NULL, {subtotal} + {d}, amt - {s} - {x} + {d}) AS g, \
                 {d} AS d, 0 AS r, {s} AS s, {x} AS x, 1 AS o \
               FROM (SELECT MIN(timestamp) AS ts, ANY_VALUE(amount) AS amt, ANY_VALUE(properties) AS p FROM ev \
                     WHERE type = 'order.completed' AND currency = @currency GROUP BY order_id) \
               UNION ALL \
               SELECT MIN(timestamp) AS ts, 0 AS g, 0 AS d, ANY_VALUE(amount) AS r, 0 AS s, 0 AS x, 0 AS o \
               FROM ev WHERE type = 'order.refunded' AND currency = @currency GROUP BY id) \
             GROUP BY b ORDER BY b",
            events_in_range(store, &q.filters),
            bucket_expr(q.range.granularity, &tz),
            subtotal = int("subtotal"),
            d = int("discount"),
            s = int("shipping"),
            x = int("tax"),
        ),
        params,
    })
}

/// [`sales_sql`], run.
pub async fn sales(
    store: &BigQueryStore,
    q: &crate::query::sales::SalesQuery,
) -> Result<crate::query::sales::SalesRead, StoreError> {
    use crate::query::sales::{SalesBucket, SalesFacts, SalesRead};
    let sql = sales_sql(store, q)?;
    let rows = store.client().read(&sql.text, &sql.params).await?;
    let mut read = SalesRead::default();
    for i in 0..rows.rows.len() {
        let facts = SalesFacts {
            gross: rows.i64(i, 1)?,
            discounts: rows.i64(i, 2)?,
            returns: rows.i64(i, 3)?,
            shipping: rows.i64(i, 4)?,
            taxes: rows.i64(i, 5)?,
            orders: rows.i64(i, 6)?,
        };
        read.total = read.total.plus(facts);
        read.buckets.push(SalesBucket {
            start: rows.i64(i, 0)?,
            facts,
        });
    }
    Ok(read)
}

/// The bucketed and the total query of a metric.
pub fn sql(store: &BigQueryStore, q: &MetricQuery) -> Result<(Sql, Sql), StoreError> {
    let tz = zone_literal(&q.range.tz_name)?;
    let Source {
        rows: source, x, y, ..
    } = source(q, None);
    let mut with = events_in_range(store, &q.filters);
    if q.metric == Metric::Ltv {
        with = format!("{with}, {}", all_events(store));
    }
    let columns = format!("CAST(IFNULL({x}, 0) AS INT64) AS x, CAST(IFNULL({y}, 0) AS INT64) AS y");
    let params = params(q);
    Ok((
        Sql {
            text: format!(
                "{with} SELECT {} AS b, {columns} FROM ({source}) GROUP BY b ORDER BY b",
                bucket_expr(q.range.granularity, &tz)
            ),
            params: params.clone(),
        },
        Sql {
            text: format!("{with} SELECT 0 AS b, {columns} FROM ({source})"),
            params,
        },
    ))
}

fn params(q: &MetricQuery) -> Vec<(&'static str, Param)> {
    let mut p = super::range_params(&q.store_id, &q.range, q.include_bots, &q.filters);
    if let Some(c) = &q.currency {
        p.push(("currency", Param::String(c.clone())));
    } else if q.metric == Metric::Ltv || q.metric.in_currency() {
        p.push(("currency", Param::String(String::new())));
    }
    if let Some(id) = &q.product_id {
        p.push(("product", Param::String(id.clone())));
    }
    p
}

fn facts(rows: &Rows, family: Family) -> Result<Vec<BucketFacts>, StoreError> {
    let (b, x, y) = (rows.column("b")?, rows.column("x")?, rows.column("y")?);
    (0..rows.rows.len())
        .map(|r| {
            Ok(BucketFacts {
                start: rows.i64(r, b)?,
                facts: family.facts(rows.i64(r, x)?, rows.i64(r, y)?),
            })
        })
        .collect()
}

/// The facts of `q`.
pub async fn metric(store: &BigQueryStore, q: &MetricQuery) -> Result<MetricFacts, StoreError> {
    let family = q.metric.family();
    let (bucketed, total) = sql(store, q)?;
    let (rows, total_rows) = tokio::join!(
        store.client().read(&bucketed.text, &bucketed.params),
        store.client().read(&total.text, &total.params),
    );
    let total = facts(&total_rows?, family)?
        .into_iter()
        .next()
        .map_or_else(|| family.facts(0, 0), |t| t.facts);
    Ok(MetricFacts {
        buckets: facts(&rows?, family)?,
        total,
    })
}

/// The session's value of `by` (every dimension but `product`) from its first `v` (the dimension's column),
/// `utm` and `ref`, as on ClickHouse.
fn session_value(by: Dimension) -> (String, String) {
    use super::ranked::{PAGE, REFERRER_DOMAIN, first_in_session, source};
    let column = match by {
        Dimension::Country => "country",
        Dimension::Device => "device",
        Dimension::Browser => "browser",
        Dimension::Os => "os",
        Dimension::Medium => "utm_medium",
        Dimension::Campaign => "utm_campaign",
        Dimension::LandingPage => PAGE,
        Dimension::Source | Dimension::ReferrerDomain | Dimension::Product => "utm_source",
    };
    let value = match by {
        Dimension::Source => source(),
        Dimension::ReferrerDomain => REFERRER_DOMAIN.into(),
        _ => "v".into(),
    };
    (
        format!(
            "SELECT session_id AS sid, IFNULL({}, '') AS v, IFNULL({}, '') AS utm, IFNULL({}, '') AS ref \
             FROM ev WHERE session_id != '' GROUP BY session_id",
            first_in_session(column),
            first_in_session("utm_source"),
            first_in_session("referrer"),
        ),
        value,
    )
}

/// A broken-down metric's queries: per group and bucket (not for [`Groups::AllTotals`]) and per group
/// (not for [`Groups::All`]: its groups partition the rows, so each group's total is the sum of its
/// buckets, added up by [`metric_groups`] rather than scanned and billed a second time); `@keep` holds
/// the values kept apart, the rest has `o = 1`. The same groups as on ClickHouse (`group_sql` there),
/// which answers both in one `GROUPING SETS` pass and computes a whole session's value in place; here
/// every row joins its session's value (the same value: a test compares them).
pub fn group_sql(
    store: &BigQueryStore,
    q: &MetricQuery,
    by: Dimension,
    groups: Groups<'_>,
) -> Result<(Option<Sql>, Option<Sql>), StoreError> {
    let tz = zone_literal(&q.range.tz_name)?;
    let Source { rows: source, x, y } = source(q, Some(by));
    let rows = if by == Dimension::Product {
        format!("SELECT *, IFNULL(g, '') AS gv FROM ({source})")
    } else {
        let (sessions, value) = session_value(by);
        format!(
            "SELECT src.*, IFNULL(sd.g, '') AS gv FROM ({source}) AS src LEFT JOIN ( \
               SELECT sid, {value} AS g FROM ({sessions})) AS sd ON src.sid = sd.sid"
        )
    };
    let key = match groups {
        Groups::All | Groups::AllTotals => "0 AS o, gv AS k",
        Groups::Top(_) => {
            "IF(gv IN UNNEST(@keep), 0, 1) AS o, IF(gv IN UNNEST(@keep), gv, '') AS k"
        }
    };
    let columns = format!("CAST(IFNULL({x}, 0) AS INT64) AS x, CAST(IFNULL({y}, 0) AS INT64) AS y");
    let with = events_in_range(store, &q.filters);
    let mut params = params(q);
    if let Groups::Top(keep) = groups {
        params.push(("keep", Param::Strings(keep.to_vec())));
    }
    let bucketed = match groups {
        Groups::AllTotals => None,
        Groups::All | Groups::Top(_) => Some(Sql {
            text: format!(
                "{with} SELECT o, k, b, {columns} FROM (SELECT *, {key}, {} AS b FROM ({rows})) \
                 GROUP BY o, k, b ORDER BY o, k, b",
                bucket_expr(q.range.granularity, &tz)
            ),
            params: params.clone(),
        }),
    };
    let total = (groups != Groups::All).then(|| Sql {
        text: format!(
            "{with} SELECT o, k, 0 AS b, {columns} FROM (SELECT *, {key} FROM ({rows})) \
             GROUP BY o, k ORDER BY o, k"
        ),
        params,
    });
    Ok((bucketed, total))
}

/// The facts of `q` per group of `by`.
pub async fn metric_groups(
    store: &BigQueryStore,
    q: &MetricQuery,
    by: Dimension,
    groups: Groups<'_>,
) -> Result<Vec<GroupFacts>, StoreError> {
    let family = q.metric.family();
    let (bucketed, total) = group_sql(store, q, by, groups)?;
    let run = |sql: Option<Sql>| async move {
        match sql {
            Some(sql) => store.client().read(&sql.text, &sql.params).await.map(Some),
            None => Ok(None),
        }
    };
    let (rows, totals) = tokio::join!(run(bucketed), run(total));
    let key = |rows: &Rows, r: usize| -> Result<GroupKey, StoreError> {
        Ok(if rows.i64(r, rows.column("o")?)? == 1 {
            GroupKey::Other
        } else {
            GroupKey::Value(rows.string(r, rows.column("k")?))
        })
    };
    let mut out = Vec::new();
    if let Some(totals) = totals? {
        for (r, t) in facts(&totals, family)?.into_iter().enumerate() {
            out.push(GroupFacts {
                key: key(&totals, r)?,
                buckets: Vec::new(),
                total: t.facts,
            });
        }
    }
    if let Some(rows) = rows? {
        for (r, b) in facts(&rows, family)?.into_iter().enumerate() {
            let k = key(&rows, r)?;
            let at = match out.iter().position(|g: &GroupFacts| g.key == k) {
                Some(at) => at,
                // `All` has no totals read: each group starts at zero and adds up its buckets.
                None if groups == Groups::All => {
                    out.push(GroupFacts {
                        key: k,
                        buckets: Vec::new(),
                        total: family.zero(),
                    });
                    out.len() - 1
                }
                None => continue,
            };
            let g = &mut out[at];
            if groups == Groups::All {
                g.total = g.total.plus(b.facts);
            }
            g.buckets.push(b);
        }
    }
    Ok(out)
}
