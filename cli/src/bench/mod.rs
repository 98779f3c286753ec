//! Benchmarks that print figures (not tests), one file per benchmark; `bench` (`src/bin/bench.rs`)
//! runs them. What they share lives here: configuration for a bench database, sending request bodies with
//! a bounded number in flight, waiting for rows, demo events, the JSONEachRow baseline rows, p50 timing.

// Printing the figures on stdout is the benchmarks' purpose.
#![allow(clippy::print_stdout)]

pub mod cluster;
pub mod cpu;
pub mod firehose;
pub mod neighbour;
pub mod peak;
pub mod queries;
pub mod track;

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_analytics::config::Config;
use commerce_analytics::demo::{DemoConfig, DemoGenerator};
use commerce_analytics::event::{RequestMeta, Validator};
use commerce_analytics::store::ClickHouseStore;
use commerce_analytics::store::clickhouse::EventRow;
use time::format_description::FormatItem;
use time::macros::format_description;

/// What every benchmark returns.
pub type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Events per request body.
pub const BATCH: usize = 500;
/// Requests in flight.
pub const IN_FLIGHT: usize = 8;
/// The write key of the bench store (`bench`).
pub const KEY: &str = "pk_bench_write_key_000";

/// Settings as a deployment gets them (the spec's defaults) for database `db`, with the bench write key.
/// The memory buffer unless `ANALYTICS_DURABLE_BUFFER` is given in `extra` (the track benchmark measures
/// both; the others compare storage, not the buffer).
pub fn config(url: &str, db: &str) -> BenchResult<Config> {
    config_with(url, db, &[])
}

/// [`config`] with more settings (`ENV_NAME`, value), which win.
pub fn config_with(url: &str, db: &str, extra: &[(&str, &str)]) -> BenchResult<Config> {
    let mut env = vec![
        ("CLICKHOUSE_URL", url.to_owned()),
        ("CLICKHOUSE_DATABASE", db.to_owned()),
        ("ANALYTICS_API_KEYS", format!("{KEY}:bench:write")),
        ("ANALYTICS_MAX_BUFFERED_EVENTS", "2000000".to_owned()),
        ("ANALYTICS_DURABLE_BUFFER", "false".to_owned()),
    ];
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        env.push((k, (*v).to_owned()));
    }
    Ok(Config::from_sources(None, &|k: &str| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })?)
}

/// Demo events as request bodies of [`BATCH`] events (`seed`, over `days` up to a minute ago), and how
/// many events they hold.
pub fn demo_bodies(events: usize, seed: u64, days: u32) -> (Vec<serde_json::Value>, Vec<String>) {
    let end = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let wire: Vec<serde_json::Value> = DemoGenerator::new(DemoConfig {
        seed,
        events,
        days,
        end,
    })
    .collect();
    let bodies = wire
        .chunks(BATCH)
        .map(|c| serde_json::json!({ "events": c }).to_string())
        .collect();
    (wire, bodies)
}

/// A local server on `cfg` for the read benchmarks (spill folder `var/bench-spill`).
pub async fn server(cfg: &Config) -> BenchResult<crate::server::LocalServer> {
    Ok(crate::server::start(
        cfg,
        crate::server::ServerOptions {
            addr: "127.0.0.1:0".parse()?,
            spill_dir: "var/bench-spill".into(),
            wal_dir: "var/bench-wal".into(),
            shutdown_grace: Duration::from_secs(5),
        },
    )
    .await?)
}

/// `GET base + path` with a read key; fails unless the answer is a success, whose body is read whole.
pub async fn get_ok(client: &reqwest::Client, base: &str, path: &str, key: &str) -> BenchResult {
    let resp = client
        .get(format!("{base}{path}"))
        .bearer_auth(key)
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!("{path}: {}", resp.text().await?).into());
    }
    resp.bytes().await?;
    Ok(())
}

/// What [`through_api`] measured.
#[derive(Debug, Clone)]
pub struct ApiRun {
    /// Until every event was counted in ClickHouse.
    pub stored_at: Duration,
    /// Until the last 202.
    pub accepted_at: Duration,
    /// Each request's time to its 202.
    pub latencies: Vec<Duration>,
}

