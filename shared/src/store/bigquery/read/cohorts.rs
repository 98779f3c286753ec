//! Cohort cells on BigQuery, as on ClickHouse: customers acquired in the range (first order ever inside
//! it), by the week (Monday) or month of acquisition in the query's zone, and their orders in each
//! interval after it.

use super::{
    CUSTOMER_ORDERS_WITH_FIRST, Sql, all_events, events_in_range, local_start, micros, zone_literal,
};
use crate::error::StoreError;
use crate::query::cohorts::{CohortCell, CohortQuery};
use crate::query::params::Granularity;
use crate::store::bigquery::BigQueryStore;
use crate::store::bigquery::client::Param;

pub fn sql(store: &BigQueryStore, q: &CohortQuery) -> Result<Sql, StoreError> {
    let tz = zone_literal(&q.range.tz_name)?;
    let g = match q.range.granularity {
        Granularity::Week => Granularity::Week,
        _ => Granularity::Month,
    };
    let (first, order) = (
        local_start("f.first_ts", g, &tz),
        local_start("o.ts", g, &tz),
    );
    let offset = match g {
        Granularity::Week => format!("DIV(DATETIME_DIFF({order}, {first}, DAY), 7)"),
        _ => format!("DATETIME_DIFF({order}, {first}, MONTH)"),
    };
    let text = format!(
        "{}, {} SELECT UNIX_SECONDS(TIMESTAMP({first}, {tz})) AS cohort, {offset} AS k, \
           COUNT(DISTINCT o.cust) AS customers, SUM(IF(o.cur = @currency, o.amt, 0)) AS revenue \
         FROM {CUSTOMER_ORDERS_WITH_FIRST} WHERE f.first_ts >= @from AND f.first_ts < @to \
         GROUP BY cohort, k ORDER BY cohort, k",
        events_in_range(store, &Default::default()),
        all_events(store)
    );
    Ok(Sql {
        text,
        params: vec![
            ("store", Param::String(q.store_id.clone())),
            ("from", micros(q.range.from_ms())),
            ("to", micros(q.range.to_ms())),
            ("bots", Param::Bool(q.include_bots)),
            ("currency", Param::String(q.currency.clone())),
        ],
    })
}

/// The cells of `q`, by cohort and offset.
pub async fn cohorts(
    store: &BigQueryStore,
    q: &CohortQuery,
) -> Result<Vec<CohortCell>, StoreError> {
    let sql = sql(store, q)?;
    let rows = store.client().read(&sql.text, &sql.params).await?;
    let (cohort, k, customers, revenue) = (
        rows.column("cohort")?,
        rows.column("k")?,
        rows.column("customers")?,
        rows.column("revenue")?,
    );
    (0..rows.rows.len())
        .map(|r| {
            Ok(CohortCell {
                cohort_start: rows.i64(r, cohort)?,
                offset: rows.i64(r, k)?,
                customers: rows.i64(r, customers)?,
                revenue: rows.i64(r, revenue)?,
            })
        })
        .collect()
}
