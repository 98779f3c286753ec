//! Handler tests: requests built from the Lambda event fixtures in `events/`, the in-memory sink and a
//! fixed clock. The same fixtures drive `cargo lambda invoke --data-file` and `sam local invoke -e`.

use std::sync::Arc;
use std::time::Duration;

use commerce_analytics::api::Api;
use commerce_analytics::auth::KeyRing;
use commerce_analytics::clock::FixedClock;
use commerce_analytics::config::Config;
use commerce_analytics::event::{EventType, Validator};
use commerce_analytics::sink::{EventSink, MemorySink, SinkError};
use commerce_analytics::tracker::Tracker;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};
use time::macros::datetime;

const NOW: time::OffsetDateTime = datetime!(2025-01-15 10:40:00 UTC);

fn config() -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/local.yaml");
    let text = std::fs::read_to_string(path).expect("config/local.yaml");
    Config::from_sources(Some(&text), &|_| None).expect("local config is valid")
}

fn api_with(sink: Arc<dyn EventSink>) -> Api {
    let c = config();
    let tracker = Tracker::new(
        Validator::from_config(&c),
        sink,
        Arc::new(FixedClock::new(NOW)),
    );
    Api::new(Arc::new(tracker), KeyRing::from_config(&c.keys), c.limits)
}

fn fixture(name: &str) -> Request {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn with_body(mut req: Request, body: String) -> Request {
    *req.body_mut() = Body::Text(body);
    req
}

fn body_json(resp: &Response<Body>) -> Value {
    serde_json::from_slice(resp.body().as_ref()).expect("JSON body")
}

fn assert_error(resp: &Response<Body>, status: u16, code: &str, field: Option<&str>) {
    assert_eq!(resp.status().as_u16(), status, "{:?}", resp.body());
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body = body_json(resp);
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body["error"]["field"].as_str(), field, "{body}");
}

#[tokio::test]
async fn spec_track_example_is_accepted_and_enriched_from_the_gateway_request() {
    let sink = Arc::new(MemorySink::new());
    let resp = api_with(sink.clone())
        .handle(fixture("track-event.json"))
        .await;
    assert_eq!(resp.status(), 202);
    let id = body_json(&resp)["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("evt_"), "{id}");
    let events = sink.events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.id.as_str(), &e.event_type, e.store_id.as_str()),
        (id.as_str(), &EventType::ProductViewed, "demo")
    );
    assert_eq!(e.timestamp, NOW, "receive time when the client sends none");
    assert_eq!(
        e.context.ip.as_deref(),
        Some("203.0.113.0"),
        "API Gateway source IP, anonymized"
    );
    assert_eq!(
        e.context.country.as_deref(),
        Some("DE"),
        "from CloudFront-Viewer-Country"
    );
    assert_eq!(
        e.context.referrer.as_deref(),
        Some("https://shop.example.com/products/prod_abc123")
    );
    assert!(
        e.context
            .user_agent
            .as_deref()
            .is_some_and(|ua| ua.contains("Safari"))
    );
    assert_eq!(e.properties["price"], 2999);
}

#[tokio::test]
async fn base64_encoded_bodies_are_decoded_like_plain_ones() {
    let sink = Arc::new(MemorySink::new());
    let resp = api_with(sink.clone())
        .handle(fixture("track-event-base64.json"))
        .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(sink.events()[0].properties["productId"], "prod_abc123");
}

#[tokio::test]
async fn client_ids_and_context_are_kept() {
    let sink = Arc::new(MemorySink::new());
    let resp = api_with(sink.clone())
        .handle(fixture("track-order.json"))
        .await;
    assert_eq!(resp.status(), 202);
    assert_eq!(body_json(&resp)["id"], "evt_abc123");
    let e = &sink.events()[0];
    assert_eq!(e.context.referrer.as_deref(), Some("https://google.com"));
    assert_eq!(e.context.country.as_deref(), Some("US"));
    assert_eq!(e.customer_id.as_deref(), Some("cust_abc123"));
}

