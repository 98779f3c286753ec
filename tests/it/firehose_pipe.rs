//! The AWS ingest path end to end: `track`'s Firehose sink through the real AWS SDK to moto (standing in
//! for Firehose, with an HTTP endpoint destination), moto delivering to the local ingest endpoint, rows in
//! the real ClickHouse. Plus the protocol's fault cases against the real ClickHouse: storage down during a
//! delivery, and the same delivery twice.
//!
//! moto delivers synchronously inside PutRecordBatch and sends no `X-Amz-Firehose-*` headers, so the pipe
//! test's server has no access key; the header handling is covered by the fixture tests and below.

use std::sync::Arc;
use std::time::Duration;

use analytics_cli::server::{self, LocalServer, ServerOptions};
use aws_sdk_firehose::types::{
    CompressionFormat, ContentEncoding, DeliveryStreamType, HttpEndpointBufferingHints,
    HttpEndpointConfiguration, HttpEndpointDestinationConfiguration,
    HttpEndpointRequestConfiguration, HttpEndpointS3BackupMode, S3DestinationConfiguration,
};
use base64::Engine;
use commerce_analytics::clock::SystemClock;
use commerce_analytics::event::{Event, RequestMeta, Validator};
use commerce_analytics::sink::EventSink;
use commerce_analytics::sink::firehose::{FirehoseSink, SdkFirehose, encode_record};
use commerce_analytics::tracker::Tracker;
use integration_tests::{PrivateClickHouse, TestDb, eventually, repo_root};
use serde_json::json;

fn require_moto() -> String {
    std::env::var("AWS_ENDPOINT_URL_FIREHOSE").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL_FIREHOSE is not set. The Firehose tests run the real AWS SDK against moto: run \
             them with scripts/test, or `scripts/moto start` and export AWS_ENDPOINT_URL_FIREHOSE=\
             http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
        )
    })
}

async fn start_server(db: &TestDb) -> LocalServer {
    let spill = repo_root()
        .join("var")
        .join(format!("it-spill-firehose-{}", ulid::Ulid::new()));
    let opts = ServerOptions {
        addr: "127.0.0.1:0".parse().expect("addr"),
        wal_dir: spill.join("wal"),
        spill_dir: spill,
        shutdown_grace: Duration::from_secs(5),
    };
    server::start(&db.config, opts)
        .await
        .expect("server starts")
}

/// Creates a DirectPut stream whose HTTP endpoint destination is `url` (through the real SDK).
async fn create_stream(url: &str) -> String {
    let name = format!("it-{}", ulid::Ulid::new().to_string().to_lowercase());
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_firehose::Client::new(&sdk);
    let destination = HttpEndpointDestinationConfiguration::builder()
        .endpoint_configuration(
            HttpEndpointConfiguration::builder()
                .url(url)
                .name("commerce-analytics-ingest")
                .build()
                .expect("endpoint"),
        )
        .s3_configuration(
            S3DestinationConfiguration::builder()
                .role_arn("arn:aws:iam::123456789012:role/firehose-delivery")
                .bucket_arn("arn:aws:s3:::commerce-analytics-failed-deliveries")
                .compression_format(CompressionFormat::Uncompressed)
                .build()
                .expect("s3"),
        )
        .buffering_hints(
            HttpEndpointBufferingHints::builder()
                .interval_in_seconds(5)
                .size_in_mbs(1)
                .build(),
        )
        .request_configuration(
            HttpEndpointRequestConfiguration::builder()
                .content_encoding(ContentEncoding::None)
                .build(),
        )
        .s3_backup_mode(HttpEndpointS3BackupMode::FailedDataOnly)
        .build();
    client
        .create_delivery_stream()
        .delivery_stream_name(&name)
        .delivery_stream_type(DeliveryStreamType::DirectPut)
        .http_endpoint_destination_configuration(destination)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "create_delivery_stream on moto: {}",
                aws_sdk_firehose::error::DisplayErrorContext(e)
            )
        });
    name
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct OrderTotals {
    orders: u64,
    revenue: i64,
    rows: u64,
}

