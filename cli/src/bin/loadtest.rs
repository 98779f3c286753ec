//! Load test of the local server (bounded, loopback only; a benchmark that prints figures, not a test).
//!
//! `cargo run --release -p analytics-cli --bin loadtest -- [--seconds 60] [--rate 15000] [--readers 2]
//! [--preload 200000] [--durable-buffer true]`
//!
//! Against the ClickHouse at `CLICKHOUSE_URL` (default http://127.0.0.1:8123), in a fresh database:
//! 1. 200,000 demo events are loaded so that dashboards have data to read;
//! 2. for `--seconds`, batches of 500 demo events are POSTed to `/analytics/events` at `--rate` events/s
//!    (paced, at most 16 requests in flight), while `--readers` clients loop over the Overview dashboard
//!    and the revenue metric;
//! 3. the server is stopped (its buffer flushes) and the stored rows are counted.
//!
//! Prints p50/p99 latency of writes and reads, every status seen, the errors (anything but 2xx and the
//! deliberate 429/503), and whether the final row count equals the preloaded events plus every event
//! answered 202. Exits non-zero when it does not, or when any request had an error (the test suite runs a
//! short load, `tests/it/load.rs`).

#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use analytics_cli::demo_load;
use analytics_cli::server::{self, ServerOptions};
use commerce_analytics::config::Config;
use commerce_analytics::demo::{DemoConfig, DemoGenerator};
use commerce_analytics::event::Validator;
use commerce_analytics::store::ClickHouseStore;

const BATCH: usize = 500;
const MAX_IN_FLIGHT: usize = 16;
const WRITE_KEY: &str = "pk_load_write_key_0000";
const READ_KEY: &str = "sk_load_read_key_00000";

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    statuses: BTreeMap<u16, u64>,
    accepted_events: u64,
}