/// The events of `bodies` POSTed to a local server on `cfg` ([`IN_FLIGHT`] at a time, all answered 202),
/// until all `n` are counted in store `bench`.
pub async fn through_api(cfg: &Config, bodies: &[String], n: usize) -> BenchResult<ApiRun> {
    let srv = crate::server::start(
        cfg,
        crate::server::ServerOptions {
            addr: "127.0.0.1:0".parse()?,
            spill_dir: "var/bench-spill".into(),
            wal_dir: "var/bench-wal".into(),
            shutdown_grace: Duration::from_secs(30),
        },
    )
    .await?;
    let endpoint = format!("http://{}/analytics/events", srv.addr);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let latencies = send_all(
        bodies,
        |body| {
            client
                .post(&endpoint)
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body(body)
        },
        202,
    )
    .await?;
    let accepted_at = started.elapsed();
    wait_for_count(&ClickHouseStore::new(&cfg.clickhouse), "bench", n as u64).await?;
    let stored_at = started.elapsed();
    srv.stop().await;
    Ok(ApiRun {
        stored_at,
        accepted_at,
        latencies,
    })
}

/// POSTs every body with [`IN_FLIGHT`] requests at a time; each must answer `expect`. Returns each
/// request's latency.
pub async fn send_all<F>(bodies: &[String], build: F, expect: u16) -> BenchResult<Vec<Duration>>
where
    F: Fn(String) -> reqwest::RequestBuilder,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(bodies.len());
    for body in bodies {
        let permit = sem.clone().acquire_owned().await?;
        let req = build(body.clone());
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let resp = req.send().await;
            let took = sent.elapsed();
            drop(permit);
            match resp {
                Ok(r) if r.status().as_u16() == expect => Ok(took),
                Ok(r) => Err(format!(
                    "status {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            }
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        latencies.push(t.await?.map_err(|e| format!("request failed: {e}"))?);
    }
    Ok(latencies)
}

/// Waits (up to 10 minutes) until `store_id` has `n` rows.
pub async fn wait_for_count(store: &ClickHouseStore, store_id: &str, n: u64) -> BenchResult {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if store.count_rows(store_id).await? >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("timed out waiting for rows".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const CH_TS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");

/// The row our pipeline stores, as a JSONEachRow line.
pub fn row_json(e: &commerce_analytics::event::Event) -> String {
    let row = EventRow::from_event(e);
    let mut v = serde_json::to_value(&row).expect("row serializes");
    let fmt = |t: time::OffsetDateTime| t.format(CH_TS).expect("format");
    v["timestamp"] = fmt(e.timestamp).into();
    v["received_at"] = fmt(e.received_at).into();
    v["client_timestamp"] = e.client_timestamp.map(fmt).into();
    v.to_string()
}

/// Percent-encodes a query-string value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Demo events, validated as `track` would, for store `bench`.
pub fn demo_events(n: usize, seed: u64, v: &Validator) -> Vec<commerce_analytics::event::Event> {
    let now = time::OffsetDateTime::now_utc();
    let end = now - time::Duration::minutes(1);
    DemoGenerator::new(DemoConfig {
        seed,
        events: n,
        days: 30,
        end,
    })
    .take(n)
    .map(|w| {
        v.validate(w, "bench", &RequestMeta::default(), now)
            .expect("valid")
    })
    .collect()
}

/// The configuration for database `db` and a store on it, migrated.
pub async fn migrated(url: &str, db: &str) -> BenchResult<(Config, ClickHouseStore)> {
    let cfg = config(url, db)?;
    let store = ClickHouseStore::new(&cfg.clickhouse);
    store.migrate(cfg.retention_days).await?;
    Ok((cfg, store))
}

/// p50 of `runs` timed calls after one warm-up.
/// The `p`-th percentile (0–100) of `samples`, in milliseconds (0 when empty).
pub fn percentile_ms(samples: &[Duration], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort();
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

pub async fn p50<F, Fut>(runs: usize, mut call: F) -> BenchResult<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = BenchResult>,
{
    call().await?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        call().await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}