async fn totals(db: &TestDb) -> OrderTotals {
    db.store
        .client()
        .query(
            "SELECT countIf(type = 'order.completed') AS orders, \
             sumIf(amount, type = 'order.completed') AS revenue, count() AS rows FROM commerce_events",
        )
        .fetch_one::<OrderTotals>()
        .await
        .expect("totals")
}

#[tokio::test]
async fn track_to_firehose_to_ingest_to_clickhouse_counts_every_event_once() {
    let _ = require_moto();
    let db = TestDb::new("pipe").await;
    let srv = start_server(&db).await;
    let stream = create_stream(&format!("http://{}/analytics/ingest/firehose", srv.addr)).await;

    let sink = Arc::new(FirehoseSink::new(Arc::new(
        SdkFirehose::from_env(&stream).await,
    )));
    let tracker = Tracker::new(
        Validator::from_config(&db.config),
        sink.clone(),
        Arc::new(SystemClock),
    );
    let mut revenue = 0;
    for i in 0..20_i64 {
        let total = 1000 + i * 37;
        revenue += total;
        let id = tracker
            .track("shop-a", json!({"id": format!("order_{i}_completed"), "type": "order.completed",
                "timestamp": "2026-11-01T12:00:00Z", "customerId": format!("c{i}"),
                "properties": {"orderId": format!("order_{i}"), "total": total, "currency": "USD"}}))
            .await
            .expect("accepted by Firehose");
        assert_eq!(id, format!("order_{i}_completed"));
    }
    for i in 0..30 {
        tracker
            .track("shop-a", json!({"id": format!("pv_{i}"), "type": "page.viewed", "timestamp": "2026-11-01T11:59:00Z"}))
            .await
            .expect("accepted");
    }
    let d = &db;
    assert!(
        eventually(Duration::from_secs(10), || async move {
            totals(d).await.rows == 50
        })
        .await,
        "all 50 events reach ClickHouse: {:?}",
        totals(&db).await
    );
    let t = totals(&db).await;
    assert_eq!((t.orders, t.revenue), (20, revenue));

    // A client resending the same events (same ids and timestamps) through the whole pipe again.
    let now = time::OffsetDateTime::now_utc();
    let v = Validator::from_config(&db.config);
    let resent: Vec<Event> = (0..20_i64)
        .map(|i| {
            v.validate(json!({"id": format!("order_{i}_completed"), "type": "order.completed",
                "timestamp": "2026-11-01T12:00:00Z", "customerId": format!("c{i}"),
                "properties": {"orderId": format!("order_{i}"), "total": 1000 + i * 37, "currency": "USD"}}),
                "shop-a", &RequestMeta::default(), now)
            .expect("valid")
        })
        .collect();
    sink.send_batch(resent).await.expect("accepted again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = totals(&db).await;
    assert_eq!(
        (t.orders, t.revenue, t.rows),
        (20, revenue, 50),
        "resending never double-counts"
    );
    srv.stop().await;
    db.drop_database().await;
}

/// A spec-exact delivery request (all headers), optionally gzipped.
fn delivery(
    request_id: &str,
    events: &[Event],
    access_key: &str,
    gzip: bool,
) -> reqwest::RequestBuilder {
    let records: Vec<serde_json::Value> = events
        .iter()
        .map(
            |e| json!({"data": base64::engine::general_purpose::STANDARD.encode(encode_record(e))}),
        )
        .collect();
    let body =
        json!({"requestId": request_id, "timestamp": 1_764_000_000_000_i64, "records": records})
            .to_string();
    let mut req = reqwest::Client::new()
        .post("http://placeholder/") // replaced by the caller's URL
        .header("x-amz-firehose-protocol-version", "1.0")
        .header("x-amz-firehose-request-id", request_id)
        .header(
            "x-amz-firehose-source-arn",
            "arn:aws:firehose:us-east-1:123456789012:deliverystream/s",
        )
        .header("x-amz-firehose-access-key", access_key)
        .header("content-type", "application/json");
    if gzip {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(body.as_bytes()).expect("gzip");
        req = req
            .header("content-encoding", "gzip")
            .body(enc.finish().expect("gzip"));
    } else {
        req = req.body(body);
    }
    req
}

async fn send(srv: &LocalServer, req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let mut built = req.build().expect("request");
    *built.url_mut() = format!("http://{}/analytics/ingest/firehose", srv.addr)
        .parse()
        .expect("url");
    let resp = reqwest::Client::new().execute(built).await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_delivery_during_a_clickhouse_outage_is_retried_and_counted_exactly_once() {
    let ch = PrivateClickHouse::new(integration_tests::free_port());
    ch.start();
    let key = "it_firehose_access_key_0123456789";
    let db = TestDb::on(
        &ch.url(),
        "outage",
        &[
            ("FIREHOSE_ACCESS_KEY", key),
            ("ANALYTICS_BATCH_SIZE", "100"),
        ],
    )
    .await;
    let srv = start_server(&db).await;
    let v = Validator::from_config(&db.config);
    let now = time::OffsetDateTime::now_utc();
    let events: Vec<Event> = (0..250)
        .map(|i| {
            v.validate(
                json!({"id": format!("o{i}"), "type": "order.completed",
                "properties": {"orderId": format!("o{i}"), "total": 100, "currency": "EUR"}}),
                "shop-a",
                &RequestMeta::default(),
                now,
            )
            .expect("valid")
        })
        .collect();
    let mut bad = serde_json::to_value(&events[0]).expect("json");
    bad["properties"] = json!({"orderId": "x"});

    let (status, body) = send(&srv, delivery("req-1", &events, "wrong-key", false)).await;
    assert_eq!((status, body["requestId"].as_str()), (403, Some("req-1")));

    ch.stop();
    let (status, body) = send(&srv, delivery("req-1", &events, key, true)).await;
    assert_eq!(status, 503, "storage down is retryable: {body}");
    assert_eq!(body["requestId"], "req-1");
    assert!(body["errorMessage"].is_string());
    ch.start();

    // Firehose retries the same request id; then a duplicate delivery arrives as well.
    for _ in 0..2 {
        let (status, body) = send(&srv, delivery("req-1", &events, key, true)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["requestId"], "req-1");
    }
    let rows: u64 = db.scalar("SELECT count() FROM commerce_events").await;
    let revenue: i64 = db
        .scalar("SELECT sum(amount) FROM commerce_events WHERE type = 'order.completed'")
        .await;
    assert_eq!((rows, revenue), (250, 25_000), "exactly once");

    // A record that can never be inserted lands in the rejects table and does not block the others.
    let mut fresh = events[0].clone();
    fresh.id = "fresh_1".into();
    let records = vec![
        json!({"data": base64::engine::general_purpose::STANDARD.encode(encode_record(&fresh))}),
        json!({"data": base64::engine::general_purpose::STANDARD.encode(format!("{bad}\n"))}),
    ];
    let body =
        json!({"requestId": "req-2", "timestamp": 1_764_000_000_000_i64, "records": records})
            .to_string();
    let req = reqwest::Client::new()
        .post("http://placeholder/")
        .header("x-amz-firehose-request-id", "req-2")
        .header("x-amz-firehose-access-key", key)
        .body(body);
    let (status, _) = send(&srv, req).await;
    assert_eq!(status, 200);
    let rejects: u64 = db
        .scalar("SELECT count() FROM commerce_events_rejects WHERE request_id = 'req-2'")
        .await;
    let reason: String = db
        .scalar("SELECT reason FROM commerce_events_rejects WHERE request_id = 'req-2'")
        .await;
    assert_eq!(rejects, 1);
    assert!(reason.contains("properties.total"), "{reason}");
    let stored: u64 = db
        .scalar("SELECT count() FROM commerce_events WHERE id = 'fresh_1'")
        .await;
    assert_eq!(stored, 1);
    srv.stop().await;
}
