//! ## firehose
//! The `ingest` function's path (parse the delivery, base64-decode, validate, one exactly-once insert
//! per delivery) called in-process with prebuilt spec-shaped requests, for deliveries of 500 records and of
//! 5 MiB, against the same rows sent as one `INSERT … FORMAT JSONEachRow` per delivery (the ratio the
//! issue names). Deliveries are sent one after another, as one Lambda instance receives them. One more
//! run puts the ratio in context: the direct inserts split into `batch_size`-row requests (what splitting
//! a delivery, as ingest did before issue 17, costs on this server).

use std::sync::Arc;
use std::time::{Duration, Instant};

use commerce_analytics::event::Validator;
use commerce_analytics::store::ClickHouseStore;
use serde_json::Value;

use super::{BenchResult, config, demo_events, migrated, row_json, urlencode};

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

/// Runs the benchmark.
pub async fn run(url: &str) -> BenchResult {
    let pid = std::process::id();
    // Settings as a deployment gets them (the spec's defaults); no database is touched through this one.
    let probe = config(url, "bench_probe")?;
    let batch_size = probe.batch_size;
    let v = Validator::from_config(&probe);
    println!(
        "ingest path (decode + validate + one exactly-once insert per delivery) vs INSERT ... FORMAT JSONEachRow, same rows, sequential deliveries"
    );
    // 100 and 20 deliveries (were 40 and 6): with 6, one delivery that met a background merge moved the
    // 5 MiB ratio by ±0.15 between runs of the same binary (0.71–0.89 on 2026-12-08).
    for (label, per_delivery, deliveries) in [("500 records", 500usize, 100usize), ("5 MiB", 0, 20)]
    {
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
            Side::ingest(url, &db("ours")).await?,
            Side::direct(url, &db("base"), per).await?,
            Side::direct(url, &db("chunked"), batch_size).await?,
        ];
        // Interleaved: every delivery goes through each side in turn (starting side rotating), so
        // background merges and machine noise fall on all sides alike.
        let mut took = [Duration::ZERO; 3];
        for (i, delivery) in events.chunks(per).enumerate() {
            for k in 0..sides.len() {
                let s = (i + k) % sides.len();
                took[s] += sides[s].deliver(i, delivery).await?;
            }
        }
        for side in &sides {
            side.finish(events.len()).await?;
        }
        let [ours, base, chunked] = took;
        let rate = |d: Duration| events.len() as f64 / d.as_secs_f64();
        println!(
            "{label:>11} ({per} records, {body_mib:.2} MiB/delivery, {deliveries} deliveries): ours {:>8.0} records/s, baseline {:>8.0} rows/s, ratio {:.2}",
            rate(ours),
            rate(base),
            rate(ours) / rate(base)
        );
        println!(
            "{:>11}   a delivery split into batch_size inserts: the same direct inserts as {batch_size}-row requests ({CHUNK_IN_FLIGHT} in flight) {:>8.0} rows/s, ratio {:.2}",
            "",
            rate(chunked),
            rate(chunked) / rate(base)
        );
    }
    Ok(())
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
    /// Deliveries through the ingest handler (one insert per delivery, whatever `batch_size` says).
    async fn ingest(url: &str, db: &str) -> BenchResult<Self> {
        let (cfg, store) = migrated(url, db).await?;
        let ingest = commerce_analytics::ingest::Ingest::new(
            Arc::new(store.clone()),
            &cfg,
            Arc::new(commerce_analytics::clock::SystemClock),
        );
        Ok(Self {
            db: db.to_owned(),
            store,
            how: How::Ingest(ingest),
        })
    }

    /// Deliveries as direct inserts of `insert_rows` rows each.
    async fn direct(url: &str, db: &str, insert_rows: usize) -> BenchResult<Self> {
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
    ) -> BenchResult<Duration> {
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
    async fn finish(&self, expected: usize) -> BenchResult {
        let (db, store) = (&self.db, &self.store);
        let rows = store.count_rows("bench").await?;
        if rows != expected as u64 {
            return Err(format!("{db}: {rows} rows stored, {expected} sent").into());
        }
        store.drop_database().await?;
        Ok(())
    }
}
