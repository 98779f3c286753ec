//! The sales report (`metric=sales`) and the richer order schema it reads, through the API into
//! ClickHouse: orders with and without their parts, a resent completion, a refund, another currency.

use integration_tests::{READ_KEY, TestDb, WRITE_KEY, call};
use serde_json::{Value, json};

/// An event `hours` before now, through the track API.
async fn track(api: &commerce_analytics::api::Api, id: &str, hours: i64, event: Value) {
    let mut event = event;
    event["id"] = json!(id);
    let at = time::OffsetDateTime::now_utc() - time::Duration::hours(hours);
    event["timestamp"] = json!(
        at.format(&time::format_description::well_known::Rfc3339)
            .expect("time")
    );
    let (status, answer) = call(api, "POST", "/analytics/event", WRITE_KEY, Some(event)).await;
    assert_eq!(status, 202, "{id}: {answer}");
}

#[tokio::test]
async fn the_sales_report_adds_up_orders_parts_and_refunds_like_shopifys() {
    let db = TestDb::new("sales").await;
    let api = db.tracking_api();
    let order = |id: &str, properties: Value| {
        let mut p = properties;
        p["orderId"] = json!(id);
        json!({"type": "order.completed", "properties": p})
    };
    // Two days ago: every part sent (items of 100.00, 10.00 off, 5.00 shipping, 7.20 tax).
    track(
        &api,
        "e1",
        48,
        order(
            "o1",
            json!({"total": 10_220, "subtotal": 9_000, "discount": 1_000,
        "shipping": 500, "tax": 720, "currency": "USD"}),
        ),
    )
    .await;
    // Yesterday: no subtotal (gross = total − shipping − tax + discount), sent twice as two events.
    let o2 = order(
        "o2",
        json!({"total": 5_000, "shipping": 300, "discount": 200, "currency": "USD"}),
    );
    track(&api, "e2", 24, o2.clone()).await;
    track(&api, "e2-again", 23, o2).await;
    // Yesterday, by Segment: no parts at all.
    track(
        &api,
        "e3",
        24,
        json!({"type": "Order Completed",
        "properties": {"order_id": "o3", "total": 20, "currency": "USD"}}),
    )
    .await;
    // Today: a refund of 25.00, and an order in another currency.
    track(
        &api,
        "r1",
        1,
        json!({"type": "order.refunded",
        "properties": {"orderId": "o1", "amount": 2_500, "currency": "USD", "reason": "damaged",
                       "items": [{"productId": "p1", "quantity": 1, "price": 2_500}]}}),
    )
    .await;
    track(
        &api,
        "e4",
        1,
        order("o4", json!({"total": 7_000, "currency": "EUR"})),
    )
    .await;

    let reads = db.api(time::OffsetDateTime::now_utc());
    let (status, body) = call(
        &reads,
        "GET",
        "/analytics/metrics?metric=sales&period=7d&currency=USD",
        READ_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // gross 10,000 + 4,900 + 2,000; net = gross − discounts − returns; total = net + shipping + taxes,
    // which is what the orders paid (10,220 + 5,000 + 2,000) less the refund.
    assert_eq!(
        body["total"],
        json!({"orders": 3, "grossSales": 16_900, "discounts": 1_200, "returns": 2_500, "netSales": 13_200,
               "shipping": 800, "taxes": 720, "totalSales": 14_720})
    );
    let rows = body["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 7, "every day of the period");
    let sum = |k: &str| rows.iter().map(|r| r[k].as_i64().unwrap_or(0)).sum::<i64>();
    for k in [
        "orders",
        "grossSales",
        "discounts",
        "returns",
        "netSales",
        "shipping",
        "taxes",
        "totalSales",
    ] {
        assert_eq!(
            Some(sum(k)),
            body["total"][k].as_i64(),
            "the days add up to the total: {k}"
        );
    }
    // The refund counts on its own day (an hour ago, UTC), and on no other.
    let refund_day = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .date()
        .to_string();
    for r in rows {
        let want = if r["date"] == refund_day.as_str() {
            2_500
        } else {
            0
        };
        assert_eq!(r["returns"].as_i64(), Some(want), "{r}");
    }
    // In euros, only the euro order.
    let body = call(
        &reads,
        "GET",
        "/analytics/metrics?metric=sales&period=7d&currency=EUR",
        READ_KEY,
        None,
    )
    .await
    .1;
    assert_eq!(
        (
            body["total"]["grossSales"].as_i64(),
            body["total"]["orders"].as_i64()
        ),
        (Some(7_000), Some(1))
    );
    // CSV: a row per day, the figures as columns, with the currency.
    let (status, _, csv) = integration_tests::get_raw(
        &reads,
        "/analytics/metrics?metric=sales&period=7d&currency=USD&format=csv",
        READ_KEY,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let header = csv.lines().next().expect("header");
    assert!(
        header.starts_with(
            "date,orders,grossSales,discounts,returns,netSales,shipping,taxes,totalSales"
        ),
        "{header}"
    );
    assert_eq!(csv.lines().count(), 8, "{csv}");
    // What the report does not take, it refuses by name.
    for (q, field) in [
        ("metric=sales&compare=previous_period", "compare"),
        ("metric=sales&breakdown=device", "breakdown"),
        ("metric=sales&convert=true", "convert"),
        ("metric=sales&productId=p1", "productId"),
    ] {
        let (status, body) = call(
            &reads,
            "GET",
            &format!("/analytics/metrics?{q}"),
            READ_KEY,
            None,
        )
        .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{q}: {body}"
        );
    }
    db.drop_database().await;
}
