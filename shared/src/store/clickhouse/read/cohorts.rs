//! Cohort cells: customers acquired in the range (first order ever inside it), by acquisition interval,
//! and their orders in each interval after it.

use serde::Deserialize;

use super::{ACQUIRED_IN_RANGE, Binds, Sql, customer_orders, with_first_orders};
use crate::error::StoreError;
use crate::query::cohorts::{CohortCell, CohortQuery};
use crate::query::params::Granularity;
use crate::store::clickhouse::ClickHouseStore;

#[derive(Debug, Deserialize, clickhouse::Row)]
struct CellRow {
    cohort: i64,
    k: i64,
    customers: i64,
    revenue: i64,
}

pub(super) fn sql(q: &CohortQuery) -> Sql {
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
    Sql {
        text: format!(
            "SELECT toInt64(toUnixTimestamp(toDateTime({start}, {{tz:String}}))) AS cohort, toInt64({offset}) AS k, \
               toInt64(uniqExact(o.cust)) AS customers, \
               toInt64(sumIf(o.amt, o.cur = {{currency:String}})) AS revenue \
             FROM {} WHERE {ACQUIRED_IN_RANGE} \
             GROUP BY cohort, k ORDER BY cohort, k",
            with_first_orders(&customer_orders(&Default::default()), q.include_bots)
        ),
        binds: Binds {
            currency: Some(q.currency.clone()),
            ..Binds::of_range(&q.store_id, &q.range, q.include_bots)
        },
    }
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &CohortQuery,
) -> Result<Vec<CohortCell>, StoreError> {
    let rows = sql(q).fetch_all::<CellRow>(store, "cohorts").await?;
    Ok(rows
        .into_iter()
        .map(|r| CohortCell {
            cohort_start: r.cohort,
            offset: r.k,
            customers: r.customers,
            revenue: r.revenue,
        })
        .collect())
}