#[tokio::test]
async fn batch_accepts_valid_events_and_reports_invalid_ones_by_index() {
    let sink = Arc::new(MemorySink::new());
    let resp = api_with(sink.clone())
        .handle(fixture("track-batch.json"))
        .await;
    assert_eq!(resp.status(), 202);
    let body = body_json(&resp);
    let accepted: Vec<u64> = body["accepted"]
        .as_array()
        .expect("array")
        .iter()
        .map(|a| a["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(accepted, vec![0, 1]);
    assert_eq!(body["rejected"][0]["index"], 2);
    assert_eq!(body["rejected"][0]["error"]["field"], "properties.total");
    assert_eq!(body["rejected"][0]["error"]["code"], "invalid_value");
    let stored = sink.events();
    assert_eq!(stored.len(), 2);
    let campaign = stored[0]
        .context
        .campaign
        .clone()
        .expect("utm from page url");
    assert_eq!(campaign.name.as_deref(), Some("weekly_digest"));
}

/// One row per bad request: (request, status, code, field).
#[tokio::test]
async fn bad_requests_get_a_json_error_naming_the_field() {
    let too_many = json!({"events": vec![json!({"type": "page.viewed"}); 501]}).to_string();
    let huge = format!(
        r#"{{"type":"page.viewed","properties":{{"x":"{}"}}}}"#,
        "a".repeat(1024 * 1024)
    );
    let big_event = format!(
        r#"{{"type":"page.viewed","properties":{{"x":"{}"}}}}"#,
        "a".repeat(40 * 1024)
    );
    let cases: Vec<(Request, u16, &str, Option<&str>)> = vec![
        (
            fixture("track-invalid.json"),
            400,
            "invalid_value",
            Some("properties.currency"),
        ),
        (
            fixture("track-unauthorized.json"),
            401,
            "unauthorized",
            None,
        ),
        (
            fixture("track-malformed-json.json"),
            400,
            "invalid_json",
            Some("body"),
        ),
        (
            with_body(fixture("track-event.json"), String::new()),
            400,
            "empty_body",
            Some("body"),
        ),
        (
            with_body(fixture("track-event.json"), huge),
            413,
            "payload_too_large",
            Some("body"),
        ),
        (
            with_body(fixture("track-event.json"), big_event),
            413,
            "payload_too_large",
            Some("body"),
        ),
        (
            with_body(fixture("track-batch.json"), too_many),
            413,
            "payload_too_large",
            Some("events"),
        ),
        (
            with_body(fixture("track-batch.json"), r#"{"events": []}"#.into()),
            400,
            "empty_batch",
            Some("events"),
        ),
        (
            with_body(fixture("track-batch.json"), r#"{"evnts": []}"#.into()),
            400,
            "invalid_json",
            Some("events"),
        ),
        (
            with_body(
                fixture("track-event.json"),
                r#"{"type":"page.viewed","sesionId":"x"}"#.into(),
            ),
            400,
            "unknown_field",
            Some("sesionId"),
        ),
    ];
    for (req, status, code, field) in cases {
        let sink = Arc::new(MemorySink::new());
        let resp = api_with(sink.clone()).handle(req).await;
        assert_error(&resp, status, code, field);
        assert!(
            sink.events().is_empty(),
            "nothing stored for a rejected request"
        );
    }
}

#[tokio::test]
async fn a_batch_with_no_valid_event_is_a_400_with_the_per_index_report() {
    let sink = Arc::new(MemorySink::new());
    let req = with_body(
        fixture("track-batch.json"),
        r#"[{"type":"nope"},{"sessionId":"s"}]"#.into(),
    );
    let resp = api_with(sink).handle(req).await;
    assert_error(&resp, 400, "invalid_batch", Some("events"));
    let body = body_json(&resp);
    assert_eq!(body["rejected"][1]["error"]["field"], "type");
}

#[tokio::test]
async fn a_full_pipeline_answers_503_with_retry_after_and_the_ids_not_accepted() {
    let sink = Arc::new(MemorySink::new());
    sink.fail_next(SinkError::Full {
        capacity: 10,
        retry_after: Duration::from_secs(5),
    });
    let resp = api_with(sink.clone())
        .handle(fixture("track-order.json"))
        .await;
    assert_error(&resp, 503, "unavailable", None);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(body_json(&resp)["failedIds"], json!(["evt_abc123"]));
    assert!(sink.events().is_empty());
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let api = api_with(Arc::new(MemorySink::new()));
    let mut req = fixture("track-event.json");
    *req.uri_mut() = "https://abc123.execute-api.us-east-1.amazonaws.com/analytics/nope"
        .parse()
        .expect("uri");
    assert_error(&api.handle(req).await, 404, "not_found", None);
    let mut req = fixture("track-event.json");
    *req.method_mut() = lambda_http::http::Method::GET;
    assert_error(&api.handle(req).await, 405, "method_not_allowed", None);
}

#[tokio::test]
async fn browsers_get_cors_headers_and_preflight_answers() {
    let api = api_with(Arc::new(MemorySink::new()));
    let mut req = fixture("track-event.json");
    req.headers_mut().insert(
        "origin",
        "https://shop.example.com".parse().expect("header"),
    );
    let resp = api.handle(req).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let mut pre = fixture("track-event.json");
    *pre.method_mut() = lambda_http::http::Method::OPTIONS;
    let resp = api.handle(pre).await;
    assert_eq!(resp.status(), 204);
    assert!(
        resp.headers()["access-control-allow-headers"]
            .to_str()
            .expect("ascii")
            .contains("authorization")
    );
}

/// CORS per route: track routes for any origin at the preflight, read routes for `dashboard_origins`
/// only, other routes never; each preflight allows only the route's methods.
#[tokio::test]
async fn cross_origin_calls_are_allowed_per_route() {
    let api = api_with(Arc::new(MemorySink::new()))
        .with_read_origins(&["https://bi.example.com".to_owned()]);
    let request = |method: &str, path: &str, origin: &str| {
        let mut req = fixture("track-event.json");
        *req.method_mut() = method.parse().expect("method");
        *req.uri_mut() = format!("https://api.example.com{path}")
            .parse()
            .expect("uri");
        req.headers_mut()
            .insert("origin", origin.parse().expect("header"));
        req
    };
    let shop = "https://shop.example.com";
    let bi = "https://bi.example.com";
    let evil = "https://evil.example";
    // (method, path, origin, allowed origin, allowed methods of a preflight)
    let cases = [
        ("OPTIONS", "/analytics/events", evil, true, "POST, OPTIONS"),
        ("OPTIONS", "/analytics/metrics", bi, true, "GET, OPTIONS"),
        ("OPTIONS", "/analytics/metrics", evil, false, "GET, OPTIONS"),
        (
            "OPTIONS",
            "/analytics/customers/c1",
            evil,
            false,
            "DELETE, OPTIONS",
        ),
        (
            "OPTIONS",
            "/analytics/customers/c1",
            bi,
            true,
            "DELETE, OPTIONS",
        ),
        (
            "OPTIONS",
            "/analytics/dashboards/d1",
            bi,
            true,
            "GET, PUT, DELETE, OPTIONS",
        ),
        ("OPTIONS", "/health", evil, false, "OPTIONS"),
        ("GET", "/analytics/metrics?metric=orders", evil, false, ""),
        ("GET", "/analytics/metrics?metric=orders", bi, true, ""),
        ("DELETE", "/analytics/customers/c1", evil, false, ""),
        ("POST", "/analytics/event", shop, true, ""),
    ];
    for (method, path, origin, allowed, methods) in cases {
        let resp = api.handle(request(method, path, origin)).await;
        let allow = resp
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().expect("ascii").to_owned());
        assert_eq!(
            allow.as_deref(),
            allowed.then_some(origin),
            "{method} {path} from {origin}"
        );
        if method == "OPTIONS" {
            assert_eq!(resp.status(), 204, "{path}");
            assert_eq!(
                resp.headers()["access-control-allow-methods"],
                methods,
                "{method} {path}"
            );
        }
    }
}

#[tokio::test]
async fn disabled_analytics_acknowledges_and_stores_nothing() {
    let api = api_with(Arc::new(commerce_analytics::sink::DiscardSink));
    let resp = api.handle(fixture("track-event.json")).await;
    assert_eq!(resp.status(), 202);
}

#[tokio::test]
async fn server_side_tracker_uses_the_same_validation() {
    let sink = Arc::new(MemorySink::new());
    let c = config();
    let tracker = Tracker::new(
        Validator::from_config(&c),
        sink.clone(),
        Arc::new(FixedClock::new(NOW)),
    );
    let id = tracker
        .track(
            "shop-1",
            json!({"id": "order_1_completed", "type": "order.completed", "customerId": "c1",
                   "properties": {"orderId": "order_1", "total": 100, "currency": "USD"}}),
        )
        .await
        .expect("valid");
    assert_eq!(id, "order_1_completed");
    assert_eq!(sink.events()[0].store_id, "shop-1");
    let err = tracker
        .track("shop-1", json!({"type": "order.completed"}))
        .await
        .expect_err("invalid");
    assert_eq!(
        (err.status(), err.field()),
        (400, Some("properties.orderId"))
    );
}

#[tokio::test]
async fn a_key_over_its_rate_limit_gets_429_with_retry_after_and_other_keys_go_on() {
    let c = Config::from_sources(
        Some(
            &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../config/local.yaml"))
                .expect("config"),
        ),
        &|k: &str| match k {
            "ANALYTICS_RATE_LIMIT_PER_SECOND" => Some("1".into()),
            "ANALYTICS_RATE_LIMIT_BURST" => Some("2".into()),
            _ => None,
        },
    )
    .expect("config");
    let clock = Arc::new(FixedClock::new(NOW));
    let sink = Arc::new(MemorySink::new());
    let tracker = Tracker::new(Validator::from_config(&c), sink.clone(), clock.clone());
    let api = Api::new(Arc::new(tracker), KeyRing::from_config(&c.keys), c.limits)
        .with_rate_limit(&c, clock.clone());

    for _ in 0..2 {
        assert_eq!(api.handle(fixture("track-event.json")).await.status(), 202);
    }
    let limited = api.handle(fixture("track-event.json")).await;
    assert_error(&limited, 429, "rate_limited", None);
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(sink.events().len(), 2, "the limited request stored nothing");
    // Unknown keys are refused before the limiter (they have no bucket to drain).
    assert_error(
        &api.handle(fixture("track-unauthorized.json")).await,
        401,
        "unauthorized",
        None,
    );
    clock.advance(time::Duration::seconds(1));
    assert_eq!(api.handle(fixture("track-event.json")).await.status(), 202);
}

#[tokio::test]
async fn a_write_key_limited_to_origins_refuses_other_sites_browsers() {
    let c = Config::from_sources(None, &|k: &str| match k {
        "CLICKHOUSE_URL" => Some("http://127.0.0.1:8123".into()),
        "ANALYTICS_API_KEYS" => {
            Some("pk_dev_demo_write_0000000000000000:demo:write:https://shop.example.com".into())
        }
        _ => None,
    })
    .expect("config");
    let sink = Arc::new(MemorySink::new());
    let tracker = Tracker::new(
        Validator::from_config(&c),
        sink.clone(),
        Arc::new(FixedClock::new(NOW)),
    );
    let api = Api::new(Arc::new(tracker), KeyRing::from_config(&c.keys), c.limits);
    let from = |origin: Option<&str>| {
        let mut req = fixture("track-event.json");
        if let Some(o) = origin {
            req.headers_mut()
                .insert("origin", o.parse().expect("header value"));
        }
        req
    };
    assert_eq!(
        api.handle(from(Some("https://shop.example.com")))
            .await
            .status(),
        202
    );
    assert_error(
        &api.handle(from(Some("https://evil.example"))).await,
        403,
        "forbidden",
        None,
    );
    assert_eq!(
        api.handle(from(None)).await.status(),
        202,
        "server-side calls carry no Origin"
    );
    assert_eq!(sink.events().len(), 2, "the refused request stored nothing");
}
