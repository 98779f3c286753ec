//! Property tests of the event contract with hostile input: quotes, SQL fragments, control characters,
//! astral-plane characters, huge numbers, deep nesting, odd timestamps, in every field.
//!
//! Invariants:
//! 1. validation never panics: an event is accepted, or refused with a code and the field at fault;
//! 2. an accepted event survives the Firehose record format (JSON line → `Event`) unchanged and passes the
//!    ingest path's re-validation (what track accepts, ingest accepts);
//! 3. accepted events round-trip through the real ClickHouse unchanged: every stored column equals what the
//!    event said, `properties` parses back to the same JSON.

use std::net::{IpAddr, Ipv4Addr};

use commerce_analytics::event::{Event, RequestMeta, Validator};
use commerce_analytics::store::clickhouse::EventRow;
use commerce_analytics::store::{EventStore, dedup_token};
use integration_tests::TestDb;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::{Map, Value, json};

fn validator() -> Validator {
    Validator {
        limits: Default::default(),
        retention_days: 365,
        anonymize_ip: true,
    }
}

fn now() -> time::OffsetDateTime {
    time::macros::datetime!(2026-11-26 12:00 UTC)
}

/// Strings a hostile or buggy client sends.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_-]{1,24}",
        Just("'; DROP TABLE commerce_events; --".to_owned()),
        Just("\" OR 1=1 --".to_owned()),
        Just("{store:String}".to_owned()),
        Just("\\\\'\\\"".to_owned()),
        Just("\u{0}\u{1}\u{7f}".to_owned()),
        Just("😀𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ü ß 漢字".to_owned()),
        Just("\u{202e}rtl\u{200b}zero-width".to_owned()),
        Just(" leading and trailing ".to_owned()),
        "\\PC{0,40}",
        ".{0,200}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        nasty_string().prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(10, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(nasty_string(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event_json() -> impl Strategy<Value = Value> {
    let types = prop_oneof![
        Just("page.viewed"),
        Just("product.viewed"),
        Just("cart.item_added"),
        Just("order.completed"),
        Just("wishlist.item_added"),
        Just("not a type"),
        Just("'; DROP"),
    ];
    let timestamp = prop_oneof![
        Just(None),
        Just(Some(json!("2026-11-26T11:59:00Z"))),
        Just(Some(json!("2026-11-26T11:59:00.123+02:00"))),
        Just(Some(json!("2999-01-01T00:00:00Z"))),
        Just(Some(json!("1970-01-01T00:00:00Z"))),
        Just(Some(json!("yesterday"))),
        Just(Some(json!(1_764_158_340_000_i64))),
    ];
    (
        types,
        prop::option::of(nasty_string()),
        prop::option::of(nasty_string()),
        prop::option::of(nasty_string()),
        prop::collection::btree_map(nasty_string(), json_value(), 0..8),
        timestamp,
        prop::option::of(prop::sample::select(vec![
            json!({"productId": "p1", "price": 1999, "currency": "USD", "quantity": 2}),
            json!({"orderId": "o'1", "total": 5000, "currency": "EUR"}),
            json!({"total": 1e30, "currency": "usd"}),
        ])),
    )
        .prop_map(|(t, id, session, customer, props, ts, facts)| {
            let mut properties: Map<String, Value> = props.into_iter().collect();
            if let Some(Value::Object(f)) = facts {
                properties.extend(f);
            }
            let mut e = json!({"type": t, "properties": properties});
            if let Some(id) = id {
                e["id"] = json!(id);
            }
            if let Some(s) = session {
                e["sessionId"] = json!(s);
            }
            if let Some(c) = customer {
                e["customerId"] = json!(c);
            }
            if let Some(ts) = ts {
                e["timestamp"] = ts;
            }
            e
        })
}

fn meta() -> RequestMeta {
    RequestMeta {
        ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 42))),
        user_agent: Some("Mozilla/5.0 \"quoted\" \u{1}".into()),
        referrer: Some("https://example.com/?q='\"".into()),
        country: Some("DE".into()),
        from_browser: true,
    }
}

