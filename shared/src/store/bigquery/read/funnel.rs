//! Funnels on BigQuery without `windowFunnel`: the same levels as ClickHouse's default mode, computed as
//! chains. For each key (session or customer), every event of step 1 starts a chain; each next step takes
//! the earliest event of that step at or after the chain's last one (second resolution, as
//! `windowFunnel(toDateTime(timestamp))`) and no later than the start plus the window. Taking the earliest
//! next event is optimal for a given start, so a key reaches step `i` exactly when some chain does: what
//! `windowFunnel`'s scan computes. Medians are those of ClickHouse's `quantileExact(0.5)` (the element at
//! index ⌊n/2⌋ of the sorted values) of the time between the first occurrences of consecutive steps,
//! among keys that reached the later step.
//!
//! Strict order (`mode=strict`: another step's event between two steps breaks the chain) is a scan whose
//! state SQL does not express simply; it is not built on BigQuery yet and answers an error saying so.

use super::{Sql, events_in_range, micros};
use crate::error::StoreError;
use crate::query::funnel::{FunnelCounts, FunnelKey, FunnelQuery};
use crate::store::bigquery::BigQueryStore;
use crate::store::bigquery::client::Param;

pub fn sql(store: &BigQueryStore, q: &FunnelQuery) -> Result<Sql, StoreError> {
    if q.strict {
        return Err(StoreError::Unsupported(
            "mode=strict funnels are not available on BigQuery yet; use the default mode".into(),
        ));
    }
    let n = q.steps.len();
    let key = match q.by {
        FunnelKey::Session => "session_id",
        FunnelKey::Customer => "customer_id",
    };
    let window = q.window_secs;
    let mut with = vec![
        events_in_range(store, false),
        format!(
            "e AS (SELECT {key} AS k, TIMESTAMP_TRUNC(timestamp, SECOND) AS ts, timestamp AS raw, type \
             FROM ev WHERE type IN UNNEST(@steps) AND {key} != '')"
        ),
        "c0 AS (SELECT k, ts AS start, ts AS t FROM e WHERE type = @s0)".to_owned(),
    ];
    for i in 1..n {
        with.push(format!(
            "c{i} AS (SELECT c.k, c.start, MIN(e.ts) AS t FROM c{p} AS c JOIN e \
             ON e.k = c.k AND e.type = @s{i} AND e.ts >= c.t \
             AND e.ts <= TIMESTAMP_ADD(c.start, INTERVAL {window} SECOND) \
             GROUP BY c.k, c.start)",
            p = i - 1
        ));
    }
    let levels = (0..n)
        .map(|i| format!("SELECT DISTINCT k, {} AS l FROM c{i}", i + 1))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    with.push(format!(
        "lv AS (SELECT k, MAX(l) AS level FROM ({levels}) GROUP BY k)"
    ));
    let firsts = (0..n)
        .map(|i| format!("MIN(IF(type = @s{i}, raw, NULL)) AS t{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    with.push(format!("f AS (SELECT k, {firsts} FROM e GROUP BY k)"));
    let reached = (0..n)
        .map(|i| format!("(SELECT COUNT(*) FROM lv WHERE level >= {}) AS r{i}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let medians = (1..n)
        .map(|i| {
            format!(
                "(SELECT ARRAY_AGG(d ORDER BY d)[SAFE_OFFSET(DIV(COUNT(*), 2))] FROM ( \
                   SELECT TIMESTAMP_DIFF(f.t{i}, f.t{p}, MILLISECOND) / 1000 AS d \
                   FROM f JOIN lv USING (k) WHERE lv.level >= {l})) AS m{i}",
                p = i - 1,
                l = i + 1
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut params = vec![
        ("store", Param::String(q.store_id.clone())),
        ("from", micros(q.range.from_ms())),
        ("to", micros(q.range.to_ms())),
        ("bots", Param::Bool(q.include_bots)),
        ("steps", Param::Strings(q.steps.clone())),
    ];
    const STEP_NAMES: [&str; 10] = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9"];
    for (name, step) in STEP_NAMES.iter().zip(&q.steps) {
        params.push((name, Param::String(step.clone())));
    }
    let with = with.join(", ");
    Ok(Sql {
        text: format!("{with} SELECT {reached}, {medians}"),
        params,
    })
}

pub async fn funnel(store: &BigQueryStore, q: &FunnelQuery) -> Result<FunnelCounts, StoreError> {
    let sql = sql(store, q)?;
    let rows = store.client().query(&sql.text, &sql.params).await?;
    let n = q.steps.len();
    let reached = (0..n)
        .map(|i| Ok(rows.i64(0, rows.column(&format!("r{i}"))?)?.max(0) as u64))
        .collect::<Result<_, StoreError>>()?;
    let mut median_secs = vec![None];
    for i in 1..n {
        let col = rows.column(&format!("m{i}"))?;
        median_secs.push(match rows.cell(0, col) {
            None => None,
            Some(_) => Some(rows.f64(0, col)?),
        });
    }
    Ok(FunnelCounts {
        reached,
        median_secs,
    })
}
