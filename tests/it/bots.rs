//! Bots on the real ClickHouse: flagged at track time from the visitor's user agent, stored with
//! `is_bot`, and left out of every metric, ranked metric, funnel, cohort and dashboard unless the query
//! says `includeBots=true`, including the reads the hourly rollup answers.

use commerce_analytics::api::Api;
use commerce_analytics::demo::{DemoConfig, DemoGenerator};
use commerce_analytics::event::{Event, RequestMeta, Validator};
use commerce_analytics::query::dashboards::BUILT_IN;
use commerce_analytics::query::metrics::Metric;
use commerce_analytics::query::ranked::Ranked;
use commerce_analytics::store::EventStore;
use integration_tests::{READ_KEY, TestDb, WRITE_KEY, call, call_with};
use serde_json::{Value, json};

const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// Every read the API offers, each as a path and query string.
fn reads() -> Vec<String> {
    let mut reads = Vec::new();
    for m in Metric::ALL {
        // Daily UTC buckets (the rollup answers visitors and product views) and Kolkata (raw events).
        reads.push(format!("/analytics/metrics?metric={}&period=30d", m.name()));
        reads.push(format!(
            "/analytics/metrics?metric={}&period=7d&timezone=Asia/Kolkata",
            m.name()
        ));
    }
    for r in Ranked::ALL {
        reads.push(format!("/analytics/metrics?metric={}&period=30d", r.name()));
    }
    for by in ["session", "customer"] {
        reads.push(format!(
            "/analytics/funnel?steps=product.viewed,cart.item_added,checkout.started,order.completed\
             &period=30d&by={by}"
        ));
    }
    reads.push("/analytics/cohorts?interval=week&period=90d".to_owned());
    for id in BUILT_IN {
        reads.push(format!("/analytics/dashboards/{id}?period=30d"));
    }
    reads
}

fn with_bots(path: &str) -> String {
    format!("{path}&includeBots=true")
}

/// A quarter of the demo sessions, by a fixed rule on the session id.
fn is_bot_session(e: &Event) -> bool {
    e.session_id
        .as_deref()
        .is_some_and(|s| s.bytes().map(u32::from).sum::<u32>() % 4 == 0)
}

