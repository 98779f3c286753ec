use super::*;
use crate::event::EventType;
use serde_json::Map;
use serde_json::json;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2025-01-15 10:40:00 UTC);

fn validator() -> Validator {
    Validator {
        limits: Limits::default(),
        retention_days: 365,
        anonymize_ip: true,
    }
}

fn check(v: Value) -> Result<Event, FieldError> {
    validator().validate(v, "demo", &RequestMeta::default(), NOW)
}

fn spec_order() -> Value {
    json!({
        "id": "evt_abc123",
        "type": "order.completed",
        "timestamp": "2025-01-15T10:35:00Z",
        "sessionId": "sess_xyz",
        "customerId": "cust_abc123",
        "properties": {"orderId": "order_xyz789", "total": 6791, "currency": "USD",
                       "itemCount": 2, "paymentMethod": "stripe"},
        "context": {"ip": "203.0.113.42", "userAgent": "Mozilla/5.0...",
                    "referrer": "https://google.com", "country": "US"}
    })
}

#[test]
fn spec_example_event_is_accepted_as_sent() {
    let e = check(spec_order()).expect("valid");
    assert_eq!(e.id, "evt_abc123");
    assert_eq!(e.event_type, EventType::OrderCompleted);
    assert_eq!(e.timestamp, datetime!(2025-01-15 10:35:00 UTC));
    assert_eq!(e.client_timestamp, Some(datetime!(2025-01-15 10:35:00 UTC)));
    assert_eq!(e.received_at, NOW);
    assert_eq!(e.session_id.as_deref(), Some("sess_xyz"));
    assert_eq!(e.context.country.as_deref(), Some("US"));
    assert_eq!(
        e.context.ip.as_deref(),
        Some("203.0.113.0"),
        "anonymized by default"
    );
    let f = e.facts();
    assert_eq!(
        (f.order_id, f.amount, f.currency, f.quantity),
        ("order_xyz789", 6791, "USD", 2)
    );
    assert_eq!(
        e.properties["paymentMethod"], "stripe",
        "extra properties are kept"
    );
}

