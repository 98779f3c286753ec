//! ## track
//!
//! In one run, against the ClickHouse at `CLICKHOUSE_URL` (default http://127.0.0.1:8123), each side in a
//! fresh database:
//! - **ours**: the demo events are POSTed to the local API (`/analytics/events`, 500 per request, 8 in
//!   flight) and the clock stops when all of them are counted in ClickHouse; once with the memory buffer
//!   and once with the durable buffer (`durable_buffer`: each request's events fsynced to the write-ahead
//!   log before its 202), alternating, two runs each, best of each kept;
//! - **baseline**: the same rows (as our pipeline stores them) are POSTed straight to ClickHouse with
//!   `INSERT INTO commerce_events FORMAT JSONEachRow`, 500 rows per request, 8 in flight.
//!
//! Prints events/s and request latency (p50/p99) for each, the ratio ours / baseline for each buffer, and
//! the durable buffer's cost as durable / memory.

use std::time::{Duration, Instant};

use commerce_analytics::event::{RequestMeta, Validator};

use super::{
    ApiRun, BATCH, BenchResult, IN_FLIGHT, config_with, demo_bodies, migrated, percentile_ms,
    row_json, send_all, through_api, urlencode, wait_for_count,
};

/// Runs the benchmark with `events` demo events.
pub async fn run(url: &str, events: usize) -> BenchResult {
    eprintln!("generating {events} demo events ...");
    let (wire, bodies) = demo_bodies(events, 7, 90);
    let n = wire.len();

    // --- ours: memory and durable buffer, alternating, best of two each ------------------------------
    let mut best: [Option<ApiRun>; 2] = [None, None];
    let mut dbs = Vec::new();
    for round in 0..2 {
        for (side, durable) in ["false", "true"].into_iter().enumerate() {
            let db = format!("bench_ours_{}_{round}_{durable}", std::process::id());
            let cfg = config_with(url, &db, &[("ANALYTICS_DURABLE_BUFFER", durable)])?;
            eprintln!("round {} of 2, durable buffer {durable} ...", round + 1);
            let run = through_api(&cfg, &bodies, n).await?;
            if best[side]
                .as_ref()
                .is_none_or(|b| run.stored_at < b.stored_at)
            {
                best[side] = Some(run);
            }
            dbs.push(db);
        }
    }
    let [Some(memory), Some(durable)] = best else {
        return Err("no run".into());
    };

    // --- baseline ---------------------------------------------------------------------------------
    let db_base = format!("bench_base_{}", std::process::id());
    let (base_cfg, base_store) = migrated(url, &db_base).await?;
    let v = Validator::from_config(&base_cfg);
    let now = time::OffsetDateTime::now_utc();
    let rows: Vec<String> = wire
        .chunks(BATCH)
        .map(|chunk| {
            let mut out = String::new();
            for w in chunk {
                let ev = v
                    .validate(w.clone(), "bench", &RequestMeta::default(), now)
                    .expect("valid");
                out.push_str(&row_json(&ev));
                out.push('\n');
            }
            out
        })
        .collect();
    let insert_url = format!(
        "{url}/?query={}",
        urlencode(&format!(
            "INSERT INTO {db_base}.commerce_events FORMAT JSONEachRow"
        ))
    );
    let started = Instant::now();
    let client = reqwest::Client::new();
    send_all(&rows, |body| client.post(&insert_url).body(body), 200).await?;
    wait_for_count(&base_store, "bench", n as u64).await?;
    let base = started.elapsed();

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("events: {n} in batches of {BATCH}, {IN_FLIGHT} requests in flight");
    for (name, run) in [("memory buffer ", &memory), ("durable buffer", &durable)] {
        println!(
            "ours, {name} (API -> ClickHouse, until counted): {:>9.0} events/s  ({:.2?}; all 202s after {:.2?}; request p50 {:.1} ms, p99 {:.1} ms)",
            rate(run.stored_at),
            run.stored_at,
            run.accepted_at,
            percentile_ms(&run.latencies, 50.0),
            percentile_ms(&run.latencies, 99.0),
        );
    }
    println!(
        "baseline (INSERT ... FORMAT JSONEachRow over HTTP):    {:>9.0} events/s  ({:.2?})",
        rate(base),
        base
    );
    println!(
        "ratio ours / baseline: memory buffer {:.2}, durable buffer {:.2}",
        rate(memory.stored_at) / rate(base),
        rate(durable.stored_at) / rate(base)
    );
    println!(
        "durable / memory buffer: throughput {:.2}, request p99 {:.2}x",
        rate(durable.stored_at) / rate(memory.stored_at),
        percentile_ms(&durable.latencies, 99.0) / percentile_ms(&memory.latencies, 99.0)
    );

    dbs.push(db_base.clone());
    for db in &dbs {
        base_store
            .client()
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await?;
    }
    Ok(())
}