proptest! {
    #![proptest_config(RunnerConfig { cases: 512, ..RunnerConfig::default() })]

    #[test]
    fn validation_never_panics_and_accepted_events_survive_the_firehose_record_format(e in event_json()) {
        let v = validator();
        match v.validate(e, "shop-a", &meta(), now()) {
            Ok(event) => {
                let line = serde_json::to_string(&event).expect("encodes");
                let back: Event = serde_json::from_str(&line).expect("decodes");
                prop_assert_eq!(&back, &event);
                let mut again = back.clone();
                prop_assert!(v.revalidate(&mut again, now()).is_ok(), "ingest refuses what track accepted: {}", line);
                prop_assert_eq!(&again, &back, "ingest changes what track accepted: {}", line);
                let _ = EventRow::from_event(&event);
            }
            Err(err) => {
                prop_assert!(!err.code.is_empty());
                prop_assert!(!err.message.is_empty());
            }
        }
    }
}

#[derive(Debug, PartialEq, clickhouse::Row, serde::Deserialize, serde::Serialize)]
struct Stored {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    ts: i64,
    session_id: String,
    customer_id: String,
    properties: String,
    ip: String,
    user_agent: String,
    referrer: String,
    country: String,
    order_id: String,
    product_id: String,
    amount: i64,
    currency: String,
    quantity: i64,
}

fn expected(e: &Event) -> Stored {
    let r = EventRow::from_event(e);
    Stored {
        id: r.id.to_owned(),
        event_type: r.event_type.to_owned(),
        ts: (r.timestamp.unix_timestamp_nanos() / 1_000_000) as i64,
        session_id: r.session_id.to_owned(),
        customer_id: r.customer_id.to_owned(),
        properties: r.properties.clone(),
        ip: r.ip.to_owned(),
        user_agent: r.user_agent.to_owned(),
        referrer: r.referrer.to_owned(),
        country: r.country.to_owned(),
        order_id: r.order_id.to_owned(),
        product_id: r.product_id.to_owned(),
        amount: r.amount,
        currency: r.currency.to_owned(),
        quantity: r.quantity,
    }
}

#[tokio::test]
async fn accepted_hostile_events_round_trip_through_clickhouse_unchanged() {
    let db = TestDb::new("adversarial").await;
    // Deterministic: the same 6,000 candidate events on every run (most are refused, as they should be).
    let mut runner = TestRunner::deterministic();
    let strategy = event_json();
    let v = validator();
    let mut accepted: Vec<Event> = Vec::new();
    for _ in 0..6_000 {
        let candidate = strategy.new_tree(&mut runner).expect("generates").current();
        if let Ok(e) = v.validate(candidate, "shop-a", &meta(), now()) {
            accepted.push(e);
        }
    }
    // Ids repeat across candidates (the generator reuses strings); the store keeps the first of each.
    let mut seen = std::collections::HashSet::new();
    accepted.retain(|e| seen.insert(e.id.clone()));
    assert!(
        accepted.len() > 300,
        "enough hostile events pass validation to test storage: {}",
        accepted.len()
    );
    for chunk in accepted.chunks(500) {
        db.store
            .insert(chunk, &dedup_token(chunk))
            .await
            .expect("hostile but valid events insert");
    }
    let stored: Vec<Stored> = db
        .store
        .client()
        .query(
            "SELECT id, type, toUnixTimestamp64Milli(timestamp) AS ts, session_id, customer_id, properties, \
             ip, user_agent, referrer, country, order_id, product_id, amount, currency, quantity \
             FROM commerce_events WHERE store_id = 'shop-a' ORDER BY id",
        )
        .fetch_all()
        .await
        .expect("read back");
    let mut want: Vec<Stored> = accepted.iter().map(expected).collect();
    want.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
    assert_eq!(stored.len(), want.len());
    for (got, want) in stored.iter().zip(&want) {
        assert_eq!(got, want);
        let props: Value =
            serde_json::from_str(&got.properties).expect("stored properties are JSON");
        let event = accepted.iter().find(|e| e.id == got.id).expect("event");
        assert_eq!(props, Value::Object(event.properties.clone()));
    }
    db.drop_database().await;
}
