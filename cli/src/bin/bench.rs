//! Benchmarks that print figures (not tests).
//!
//! `cargo run --release -p analytics-cli --bin bench -- track [--events 1000000]`
//! `cargo run --release -p analytics-cli --bin bench -- firehose`
//! `cargo run --release -p analytics-cli --bin bench -- queries [--events 10000000]`
//!
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
//!
//! ## firehose
//! The `ingest` function's path (parse the delivery, base64-decode, validate, insert in `batch_size`
//! chunks) called in-process with prebuilt spec-shaped requests, for deliveries of 500 records and of
//! 5 MiB, against the same rows sent as one `INSERT … FORMAT JSONEachRow` per delivery (the ratio the
//! issue names). Deliveries are sent one after another, as one Lambda instance receives them. Two more
//! runs put the ratio in context: the direct inserts split into `batch_size`-row requests (the most any
//! path that honours `batch_size` can reach on this server), and ours with `batch_size` at least the
//! delivery size.

// Printing the figures on stdout is this binary's purpose.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use analytics_cli::server::{self, ServerOptions};
use commerce_analytics::config::Config;
use commerce_analytics::demo::{DemoConfig, DemoGenerator};
use commerce_analytics::event::{RequestMeta, Validator};
use commerce_analytics::store::ClickHouseStore;
use commerce_analytics::store::clickhouse::EventRow;
use serde_json::Value;
use time::format_description::FormatItem;
use time::macros::format_description;

const BATCH: usize = 500;
const IN_FLIGHT: usize = 8;
const KEY: &str = "pk_bench_write_key_000";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    commerce_analytics::telemetry::init(false);
    let args: Vec<String> = std::env::args().collect();
    let url = std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into());
    match args.get(1).map(String::as_str) {
        Some("track") => {}
        Some("firehose") => return firehose(&url).await,
        Some("queries") => {
            let events = args
                .iter()
                .position(|a| a == "--events")
                .and_then(|i| args.get(i + 1))
                .and_then(|s| s.parse().ok())
                .unwrap_or(10_000_000);
            return queries(&url, events).await;
        }
        _ => {
            eprintln!(
                "usage: bench track [--events N] | bench firehose | bench queries [--events N]"
            );
            std::process::exit(2);
        }
    }
    let events: usize = args
        .iter()
        .position(|a| a == "--events")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);

    eprintln!("generating {events} demo events ...");
    let end = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
    let wire: Vec<Value> = DemoGenerator::new(DemoConfig {
        seed: 7,
        events,
        days: 90,
        end,
    })
    .collect();
    let n = wire.len();
    let bodies: Vec<String> = wire
        .chunks(BATCH)
        .map(|c| serde_json::json!({ "events": c }).to_string())
        .collect();

    // --- ours -----------------------------------------------------------------------------------
    let db_ours = format!("bench_ours_{}", std::process::id());
    let ours_cfg = config(&url, &db_ours)?;
    let srv = server::start(
        &ours_cfg,
        ServerOptions {
            addr: "127.0.0.1:0".parse()?,
            spill_dir: "var/bench-spill".into(),
            shutdown_grace: Duration::from_secs(30),
        },
    )
    .await?;
    let endpoint = format!("http://{}/analytics/events", srv.addr);
    let client = reqwest::Client::new();
    let started = Instant::now();
    send_all(
        &bodies,
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
    wait_for_count(&srv.store, "bench", n as u64).await?;
    let ours = started.elapsed();
    srv.stop().await;

    // --- baseline ---------------------------------------------------------------------------------
    let db_base = format!("bench_base_{}", std::process::id());
    let (base_cfg, base_store) = migrated(&url, &db_base).await?;
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

fn config(url: &str, db: &str) -> Result<Config, Box<dyn std::error::Error>> {
    let env = [
        ("CLICKHOUSE_URL", url.to_owned()),
        ("CLICKHOUSE_DATABASE", db.to_owned()),
        ("ANALYTICS_API_KEYS", format!("{KEY}:bench:write")),
        ("ANALYTICS_MAX_BUFFERED_EVENTS", "2000000".to_owned()),
    ];
    Ok(Config::from_sources(None, &|k: &str| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })?)
}

