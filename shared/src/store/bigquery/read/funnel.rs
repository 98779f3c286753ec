//! Funnels on BigQuery without `windowFunnel`: the same levels as ClickHouse's default mode, computed as
//! chains. For each key (session or customer), every event of step 1 starts a chain; each next step takes
//! the earliest event of that step at or after the chain's last one (second resolution, as
//! `windowFunnel(toDateTime(timestamp))`) and no later than the start plus the window. Taking the earliest
//! next event is optimal for a given start, so a key reaches step `i` exactly when some chain does: what
//! `windowFunnel`'s scan computes. Medians are those of ClickHouse's `quantileExact(0.5)` (the element at
//! index ⌊n/2⌋ of the sorted values) of the time between the first occurrences of consecutive steps,
//! among keys that reached the later step.
//!
//! Events are numbered per key in `windowFunnel`'s order (second, then step), one row per step an event
//! matches (a repeated step type counts the same event for both, as `windowFunnel` does). Strict order
//! (`mode=strict`): `windowFunnel(…, 'strict_order')` stops at the first event, after the first step-1
//! event, of a step whose previous step was not reached yet; the level is what was reached before it.
//! Here: where each step is first reached (the earliest chain), the first such breaking event, and the
//! steps reached before it.
//!
//! The period bounds the entry: a step-1 event starts a chain only before `@to`; later steps count while
//! inside the window even after `@to` (events are read until `@until`, the period's end plus the window).
//! A step-1 event after `@to` takes no part at all (not even as a strict-order break), as an event matching
//! no condition takes none in `windowFunnel`; it still counts as a later step if that step repeats step 1.

use super::{Sql, events_from_until, micros};
use crate::error::StoreError;
use crate::query::funnel::{FunnelCounts, FunnelKey, FunnelQuery};
use crate::store::bigquery::BigQueryStore;
use crate::store::bigquery::client::Param;

pub fn sql(store: &BigQueryStore, q: &FunnelQuery) -> Result<Sql, StoreError> {
    let n = q.steps.len();
    let key = match q.by {
        FunnelKey::Session => "session_id",
        FunnelKey::Customer => "customer_id",
    };
    let window = q.window_secs;
    // `e`: one row per (event, step it matches), numbered in `windowFunnel`'s order: by second, then step.
    // The steps as a table (`UNNEST(@steps) WITH OFFSET` does not translate on the emulator).
    let steps = (0..n)
        .map(|i| format!("SELECT {i} AS idx, @s{i} AS step"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let mut with = vec![
        events_from_until(store, "@until", &Default::default()),
        format!("steps AS ({steps})"),
        format!(
            "e AS (SELECT k, ts, raw, idx, ROW_NUMBER() OVER (PARTITION BY k ORDER BY ts, idx) AS rn FROM ( \
               SELECT {key} AS k, TIMESTAMP_TRUNC(timestamp, SECOND) AS ts, timestamp AS raw, steps.idx AS idx \
               FROM ev JOIN steps ON ev.type = steps.step \
               WHERE {key} != '' AND NOT (steps.idx = 0 AND ev.timestamp >= @to)))"
        ),
        "c0 AS (SELECT k, ts AS start, rn AS r FROM e WHERE idx = 0)".to_owned(),
    ];
    // `c{i}`: per chain start, the earliest event of step i after the chain's step i-1 and within the
    // window of its start.
    for i in 1..n {
        with.push(format!(
            "c{i} AS (SELECT c.k, c.start, MIN(e.rn) AS r FROM c{p} AS c JOIN e \
             ON e.k = c.k AND e.idx = {i} AND e.rn > c.r \
             AND e.ts <= TIMESTAMP_ADD(c.start, INTERVAL {window} SECOND) \
             GROUP BY c.k, c.start)",
            p = i - 1
        ));
    }
    // `reach`: where each step is first reached by any chain (its event number), per key.
    let reach = (0..n)
        .map(|i| format!("SELECT k, {i} AS step, MIN(r) AS r FROM c{i} GROUP BY k"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    with.push(format!("reach AS ({reach})"));
    if q.strict {
        // Strict order stops at the first event (after the first step-1 event) of a step whose previous
        // step was not reached before it; only what was reached before that event counts.
        with.push(
            "stop AS (SELECT e.k, MIN(e.rn) AS p FROM e \
             JOIN (SELECT k, r AS first FROM reach WHERE step = 0) AS f ON f.k = e.k \
             LEFT JOIN reach AS prev ON prev.k = e.k AND prev.step = e.idx - 1 \
             WHERE e.idx >= 1 AND e.rn > f.first AND (prev.r IS NULL OR prev.r > e.rn) \
             GROUP BY e.k)"
                .to_owned(),
        );
        with.push(
            "lv AS (SELECT reach.k, MAX(reach.step) + 1 AS level FROM reach LEFT JOIN stop USING (k) \
             WHERE stop.p IS NULL OR reach.r < stop.p GROUP BY reach.k)"
                .to_owned(),
        );
    } else {
        with.push("lv AS (SELECT k, MAX(step) + 1 AS level FROM reach GROUP BY k)".to_owned());
    }
    let firsts = (0..n)
        .map(|i| format!("MIN(IF(idx = {i}, raw, NULL)) AS t{i}"))
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
        ("until", micros(q.entries_until_ms())),
        ("bots", Param::Bool(q.include_bots)),
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
    let rows = store.client().read(&sql.text, &sql.params).await?;
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
