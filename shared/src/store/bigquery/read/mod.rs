//! The read side on BigQuery, one file per family as in `query/` (metrics, ranked, cohorts, funnel, live), each the
//! ClickHouse adapter's sources and measures in BigQuery's SQL, so that both warehouses answer the same
//! facts (`tests/it/bigquery.rs` compares them on the same events).
//!
//! Every request value is a named query parameter (`@store`, `@from`, …); the only text composed here
//! comes from allow-lists (metric, granularity) and the time zone, an IANA name already resolved by the
//! query side and checked again by [`zone_literal`] (the emulator cannot translate `TIMESTAMP(datetime,
//! @param)`). Every read starts from [`events_in_range`]: the store's rows in `[from, to)` (partition
//! pruning on `DATE(timestamp)`, cluster pruning on `store_id`), bots excluded unless asked for, each
//! event once ([`ONE_ROW_PER_EVENT`]). Distinct counts are exact (`COUNT(DISTINCT …)`; never
//! `APPROX_COUNT_DISTINCT`, approximate on BigQuery and exact only on the emulator).

mod attribution;
mod cohorts;
mod funnel;
mod live;
mod metrics;
mod products;
mod ranked;

pub use attribution::attribution;
pub use cohorts::{cohorts, sql as cohorts_sql};
pub use funnel::{funnel, sql as funnel_sql};
pub use live::{live, sql as live_sql};
pub use metrics::{
    group_sql as metric_group_sql, metric, metric_groups, money_by_currency, money_by_currency_sql,
    sales, sales_sql, sql as metric_sql,
};
pub use products::{product_performance, sql as products_sql};
pub use ranked::{ranked, sql as ranked_sql};

use super::client::Param;
use super::{BigQueryStore, EVENTS_TABLE, ONE_ROW_PER_EVENT};
use crate::error::StoreError;
use crate::query::ReadStore;
use crate::query::cohorts::{CohortCell, CohortQuery};
use crate::query::funnel::{FunnelCounts, FunnelQuery};
use crate::query::live::{LiveData, LiveQuery};
use crate::query::metrics::{MetricFacts, MetricQuery};
use crate::query::params::{Filters, Granularity};
use crate::query::ranked::{RankedQuery, RankedRow};

/// A read's SQL and its named parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Sql {
    pub text: String,
    pub params: Vec<(&'static str, Param)>,
}

/// `WITH ev AS (…)`: the store's events in the range, each once, that meet the read's [`Filters`].
fn events_in_range(store: &BigQueryStore, f: &Filters) -> String {
    events_from_until(store, "@to", f)
}

/// `WITH ev AS (…)` over `[@from, end)`; funnels read past the period's end (`@until`) for later steps.
///
/// With filters, `ev0` holds every event of the range and `ev` those that meet the filters: `@country`,
/// `@device` and `@browser` on the event's columns, `@source`, `@landing_page` and `@referrer` on its
/// session's source, entry page and first referrer's domain over `ev0`, as on ClickHouse.
fn events_from_until(store: &BigQueryStore, end: &str, f: &Filters) -> String {
    let all = format!(
        "SELECT * FROM {} WHERE store_id = @store AND (@bots OR NOT is_bot) \
         AND timestamp >= @from AND timestamp < {end} {ONE_ROW_PER_EVENT}",
        store.table(EVENTS_TABLE)
    );
    if *f == Filters::default() {
        return format!("WITH ev AS ({all})");
    }
    let mut filtered = String::from("SELECT * FROM ev0 WHERE TRUE");
    for (given, column) in [
        (f.country.is_some(), "country"),
        (f.device.is_some(), "device"),
        (f.browser.is_some(), "browser"),
    ] {
        if given {
            filtered.push_str(&format!(" AND {column} = @{column}"));
        }
    }
    if f.on_sessions() {
        filtered.push_str(&format!(
            " AND session_id IN ({})",
            ranked::sessions_matching("ev0", f)
        ));
    }
    format!("WITH ev0 AS ({all}), ev AS ({filtered})")
}

/// The parameters every read of [`events_in_range`] binds: `@store`, `@from`, `@to`, `@bots` and those of
/// the filters given; a read adds its own (`@currency`, `@limit`, …) after them.
fn range_params(
    store_id: &str,
    range: &crate::query::params::Range,
    include_bots: bool,
    f: &Filters,
) -> Vec<(&'static str, Param)> {
    let mut params = vec![
        ("store", Param::String(store_id.to_owned())),
        ("from", micros(range.from_ms())),
        ("to", micros(range.to_ms())),
        ("bots", Param::Bool(include_bots)),
    ];
    params.extend(filter_params(f));
    params
}