async fn send_all<F>(
    bodies: &[String],
    build: F,
    expect: u16,
) -> Result<(), Box<dyn std::error::Error>>
where
    F: Fn(String) -> reqwest::RequestBuilder,
{
    let sem = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(bodies.len());
    for body in bodies {
        let permit = sem.clone().acquire_owned().await?;
        let req = build(body.clone());
        tasks.push(tokio::spawn(async move {
            let resp = req.send().await;
            drop(permit);
            match resp {
                Ok(r) if r.status().as_u16() == expect => Ok(()),
                Ok(r) => Err(format!(
                    "status {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            }
        }));
    }
    for t in tasks {
        t.await?.map_err(|e| format!("request failed: {e}"))?;
    }
    Ok(())
}

async fn wait_for_count(
    store: &ClickHouseStore,
    store_id: &str,
    n: u64,
) -> Result<(), Box<dyn std::error::Error>> {
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
fn row_json(e: &commerce_analytics::event::Event) -> String {
    let row = EventRow::from_event(e);
    let mut v = serde_json::to_value(&row).expect("row serializes");
    let fmt = |t: time::OffsetDateTime| t.format(CH_TS).expect("format");
    v["timestamp"] = fmt(e.timestamp).into();
    v["received_at"] = fmt(e.received_at).into();
    v["client_timestamp"] = e.client_timestamp.map(fmt).into();
    v.to_string()
}

fn urlencode(s: &str) -> String {
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
fn demo_events(n: usize, seed: u64, v: &Validator) -> Vec<commerce_analytics::event::Event> {
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

/// A spec-shaped Firehose delivery request (plain JSON body, all headers).
fn delivery_request(
    request_id: &str,
    events: &[commerce_analytics::event::Event],
) -> lambda_http::Request {
    use base64::Engine;
    let records: Vec<Value> = events
        .iter()
        .map(|e| {
            let data = commerce_analytics::sink::firehose::encode_record(e);
            serde_json::json!({ "data": base64::engine::general_purpose::STANDARD.encode(data) })
        })
        .collect();
    let body = serde_json::json!({ "requestId": request_id, "timestamp": 1_764_000_000_000_i64, "records": records });
    lambda_http::http::Request::builder()
        .method("POST")
        .uri("https://example.lambda-url.us-east-1.on.aws/")
        .header("x-amz-firehose-request-id", request_id)
        .header("x-amz-firehose-protocol-version", "1.0")
        .header("content-type", "application/json")
        .body(lambda_http::Body::from(body.to_string()))
        .expect("request")
}

async fn firehose(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let pid = std::process::id();
    // Settings as a deployment gets them (the spec's defaults); no database is touched through this one.
    let probe = config(url, "bench_probe")?;
    let batch_size = probe.batch_size;
    let v = Validator::from_config(&probe);
    println!(
        "ingest path (decode + validate + exactly-once insert, batch_size {batch_size}) vs INSERT ... FORMAT JSONEachRow, same rows, sequential deliveries"
    );
    for (label, per_delivery, deliveries) in [("500 records", 500usize, 40usize), ("5 MiB", 0, 6)] {
        // 5 MiB deliveries: as many records as fit in 5 MiB of request body.
        let per = if per_delivery > 0 {
            per_delivery
        } else {
            let sample = demo_events(2000, 1, &v);
            let bytes = delivery_request("x", &sample).body().as_ref().len();
            (5 * 1024 * 1024) * 2000 / bytes
        };
        let events = demo_events(per * deliveries, 11, &v);
        let body_mib =
            delivery_request("x", &events[..per]).body().as_ref().len() as f64 / 1024.0 / 1024.0;
        // Fresh names per run: DROP DATABASE completes lazily, so a reused name can vanish under us.
        let db = |side: &str| format!("bench_fh_{side}_{pid}_{deliveries}");
        let sides = [
            Side::ingest(url, &db("ours"), batch_size).await?,
            Side::direct(url, &db("base"), per).await?,
            Side::direct(url, &db("chunked"), batch_size).await?,
            Side::ingest(url, &db("whole"), per).await?,
        ];
        // Interleaved: every delivery goes through each side in turn (starting side rotating), so
        // background merges and machine noise fall on all sides alike.
        let mut took = [Duration::ZERO; 4];
        for (i, delivery) in events.chunks(per).enumerate() {
            for k in 0..sides.len() {
                let s = (i + k) % sides.len();
                took[s] += sides[s].deliver(i, delivery).await?;
            }
        }
        for side in &sides {
            side.finish(events.len()).await?;
        }
        let [ours, base, chunked, whole] = took;
        let rate = |d: Duration| events.len() as f64 / d.as_secs_f64();
        println!(
            "{label:>11} ({per} records, {body_mib:.2} MiB/delivery, {deliveries} deliveries): ours {:>8.0} records/s, baseline {:>8.0} rows/s, ratio {:.2}",
            rate(ours),
            rate(base),
            rate(ours) / rate(base)
        );
        println!(
            "{:>11}   ceiling of batch_size inserts on this server: the same direct inserts split into {batch_size}-row requests ({CHUNK_IN_FLIGHT} in flight) {:>8.0} rows/s, ratio {:.2}; ours / that {:.2}",
            "",
            rate(chunked),
            rate(chunked) / rate(base),
            rate(ours) / rate(chunked)
        );
        println!(
            "{:>11}   ours with batch_size >= the delivery (one insert per delivery) {:>8.0} records/s, ratio {:.2}",
            "",
            rate(whole),
            rate(whole) / rate(base)
        );
    }
    Ok(())
}

/// The configuration for database `db` and a store on it, migrated.
async fn migrated(
    url: &str,
    db: &str,
) -> Result<(Config, ClickHouseStore), Box<dyn std::error::Error>> {
    let cfg = config(url, db)?;
    let store = ClickHouseStore::new(&cfg.clickhouse);
    store.migrate(cfg.retention_days).await?;
    Ok((cfg, store))
}

/// Inserts in flight per delivery in the chunked baseline: as many as `insert_batches` keeps.
const CHUNK_IN_FLIGHT: usize = 4;

/// One way of storing deliveries, each in its own fresh database.
struct Side {
    db: String,
    store: ClickHouseStore,
    how: How,
}

enum How {
    /// Spec-shaped delivery requests through the ingest handler.
    Ingest(commerce_analytics::ingest::Ingest),
    /// The same rows (as our pipeline stores them) POSTed straight to ClickHouse with `INSERT … FORMAT
    /// JSONEachRow`, as requests of `insert_rows` rows ([`CHUNK_IN_FLIGHT`] at a time when a delivery
    /// takes several).
    Direct {
        insert_url: String,
        insert_rows: usize,
        client: reqwest::Client,
    },
}

impl Side {
    /// Deliveries through the ingest handler, with the given `batch_size`.
    async fn ingest(
        url: &str,
        db: &str,
        batch_size: usize,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let (cfg, store) = migrated(url, db).await?;
        let ingest = commerce_analytics::ingest::Ingest::new(
            Arc::new(store.clone()),
            Validator::from_config(&cfg),
            None,
            batch_size,
            cfg.limits.max_ingest_bytes,
            Arc::new(commerce_analytics::clock::SystemClock),
        );
        Ok(Self {
            db: db.to_owned(),
            store,
            how: How::Ingest(ingest),
        })
    }

    /// Deliveries as direct inserts of `insert_rows` rows each.
    async fn direct(
        url: &str,
        db: &str,
        insert_rows: usize,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let (_, store) = migrated(url, db).await?;
        let insert_url = format!(
            "{url}/?query={}",
            urlencode(&format!(
                "INSERT INTO {db}.commerce_events FORMAT JSONEachRow"
            ))
        );
        Ok(Self {
            db: db.to_owned(),
            store,
            how: How::Direct {
                insert_url,
                insert_rows,
                client: reqwest::Client::new(),
            },
        })
    }

    /// Stores delivery number `i`; the time it took (request building excluded).
    async fn deliver(
        &self,
        i: usize,
        events: &[commerce_analytics::event::Event],
    ) -> Result<Duration, Box<dyn std::error::Error>> {
        match &self.how {
            How::Ingest(ingest) => {
                let req = delivery_request(&format!("bench-{i}"), events);
                let started = Instant::now();
                let resp = ingest.handle(req).await;
                if resp.status() != 200 {
                    return Err(format!("ingest answered {}", resp.status()).into());
                }
                Ok(started.elapsed())
            }
            How::Direct {
                insert_url,
                insert_rows,
                client,
            } => {
                let bodies: Vec<String> = events
                    .chunks(*insert_rows)
                    .map(|c| c.iter().map(|e| row_json(e) + "\n").collect())
                    .collect();
                let started = Instant::now();
                let mut bodies = bodies.into_iter();
                loop {
                    let wave: Vec<String> = bodies.by_ref().take(CHUNK_IN_FLIGHT).collect();
                    if wave.is_empty() {
                        break;
                    }
                    let sends = wave
                        .into_iter()
                        .map(|body| client.post(insert_url.as_str()).body(body).send());
                    for resp in futures_util::future::join_all(sends).await {
                        let resp = resp?;
                        if !resp.status().is_success() {
                            return Err(format!("direct insert: {}", resp.text().await?).into());
                        }
                    }
                }
                Ok(started.elapsed())
            }
        }
    }

    /// Checks that exactly `expected` rows arrived, then drops the side's database.
    async fn finish(&self, expected: usize) -> Result<(), Box<dyn std::error::Error>> {
        let (db, store) = (&self.db, &self.store);
        let rows = store.count_rows("bench").await?;
        if rows != expected as u64 {
            return Err(format!("{db}: {rows} rows stored, {expected} sent").into());
        }
        // Through the side's own client: a client bound to a dropped database cannot run queries.
        store
            .client()
            .query(&format!("DROP DATABASE IF EXISTS {db}"))
            .execute()
            .await?;
        Ok(())
    }
}

/// p50 of `runs` timed calls after one warm-up.
async fn p50<F, Fut>(runs: usize, mut call: F) -> Result<Duration, Box<dyn std::error::Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::error::Error>>>,
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

/// ## queries
/// Read-side latency through the local API over a demo store of `events` events (loaded once into the
/// database `bench_queries` and kept for later runs): p50 of 9 calls after a warm-up, for every metric, the
/// dashboards, a 4-step funnel over 7 days and 12 months of cohorts. The funnel is compared with the same
/// funnel as a plain `windowFunnel` over the whole raw table (no store/type/time pre-filtering).
async fn queries(url: &str, events: usize) -> Result<(), Box<dyn std::error::Error>> {
    const READ: &str = "sk_bench_read_key_0000";
    let db = "bench_queries";
    let env = [
        ("CLICKHOUSE_URL", url.to_owned()),
        ("CLICKHOUSE_DATABASE", db.to_owned()),
        ("ANALYTICS_API_KEYS", format!("{READ}:bench:read")),
    ];
    let cfg = Config::from_sources(None, &|k: &str| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })?;
    let store = ClickHouseStore::new(&cfg.clickhouse);
    store.migrate(cfg.retention_days).await?;
    let have = store.count_rows("bench").await?;
    if have < events as u64 {
        store.delete_store("bench").await?;
        eprintln!("loading {events} demo events into {db} (once; kept for later runs) ...");
        let end = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
        let started = Instant::now();
        let n = analytics_cli::demo_load::load(
            &store,
            &Validator::from_config(&cfg),
            "bench",
            DemoConfig {
                seed: 10,
                events,
                days: 360,
                end,
            },
        )
        .await?;
        eprintln!("loaded {n} events in {:.1?}", started.elapsed());
        store
            .client()
            .query(&format!("OPTIMIZE TABLE {db}.commerce_events FINAL"))
            .execute()
            .await?;
    }
    let rows = store.count_rows("bench").await?;
    let srv = server::start(
        &cfg,
        ServerOptions {
            addr: "127.0.0.1:0".parse()?,
            spill_dir: "var/bench-spill".into(),
            shutdown_grace: Duration::from_secs(5),
        },
    )
    .await?;
    let client = reqwest::Client::new();
    let base = format!("http://{}", srv.addr);
    let get = |path: String| {
        let req = client.get(format!("{base}{path}")).bearer_auth(READ);
        async move {
            let resp = req.send().await?;
            if !resp.status().is_success() {
                return Err(format!("{path}: {}", resp.text().await?).into());
            }
            resp.bytes().await?;
            Ok::<(), Box<dyn std::error::Error>>(())
        }
    };
    println!("read latency over {rows} events (p50 of 9 calls through the local API)");
    for m in [
        "revenue",
        "net_revenue",
        "orders",
        "aov",
        "sessions",
        "conversion_rate",
        "visitors",
        "product_views",
        "add_to_cart_rate",
        "best_sellers",
        "traffic_sources",
        "campaign_performance",
        "stock_levels",
        "sell_through_rate",
        "ltv",
        "new_vs_returning",
    ] {
        let d = p50(9, || {
            get(format!("/analytics/metrics?metric={m}&period=30d"))
        })
        .await?;
        println!("  metric {m:<22} 30d  {:>8.1} ms", d.as_secs_f64() * 1e3);
    }
    for id in commerce_analytics::query::dashboards::BUILT_IN {
        let d = p50(9, || get(format!("/analytics/dashboards/{id}?period=30d"))).await?;
        println!(
            "  dashboard {id:<19} 30d  {:>8.1} ms",
            d.as_secs_f64() * 1e3
        );
    }
    let steps = "page.viewed,product.viewed,cart.item_added,order.completed";
    let ours = p50(9, || {
        get(format!("/analytics/funnel?steps={steps}&period=7d"))
    })
    .await?;
    let baseline_sql = format!(
        "SELECT level, count() FROM (SELECT session_id, windowFunnel(86400)(toDateTime(timestamp), \
         type = 'page.viewed', type = 'product.viewed', type = 'cart.item_added', type = 'order.completed') AS level \
         FROM {db}.commerce_events GROUP BY session_id) GROUP BY level"
    );
    let ch = store.client().clone();
    let baseline = p50(9, || {
        let q = ch.query(&baseline_sql);
        async move {
            q.fetch_all::<(u8, u64)>().await?;
            Ok::<(), Box<dyn std::error::Error>>(())
        }
    })
    .await?;
    println!(
        "  funnel 4 steps 7d            {:>8.1} ms   (plain windowFunnel over the whole table: {:.1} ms; ratio {:.2})",
        ours.as_secs_f64() * 1e3,
        baseline.as_secs_f64() * 1e3,
        ours.as_secs_f64() / baseline.as_secs_f64()
    );
    let d = p50(9, || {
        get("/analytics/cohorts?interval=month&period=12m".to_owned())
    })
    .await?;
    println!(
        "  cohorts monthly 12m          {:>8.1} ms",
        d.as_secs_f64() * 1e3
    );
    srv.stop().await;
    Ok(())
}
