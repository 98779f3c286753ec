//! Faults on a 2-shard cluster (a private one, so stopping a node disturbs no other test): one shard
//! down answers a clear 503 naming storage, never a partial number; a node restarted while events are
//! being tracked loses nothing accepted and stores nothing twice. The rest of the suite runs on a cluster
//! too (`scripts/test`), which covers duplicates sent in later batches and every metric's exactness.

use std::time::Duration;

use commerce_analytics::event::{RequestMeta, Validator};
use commerce_analytics::store::EventStore;
use integration_tests::{
    PrivateCluster, READ_KEY, TestDb, WRITE_KEY, await_events, call, eventually,
};
use serde_json::{Value, json};

async fn cluster_db(cluster: &PrivateCluster, hint: &str, extra: &[(&str, &str)]) -> TestDb {
    let settings = cluster.settings();
    let mut overrides: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    overrides.extend_from_slice(extra);
    TestDb::on(&cluster.url(), hint, &overrides).await
}

/// Rows of the store's events on one node's local table.
async fn rows_on_node(cluster: &PrivateCluster, db: &TestDb, node: u16) -> u64 {
    clickhouse::Client::default()
        .with_url(cluster.node_url(node))
        .with_database(&db.name)
        .query("SELECT count() FROM commerce_events_local")
        .fetch_one::<u64>()
        .await
        .expect("local rows")
}

#[tokio::test]
async fn one_shard_down_answers_503_naming_storage_never_a_partial_number() {
    let cluster = PrivateCluster::launch();
    let db = cluster_db(&cluster, "shard_down", &[]).await;
    let now = time::OffsetDateTime::now_utc();
    let v = Validator::from_config(&db.config);
    // 400 page views in 40 sessions: the sessions spread over both shards.
    let events: Vec<_> = (0..400)
        .map(|i| {
            let e = json!({"id": format!("pv_{i}"), "type": "page.viewed", "sessionId": format!("sess_{}", i % 40),
                           "timestamp": (now - time::Duration::minutes(30)).format(&time::format_description::well_known::Rfc3339).expect("ts")});
            v.validate(e, "shop-a", &RequestMeta::default(), now)
                .expect("valid")
        })
        .collect();
    db.store.insert_batches(&events, 100).await.expect("insert");
    let (one, two) = (
        rows_on_node(&cluster, &db, 1).await,
        rows_on_node(&cluster, &db, 2).await,
    );
    assert!(
        one > 0 && two > 0 && one + two == 400,
        "both shards hold rows: {one} + {two}"
    );

    let api = db.api(now);
    let path = "/analytics/metrics?metric=sessions&period=7d";
    let (status, body) = call(&api, "GET", path, READ_KEY, None).await;
    assert_eq!((status, &body["total"]), (200, &json!(40)), "{body}");

    cluster.stop_node(2);
    let (status, body) = call(&api, "GET", path, READ_KEY, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");
    assert!(body.get("total").is_none(), "no partial number: {body}");

    cluster.start_node(2);
    assert!(
        eventually(Duration::from_secs(20), || async {
            call(&api, "GET", path, READ_KEY, None).await.0 == 200
        })
        .await,
        "answers again once the shard is back"
    );
    let (status, body) = call(&api, "GET", path, READ_KEY, None).await;
    assert_eq!((status, &body["total"]), (200, &json!(40)), "{body}");
}

#[tokio::test]
async fn a_node_restarted_while_tracking_loses_nothing_accepted_and_stores_nothing_twice() {
    let cluster = PrivateCluster::launch();
    let db = cluster_db(
        &cluster,
        "node_restart",
        &[
            ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.2"),
            ("ANALYTICS_BATCH_SIZE", "50"),
        ],
    )
    .await;
    let srv = integration_tests::local_server(&db).await;
    let client = reqwest::Client::new();
    let send = |prefix: &'static str| {
        let client = client.clone();
        let url = format!("http://{}/analytics/events", srv.addr);
        async move {
            for chunk in 0..3 {
                let events: Vec<Value> = (0..100)
                    .map(|i| {
                        json!({"id": format!("{prefix}_{chunk}_{i}"), "type": "page.viewed",
                                    "sessionId": format!("{prefix}_s{i}")})
                    })
                    .collect();
                let resp = client
                    .post(&url)
                    .bearer_auth(WRITE_KEY)
                    .json(&json!({ "events": events }))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(resp.status().as_u16(), 202, "accepted");
            }
        }
    };
    send("before").await;
    let s = &db.store;
    await_events(s, "shop-a", 300, Duration::from_secs(10)).await;

    cluster.stop_node(2);
    // Accepted while a shard is down: the buffer's inserts fail (a foreground distributed insert needs
    // every shard) and are retried; the rows a failed insert already wrote to the live shard are found by
    // the exactly-once lookup or dropped by the insert's deduplication token.
    send("during").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        srv.buffer_stats().expect("buffer").failed_attempts > 0,
        "writes failed while a shard was down"
    );
    cluster.start_node(2);

    await_events(s, "shop-a", 600, Duration::from_secs(30)).await;
    assert_eq!(
        s.count_rows("shop-a").await.expect("rows"),
        600,
        "no event stored twice"
    );
    assert_eq!(srv.stop().await.spilled, 0);
}