/// One row per rule: (what is sent, the field that must be named, the code).
#[test]
fn invalid_events_are_rejected_with_the_field_named() {
    let with = |path: &str, v: Value| {
        let mut e = spec_order();
        let mut cur = &mut e;
        let parts: Vec<&str> = path.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            cur = cur.get_mut(*p).expect("path exists");
        }
        let last = parts[parts.len() - 1];
        if v.is_null() {
            cur.as_object_mut().expect("object").remove(last);
        } else {
            cur[last] = v;
        }
        e
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!([1, 2]), "", "invalid_type"),
        (json!({"sessionId": "s"}), "type", "missing_field"),
        (json!({"type": 5}), "type", "invalid_type"),
        (
            json!({"type": "Order Placed"}),
            "type",
            "invalid_event_type",
        ),
        (
            json!({"type": "page.viewed", "sessionID": "s"}),
            "sessionID",
            "unknown_field",
        ),
        (with("id", json!("has space")), "id", "invalid_id"),
        (with("id", json!("x".repeat(129))), "id", "invalid_id"),
        (
            with("timestamp", json!("15/01/2025")),
            "timestamp",
            "invalid_timestamp",
        ),
        (
            with("timestamp", json!("2020-01-01T00:00:00Z")),
            "timestamp",
            "timestamp_out_of_range",
        ),
        (with("sessionId", json!("")), "sessionId", "invalid_value"),
        (with("customerId", json!(42)), "customerId", "invalid_type"),
        (
            with("customerId", json!("a\u{0}b")),
            "customerId",
            "invalid_value",
        ),
        (with("properties", json!("x")), "properties", "invalid_type"),
        (
            with("properties.orderId", Value::Null),
            "properties.orderId",
            "missing_field",
        ),
        (
            with("properties.total", Value::Null),
            "properties.total",
            "missing_field",
        ),
        (
            with("properties.total", json!(67.91)),
            "properties.total",
            "invalid_value",
        ),
        (
            with("properties.total", json!("6791")),
            "properties.total",
            "invalid_type",
        ),
        (
            with("properties.total", json!(-1)),
            "properties.total",
            "invalid_value",
        ),
        (
            with("properties.total", json!(1e20)),
            "properties.total",
            "invalid_value",
        ),
        (
            with("properties.currency", json!("usd")),
            "properties.currency",
            "invalid_value",
        ),
        (
            with("properties.currency", json!("ZZZ")),
            "properties.currency",
            "invalid_value",
        ),
        (
            with("properties.currency", Value::Null),
            "properties.currency",
            "missing_field",
        ),
        (
            with("properties.itemCount", json!(-2)),
            "properties.itemCount",
            "invalid_value",
        ),
        (
            with("properties.items", json!([{"quantity": 1}])),
            "properties.items[0].productId",
            "missing_field",
        ),
        (
            with(
                "properties.items",
                json!([{"productId": "p", "quantity": 0}]),
            ),
            "properties.items[0].quantity",
            "invalid_value",
        ),
        (with("context", json!([])), "context", "invalid_type"),
        (
            with("context.ip", json!("999.1.1.1")),
            "context.ip",
            "invalid_value",
        ),
        (
            with("context.country", json!("us")),
            "context.country",
            "invalid_value",
        ),
        (
            with("context.country", json!("USA")),
            "context.country",
            "too_long",
        ),
        (
            with("context.locale", json!("en")),
            "context.locale",
            "unknown_field",
        ),
        (
            json!({"type": "product.viewed"}),
            "properties.productId",
            "missing_field",
        ),
        (
            json!({"type": "product.viewed", "properties": {"productId": "p", "price": 10}}),
            "properties.currency",
            "missing_field",
        ),
        (
            json!({"type": "cart.item_added", "properties": {"productId": "p", "quantity": 0}}),
            "properties.quantity",
            "invalid_value",
        ),
        (
            json!({"type": "payment.captured", "properties": {"orderId": "o", "currency": "USD"}}),
            "properties.amount",
            "missing_field",
        ),
        (
            json!({"type": "order.refunded", "properties": {"orderId": "o", "amount": 5}}),
            "properties.currency",
            "missing_field",
        ),
        (
            json!({"type": "inventory.updated", "properties": {"productId": "p"}}),
            "properties.quantity",
            "missing_field",
        ),
        (
            json!({"type": "inventory.updated", "properties": {"productId": "p", "quantity": -3}}),
            "properties.quantity",
            "invalid_value",
        ),
        (
            json!({"type": "page.viewed", "properties": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": 1}}}}}}}}}}}),
            "properties.a",
            "too_deep",
        ),
        // Every string has a length limit, every object a key limit.
        (with("id", json!("a".repeat(129))), "id", "invalid_id"),
        (
            with("sessionId", json!("s".repeat(129))),
            "sessionId",
            "too_long",
        ),
        (
            with("customerId", json!("c".repeat(129))),
            "customerId",
            "too_long",
        ),
        (
            with("anonymousId", json!("a".repeat(129))),
            "anonymousId",
            "too_long",
        ),
        (
            with("properties.orderId", json!("o".repeat(129))),
            "properties.orderId",
            "too_long",
        ),
        (
            with("properties.paymentMethod", json!("p".repeat(2049))),
            "properties.paymentMethod",
            "too_long",
        ),
        (
            with("context.userAgent", json!("u".repeat(1025))),
            "context.userAgent",
            "too_long",
        ),
        (
            with("context.referrer", json!("r".repeat(2049))),
            "context.referrer",
            "too_long",
        ),
        (
            json!({"type": "page.viewed", "properties": (0..101).map(|i| (format!("k{i}"), json!(i))).collect::<Map<String, Value>>()}),
            "properties",
            "too_many_properties",
        ),
    ];
    for (input, field, code) in cases {
        let err = check(input.clone()).expect_err(&format!("should reject {input}"));
        assert_eq!(
            (err.field.as_str(), err.code),
            (field, code),
            "input {input}: {err:?}"
        );
        assert!(!err.message.is_empty());
    }
}