async fn get(api: &Api, path: &str) -> Value {
    let (status, body) = call(api, "GET", path, READ_KEY, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

#[tokio::test]
async fn every_read_leaves_bots_out_unless_asked_and_then_counts_them_like_anyone() {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("ns");
    let cfg = DemoConfig {
        seed: 7,
        // Enough sessions that bots' orders fall in every 30-day window (10 events a session, 2% of
        // sessions order, a quarter of sessions flagged): ~15 bot orders in the last 30 days.
        events: 36_000,
        days: 40,
        end: now - time::Duration::minutes(1),
    };
    let mixed = TestDb::new("bots_mixed").await;
    let validator = Validator::from_config(&mixed.config);
    let events: Vec<Event> = DemoGenerator::new(cfg)
        .map(|v| {
            let mut e = validator
                .validate(v, "shop-a", &RequestMeta::default(), now)
                .expect("demo events are valid");
            e.bot = is_bot_session(&e);
            e
        })
        .collect();
    let bots = events.iter().filter(|e| e.bot).count();
    assert!(bots > 1_000 && bots < events.len() / 2, "{bots} bot events");
    let month_ago = now - time::Duration::days(29);
    let bot_orders = events
        .iter()
        .filter(|e| e.bot && e.event_type.as_str() == "order.completed" && e.timestamp > month_ago)
        .count();
    assert!(
        bot_orders >= 3,
        "{bot_orders} bot orders in the last 29 days: too few for revenue to show them"
    );

    // Three databases: the mix; its humans alone; the same events with nobody flagged.
    let humans = TestDb::new("bots_humans").await;
    let unflagged = TestDb::new("bots_unflagged").await;
    let human_events: Vec<Event> = events.iter().filter(|e| !e.bot).cloned().collect();
    let plain: Vec<Event> = events
        .iter()
        .cloned()
        .map(|mut e| {
            e.bot = false;
            e
        })
        .collect();
    for (db, batch) in [
        (&mixed, &events),
        (&humans, &human_events),
        (&unflagged, &plain),
    ] {
        db.store.insert_batches(batch, 5_000).await.expect("stored");
    }
    let flagged: u64 = mixed
        .scalar("SELECT countIf(is_bot) FROM commerce_events")
        .await;
    assert_eq!(flagged, bots as u64, "stored, flagged, not dropped");

    let (mixed_api, humans_api, unflagged_api) =
        (mixed.api(now), humans.api(now), unflagged.api(now));
    let mut changed = Vec::new();
    for path in reads() {
        let default = get(&mixed_api, &path).await;
        assert_eq!(
            default,
            get(&humans_api, &path).await,
            "{path}: by default bots are left out"
        );
        let included = get(&mixed_api, &with_bots(&path)).await;
        let mut plain = get(&unflagged_api, &path).await;
        if path.contains("/dashboards/audience") {
            // Counted like anyone, but a flagged bot's device is `bot` (event::agent): the Devices
            // table has a `bot` row where the unflagged copy has their browsers' devices.
            let devices = |d: &Value| d["widgets"][1]["data"].clone();
            assert_eq!(devices(&included)["breakdown"], "device");
            assert_eq!(devices(&included)["total"], devices(&plain)["total"]);
            assert_eq!(
                devices(&included)["dataPoints"],
                devices(&plain)["dataPoints"]
            );
            assert!(
                devices(&included)["groups"]
                    .as_array()
                    .expect("groups")
                    .iter()
                    .any(|g| g["key"] == "bot"),
                "{path}: bots included show as the bot device"
            );
            plain["widgets"][1] = included["widgets"][1].clone();
        }
        assert_eq!(
            included, plain,
            "{path}: includeBots=true counts them like anyone"
        );
        if included != default {
            changed.push(path);
        }
    }
    // The comparison above is not vacuous: bots move the traffic and sales numbers.
    for metric in ["visitors", "sessions", "product_views", "revenue"] {
        assert!(
            changed
                .iter()
                .any(|p| p.contains(&format!("metric={metric}&period=30d"))),
            "{metric} must change with includeBots: {changed:?}"
        );
    }

    let (status, body) = call(
        &mixed_api,
        "GET",
        "/analytics/metrics?metric=visitors&includeBots=yes",
        READ_KEY,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("includeBots")),
        "{body}"
    );
    for db in [mixed, humans, unflagged] {
        db.drop_database().await;
    }
}

#[tokio::test]
async fn the_track_endpoint_flags_bot_browsers_but_never_a_backend_reporting_an_order() {
    let db = TestDb::new("bots_track").await;
    let api = db.tracking_api();
    let order = json!({"type": "order.completed", "customerId": "c1",
        "properties": {"orderId": "o1", "total": 1000, "currency": "EUR"}});
    let view = json!({"type": "product.viewed", "sessionId": "s1",
        "properties": {"productId": "p1", "price": 100, "currency": "EUR"}});
    let mut headless_view = view.clone();
    headless_view["context"] = json!({"userAgent": "Mozilla/5.0 HeadlessChrome/120.0"});
    for (id, body, origin, user_agent, flagged) in [
        (
            "browser_human",
            &view,
            Some("https://shop.example"),
            CHROME,
            false,
        ),
        (
            "browser_bot",
            &view,
            Some("https://shop.example"),
            GOOGLEBOT,
            true,
        ),
        (
            "sdk_headless",
            &headless_view,
            Some("https://shop.example"),
            CHROME,
            true,
        ),
        ("backend_curl", &order, None, "curl/8.5.0", false),
        (
            "backend_python",
            &order,
            None,
            "python-requests/2.31",
            false,
        ),
    ] {
        let mut event = body.clone();
        event["id"] = json!(id);
        if let Some(p) = event["properties"].get_mut("orderId") {
            *p = json!(format!("order_{id}"));
        }
        let mut headers = vec![("user-agent", user_agent)];
        headers.extend(origin.map(|o| ("origin", o)));
        let (status, answer) = call_with(
            &api,
            "POST",
            "/analytics/event",
            WRITE_KEY,
            &headers,
            Some(event),
        )
        .await;
        assert_eq!(status, 202, "{id}: {answer}");
        let stored: u8 = db
            .scalar(&format!(
                "SELECT toUInt8(is_bot) FROM commerce_events WHERE id = '{id}'"
            ))
            .await;
        assert_eq!(stored == 1, flagged, "{id}");
    }
    // The orders from backends count; the bot's page view does not.
    let reads = db.api(time::OffsetDateTime::now_utc());
    let (_, body) = call(
        &reads,
        "GET",
        "/analytics/metrics?metric=orders&period=24h",
        READ_KEY,
        None,
    )
    .await;
    assert_eq!(body["total"], 2, "{body}");
    let (_, body) = call(
        &reads,
        "GET",
        "/analytics/metrics?metric=product_views&period=24h",
        READ_KEY,
        None,
    )
    .await;
    assert_eq!(body["total"], 1, "{body}");
    db.drop_database().await;
}

#[tokio::test]
async fn segment_and_ga4_orders_are_stored_canonical_and_counted_like_any_order() {
    let db = TestDb::new("aliases").await;
    let api = db.tracking_api();
    for (id, event) in [
        (
            "seg_order",
            json!({"type": "Order Completed", "properties": {"order_id": "seg-1", "total": 27.5,
                "subtotal": 25, "discount": 0, "shipping": 0, "tax": 2.5, "currency": "USD",
                "products": [{"product_id": "p1", "name": "Cap", "price": 12.5, "quantity": 2}]}}),
        ),
        (
            "ga4_order",
            json!({"type": "purchase", "properties": {"transaction_id": "ga4-1", "value": 67.91,
                "currency": "USD", "items": [{"item_id": "p2", "item_name": "Shirt", "price": 67.91}]}}),
        ),
    ] {
        let mut event = event;
        event["id"] = json!(id);
        let (status, answer) = call(&api, "POST", "/analytics/event", WRITE_KEY, Some(event)).await;
        assert_eq!(status, 202, "{id}: {answer}");
    }
    // A decimal that does not fit the currency is refused naming the field, before anything is stored.
    let (status, answer) = call(
        &api,
        "POST",
        "/analytics/event",
        WRITE_KEY,
        Some(json!({"type": "purchase", "properties": {"transaction_id": "x", "value": 1.005, "currency": "USD"}})),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("properties.value")),
        "{answer}"
    );
    let stored: String = db
        .scalar(&format!(
            "SELECT arrayStringConcat(groupArray(concat(type, ':', order_id, ':', toString(amount), ':', \
             JSONExtractString(JSONExtractArrayRaw(properties, 'items')[1], 'productId'))), ',') \
             FROM (SELECT * FROM {}.commerce_events ORDER BY order_id)",
            db.name
        ))
        .await;
    assert_eq!(
        stored,
        "order.completed:ga4-1:6791:p2,order.completed:seg-1:2750:p1"
    );
    let reads = db.api(time::OffsetDateTime::now_utc());
    let (_, body) = call(
        &reads,
        "GET",
        "/analytics/metrics?metric=revenue&period=24h&currency=USD",
        READ_KEY,
        None,
    )
    .await;
    assert_eq!(body["total"], 6791 + 2750, "{body}");
    db.drop_database().await;
}
