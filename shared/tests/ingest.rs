//! The Firehose destination driven by the delivery fixtures in `events/` (written from the AWS "HTTP
//! endpoint delivery request and response specifications"), with the in-memory store.

use std::sync::Arc;

use commerce_analytics::clock::FixedClock;
use commerce_analytics::config::Config;
use commerce_analytics::ingest::Ingest;
use commerce_analytics::store::MemoryStore;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use time::macros::datetime;

const ACCESS_KEY: &str = "dev_firehose_access_key_000000000";
const REQUEST_ID: &str = "ed4acda5-034f-9f42-bba1-f29aea6d7d8f";

fn ingest(store: Arc<MemoryStore>, batch_size: usize, max_bytes: usize) -> Ingest {
    let env = |name: &str| match name {
        "CLICKHOUSE_URL" => Some("http://127.0.0.1:8123".to_owned()),
        "FIREHOSE_ACCESS_KEY" => Some(ACCESS_KEY.to_owned()),
        "ANALYTICS_BATCH_SIZE" => Some(batch_size.to_string()),
        _ => None,
    };
    let mut config = Config::from_sources(None, &env).expect("config");
    config.limits.max_ingest_bytes = max_bytes;
    Ingest::new(
        store,
        &config,
        Arc::new(FixedClock::new(datetime!(2025-01-15 10:36:00 UTC))),
    )
}

fn fixture(name: &str) -> Request {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Checks the response format of the spec: JSON `{requestId, timestamp(ms)}` (+ errorMessage), with
/// Content-Type and Content-Length.
fn check_response(resp: &Response<Body>, status: u16, request_id: &str, error: bool) -> Value {
    assert_eq!(resp.status().as_u16(), status, "{:?}", resp.body());
    assert_eq!(resp.headers()["content-type"], "application/json");
    let len: usize = resp.headers()["content-length"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("number");
    assert_eq!(len, resp.body().as_ref().len());
    let body: Value = serde_json::from_slice(resp.body().as_ref()).expect("JSON");
    assert_eq!(body["requestId"], request_id);
    assert_eq!(body["timestamp"], 1_736_937_360_000_i64, "milliseconds");
    assert_eq!(body.get("errorMessage").is_some(), error, "{body}");
    body
}

#[tokio::test]
async fn a_plain_delivery_is_stored_and_acknowledged_with_its_request_id() {
    let store = Arc::new(MemoryStore::new());
    let resp = ingest(store.clone(), 1000, 1 << 20)
        .handle(fixture("firehose-delivery.json"))
        .await;
    check_response(&resp, 200, REQUEST_ID, false);
    let events = store.events();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].id, "evt_fixture_1");
    assert_eq!(events[0].store_id, "demo");
    assert_eq!(events[0].facts().amount, 6791);
    assert!(store.rejects().is_empty());
}

#[tokio::test]
async fn a_gzip_delivery_is_decoded_like_a_plain_one() {
    let store = Arc::new(MemoryStore::new());
    let resp = ingest(store.clone(), 1000, 1 << 20)
        .handle(fixture("firehose-delivery-gzip.json"))
        .await;
    check_response(&resp, 200, REQUEST_ID, false);
    let plain = Arc::new(MemoryStore::new());
    ingest(plain.clone(), 1000, 1 << 20)
        .handle(fixture("firehose-delivery.json"))
        .await;
    assert_eq!(store.events(), plain.events());
}

#[tokio::test]
async fn bad_records_go_to_rejects_with_a_reason_and_the_rest_is_stored() {
    let store = Arc::new(MemoryStore::new());
    let resp = ingest(store.clone(), 1000, 1 << 20)
        .handle(fixture("firehose-delivery-with-rejects.json"))
        .await;
    check_response(&resp, 200, REQUEST_ID, false);
    let ids: Vec<String> = store.events().iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids, vec!["evt_fixture_1", "evt_fixture_2"]);
    let rejects = store.rejects();
    let summary: Vec<(u32, &str)> = rejects
        .iter()
        .map(|r| (r.record_index, r.event_id.as_str()))
        .collect();
    assert_eq!(summary, vec![(1, ""), (2, "evt_fixture_5"), (3, "")]);
    assert!(
        rejects[0].reason.contains("base64"),
        "{}",
        rejects[0].reason
    );
    assert!(
        rejects[1].reason.contains("properties.total"),
        "{}",
        rejects[1].reason
    );
    assert!(
        rejects[2].reason.contains("not an event"),
        "{}",
        rejects[2].reason
    );
    assert_eq!(rejects[0].raw, "@@not-base64@@", "the raw payload is kept");
    assert!(
        rejects
            .iter()
            .all(|r| r.request_id == REQUEST_ID && r.source == "firehose")
    );
}

