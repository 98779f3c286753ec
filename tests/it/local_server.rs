//! The local server end to end against the real ClickHouse, including fault tests that stop and restart a
//! private ClickHouse server to prove that accepted events are never lost.

use std::time::Duration;

use analytics_cli::server::{self, LocalServer, ServerOptions};
use integration_tests::{
    PrivateClickHouse, TestDb, WRITE_KEY, await_events, eventually, free_port, repo_root,
};
use serde_json::{Value, json};

fn spill_dir(name: &str) -> std::path::PathBuf {
    let dir = repo_root()
        .join("var")
        .join(format!("it-spill-{name}-{}", ulid::Ulid::new()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn start(db: &TestDb, spill: &std::path::Path, grace: Duration) -> LocalServer {
    let opts = ServerOptions {
        addr: "127.0.0.1:0".parse().expect("addr"),
        spill_dir: spill.to_path_buf(),
        wal_dir: spill.join("wal"),
        shutdown_grace: grace,
    };
    server::start(&db.config, opts)
        .await
        .expect("server starts")
}

async fn post(srv: &LocalServer, path: &str, body: &Value) -> (u16, Value, Option<String>) {
    let resp = reqwest::Client::new()
        .post(format!("http://{}{path}", srv.addr))
        .bearer_auth(WRITE_KEY)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or("").to_owned());
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, retry_after)
}

/// Sends `n` page views in batches of 100 with ids `<prefix>_<i>`; asserts each batch is accepted.
async fn send_page_views(srv: &LocalServer, prefix: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| json!({"id": format!("{prefix}_{i}"), "type": "page.viewed"}))
            .collect();
        let (status, body, _) = post(srv, "/analytics/events", &json!({ "events": events })).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["accepted"].as_array().map(Vec::len), Some(chunk.len()));
    }
}

#[tokio::test]
async fn spec_curl_example_is_accepted_and_queryable_after_the_flush_interval() {
    let db = TestDb::on(
        &integration_tests::clickhouse_url(),
        "e2e",
        &[("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.5")],
    )
    .await;
    let spill = spill_dir("e2e");
    let srv = start(&db, &spill, Duration::from_secs(5)).await;
    let spec = json!({"type": "product.viewed", "sessionId": "sess_xyz",
        "properties": {"productId": "prod_abc123", "productName": "Premium T-Shirt", "price": 2999, "currency": "USD"}});
    let (status, body, _) = post(&srv, "/analytics/event", &spec).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().expect("id").to_owned();
    let order = json!({"type": "order.completed", "sessionId": "sess_xyz",
        "properties": {"orderId": "order_xyz789", "total": 6791, "currency": "USD"}});
    assert_eq!(post(&srv, "/analytics/event", &order).await.0, 202);

    let s = &db.store;
    assert!(
        eventually(Duration::from_secs(5), || async {
            s.count_rows("shop-a").await.unwrap_or(0) == 2
        })
        .await
    );
    let stored_id: String = db
        .scalar("SELECT id FROM commerce_events WHERE type = 'product.viewed'")
        .await;
    assert_eq!(stored_id, id);
    let ip: String = db
        .scalar("SELECT ip FROM commerce_events WHERE type = 'product.viewed'")
        .await;
    assert_eq!(ip, "127.0.0.0", "socket peer, anonymized");
    let revenue: i64 = db
        .scalar(
            "SELECT sum(JSONExtractInt(properties, 'total')) FROM commerce_events \
                 WHERE type = 'order.completed' AND timestamp >= now() - INTERVAL 30 DAY",
        )
        .await;
    assert_eq!(revenue, 6791);
    assert_eq!(srv.stop().await.spilled, 0);
    db.drop_database().await;
}

#[tokio::test]
async fn nothing_accepted_is_lost_across_a_clickhouse_restart() {
    let ch = PrivateClickHouse::new(free_port());
    ch.start();
    let db = TestDb::on(
        &ch.url(),
        "restart",
        &[
            ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.2"),
            ("ANALYTICS_BATCH_SIZE", "50"),
        ],
    )
    .await;
    let spill = spill_dir("restart");
    let srv = start(&db, &spill, Duration::from_secs(30)).await;

    send_page_views(&srv, "before", 300).await;
    let s = &db.store;
    await_events(s, "shop-a", 300, Duration::from_secs(10)).await;

    ch.stop();
    // Accepted while ClickHouse is down: held in the buffer and retried.
    send_page_views(&srv, "during", 300).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        srv.buffer_stats().expect("buffer").failed_attempts > 0,
        "writes failed while ClickHouse was down"
    );
    ch.start();

    await_events(s, "shop-a", 600, Duration::from_secs(30)).await;
    let during: u64 = db
        .scalar("SELECT uniqExact(id) FROM commerce_events WHERE id LIKE 'during_%'")
        .await;
    assert_eq!(during, 300);
    assert_eq!(srv.stop().await.spilled, 0);
}

/// The event files (`*.ndjson`) under `dir`, recursively: spill files and write-ahead log segments.
fn buffer_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            files.extend(buffer_files(&path));
        } else if path.extension().is_some_and(|x| x == "ndjson") {
            files.push(path);
        }
    }
    files
}