#[test]
fn each_built_in_type_accepts_its_minimal_event() {
    let cases = [
        json!({"type": "page.viewed"}),
        json!({"type": "product.viewed", "properties": {"productId": "p1"}}),
        json!({"type": "cart.item_added", "properties": {"productId": "p1"}}),
        json!({"type": "cart.item_removed", "properties": {"productId": "p1", "quantity": 2}}),
        json!({"type": "checkout.started"}),
        json!({"type": "order.completed", "properties": {"orderId": "o", "total": 0, "currency": "EUR"}}),
        json!({"type": "payment.captured", "properties": {"orderId": "o", "amount": 10, "currency": "EUR"}}),
        json!({"type": "order.refunded", "properties": {"orderId": "o", "amount": 10, "currency": "EUR"}}),
        json!({"type": "inventory.updated", "properties": {"productId": "p1", "quantity": 0}}),
        json!({"type": "wishlist.item_added", "properties": {"anything": [1, {"x": null}]}}),
    ];
    for c in cases {
        check(c.clone()).unwrap_or_else(|e| panic!("{c} rejected: {e:?}"));
    }
}

#[test]
fn server_assigns_a_time_sortable_id_and_receive_time_when_absent() {
    let a = check(json!({"type": "page.viewed"})).expect("valid");
    assert!(a.id.starts_with("evt_") && a.id.len() == 30, "{}", a.id);
    assert_eq!(a.timestamp, NOW);
    assert_eq!(a.client_timestamp, None);
    let later = validator()
        .validate(
            json!({"type": "page.viewed"}),
            "demo",
            &RequestMeta::default(),
            NOW + time::Duration::SECOND,
        )
        .expect("valid");
    assert!(
        later.id[4..14] > a.id[4..14],
        "ULID time prefix sorts by time"
    );
}

#[test]
fn future_timestamps_are_clamped_and_the_original_is_kept() {
    let e =
        check(json!({"type": "page.viewed", "timestamp": "2025-01-15T11:00:00Z"})).expect("valid");
    assert_eq!(e.timestamp, NOW);
    assert_eq!(e.client_timestamp, Some(datetime!(2025-01-15 11:00:00 UTC)));
    let near = check(json!({"type": "page.viewed", "timestamp": "2025-01-15T10:44:00+00:00"}))
        .expect("valid");
    assert_eq!(
        near.timestamp,
        datetime!(2025-01-15 10:44:00 UTC),
        "within 5 minutes is kept"
    );
}

#[test]
fn offsets_are_normalised_to_utc() {
    let e = check(json!({"type": "page.viewed", "timestamp": "2025-01-15T12:00:00.123+02:00"}))
        .expect("valid");
    assert_eq!(e.timestamp, datetime!(2025-01-15 10:00:00.123 UTC));
}

#[test]
fn context_is_filled_from_the_request_when_absent() {
    let meta = RequestMeta {
        ip: Some("2001:db8:abcd:12::1".parse().expect("ip")),
        user_agent: Some("UA/1.0".into()),
        referrer: Some("https://ref.example/".into()),
        country: Some("de".into()),
        from_browser: true,
    };
    let e = validator()
        .validate(
            json!({"type": "page.viewed", "context": {"page": {"url": "https://shop.example/?utm_source=newsletter&utm_medium=email&utm_campaign=bf"}}}),
            "demo",
            &meta,
            NOW,
        )
        .expect("valid");
    assert_eq!(e.context.ip.as_deref(), Some("2001:db8:abcd::"));
    assert_eq!(e.context.user_agent.as_deref(), Some("UA/1.0"));
    assert_eq!(e.context.referrer.as_deref(), Some("https://ref.example/"));
    assert_eq!(e.context.country.as_deref(), Some("DE"));
    let c = e.context.campaign.expect("campaign from utm");
    assert_eq!(
        (c.source.as_deref(), c.medium.as_deref(), c.name.as_deref()),
        (Some("newsletter"), Some("email"), Some("bf"))
    );
}