#[tokio::test]
async fn a_delivery_is_one_insert_whatever_batch_size_says() {
    // Firehose made the batch; `batch_size` (2 here) governs the local buffer and track's batches only.
    let store = Arc::new(MemoryStore::new());
    ingest(store.clone(), 2, 1 << 20)
        .handle(fixture("firehose-delivery.json"))
        .await;
    assert_eq!(store.batch_sizes(), vec![3]);
}

#[tokio::test]
async fn the_same_delivery_twice_is_stored_once() {
    let store = Arc::new(MemoryStore::new());
    let svc = ingest(store.clone(), 2, 1 << 20);
    for _ in 0..2 {
        check_response(
            &svc.handle(fixture("firehose-delivery.json")).await,
            200,
            REQUEST_ID,
            false,
        );
    }
    assert_eq!(store.events().len(), 3);
}

/// Every non-200 status the destination can answer, each with the spec's body.
#[tokio::test]
async fn every_failure_answers_the_spec_format_with_the_right_status() {
    let mut get = fixture("firehose-delivery.json");
    *get.method_mut() = lambda_http::http::Method::GET;
    let cases: Vec<(&str, Request, usize, u16)> = vec![
        (
            "missing access key",
            fixture("firehose-delivery-no-key.json"),
            1 << 20,
            401,
        ),
        (
            "wrong access key",
            fixture("firehose-delivery-wrong-key.json"),
            1 << 20,
            403,
        ),
        (
            "not a delivery",
            fixture("firehose-delivery-malformed.json"),
            1 << 20,
            400,
        ),
        (
            "over the size limit",
            fixture("firehose-delivery.json"),
            100,
            413,
        ),
        (
            "over the size limit once gunzipped",
            fixture("firehose-delivery-gzip.json"),
            900,
            413,
        ),
        ("not POST", get, 1 << 20, 405),
    ];
    for (what, req, max_bytes, status) in cases {
        let store = Arc::new(MemoryStore::new());
        let resp = ingest(store.clone(), 1000, max_bytes).handle(req).await;
        let body = check_response(&resp, status, REQUEST_ID, true);
        assert!(store.events().is_empty(), "{what}: nothing stored");
        assert!(
            !body["errorMessage"].as_str().unwrap_or("").is_empty(),
            "{what}"
        );
    }
}

#[tokio::test]
async fn storage_down_is_503_so_firehose_retries_and_the_retry_lands_once() {
    let store = Arc::new(MemoryStore::new());
    let svc = ingest(store.clone(), 2, 1 << 20);
    store.fail_next(1);
    check_response(
        &svc.handle(fixture("firehose-delivery.json")).await,
        503,
        REQUEST_ID,
        true,
    );
    check_response(
        &svc.handle(fixture("firehose-delivery.json")).await,
        200,
        REQUEST_ID,
        false,
    );
    assert_eq!(store.events().len(), 3);
}

#[tokio::test]
async fn rows_refused_by_storage_are_500_so_firehose_backs_them_up() {
    let store = Arc::new(MemoryStore::new());
    store.reject_next(1);
    let resp = ingest(store.clone(), 1000, 1 << 20)
        .handle(fixture("firehose-delivery.json"))
        .await;
    check_response(&resp, 500, REQUEST_ID, true);
}

/// A delivery of the given record texts, with the fixture's headers.
fn delivery_of(lines: &[&str]) -> Request {
    use base64::Engine as _;
    let mut req = fixture("firehose-delivery.json");
    let records: Vec<Value> = lines
        .iter()
        .map(|l| json!({ "data": base64::engine::general_purpose::STANDARD.encode(l) }))
        .collect();
    *req.body_mut() = Body::Text(
        json!({"requestId": REQUEST_ID, "timestamp": 1_736_937_360_000_i64, "records": records})
            .to_string(),
    );
    req
}