#[tokio::test]
async fn events_unwritten_at_shutdown_stay_on_disk_and_are_stored_at_the_next_start() {
    let ch = PrivateClickHouse::new(free_port());
    ch.start();
    // Both buffer modes: memory (spilled at shutdown) and durable (already in the write-ahead log).
    for durable in ["false", "true"] {
        let db = TestDb::on(
            &ch.url(),
            "spill",
            &[
                ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.2"),
                ("ANALYTICS_DURABLE_BUFFER", durable),
            ],
        )
        .await;
        let spill = spill_dir("spill");
        let srv = start(&db, &spill, Duration::from_secs(1)).await;
        ch.stop();
        send_page_views(&srv, "spilled", 150).await;
        let report = srv.stop().await;
        assert_eq!(report.spilled, 150, "durable: {durable}");
        assert!(report.spill_file.as_ref().is_some_and(|f| f.exists()));
        assert!(!buffer_files(&spill).is_empty());

        ch.start();
        let srv = start(&db, &spill, Duration::from_secs(5)).await;
        assert_eq!(
            db.store.count_events("shop-a").await.expect("count"),
            150,
            "replayed at start (durable: {durable})"
        );
        assert_eq!(
            buffer_files(&spill),
            Vec::<std::path::PathBuf>::new(),
            "files removed once stored"
        );
        srv.stop().await;
        let _ = std::fs::remove_dir_all(&spill);
    }
}

#[tokio::test]
async fn a_stopping_server_with_clickhouse_down_is_on_disk_before_its_last_flush() {
    let ch = PrivateClickHouse::new(free_port());
    ch.start();
    let db = TestDb::on(
        &ch.url(),
        "spill_first",
        &[
            ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.2"),
            ("ANALYTICS_DURABLE_BUFFER", "false"),
        ],
    )
    .await;
    let spill = spill_dir("spill_first");
    let grace = server::SHUTDOWN_GRACE;
    let srv = start(&db, &spill, grace).await;
    ch.stop();
    send_page_views(&srv, "first", 200).await;
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(srv.stop());
    // No request is in flight, so the spill is written at once, while the flush still has its grace.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!stopping.is_finished(), "still trying ClickHouse");
    let files = buffer_files(&spill);
    assert_eq!(files.len(), 1, "{files:?}");
    let lines = std::fs::read_to_string(&files[0])
        .expect("read")
        .lines()
        .count();
    assert_eq!(
        lines, 200,
        "every accepted event is on disk before the flush ends"
    );
    // A supervisor's SIGKILL now would lose nothing; without one, stop ends within drain + grace.
    let report = stopping.await.expect("joined");
    assert_eq!(report.spilled, 200);
    assert!(
        started.elapsed() < server::REQUEST_DRAIN + grace + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    ch.start();
    let srv = start(&db, &spill, Duration::from_secs(5)).await;
    assert_eq!(db.store.count_events("shop-a").await.expect("count"), 200);
    srv.stop().await;
    let _ = std::fs::remove_dir_all(&spill);
}

#[tokio::test]
async fn a_full_buffer_answers_503_with_retry_after_and_keeps_what_it_accepted() {
    let ch = PrivateClickHouse::new(free_port());
    ch.start();
    let db = TestDb::on(
        &ch.url(),
        "full",
        &[
            ("ANALYTICS_BATCH_SIZE", "100"),
            ("ANALYTICS_MAX_BUFFERED_EVENTS", "200"),
            ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.2"),
        ],
    )
    .await;
    let spill = spill_dir("full");
    let srv = start(&db, &spill, Duration::from_secs(30)).await;
    ch.stop();
    send_page_views(&srv, "kept", 200).await;
    let events: Vec<Value> = (0..50)
        .map(|i| json!({"id": format!("refused_{i}"), "type": "page.viewed"}))
        .collect();
    let (status, body, retry_after) =
        post(&srv, "/analytics/events", &json!({ "events": events })).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert_eq!(body["failedIds"].as_array().map(Vec::len), Some(50));
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    ch.start();
    let s = &db.store;
    await_events(s, "shop-a", 200, Duration::from_secs(30)).await;
    let refused: u64 = db
        .scalar("SELECT count() FROM commerce_events WHERE id LIKE 'refused_%'")
        .await;
    assert_eq!(refused, 0, "a 503 means not accepted");
    srv.stop().await;
}

#[tokio::test]
async fn the_lambda_track_path_inserts_each_request_directly() {
    let db = TestDb::new("lambda").await;
    let api = db.tracking_api();
    let text =
        std::fs::read_to_string(repo_root().join("events/track-order.json")).expect("fixture");
    let mut req = lambda_http::request::from_str(&text).expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {WRITE_KEY}").parse().expect("header"),
    );
    let resp = api.handle(req).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(
        db.store.count_events("shop-a").await.expect("count"),
        1,
        "stored before answering"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_slow_upload_cannot_hold_the_shutdown_back() {
    use tokio::io::AsyncWriteExt as _;
    let db = TestDb::new("slow_client").await;
    let spill = spill_dir("slow_client");
    let srv = start(&db, &spill, Duration::from_secs(5)).await;
    send_page_views(&srv, "accepted", 50).await;
    // A client announces a large body and then sends (almost) nothing.
    let mut slow = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    slow.write_all(
        format!(
            "POST /analytics/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE_KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"events\": ["
        )
        .as_bytes(),
    )
    .await
    .expect("headers");
    // Let the server start reading that body.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = &db.store;
    let stopped = tokio::time::timeout(Duration::from_secs(30), srv.stop()).await;
    assert!(
        stopped.is_ok(),
        "stop must return (and flush) although a client is still uploading"
    );
    assert_eq!(
        s.count_events("shop-a").await.expect("count"),
        50,
        "every accepted event was flushed"
    );
    drop(slow);
    db.drop_database().await;
}
