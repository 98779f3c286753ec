//! ## track
//!
//! In one run, against the ClickHouse at `CLICKHOUSE_URL` (default http://127.0.0.1:8123), each side in a
//! fresh database:
//! - **ours**: the demo events are POSTed to the local API (`/analytics/events`, 500 per request, 8 in
//!   flight) and the clock stops when all of them are counted in ClickHouse;
//! - **baseline**: the same rows (as our pipeline stores them) are POSTed straight to ClickHouse with
//!   `INSERT INTO commerce_events FORMAT JSONEachRow`, 500 rows per request, 8 in flight.
//!
//! Prints events/s for both and the ratio ours / baseline.

use std::time::{Duration, Instant};

use commerce_analytics::event::{RequestMeta, Validator};

use super::{
    BATCH, BenchResult, IN_FLIGHT, config, demo_bodies, migrated, row_json, send_all, through_api,
    urlencode, wait_for_count,
};

/// Runs the benchmark with `events` demo events.
pub async fn run(url: &str, events: usize) -> BenchResult {
    eprintln!("generating {events} demo events ...");
    let (wire, bodies) = demo_bodies(events, 7, 90);
    let n = wire.len();

    // --- ours -----------------------------------------------------------------------------------
    let db_ours = format!("bench_ours_{}", std::process::id());
    let (ours, accepted_at) = through_api(&config(url, &db_ours)?, &bodies, n).await?;

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
    println!(
        "ours     (API -> buffer -> ClickHouse, until counted): {:>9.0} events/s  ({:.2?}; all 202s after {:.2?})",
        rate(ours),
        ours,
        accepted_at
    );
    println!(
        "baseline (INSERT ... FORMAT JSONEachRow over HTTP):    {:>9.0} events/s  ({:.2?})",
        rate(base),
        base
    );
    println!("ratio ours / baseline: {:.2}", rate(ours) / rate(base));

    for db in [&db_ours, &db_base] {
        base_store
            .client()
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await?;
    }
    Ok(())
}