#[tokio::test]
async fn a_reject_that_names_its_store_is_kept_as_that_stores() {
    let store = Arc::new(MemoryStore::new());
    let resp = ingest(store.clone(), 1000, 1 << 20)
        .handle(delivery_of(&[
            r#"{"storeId": "shop-b", "type": 7}"#,
            r#"{"storeId": "Not A Store", "type": 7}"#,
            "not json",
        ]))
        .await;
    check_response(&resp, 200, REQUEST_ID, false);
    let stores: Vec<String> = store.rejects().into_iter().map(|r| r.store_id).collect();
    assert_eq!(
        stores,
        ["shop-b", "", ""],
        "attributed when it names a valid store, so that store's erasure finds it and no other's"
    );
}

#[tokio::test]
async fn records_get_exactly_the_track_rules_clamped_anonymized_or_rejected_with_a_reason() {
    let record = |id: &str, timestamp: &str, ip: &str| {
        format!(
            r#"{{"id": "{id}", "storeId": "demo", "type": "page.viewed", "timestamp": "{timestamp}",
                "receivedAt": "2025-01-15T10:35:01Z", "properties": {{}}, "context": {{"ip": "{ip}"}}}}"#
        )
        .replace('\n', " ")
    };
    let store = Arc::new(MemoryStore::new());
    let resp = ingest(store.clone(), 1000, 1 << 20)
        .handle(delivery_of(&[
            &record("future", "2090-01-01T00:00:00Z", "203.0.113.0"),
            &record("raw_ip", "2025-01-15T10:30:00Z", "1.2.3.4"),
            &record("too_old", "2000-01-01T00:00:00Z", "203.0.113.0"),
        ]))
        .await;
    check_response(&resp, 200, REQUEST_ID, false);
    let events = store.events();
    let future = events
        .iter()
        .find(|e| e.id == "future")
        .unwrap_or_else(|| panic!("stored; rejects: {:?}", store.rejects()));
    assert_eq!(
        future.timestamp,
        datetime!(2025-01-15 10:35:01 UTC),
        "a time far ahead is clamped to the receive time, as track does"
    );
    assert_eq!(
        future.client_timestamp,
        Some(datetime!(2090-01-01 00:00:00 UTC)),
        "and the sent time is kept"
    );
    let raw = events.iter().find(|e| e.id == "raw_ip").expect("stored");
    assert_eq!(raw.context.ip.as_deref(), Some("1.2.3.0"), "anonymized");
    assert!(events.iter().all(|e| e.id != "too_old"));
    let rejects = store.rejects();
    assert_eq!(rejects.len(), 1, "every record not stored is a reject");
    assert_eq!(rejects[0].event_id, "too_old");
    assert!(
        rejects[0].reason.contains("timestamp_out_of_range"),
        "{}",
        rejects[0].reason
    );
}

#[tokio::test]
async fn a_delivery_of_millions_of_tiny_records_is_refused_while_parsed() {
    use commerce_analytics::ingest::MAX_RECORDS;
    let store = Arc::new(MemoryStore::new());
    let mut req = fixture("firehose-delivery.json");
    let records = vec![r#"{"data":"QQ=="}"#; MAX_RECORDS + 1].join(",");
    *req.body_mut() = Body::Text(format!(
        r#"{{"requestId": "{REQUEST_ID}", "timestamp": 1, "records": [{records}]}}"#
    ));
    let resp = ingest(store.clone(), 1000, 64 << 20).handle(req).await;
    let body = check_response(&resp, 413, REQUEST_ID, true);
    assert!(
        body["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains(&MAX_RECORDS.to_string())),
        "{body}"
    );
    assert!(store.events().is_empty() && store.rejects().is_empty());
}

#[tokio::test]
async fn rejects_of_one_delivery_are_capped_and_the_rest_summed_up() {
    use commerce_analytics::ingest::MAX_REJECTS;
    let store = Arc::new(MemoryStore::new());
    let bad = "not an event";
    let lines = vec![bad; MAX_REJECTS + 1500];
    let resp = ingest(store.clone(), 1000, 1 << 20)
        .handle(delivery_of(&lines))
        .await;
    check_response(&resp, 200, REQUEST_ID, false);
    let rejects = store.rejects();
    assert_eq!(rejects.len(), MAX_REJECTS + 1, "bounded rows");
    let summary = &rejects[MAX_REJECTS];
    assert!(
        summary.reason.starts_with("1500 more records"),
        "{}",
        summary.reason
    );
}
