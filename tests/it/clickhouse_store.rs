//! The ClickHouse store against the real server: schema, inserts, idempotency, the buffer.

use std::sync::Arc;
use std::time::Duration;

use commerce_analytics::event::{Event, RequestMeta, Validator};
use commerce_analytics::sink::{BufferConfig, BufferedSink, EventSink};
use commerce_analytics::store::{EventStore, dedup_token};
use integration_tests::{TestDb, eventually};
use serde_json::json;

fn validator() -> Validator {
    Validator {
        limits: Default::default(),
        retention_days: 365,
        anonymize_ip: true,
    }
}

fn event(v: serde_json::Value) -> Event {
    validator()
        .validate(
            v,
            "shop-a",
            &RequestMeta::default(),
            time::OffsetDateTime::now_utc(),
        )
        .expect("valid event")
}

fn page_views(n: usize) -> Vec<Event> {
    (0..n)
        .map(|_| event(json!({"type": "page.viewed"})))
        .collect()
}

const SPEC_QUERY: &str = "SELECT
toDate(timestamp) AS day,
count() AS orders,
sum(JSONExtractInt(properties, 'total')) AS revenue
FROM commerce_events
WHERE type = 'order.completed'
AND timestamp >= now() - INTERVAL 30 DAY
GROUP BY day
ORDER BY day";

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct SpecRow {
    #[allow(dead_code)]
    day: u16,
    orders: u64,
    revenue: i64,
}

#[tokio::test]
async fn migrations_are_idempotent_and_the_spec_query_runs_verbatim() {
    let db = TestDb::new("migrate").await;
    let again = db.store.migrate(365).await.expect("second run");
    assert!(again.applied.is_empty(), "nothing left to apply: {again:?}");
    assert!(!again.ttl_updated);
    let versions: u64 = db
        .scalar(&format!(
            "SELECT count() FROM {}.schema_migrations FINAL",
            db.name
        ))
        .await;
    assert_eq!(
        versions,
        commerce_analytics::store::clickhouse::migrations::MIGRATIONS.len() as u64
    );

    let order = |id: &str, total: i64| {
        event(json!({"id": id, "type": "order.completed",
                     "properties": {"orderId": id, "total": total, "currency": "USD"}}))
    };
    let batch = vec![
        order("o1", 6791),
        order("o2", 1000),
        event(json!({"type": "page.viewed"})),
    ];
    db.store
        .insert(&batch, &dedup_token(&batch))
        .await
        .expect("insert");
    let rows = db
        .store
        .client()
        .query(SPEC_QUERY)
        .fetch_all::<SpecRow>()
        .await
        .expect("spec query");
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].orders, rows[0].revenue), (2, 7791));
    db.drop_database().await;
}