#[test]
fn client_context_wins_over_request_headers() {
    let meta = RequestMeta {
        ip: Some("10.1.2.3".parse().expect("ip")),
        country: Some("FR".into()),
        ..Default::default()
    };
    let e = validator()
        .validate(spec_order(), "demo", &meta, NOW)
        .expect("valid");
    assert_eq!(e.context.country.as_deref(), Some("US"));
    assert_eq!(e.context.ip.as_deref(), Some("203.0.113.0"));
}

#[test]
fn bots_are_flagged_from_the_visitors_user_agent_only() {
    const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
    for (sent, header, from_browser, flagged) in [
        (Some(BOT), None, false, true),
        (Some(BOT), Some(CHROME), true, true),
        (None, Some(BOT), true, true),
        (None, Some("HeadlessChrome/120.0"), true, true),
        (None, Some("curl/8.5.0"), false, false),
        (None, Some("python-requests/2.31"), false, false),
        (Some(CHROME), Some("curl/8.5.0"), false, false),
        (None, Some(CHROME), true, false),
        (None, None, true, false),
    ] {
        let mut event = json!({"type": "page.viewed", "sessionId": "s"});
        if let Some(ua) = sent {
            event["context"] = json!({"userAgent": ua});
        }
        let meta = RequestMeta {
            user_agent: header.map(str::to_owned),
            from_browser,
            ..Default::default()
        };
        let e = validator()
            .validate(event, "demo", &meta, NOW)
            .expect("valid");
        assert_eq!(e.bot, flagged, "{sent:?} {header:?} browser={from_browser}");
    }
    let err = check(json!({"type": "page.viewed", "bot": false})).expect_err("server-set only");
    assert_eq!((err.code, err.field.as_str()), ("unknown_field", "bot"));
}

#[test]
fn raw_ip_is_kept_only_when_anonymization_is_off() {
    let v = Validator {
        anonymize_ip: false,
        ..validator()
    };
    let e = v
        .validate(spec_order(), "demo", &RequestMeta::default(), NOW)
        .expect("valid");
    assert_eq!(e.context.ip.as_deref(), Some("203.0.113.42"));
}

#[test]
fn oversized_and_malformed_json_text_is_rejected() {
    let big = format!(
        r#"{{"type":"page.viewed","properties":{{"x":"{}"}}}}"#,
        "a".repeat(40_000)
    );
    let err = validator()
        .parse(&big, "demo", &RequestMeta::default(), NOW)
        .expect_err("must fail");
    assert_eq!(err.code, "event_too_large");
    let err = validator()
        .parse("{\"type\":", "demo", &RequestMeta::default(), NOW)
        .expect_err("must fail");
    assert_eq!((err.code, err.field.as_str()), ("invalid_json", "body"));
    assert!(
        err.message.contains("line 1 column 8"),
        "says where: {}",
        err.message
    );
}

#[test]
fn enriched_event_round_trips_through_its_json_form() {
    let e = check(spec_order()).expect("valid");
    let text = serde_json::to_string(&e).expect("serializes");
    let back: Event = serde_json::from_str(&text).expect("parses");
    assert_eq!(back, e);
}

