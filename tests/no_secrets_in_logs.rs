//! No secret ever reaches the logs: the local server runs a full session (tracking, a Firehose delivery,
//! reads, an erasure, and every kind of refusal: unknown key, wrong kind of key, wrong Firehose access key,
//! rate limit) with every log level on and the Lambda's JSON format, and the captured output is searched for
//! each secret: API keys, the Firehose access key, the ClickHouse password.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use analytics_cli::server::{self, ServerOptions};
use base64::Engine;
use integration_tests::{READ_KEY, TestDb, WRITE_KEY, clickhouse_url};
use serde_json::json;

const FIREHOSE_KEY: &str = "firehose_access_key_not_for_logs_0001";
const CLICKHOUSE_PASSWORD: &str = "clickhouse_password_not_for_logs_0001";

/// The log sink: everything the subscriber writes, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

#[tokio::test]
async fn a_full_session_logs_no_key_access_key_or_password() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .try_init()
        .expect("this test binary's only subscriber");

    let db = TestDb::on(
        &clickhouse_url(),
        "nosecrets",
        &[
            ("FIREHOSE_ACCESS_KEY", FIREHOSE_KEY),
            ("ANALYTICS_RATE_LIMIT_PER_SECOND", "1"),
            ("ANALYTICS_RATE_LIMIT_BURST", "6"),
        ],
    )
    .await;
    tracing::info!(config = ?db.config, "configuration as a careless caller would log it");
    let spill = std::env::temp_dir().join(format!("nosecrets-{}", ulid::Ulid::new()));
    let srv = server::start(
        &db.config,
        ServerOptions {
            addr: "127.0.0.1:0".parse().expect("addr"),
            spill_dir: spill.clone(),
            wal_dir: spill.join("wal"),
            shutdown_grace: Duration::from_secs(5),
        },
    )
    .await
    .expect("server starts");
    let base = format!("http://{}", srv.addr);
    let http = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str, key: &str, body: Option<serde_json::Value>| {
        let mut req = http
            .request(method, format!("{base}{path}"))
            .header("authorization", format!("Bearer {key}"));
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { req.send().await.expect("response").status().as_u16() }
    };

    let event = json!({"type": "order.completed", "customerId": "cust_secret_test",
        "sessionId": "s1", "properties": {"orderId": "o1", "total": 1999, "currency": "USD"}});
    let mut statuses = vec![
        send(
            reqwest::Method::POST,
            "/analytics/event",
            WRITE_KEY,
            Some(event),
        )
        .await,
        send(
            reqwest::Method::POST,
            "/analytics/event",
            "pk_unknown_key_0000",
            None,
        )
        .await,
        send(
            reqwest::Method::GET,
            "/analytics/metrics?metric=orders&period=7d",
            WRITE_KEY,
            None,
        )
        .await,
        send(
            reqwest::Method::GET,
            "/analytics/metrics?metric=orders&period=7d",
            READ_KEY,
            None,
        )
        .await,
        send(
            reqwest::Method::DELETE,
            "/analytics/customers/cust_secret_test",
            READ_KEY,
            None,
        )
        .await,
    ];
    // A Firehose delivery with the right access key, then with a wrong one.
    let record = base64::engine::general_purpose::STANDARD.encode(
        json!({"id": "evt_logs_1", "storeId": "shop-a", "type": "page.viewed",
               "timestamp": time::OffsetDateTime::now_utc()
                   .format(&time::format_description::well_known::Rfc3339).expect("ts"),
               "properties": {}, "context": {}})
        .to_string(),
    );
    for key in [FIREHOSE_KEY, "wrong_access_key_0000000000000"] {
        let delivery = json!({"requestId": "req-logs-1", "timestamp": 1_764_180_000_000_i64,
                              "records": [{"data": record}]});
        let status = http
            .post(format!("{base}/analytics/ingest/firehose"))
            .header("x-amz-firehose-request-id", "req-logs-1")
            .header("x-amz-firehose-access-key", key)
            .json(&delivery)
            .send()
            .await
            .expect("response")
            .status()
            .as_u16();
        statuses.push(status);
    }
    // Over the write key's burst: refused by the rate limiter.
    let mut limited = false;
    for _ in 0..8 {
        limited |= send(
            reqwest::Method::POST,
            "/analytics/event",
            WRITE_KEY,
            Some(json!({"type": "page.viewed"})),
        )
        .await
            == 429;
    }
    // The local engine has no users to create, so the password is exercised where it matters most: a
    // ClickHouse that refuses it, whose error is logged by the read path.
    let mut with_password = db.config.clone();
    with_password.clickhouse.user = Some("default".into());
    with_password.clickhouse.password =
        commerce_analytics::config::Secret::new(CLICKHOUSE_PASSWORD);
    tracing::info!(config = ?with_password, "configuration with a password");
    let refused = integration_tests::call(
        &commerce_analytics::lambda::store_routes_api_for(&with_password).expect("api"),
        "GET",
        "/analytics/metrics?metric=orders&period=7d",
        READ_KEY,
        None,
    )
    .await;
    statuses.push(refused.0);
    assert_eq!(
        statuses,
        [202, 401, 403, 200, 200, 200, 403, 500],
        "the session ran as planned"
    );
    assert!(limited, "the rate limit was reached");
    let _ = srv.stop().await;
    let _ = std::fs::remove_dir_all(&spill);

    let logs = captured.text();
    for needle in [
        "customer erased",
        "rate limited",
        "applied migration",
        "Authentication failed",
    ] {
        assert!(
            logs.contains(needle),
            "the capture holds the session's logs ({needle})"
        );
    }
    for secret in [
        WRITE_KEY,
        READ_KEY,
        FIREHOSE_KEY,
        CLICKHOUSE_PASSWORD,
        "wrong_access_key_0000000000000",
        "pk_unknown_key_0000",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the logs: {secret}"
        );
    }
    db.drop_database().await;
}