#[tokio::test]
async fn the_product_name_column_holds_what_its_default_computes_from_the_properties() {
    // Every insert writes `product_name` itself; a row written without it (an older binary during a
    // rolling deploy, or a part stored before migration v19, which ClickHouse reads and merges through
    // the same default) gets it from `properties`. Both must agree, or the names lookup would depend on
    // when a view was stored.
    let db = TestDb::new("product_name").await;
    let view = |id: &str, name: serde_json::Value| {
        event(json!({"id": id, "type": "product.viewed",
                     "properties": {"productId": "p1", "productName": name}}))
    };
    let mut batch = vec![
        view("v1", json!("Classic Sneakers")),
        view("v2", json!("Caf\u{e9} \"Cr\u{e8}me\" \\ 100% \u{1f45f}")),
        view("v3", json!("")),
        event(json!({"id": "v4", "type": "product.viewed", "properties": {"productId": "p1"}})),
        event(json!({"id": "c1", "type": "cart.item_added",
                     "properties": {"productId": "p1", "productName": "In a cart"}})),
        event(json!({"id": "pv", "type": "page.viewed"})),
    ];
    // Extra properties are kept whatever their type: a number is no name, on both sides.
    batch.push(event(json!({"id": "o1", "type": "order.completed",
        "properties": {"orderId": "o1", "total": 1, "currency": "USD", "productName": 7}})));
    db.store
        .insert(&batch, &dedup_token(&batch))
        .await
        .expect("insert");
    // The same rows again, written without `product_name`: the column's default computes it.
    db.store
        .client()
        .query(&format!(
            "INSERT INTO {db}.commerce_events (store_id, id, type, timestamp, received_at, properties, \
             product_id) SELECT store_id, concat('old-', id), type, timestamp, received_at, properties, \
             product_id FROM {db}.commerce_events",
            db = db.name
        ))
        .execute()
        .await
        .expect("insert without product_name");
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Named {
        id: String,
        product_name: String,
    }
    let rows = db
        .store
        .client()
        .query(&format!(
            "SELECT id, product_name FROM {}.commerce_events ORDER BY id",
            db.name
        ))
        .fetch_all::<Named>()
        .await
        .expect("names");
    let named = |old: bool| -> Vec<(String, String)> {
        rows.iter()
            .filter(|r| r.id.starts_with("old-") == old)
            .map(|r| {
                (
                    r.id.trim_start_matches("old-").to_owned(),
                    r.product_name.clone(),
                )
            })
            .collect()
    };
    let want: Vec<(String, String)> = [
        ("c1", "In a cart"),
        ("o1", ""),
        ("pv", ""),
        ("v1", "Classic Sneakers"),
        ("v2", "Caf\u{e9} \"Cr\u{e8}me\" \\ 100% \u{1f45f}"),
        ("v3", ""),
        ("v4", ""),
    ]
    .into_iter()
    .map(|(i, n)| (i.to_owned(), n.to_owned()))
    .collect();
    assert_eq!(named(false), want, "written by the row");
    assert_eq!(named(true), want, "computed by the default");
    db.drop_database().await;
}