/// The parameters of the filters given.
fn filter_params(f: &Filters) -> Vec<(&'static str, Param)> {
    [
        ("country", &f.country),
        ("device", &f.device),
        ("browser", &f.browser),
        ("source", &f.source),
        ("landing_page", &f.landing_page),
        ("referrer", &f.referrer),
    ]
    .into_iter()
    .filter_map(|(name, v)| v.as_ref().map(|v| (name, Param::String(v.clone()))))
    .collect()
}

/// `all_ev AS (…)`: every event of the store (any time), each once; for first orders and stock.
fn all_events(store: &BigQueryStore) -> String {
    format!(
        "all_ev AS (SELECT * FROM {} WHERE store_id = @store AND (@bots OR NOT is_bot) {ONE_ROW_PER_EVENT})",
        store.table(EVENTS_TABLE)
    )
}

/// `o` (each order of a customer in `ev` once: `cust`, `ts`, `amt`, `cur`) joined to `f` (the customer's
/// first order ever in `all_ev`: `first_ts`): the source of `ltv`, `new_vs_returning` and cohorts.
const CUSTOMER_ORDERS_WITH_FIRST: &str = "( \
       SELECT order_id, ANY_VALUE(customer_id) AS cust, MIN(timestamp) AS ts, ANY_VALUE(amount) AS amt, \
       ANY_VALUE(currency) AS cur FROM ev WHERE type = 'order.completed' AND customer_id != '' \
       GROUP BY order_id) AS o \
     INNER JOIN ( \
       SELECT customer_id, MIN(timestamp) AS first_ts FROM all_ev \
       WHERE type = 'order.completed' AND customer_id != '' GROUP BY customer_id) AS f \
     ON o.cust = f.customer_id";

/// A visitor: `customerId`, else `anonymousId`, else `sessionId`.
const VISITOR: &str =
    "IF(customer_id != '', customer_id, IF(anonymous_id != '', anonymous_id, session_id))";

/// The zone as a SQL string literal: IANA names only (letters, digits, `/`, `_`, `+`, `-`).
fn zone_literal(tz: &str) -> Result<String, StoreError> {
    let safe = !tz.is_empty()
        && tz.len() <= 64
        && tz
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '+' | '-'));
    if safe {
        Ok(format!("'{tz}'"))
    } else {
        Err(StoreError::Rejected(format!(
            "{tz:?} is not a time zone name"
        )))
    }
}

/// The local start (a DATETIME in `tz`, a literal from [`zone_literal`]) of the hour, day, Monday week or
/// month holding the TIMESTAMP `ts`: the local time truncated, so DST and half-hour zones come out right.
fn local_start(ts: &str, g: Granularity, tz: &str) -> String {
    let local = format!("DATETIME({ts}, {tz})");
    match g {
        Granularity::Hour => format!("DATETIME_TRUNC({local}, HOUR)"),
        Granularity::Day => format!("DATETIME_TRUNC({local}, DAY)"),
        Granularity::Week => format!(
            "DATETIME_SUB(DATETIME_TRUNC({local}, DAY), \
             INTERVAL MOD(EXTRACT(DAYOFWEEK FROM {local}) + 5, 7) DAY)"
        ),
        Granularity::Month => format!("DATETIME_TRUNC({local}, MONTH)"),
    }
}

/// A TIMESTAMP parameter from Unix milliseconds.
fn micros(ms: i64) -> Param {
    Param::Timestamp(ms * 1000)
}

/// The store's most used order currency over the 90 days before `now` (humans only unless `include_bots`).
pub async fn main_currency(
    store: &BigQueryStore,
    store_id: &str,
    now: jiff::Timestamp,
    include_bots: bool,
) -> Result<Option<String>, StoreError> {
    const DAYS_90_MS: i64 = 90 * 86_400_000;
    let sql = format!(
        "SELECT currency FROM (SELECT currency, id FROM {} WHERE store_id = @store AND (@bots OR NOT is_bot) \
         AND type = 'order.completed' AND timestamp >= @from {ONE_ROW_PER_EVENT}) \
         GROUP BY currency ORDER BY COUNT(*) DESC, currency LIMIT 1",
        store.table(EVENTS_TABLE)
    );
    let rows = store
        .client()
        .query(
            &sql,
            &[
                ("store", Param::String(store_id.into())),
                ("from", micros(now.as_millisecond() - DAYS_90_MS)),
                ("bots", Param::Bool(include_bots)),
            ],
        )
        .await?;
    Ok(rows.cell(0, 0).map(str::to_owned))
}

