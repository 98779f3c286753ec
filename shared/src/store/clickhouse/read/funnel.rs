//! Funnels with ClickHouse's `windowFunnel`, on the step events only, per session or customer.

use serde::Deserialize;

use super::{Binds, IN_RANGE, STORE_AND_BOTS, Sql};
use crate::error::StoreError;
use crate::query::funnel::{FunnelCounts, FunnelKey, FunnelQuery};
use crate::store::clickhouse::{ClickHouseStore, classify};

#[derive(Debug, Deserialize, clickhouse::Row)]
struct FunnelRow {
    reached: Vec<u64>,
    medians: Vec<f64>,
}

pub(super) fn sql(q: &FunnelQuery) -> Sql {
    let n = q.steps.len();
    let key = match q.by {
        FunnelKey::Session => "session_id",
        FunnelKey::Customer => "customer_id",
    };
    let list = |f: &dyn Fn(usize) -> String, range: std::ops::Range<usize>| {
        range.map(f).collect::<Vec<_>>().join(", ")
    };
    let conditions = list(&|i| format!("type = {{s{i}:String}}"), 0..n);
    let firsts = list(
        &|i| format!("minIf(timestamp, type = {{s{i}:String}}) AS t{i}"),
        0..n,
    );
    let reached = list(&|k| format!("countIf(level >= {k})"), 1..n + 1);
    // Median seconds from the previous step's first occurrence, among keys reaching the step.
    let medians = list(
        &|i| {
            if i == 0 {
                "nan".to_owned()
            } else {
                format!(
                    "quantileExactIf(0.5)(toFloat64(dateDiff('millisecond', t{p}, t{i})) / 1000, level >= {k})",
                    p = i - 1,
                    k = i + 1
                )
            }
        },
        0..n,
    );
    let mode = if q.strict { ", 'strict_order'" } else { "" };
    Sql {
        text: format!(
            "SELECT [{reached}] AS reached, [{medians}] AS medians FROM ( \
               SELECT {key} AS k, windowFunnel({{window:UInt64}}{mode})(toDateTime(timestamp), {conditions}) AS level, \
                 {firsts} \
               FROM commerce_events \
               WHERE {STORE_AND_BOTS} AND type IN {{steps:Array(String)}} AND {IN_RANGE} AND {key} != '' \
               GROUP BY k)"
        ),
        binds: Binds {
            window_secs: Some(q.window_secs),
            steps: q.steps.clone(),
            tz: None,
            ..Binds::of_range(&q.store_id, &q.range, q.include_bots)
        },
    }
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &FunnelQuery,
) -> Result<FunnelCounts, StoreError> {
    let row = sql(q)
        .query(store)
        .fetch_one::<FunnelRow>()
        .await
        .map_err(classify)?;
    Ok(FunnelCounts {
        reached: row.reached,
        median_secs: row
            .medians
            .into_iter()
            .map(|m| m.is_finite().then_some(m))
            .collect(),
    })
}