#[test]
fn an_orders_parts_must_add_up_to_its_total_when_all_are_sent() {
    let order = |total: i64, parts: Value| {
        let mut p = json!({"orderId": "o1", "total": total, "currency": "USD"});
        for (k, v) in parts.as_object().expect("parts") {
            p[k] = v.clone();
        }
        check(json!({"type": "order.completed", "properties": p}))
    };
    // Items of 100.00 with 10.00 off: subtotal 90.00; + 5.00 shipping + 7.20 tax = 102.20.
    let all = json!({"subtotal": 9_000, "discount": 1_000, "shipping": 500, "tax": 720});
    assert!(order(10_220, all.clone()).is_ok());
    let err = order(11_220, all).expect_err("does not add up");
    assert_eq!(
        (err.field.as_str(), err.code),
        ("properties.total", "invalid_value")
    );
    assert!(err.message.contains("10220"), "{}", err.message);
    // Some parts only: nothing to check against.
    assert!(order(1, json!({"tax": 720, "coupon": "HELLO"})).is_ok());
    // Each part is money; text parts are text.
    let err = order(1, json!({"shipping": 4.99})).expect_err("decimal");
    assert_eq!(err.field, "properties.shipping");
    let err = order(1, json!({"coupon": 5})).expect_err("not text");
    assert_eq!(err.field, "properties.coupon");
}

#[test]
fn items_carry_sku_name_brand_category_variant_coupon_and_discount() {
    let ok = check(
        json!({"type": "order.completed", "properties": {"orderId": "o", "total": 1, "currency": "USD",
        "items": [{"productId": "p", "sku": "S-1", "name": "Cap", "brand": "Acme", "category": "Apparel/Hats",
                   "variant": "red", "coupon": "X", "discount": 100, "price": 1200, "quantity": 1}]}}),
    );
    assert!(ok.is_ok(), "{ok:?}");
    for (item, field) in [
        (
            json!({"productId": "p", "discount": 1.5}),
            "properties.items[0].discount",
        ),
        (
            json!({"productId": "p", "brand": 7}),
            "properties.items[0].brand",
        ),
    ] {
        let err = check(json!({"type": "order.completed", "properties": {"orderId": "o", "total": 1, "currency": "USD", "items": [item]}}))
            .expect_err("refused");
        assert_eq!(err.field, field);
    }
    // A partial refund names its items.
    let refund = check(
        json!({"type": "order.refunded", "properties": {"orderId": "o", "amount": 1200, "currency": "USD",
        "reason": "damaged", "items": [{"productId": "p", "quantity": 1, "price": 1200}]}}),
    );
    assert!(refund.is_ok(), "{refund:?}");
    let err = check(json!({"type": "order.refunded", "properties": {"orderId": "o", "amount": 1, "currency": "USD", "items": [{"quantity": 1}]}}))
        .expect_err("no product");
    assert_eq!(err.field, "properties.items[0].productId");
}

#[test]
fn segment_and_ga4_events_are_stored_canonical() {
    let e = check(json!({"type": "purchase", "sessionId": "s1", "properties": {"transaction_id": "T-9", "value": 67.91,
        "currency": "USD", "items": [{"item_id": "p1", "price": 67.91, "quantity": 1}]}}))
    .expect("GA4 purchase");
    assert_eq!(e.event_type, EventType::OrderCompleted);
    assert_eq!(e.properties["orderId"], "T-9");
    assert_eq!(e.properties["total"], 6791);
    assert_eq!(e.properties["items"][0]["productId"], "p1");
    let e = check(json!({"type": "Product Viewed", "properties": {"product_id": "p1", "name": "Cap", "price": 1200, "currency": "JPY"}}))
        .expect("Segment product view");
    assert_eq!(e.event_type, EventType::ProductViewed);
    assert_eq!(
        (
            e.properties["productName"].as_str(),
            e.properties["price"].as_i64()
        ),
        (Some("Cap"), Some(1200))
    );
    // The canonical contract still applies: a Segment order without its id is refused, named canonically.
    let err =
        check(json!({"type": "Order Completed", "properties": {"total": 10, "currency": "USD"}}))
            .expect_err("no id");
    assert_eq!(err.field, "properties.orderId");
}