#[tokio::test]
async fn changing_retention_days_updates_the_table_ttl() {
    let db = TestDb::new("ttl").await;
    let report = db.store.migrate(30).await.expect("migrate");
    assert!(report.ttl_updated);
    // Every table that stores rows (on a cluster: every node's local table), and when its rows expire:
    // a `Date` on its UTC midnight, whatever the server's zone (the cluster pass runs in Asia/Kolkata).
    for (table, expiry) in [
        ("commerce_events", "toDateTime(timestamp)"),
        ("commerce_events_rejects", "toDateTime(received_at)"),
        ("commerce_hourly_counts", "toDateTime(hour)"),
        ("commerce_sessions", "toDateTime(hour)"),
        ("commerce_visitors", "toDateTime(hour)"),
        ("commerce_customers", "toDateTime(day, 'UTC')"),
        ("commerce_product_names", "toDateTime(day, 'UTC')"),
        ("commerce_stock", "toDateTime(day, 'UTC')"),
    ] {
        let engines: Vec<String> = db
            .store
            .client()
            .query(&format!(
                "SELECT engine_full FROM {} WHERE database = '{}' AND name = '{}'",
                db.every_node("system.tables"),
                db.name,
                db.store.storage_table(table)
            ))
            .fetch_all()
            .await
            .expect("engines");
        assert_eq!(engines.len(), db.nodes(), "{table} on every node");
        for engine in engines {
            let wanted = format!("TTL {expiry} + toIntervalDay(30)");
            assert!(engine.contains(&wanted), "{table}: {engine}");
        }
    }
    db.drop_database().await;
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct StoredRow {
    store_id: String,
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    customer_id: String,
    properties: String,
    ip: String,
    country: String,
    utm_campaign: String,
    order_id: String,
    amount: i64,
    currency: String,
    quantity: i64,
    ts: String,
    client_ts: Option<String>,
}

#[tokio::test]
async fn every_field_of_an_event_is_stored_as_validated() {
    let db = TestDb::new("fields").await;
    let e = event(json!({
        "id": "evt_fields_1", "type": "order.completed", "timestamp": "2026-01-02T03:04:05.678Z",
        "sessionId": "s1", "customerId": "c'1\"--; DROP TABLE x",
        "properties": {"orderId": "o1", "total": 6791, "currency": "EUR", "zeta": 1, "alpha": "ü",
                        "items": [{"productId": "p1", "quantity": 2, "price": 3000}, {"productId": "p2", "price": 791}]},
        "context": {"ip": "198.51.100.77", "country": "FR",
                     "page": {"url": "https://s.example/?utm_source=fb&utm_campaign=summer"}}
    }));
    db.store
        .insert(
            std::slice::from_ref(&e),
            &dedup_token(std::slice::from_ref(&e)),
        )
        .await
        .expect("insert");
    let row = db
        .store
        .client()
        .query("SELECT store_id, id, type, customer_id, properties, ip, country, utm_campaign, order_id, amount, \
                currency, quantity, toString(timestamp) AS ts, toString(client_timestamp) AS client_ts \
                FROM commerce_events")
        .fetch_one::<StoredRow>()
        .await
        .expect("row");
    assert_eq!(
        (
            row.store_id.as_str(),
            row.id.as_str(),
            row.event_type.as_str()
        ),
        ("shop-a", "evt_fields_1", "order.completed")
    );
    assert_eq!(
        row.customer_id, "c'1\"--; DROP TABLE x",
        "stored verbatim, never executed"
    );
    assert_eq!(
        (
            row.ip.as_str(),
            row.country.as_str(),
            row.utm_campaign.as_str()
        ),
        ("198.51.100.0", "FR", "summer")
    );
    assert_eq!(
        (
            row.order_id.as_str(),
            row.amount,
            row.currency.as_str(),
            row.quantity
        ),
        ("o1", 6791, "EUR", 3)
    );
    assert_eq!(row.ts, "2026-01-02 03:04:05.678");
    assert_eq!(row.client_ts.as_deref(), Some("2026-01-02 03:04:05.678"));
    let props: serde_json::Value = serde_json::from_str(&row.properties).expect("json");
    assert_eq!(props, serde_json::Value::Object(e.properties.clone()));
    assert!(
        row.properties.find("zeta") < row.properties.find("alpha"),
        "key order kept as sent"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_retried_batch_with_the_same_token_is_stored_once() {
    let db = TestDb::new("dedup").await;
    let batch = page_views(100);
    let token = dedup_token(&batch);
    for _ in 0..3 {
        db.store.insert(&batch, &token).await.expect("insert");
    }
    assert_eq!(db.store.count_rows("shop-a").await.expect("count"), 100);
    let other = page_views(100);
    db.store
        .insert(&other, &dedup_token(&other))
        .await
        .expect("insert");
    assert_eq!(
        db.store.count_rows("shop-a").await.expect("count"),
        200,
        "different batches both land"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn a_resent_event_collapses_to_one_row_on_merge() {
    let db = TestDb::new("replacing").await;
    let e = event(
        json!({"id": "evt_resent", "type": "page.viewed", "timestamp": "2026-01-02T03:04:05Z"}),
    );
    // Two separate deliveries of the same event (different batches, so insert dedup does not apply).
    db.store
        .insert(std::slice::from_ref(&e), "delivery-1")
        .await
        .expect("insert");
    db.store
        .insert(std::slice::from_ref(&e), "delivery-2")
        .await
        .expect("insert");
    assert_eq!(
        db.store.count_events("shop-a").await.expect("count"),
        1,
        "uniqExact(id) counts it once"
    );
    let final_rows: u64 = db.scalar("SELECT count() FROM commerce_events FINAL").await;
    assert_eq!(final_rows, 1, "FINAL collapses duplicates");
    db.store
        .optimize_final("commerce_events")
        .await
        .expect("optimize");
    assert_eq!(
        db.store.count_rows("shop-a").await.expect("count"),
        1,
        "merge keeps one row"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn the_buffer_writes_full_batches_at_once_and_the_rest_after_the_interval() {
    let db = TestDb::new("buffer").await;
    let store: Arc<dyn EventStore> = Arc::new(db.store.clone());
    let cfg = BufferConfig {
        batch_size: 100,
        flush_interval: Duration::from_millis(1500),
        capacity: 10_000,
        concurrency: 1,
        backoff: Default::default(),
    };
    let (sink, handle) = BufferedSink::start(store, cfg);
    sink.send_batch(page_views(250)).await.expect("accepted");
    let s = &db.store;
    assert!(
        eventually(Duration::from_secs(1), || async {
            s.count_rows("shop-a").await.unwrap_or(0) == 200
        })
        .await,
        "two full batches are written right away"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.count_rows("shop-a").await.expect("count"),
        200,
        "the partial batch waits for the interval"
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            s.count_rows("shop-a").await.unwrap_or(0) == 250
        })
        .await,
        "the partial batch is written once the oldest event waited flush_interval"
    );
    // The counter moves just after the insert returns, so the rows can be visible a moment before it.
    let handle_ref = &handle;
    assert!(
        eventually(Duration::from_secs(1), || async {
            handle_ref.stats().written_batches == 3
        })
        .await,
        "exactly three batches: {:?}",
        handle.stats()
    );
    assert!(handle.shutdown(Duration::from_secs(5)).await.is_empty());
    db.drop_database().await;
}

#[tokio::test]
async fn a_large_batch_sent_again_in_other_batches_adds_no_rows() {
    let db = TestDb::new("resend").await;
    let batch = page_views(4_000);
    db.store
        .insert(&batch, &dedup_token(&batch))
        .await
        .expect("insert");
    // The same events again, regrouped (different dedup tokens), partly mixed with new ones.
    let mut again: Vec<Event> = batch.iter().rev().cloned().collect();
    again.extend(page_views(10));
    db.store
        .insert_batches(&again, 700)
        .await
        .expect("insert again");
    assert_eq!(
        db.store.count_rows("shop-a").await.expect("count"),
        4_010,
        "only the 10 new events are added"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn an_event_repeated_across_chunks_of_one_call_is_stored_once() {
    let db = TestDb::new("chunks").await;
    let first = page_views(500);
    // Every event twice, the copies reversed: with 250-event chunks, four in flight, each copy is in
    // another chunk than its original (with another dedup token), and all four chunks look up at once.
    let mut batch = first.clone();
    batch.extend(first.iter().rev().cloned());
    db.store.insert_batches(&batch, 250).await.expect("insert");
    assert_eq!(
        db.store.count_rows("shop-a").await.expect("count"),
        500,
        "one row per event"
    );
    db.drop_database().await;
}

/// Visitors' rollup rows, counted: store, hour (unix seconds), country, distinct visitors.
type VisitorRow = (String, u32, String, u64);
/// A counts rollup row: store, hour (unix seconds), type, country, events.
type CountRow = (String, u32, String, String, i64);
/// A customers rollup row: store, day (unix seconds), customer hash, first order that day (ms).
type CustomerRow = (String, u32, u64, i64);
/// A product names rollup row: store, day (unix seconds), product, latest named view that day (ms), name.
type NameRow = (String, u32, String, i64, String);
/// A `commerce_stock` row: store, day (Unix seconds), product, latest update's time (ms) and quantity.
type StockRow = (String, u32, String, i64, i64);
/// A session rollup row (times in ms; `first_view` the latest `DateTime64` when the row has no view).
#[derive(Debug, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
struct SessionRow {
    store_id: String,
    hour: u32,
    session_hash: u64,
    country: String,
    device: String,
    browser: String,
    start: i64,
    has_order: u8,
    first_view: i64,
    has_cart: u8,
    source_at: i64,
    source: String,
    campaign_at: i64,
    campaign: String,
    referrer_at: i64,
    referrer: String,
    page_at: i64,
    page: String,
    page_min: Option<String>,
    page_max: String,
}

/// The rows of a rollup kept per store, UTC day and product (names, stock) among `inner`'s rows, merged
/// as the table merges them: store, day (Unix seconds), product, the latest pair's time (ms) and value.
async fn product_days<T>(store: &commerce_analytics::store::ClickHouseStore, inner: &str) -> Vec<T>
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    let sql = format!(
        "SELECT toString(store_id), toUnixTimestamp(toDateTime(day, 'UTC')), product_id, \
         toUnixTimestamp64Milli(max(latest).1), max(latest).2 FROM ({inner}) \
         GROUP BY store_id, day, product_id ORDER BY ALL"
    );
    store
        .client()
        .query(&sql)
        .fetch_all::<T>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn the_rollup_views_write_exactly_what_their_queries_compute_and_a_resend_changes_nothing() {
    use commerce_analytics::demo::{DemoConfig, DemoGenerator};
    use commerce_analytics::store::clickhouse::migrations::{
        CUSTOMERS_ROLLUP, CUSTOMERS_ROLLUP_GROUP, HOURLY_COUNTS, HOURLY_COUNTS_GROUP,
        PRODUCT_NAMES_ROLLUP, PRODUCT_NAMES_ROLLUP_GROUP, SESSIONS_ROLLUP, SESSIONS_ROLLUP_GROUP,
        STOCK_ROLLUP, STOCK_ROLLUP_GROUP, VISITOR_ROWS, VISITOR_ROWS_GROUP,
    };
    let db = TestDb::new("rollup").await;
    let now = time::OffsetDateTime::now_utc();
    let mut events: Vec<Event> = DemoGenerator::new(DemoConfig {
        seed: 5,
        events: 3_000,
        days: 3,
        end: now,
    })
    .map(|w| {
        validator()
            .validate(w, "shop-a", &RequestMeta::default(), now)
            .expect("valid demo event")
    })
    .collect();
    // Every seventh event from a bot: the rollups count humans only.
    for e in events.iter_mut().step_by(7) {
        e.bot = true;
    }
    // Latest first: every session's first events arrive after its later ones (late events).
    events.reverse();
    db.store
        .insert_batches(&events, 1000)
        .await
        .expect("insert");

    let store = &db.store;
    let visitors = |inner: String| {
        let sql = format!(
            "SELECT store_id, toUnixTimestamp(hour), toString(country), \
             toUInt64(uniqExact(visitor_hash)) FROM ({inner}) GROUP BY ALL ORDER BY ALL"
        );
        async move {
            store
                .client()
                .query(&sql)
                .fetch_all::<VisitorRow>()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    let counts = |inner: String| {
        let sql = format!(
            "SELECT store_id, toUnixTimestamp(hour), toString(type), toString(country), \
             toInt64(sum(events)) FROM ({inner}) GROUP BY ALL HAVING sum(events) != 0 ORDER BY ALL"
        );
        async move {
            store
                .client()
                .query(&sql)
                .fetch_all::<CountRow>()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    let sessions = |inner: String| {
        let sql = format!(
            "SELECT store_id, hour, session_hash, country, device, browser, s AS start, o AS has_order, \
               v AS first_view, c AS has_cart, \
               toUnixTimestamp64Milli(fs.1) AS source_at, fs.2 AS source, \
               toUnixTimestamp64Milli(fc.1) AS campaign_at, fc.2 AS campaign, \
               toUnixTimestamp64Milli(fr.1) AS referrer_at, fr.2 AS referrer, \
               toUnixTimestamp64Milli(fp.1) AS page_at, fp.2 AS page, \
               CAST(pmin, 'Nullable(String)') AS page_min, toString(pmax) AS page_max \
             FROM (SELECT toString(store_id) AS store_id, toUnixTimestamp(hour) AS hour, session_hash, \
               toString(country) AS country, toString(device) AS device, toString(browser) AS browser, \
               toUnixTimestamp64Milli(min(start)) AS s, max(has_order) AS o, \
               toUnixTimestamp64Milli(min(first_view)) AS v, max(has_cart) AS c, \
               min(first_source) AS fs, min(first_campaign) AS fc, min(first_referrer) AS fr, \
               min(first_page) AS fp, min(page_min) AS pmin, max(page_max) AS pmax \
               FROM ({inner}) GROUP BY ALL) \
             ORDER BY ALL"
        );
        async move {
            store
                .client()
                .query(&sql)
                .fetch_all::<SessionRow>()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    let views = db
        .store
        .client()
        .query(
            "SELECT name FROM system.tables WHERE database = currentDatabase() \
             AND engine = 'MaterializedView' ORDER BY name",
        )
        .fetch_all::<String>()
        .await
        .expect("views");
    assert_eq!(
        views,
        [
            "commerce_customers_mv",
            "commerce_hourly_counts_mv",
            "commerce_product_names_mv",
            "commerce_sessions_mv",
            "commerce_stock_mv",
            "commerce_visitors_mv"
        ],
        "one view per rollup"
    );
    let customers = |inner: String| {
        let sql = format!(
            "SELECT store_id, toUnixTimestamp(toDateTime(day)), customer_hash, \
             toUnixTimestamp64Milli(min(first_order)) FROM ({inner}) \
             GROUP BY store_id, day, customer_hash ORDER BY ALL"
        );
        async move {
            store
                .client()
                .query(&sql)
                .fetch_all::<CustomerRow>()
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        }
    };
    let names = |inner: String| async move { product_days::<NameRow>(store, &inner).await };
    let expected_names = names(format!(
        "{PRODUCT_NAMES_ROLLUP} FROM commerce_events {PRODUCT_NAMES_ROLLUP_GROUP}"
    ))
    .await;
    let named_products: std::collections::HashSet<(&str, i64)> = events
        .iter()
        .filter(|e| e.event_type.as_str() == "product.viewed")
        .filter_map(|e| {
            let name = e.properties.get("productName")?.as_str()?;
            let product = e.properties.get("productId")?.as_str()?;
            (!name.is_empty()).then_some((product, e.timestamp.unix_timestamp().div_euclid(86_400)))
        })
        .collect();
    assert!(!named_products.is_empty(), "the demo names its products");
    assert_eq!(
        expected_names.len(),
        named_products.len(),
        "one row per product and day with a named view, bots' views included"
    );
    let stock = |inner: String| async move { product_days::<StockRow>(store, &inner).await };
    let expected_stock = stock(format!(
        "{STOCK_ROLLUP} FROM commerce_events {STOCK_ROLLUP_GROUP}"
    ))
    .await;
    // The latest human update of each product and UTC day, computed here from the events sent.
    let mut latest_updates: std::collections::BTreeMap<(String, u32), (i64, i64)> =
        std::collections::BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| !e.bot && e.event_type.as_str() == "inventory.updated")
    {
        let product = e.properties["productId"]
            .as_str()
            .expect("a product")
            .to_owned();
        let quantity = e.properties["quantity"].as_i64().expect("a quantity");
        let at = (e.timestamp.unix_timestamp_nanos() / 1_000_000) as i64;
        let day = (e.timestamp.unix_timestamp().div_euclid(86_400) * 86_400) as u32;
        let latest = latest_updates
            .entry((product, day))
            .or_insert((at, quantity));
        *latest = (*latest).max((at, quantity));
    }
    assert!(!latest_updates.is_empty(), "the demo reports stock");
    let mut computed: Vec<StockRow> = latest_updates
        .into_iter()
        .map(|((product, day), (at, quantity))| ("shop-a".to_owned(), day, product, at, quantity))
        .collect();
    computed.sort();
    assert_eq!(
        expected_stock, computed,
        "one row per product and UTC day with a human's update, its latest quantity; no bot's"
    );
    let expected_customers = customers(format!(
        "{CUSTOMERS_ROLLUP} FROM commerce_events {CUSTOMERS_ROLLUP_GROUP}"
    ))
    .await;
    let human_customers: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| !e.bot && e.event_type.as_str() == "order.completed")
        .filter_map(|e| e.customer_id.as_deref())
        .filter(|c| !c.is_empty())
        .collect();
    let rolled_customers: std::collections::HashSet<u64> =
        expected_customers.iter().map(|r| r.2).collect();
    assert!(!human_customers.is_empty(), "the demo has customers");
    assert_eq!(
        rolled_customers.len(),
        human_customers.len(),
        "every human customer with an order"
    );
    let expected_sessions = sessions(format!(
        "{SESSIONS_ROLLUP} FROM commerce_events {SESSIONS_ROLLUP_GROUP}"
    ))
    .await;
    let human_sessions: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| !e.bot)
        .filter_map(|e| e.session_id.as_deref())
        .filter(|s| !s.is_empty())
        .collect();
    let rolled_up: std::collections::HashSet<u64> =
        expected_sessions.iter().map(|r| r.session_hash).collect();
    assert_eq!(rolled_up.len(), human_sessions.len(), "every human session");
    // What sessions entered with is there to compare: sources, campaigns, referrers, landing pages, and
    // sessions of one page and of several.
    let some = |what: &str, f: &dyn Fn(&SessionRow) -> bool| {
        assert!(
            expected_sessions.iter().any(f),
            "some session rows have {what}"
        );
    };
    some("a source", &|r| !r.source.is_empty());
    some("a campaign", &|r| !r.campaign.is_empty());
    some("a referrer site", &|r| !r.referrer.is_empty());
    some("no referrer", &|r| r.referrer.is_empty());
    some("a landing page", &|r| !r.page.is_empty());
    some("one page", &|r| {
        r.page_min.as_deref() == Some(r.page_max.as_str())
    });
    some("several pages", &|r| {
        r.page_min.is_some() && r.page_min.as_deref() != Some(r.page_max.as_str())
    });
    let expected_visitors = visitors(format!(
        "{VISITOR_ROWS} FROM commerce_events {VISITOR_ROWS_GROUP}"
    ))
    .await;
    let expected_counts = counts(format!(
        "{HOURLY_COUNTS} FROM commerce_events {HOURLY_COUNTS_GROUP}"
    ))
    .await;
    let humans = events.iter().filter(|e| !e.bot).count() as i64;
    assert_eq!(
        expected_counts.iter().map(|r| r.4).sum::<i64>(),
        humans,
        "every human event is counted once, no bot"
    );
    let human_visitors: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| !e.bot)
        .filter_map(|e| {
            [&e.customer_id, &e.anonymous_id, &e.session_id]
                .into_iter()
                .flatten()
                .map(String::as_str)
                .find(|v| !v.is_empty())
        })
        .collect();
    let distinct_rows: u64 = db
        .store
        .client()
        .query("SELECT uniqExact(visitor_hash) FROM commerce_visitors")
        .fetch_one()
        .await
        .expect("visitors");
    assert_eq!(
        distinct_rows,
        human_visitors.len() as u64,
        "every human visitor"
    );
    let left: u64 = db
        .store
        .client()
        .query("SELECT count() FROM commerce_hourly")
        .fetch_one()
        .await
        .expect("old sets");
    assert_eq!(
        left, 0,
        "the distinct sets of commerce_hourly are no longer fed"
    );

    // Every rollup as the events first sent left it.
    let unchanged = async |after: &str| {
        assert_eq!(
            visitors("SELECT * FROM commerce_visitors".to_owned()).await,
            expected_visitors,
            "visitors {after}"
        );
        assert_eq!(
            counts("SELECT * FROM commerce_hourly_counts".to_owned()).await,
            expected_counts,
            "counts {after}"
        );
        assert_eq!(
            sessions("SELECT * FROM commerce_sessions".to_owned()).await,
            expected_sessions,
            "sessions {after}"
        );
        assert_eq!(
            customers("SELECT * FROM commerce_customers".to_owned()).await,
            expected_customers,
            "customers {after}"
        );
        assert_eq!(
            names("SELECT * FROM commerce_product_names".to_owned()).await,
            expected_names,
            "product names {after}"
        );
        assert_eq!(
            stock("SELECT * FROM commerce_stock".to_owned()).await,
            expected_stock,
            "stock {after}"
        );
    };

    // The same events again: a retried batch (same chunks), and a client resending them in other
    // batches. Exactly-once is enforced before the insert, so no rollup moves.
    for batch_size in [1000, 700] {
        db.store
            .insert_batches(&events, batch_size)
            .await
            .expect("resend");
        unchanged(&format!("after a resend in batches of {batch_size}")).await;
    }

    // A client that resends some events changed (two hours later, another session; within the lookup's
    // day): the ids are stored already, so the resend is dropped, and no row or rollup moves.
    let changed: Vec<Event> = events
        .iter()
        .step_by(5)
        .map(|e| {
            let mut e = e.clone();
            e.timestamp += time::Duration::hours(2);
            e.session_id = e.session_id.map(|s| format!("{s}-resent"));
            e
        })
        .collect();
    db.store
        .insert_batches(&changed, 250)
        .await
        .expect("changed resend");
    assert_eq!(
        db.store.count_rows("shop-a").await.expect("count"),
        events.len() as u64,
        "one row per event after every resend"
    );
    unchanged("after a changed resend").await;
    db.drop_database().await;
}

#[tokio::test]
async fn a_node_that_missed_a_migration_is_named_and_migrate_brings_it_up() {
    let db = TestDb::new("verify").await;
    db.store.verify_schema().await.expect("every node migrated");
    // The last node (the only one on one server) forgets version 7, as if it had been down.
    let url = match &db.config.clickhouse.cluster {
        Some(c) => c
            .nodes
            .last()
            .cloned()
            .unwrap_or_else(|| db.config.clickhouse.url.clone()),
        None => db.config.clickhouse.url.clone(),
    };
    clickhouse::Client::default()
        .with_url(&url)
        .with_database(&db.name)
        .query("DELETE FROM schema_migrations WHERE version = 7")
        .execute()
        .await
        .expect("forget v7");
    let err = db
        .store
        .verify_schema()
        .await
        .expect_err("a node is behind");
    let message = err.to_string();
    assert!(
        message.contains(&url) && message.contains("[7]"),
        "names the node and the version: {message}"
    );
    let report = db.store.migrate(365).await.expect("migrate again");
    assert_eq!(report.applied, [7], "only the missed version is applied");
    db.store.verify_schema().await.expect("caught up");
    db.drop_database().await;
}

/// User agents of every device family, a bot, and an event without one.
const AGENTS: [&str; 6] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "PlayStation 4 5.55 (SomethingOdd/1.0)",
    "",
];

/// An event's id, device, browser and OS as stored.
type AgentColumns = (String, String, String, String);

/// Page views from each of [`AGENTS`], and what each must read back as.
fn agent_events() -> (Vec<Event>, Vec<AgentColumns>) {
    use commerce_analytics::event::agent::Agent;
    let events: Vec<Event> = AGENTS
        .iter()
        .enumerate()
        .map(|(i, ua)| {
            let mut wire = json!({"id": format!("evt_agent_{i}"), "type": "page.viewed", "sessionId": format!("s{i}")});
            if !ua.is_empty() {
                wire["context"] = json!({ "userAgent": ua });
            }
            event(wire)
        })
        .collect();
    let want = events
        .iter()
        .zip(AGENTS)
        .map(|(e, ua)| {
            let a = Agent::of(ua, e.bot);
            (e.id.clone(), a.device.to_owned(), a.browser, a.os)
        })
        .collect();
    (events, want)
}

#[tokio::test]
async fn device_browser_and_os_are_parsed_at_ingest_and_backfilled_for_older_rows() {
    #[derive(Debug, serde::Deserialize, clickhouse::Row)]
    struct Stored {
        id: String,
        device: String,
        browser: String,
        os: String,
    }
    // One server (the cluster pass covers the same backfill statements through the migration snapshots).
    let db = TestDb::on(&integration_tests::clickhouse_url(), "agents", &[]).await;
    let (events, want) = agent_events();
    assert_eq!(want[0].1, "mobile");
    assert_eq!(
        want[3].1, "bot",
        "Googlebot is flagged and counted as a bot device"
    );
    assert_eq!(want[5].1, "", "no user agent, no device");
    db.store.insert(&events, "agents").await.expect("insert");
    let read = || async {
        db.store
            .client()
            .query("SELECT id, device, browser, os FROM commerce_events ORDER BY id")
            .fetch_all::<Stored>()
            .await
            .expect("read")
            .into_iter()
            .map(|r| (r.id, r.device, r.browser, r.os))
            .collect::<Vec<_>>()
    };
    assert_eq!(read().await, want, "as parsed at ingest");

    // Rows as stored before migration 9 added the columns.
    db.store
        .client()
        .query("ALTER TABLE commerce_events UPDATE device = '', browser = '', os = '' WHERE 1")
        .with_setting("mutations_sync", "2")
        .execute()
        .await
        .expect("clear");
    assert!(
        read()
            .await
            .iter()
            .all(|r| r.1.is_empty() && r.2.is_empty())
    );
    let parsed = db.store.backfill_agent_columns().await.expect("backfill");
    assert_eq!(parsed, 5, "each stored user agent parsed once");
    assert_eq!(read().await, want, "the backfill writes what ingest writes");
    assert_eq!(
        db.store.backfill_agent_columns().await.expect("again"),
        0,
        "nothing left to backfill"
    );
}