#[derive(Debug, clap::Parser)]
#[command(about = "Load test of the local server (loopback only)")]
struct Args {
    /// How long the write and read load runs, seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Target track rate, events per second.
    #[arg(long, default_value_t = 15_000)]
    rate: usize,
    /// Clients looping over the Overview dashboard and the revenue metric.
    #[arg(long, default_value_t = 2)]
    readers: usize,
    /// Demo events loaded before the load starts (so dashboards have data to read).
    #[arg(long, default_value_t = 200_000)]
    preload: usize,
    /// The local buffer's mode (`durable_buffer`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    durable_buffer: bool,
    /// ClickHouse to run against.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    commerce_analytics::telemetry::init(false);
    let Args {
        seconds,
        rate,
        readers,
        preload,
        durable_buffer,
        clickhouse_url: url,
    } = clap::Parser::parse();
    let db = format!("loadtest_{}", std::process::id());
    let env = [
        ("CLICKHOUSE_URL", url.clone()),
        ("CLICKHOUSE_DATABASE", db.clone()),
        (
            "ANALYTICS_API_KEYS",
            format!("{WRITE_KEY}:load:write,{READ_KEY}:load:read"),
        ),
        ("ANALYTICS_DURABLE_BUFFER", durable_buffer.to_string()),
    ];
    let config = Config::from_sources(None, &|k: &str| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })?;
    let store = ClickHouseStore::new(&config.clickhouse);
    store.migrate(config.retention_days).await?;
    let end = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    eprintln!("preloading {preload} demo events ...");
    demo_load::load(
        &store,
        &Validator::from_config(&config),
        "load",
        DemoConfig {
            seed: 3,
            events: preload,
            days: 30,
            end,
        },
    )
    .await?;
    let preloaded = store.count_rows("load").await?;

    let total = rate * seconds as usize;
    eprintln!("generating {total} events to send ...");
    let bodies: Vec<String> = DemoGenerator::new(DemoConfig {
        seed: 11,
        events: total,
        days: 1,
        end: time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
    })
    .collect::<Vec<_>>()
    .chunks(BATCH)
    .map(|c| serde_json::json!({ "events": c }).to_string())
    .collect();

    let srv = server::start(
        &config,
        ServerOptions {
            addr: "127.0.0.1:0".parse()?,
            spill_dir: "var/loadtest-spill".into(),
            wal_dir: "var/loadtest-wal".into(),
            shutdown_grace: Duration::from_secs(60),
        },
    )
    .await?;
    let base = format!("http://{}", srv.addr);
    let client = reqwest::Client::new();
    let writes = Arc::new(Mutex::new(Tally::default()));
    let reads = Arc::new(Mutex::new(Tally::default()));
    let deadline = Instant::now() + Duration::from_secs(seconds);

    let mut reader_tasks = Vec::new();
    for r in 0..readers {
        let (client, base, reads) = (client.clone(), base.clone(), reads.clone());
        reader_tasks.push(tokio::spawn(async move {
            let paths = [
                "/analytics/dashboards/overview?period=7d",
                "/analytics/metrics?metric=revenue&period=30d",
            ];
            let mut i = r;
            while Instant::now() < deadline {
                let started = Instant::now();
                let status = match client
                    .get(format!("{base}{}", paths[i % paths.len()]))
                    .bearer_auth(READ_KEY)
                    .send()
                    .await
                {
                    Ok(resp) => resp.status().as_u16(),
                    Err(_) => 0,
                };
                let mut t = lock(&reads);
                t.latencies.push(started.elapsed());
                *t.statuses.entry(status).or_default() += 1;
                i += 1;
            }
        }));
    }

    // Writers: one batch every BATCH / rate seconds, at most MAX_IN_FLIGHT outstanding.
    let interval = Duration::from_secs_f64(BATCH as f64 / rate as f64);
    let sem = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut writer_tasks = Vec::new();
    let mut behind = 0u64;
    for body in bodies {
        ticker.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let permit = match sem.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                behind += 1;
                sem.clone().acquire_owned().await?
            }
        };
        let (client, base, writes) = (client.clone(), base.clone(), writes.clone());
        writer_tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let resp = client
                .post(format!("{base}/analytics/events"))
                .bearer_auth(WRITE_KEY)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            let (status, accepted) = match resp {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: serde_json::Value = r.json().await.unwrap_or_default();
                    let accepted = if status == 202 {
                        body["accepted"].as_array().map_or(0, Vec::len) as u64
                    } else {
                        0
                    };
                    (status, accepted)
                }
                Err(_) => (0, 0),
            };
            drop(permit);
            let mut t = lock(&writes);
            t.latencies.push(sent.elapsed());
            *t.statuses.entry(status).or_default() += 1;
            t.accepted_events += accepted;
        }));
    }
    for t in writer_tasks {
        t.await?;
    }
    let sending = started.elapsed();
    for t in reader_tasks {
        t.await?;
    }
    let report = srv.stop().await;
    let stored = store.count_rows("load").await?;

    let mut w = std::mem::take(&mut *lock(&writes));
    let mut r = std::mem::take(&mut *lock(&reads));
    w.latencies.sort();
    r.latencies.sort();
    let errors = |t: &Tally| {
        t.statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s) && **s != 429 && **s != 503)
            .map(|(_, n)| n)
            .sum::<u64>()
    };
    println!(
        "load test: {seconds} s, target {rate} events/s in batches of {BATCH} (≤ {MAX_IN_FLIGHT} in flight), \
         {readers} dashboard readers, {preload} preloaded events, durable buffer {durable_buffer}"
    );
    println!(
        "writes: {} requests, {} events accepted = {:.0} events/s; p50 {:.1} ms, p99 {:.1} ms; statuses {:?}; \
         errors {}; sender waited for a free slot {} times",
        w.latencies.len(),
        w.accepted_events,
        w.accepted_events as f64 / sending.as_secs_f64(),
        pct(&w.latencies, 0.5),
        pct(&w.latencies, 0.99),
        w.statuses,
        errors(&w),
        behind
    );
    println!(
        "reads:  {} requests; p50 {:.1} ms, p99 {:.1} ms; statuses {:?}; errors {}",
        r.latencies.len(),
        pct(&r.latencies, 0.5),
        pct(&r.latencies, 0.99),
        r.statuses,
        errors(&r)
    );
    println!(
        "rows: {stored} stored = {preloaded} preloaded + {} accepted: {} (shutdown: {report:?})",
        w.accepted_events,
        if stored == preloaded + w.accepted_events {
            "exact"
        } else {
            "MISMATCH"
        }
    );
    store.drop_database().await?;
    let exact = stored == preloaded + w.accepted_events;
    if !exact || errors(&w) > 0 || errors(&r) > 0 {
        return Err(format!(
            "load test failed: rows {}, write errors {}, read errors {}",
            if exact { "exact" } else { "MISMATCH" },
            errors(&w),
            errors(&r)
        )
        .into());
    }
    Ok(())
}