/// The latest non-empty `productName` per requested product among the window's `product.viewed` events
/// ([`crate::query::names`]); duplicates of an event carry the same name, so no deduplication is needed.
pub fn product_names_sql(store: &BigQueryStore, q: &crate::query::names::NamesQuery) -> Sql {
    Sql {
        text: format!(
            "SELECT product_id, MAX_BY(n, timestamp) AS name FROM ( \
               SELECT product_id, timestamp, JSON_VALUE(properties, '$.productName') AS n FROM {} \
               WHERE store_id = @store AND type = 'product.viewed' AND timestamp >= @from \
                 AND timestamp < @to AND product_id IN UNNEST(@products)) \
             WHERE n IS NOT NULL AND n != '' GROUP BY product_id",
            store.table(EVENTS_TABLE)
        ),
        params: vec![
            ("store", Param::String(q.store_id.clone())),
            ("from", micros(q.from.as_millisecond())),
            ("to", micros(q.to.as_millisecond())),
            ("products", Param::Strings(q.ids.clone())),
        ],
    }
}

async fn product_names(
    store: &BigQueryStore,
    q: &crate::query::names::NamesQuery,
) -> Result<Vec<crate::query::names::ProductName>, StoreError> {
    let sql = product_names_sql(store, q);
    let rows = store.client().read(&sql.text, &sql.params).await?;
    Ok((0..rows.rows.len())
        .map(|i| crate::query::names::ProductName {
            product_id: rows.string(i, 0),
            name: rows.string(i, 1),
        })
        .collect())
}

#[async_trait::async_trait]
impl ReadStore for BigQueryStore {
    async fn metric(&self, q: &MetricQuery) -> Result<MetricFacts, StoreError> {
        metric(self, q).await
    }

    async fn metric_groups(
        &self,
        q: &MetricQuery,
        by: crate::query::breakdown::Dimension,
        groups: crate::query::breakdown::Groups<'_>,
    ) -> Result<Vec<crate::query::breakdown::GroupFacts>, StoreError> {
        metric_groups(self, q, by, groups).await
    }

    async fn money_by_currency(
        &self,
        q: &MetricQuery,
    ) -> Result<Vec<crate::query::convert::CurrencyDayFacts>, StoreError> {
        money_by_currency(self, q).await
    }

    async fn exchange_rates(
        &self,
        from: jiff::civil::Date,
        to: jiff::civil::Date,
    ) -> Result<Vec<crate::fx::DailyRate>, StoreError> {
        crate::store::bigquery::fx::exchange_rates(self, from, to).await
    }

    async fn main_currency(
        &self,
        store_id: &str,
        now: jiff::Timestamp,
        include_bots: bool,
    ) -> Result<Option<String>, StoreError> {
        main_currency(self, store_id, now, include_bots).await
    }

    async fn product_performance(
        &self,
        q: &crate::query::products::ProductQuery,
    ) -> Result<Vec<crate::query::products::ProductFacts>, StoreError> {
        product_performance(self, q).await
    }

    async fn ranked(&self, q: &RankedQuery) -> Result<Vec<RankedRow>, StoreError> {
        ranked(self, q).await
    }

    async fn product_names(
        &self,
        q: &crate::query::names::NamesQuery,
    ) -> Result<Vec<crate::query::names::ProductName>, StoreError> {
        product_names(self, q).await
    }

    async fn sales(
        &self,
        q: &crate::query::sales::SalesQuery,
    ) -> Result<crate::query::sales::SalesRead, StoreError> {
        sales(self, q).await
    }

    async fn attribution(
        &self,
        q: &crate::query::attribution::AttributionQuery,
    ) -> Result<crate::query::attribution::AttributionFacts, StoreError> {
        attribution(self, q).await
    }

    async fn cohorts(&self, q: &CohortQuery) -> Result<Vec<CohortCell>, StoreError> {
        cohorts(self, q).await
    }

    async fn funnel(&self, q: &FunnelQuery) -> Result<FunnelCounts, StoreError> {
        funnel(self, q).await
    }

    async fn live(&self, q: &LiveQuery) -> Result<LiveData, StoreError> {
        live(self, q).await
    }
}
