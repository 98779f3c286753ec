//! The live panel's endpoint on the real ClickHouse: distinct events per minute of the window, newest
//! events first, the caller's store only, bots only when asked.

use commerce_analytics::event::{RequestMeta, Validator};
use commerce_analytics::store::EventStore;
use integration_tests::{READ_KEY, TestDb, call};
use serde_json::json;

#[tokio::test]
async fn live_counts_each_minute_of_the_window_and_lists_the_newest_events() {
    let db = TestDb::new("live").await;
    let now = time::OffsetDateTime::now_utc()
        .replace_second(30)
        .and_then(|t| t.replace_nanosecond(0))
        .expect("valid");
    let validator = Validator::from_config(&db.config);
    let at = |mins: i64| {
        (now - time::Duration::minutes(mins))
            .format(&time::format_description::well_known::Rfc3339)
            .expect("fmt")
    };
    let mut events = Vec::new();
    for (id, store, mins_ago, bot) in [
        ("a", "shop-a", 2, false),
        ("b", "shop-a", 2, false),
        ("c", "shop-a", 10, false),
        ("old", "shop-a", 45, false),
        ("robot", "shop-a", 1, true),
        ("other", "shop-b", 1, false),
    ] {
        let mut e = validator
            .validate(
                json!({"id": id, "type": "page.viewed", "timestamp": at(mins_ago), "sessionId": "s",
                       "context": {"page": {"url": format!("https://shop.example/p/{id}")}}}),
                store,
                &RequestMeta::default(),
                now,
            )
            .expect("valid");
        e.bot = bot;
        events.push(e);
    }
    // A duplicate delivery of "a" must not count twice.
    events.push(events[0].clone());
    db.store.insert_batches(&events, 100).await.expect("stored");

    let api = db.api(now);
    let (status, body) = call(&api, "GET", "/analytics/live?minutes=30", READ_KEY, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 3, "{body}");
    let minutes = body["perMinute"].as_array().expect("minutes");
    assert_eq!(minutes.len(), 31, "30 whole minutes and the current one");
    let count_at = |mins_ago: i64| {
        let start = (now - time::Duration::minutes(mins_ago))
            .replace_second(0)
            .expect("valid")
            .format(&time::format_description::well_known::Rfc3339)
            .expect("fmt");
        minutes
            .iter()
            .find(|m| m["minute"] == start.as_str())
            .map(|m| m["events"].clone())
    };
    assert_eq!(count_at(2), Some(json!(2)));
    assert_eq!(count_at(10), Some(json!(1)));
    assert_eq!(count_at(1), Some(json!(0)), "the bot is left out");
    let ids: Vec<&str> = body["recent"]
        .as_array()
        .expect("recent")
        .iter()
        .map(|e| e["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[2], "c", "newest first: {ids:?}");
    assert_eq!(body["recent"][2]["detail"], "/p/c");

    let (_, body) = call(
        &api,
        "GET",
        "/analytics/live?minutes=30&includeBots=true",
        READ_KEY,
        None,
    )
    .await;
    assert_eq!(body["total"], 4, "{body}");
    assert_eq!(body["recent"][0]["id"], "robot");
    let (status, body) = call(&api, "GET", "/analytics/live?minutes=61", READ_KEY, None).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("minutes"))
    );
    db.drop_database().await;
}
