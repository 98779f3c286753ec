//! Retention and erasure against the real ClickHouse: data spanning more than the retention period
//! (including rows on both sides of the cutoff instant), per-store overrides, dry runs, reruns; a customer
//! erased through the API while every other customer's numbers stay the same.

use std::collections::{BTreeMap, BTreeSet};

use analytics_cli::demo_load;
use commerce_analytics::api::Api;
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::{Event, RequestMeta, Validator};
use commerce_analytics::retention::{self, Policy};
use commerce_analytics::store::{EventStore, Reject, dedup_token};
use integration_tests::{READ_KEY, TestDb, WRITE_KEY};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

fn validator() -> Validator {
    Validator {
        limits: Default::default(),
        retention_days: 3650,
        anonymize_ip: true,
    }
}

/// A valid event of `store` at `t` (validated as if received then).
fn event_at(store: &str, t: OffsetDateTime, mut v: Value) -> Event {
    v["timestamp"] = json!(t.format(&Rfc3339).expect("rfc3339"));
    validator()
        .validate(
            v,
            store,
            &RequestMeta::default(),
            t + time::Duration::seconds(1),
        )
        .expect("valid event")
}

fn reject_at(store: &str, t: OffsetDateTime, raw: &str) -> Reject {
    Reject {
        received_at: t,
        source: "firehose",
        request_id: format!("req-{}", ulid::Ulid::new()),
        record_index: 0,
        store_id: store.to_owned(),
        event_id: String::new(),
        reason: "invalid".to_owned(),
        raw: raw.to_owned(),
    }
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `YYYYMM` of an instant and the first instant of the following month, computed without the crate.
fn month_of(t: OffsetDateTime) -> (String, OffsetDateTime) {
    let (y, m) = (t.year(), u8::from(t.month()));
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let next = time::Date::from_calendar_date(ny, time::Month::try_from(nm).expect("month"), 1)
        .expect("date")
        .midnight()
        .assume_utc();
    (format!("{y:04}{m:02}"), next)
}

#[tokio::test]
async fn retention_removes_exactly_the_rows_before_each_stores_cutoff_and_a_rerun_removes_nothing()
{
    // The database keeps the default 365-day TTL so merges never remove rows behind the job's back.
    let db = TestDb::new("retention").await;
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns");
    let policy = Policy {
        default_days: 30,
        store_days: BTreeMap::from([("shop-b".to_owned(), 10)]),
    };
    let day_start = now.replace_time(time::Time::MIDNIGHT);
    let cut30 = day_start - time::Duration::days(30);
    let cut10 = day_start - time::Duration::days(10);
    let milli = time::Duration::milliseconds(1);
    // Orders of one customer per store: after the cut, the customer's first order is their first kept.
    let order = || {
        json!({"type": "order.completed", "sessionId": format!("s-{}", ulid::Ulid::new()),
               "customerId": "c-1",
               "properties": {"orderId": format!("o-{}", ulid::Ulid::new()), "total": 1000, "currency": "USD"}})
    };

    // (store, instant, kept?)
    let plan: Vec<(&str, OffsetDateTime, bool)> = vec![
        ("shop-a", cut30 - time::Duration::days(70), false),
        ("shop-a", cut30 - time::Duration::days(1), false),
        ("shop-a", cut30 - milli, false),
        ("shop-a", cut30, true),
        ("shop-a", cut30 + time::Duration::hours(1), true),
        ("shop-a", now - time::Duration::hours(1), true),
        // shop-b keeps 10 days only.
        ("shop-b", cut30 - milli, false),
        ("shop-b", cut10 - milli, false),
        ("shop-b", cut10, true),
        ("shop-b", now - time::Duration::hours(1), true),
        // shop-c has no override: the default applies. Its events report stock (the stock rollup).
        ("shop-c", cut30 - milli, false),
        ("shop-c", cut30, true),
    ];
    let events: Vec<Event> = plan
        .iter()
        .map(|(s, t, _)| {
            let payload = if *s == "shop-c" {
                json!({"type": "inventory.updated", "properties": {"productId": "p-1", "quantity": 7}})
            } else {
                order()
            };
            event_at(s, *t, payload)
        })
        .collect();
    db.store
        .insert(&events, &dedup_token(&events))
        .await
        .expect("insert");
    let rejects = vec![
        reject_at("shop-a", cut30 - milli, "{\"old\":1}"),
        reject_at("", cut30 - time::Duration::days(2), "garbage"),
        reject_at("shop-a", cut30 + milli, "{\"new\":1}"),
        reject_at("shop-b", cut10 - milli, "{\"b-old\":1}"),
    ];
    db.store
        .insert_rejects(&rejects, "rejects-1")
        .await
        .expect("rejects");

    let expected_events_removed = plan.iter().filter(|(_, _, kept)| !kept).count() as u64;
    // Whole partitions go only when their month ends before the earliest cutoff (30 days).
    let expected_dropped: BTreeSet<String> = plan
        .iter()
        .map(|(_, t, _)| month_of(*t))
        .filter(|(_, end)| *end <= cut30)
        .map(|(id, _)| id)
        .collect();
    let count = |sql: String| {
        let db = &db;
        async move { db.scalar::<u64>(&sql).await }
    };
    let db_name = db.name.clone();
    let events_total = || count(format!("SELECT count() FROM {db_name}.commerce_events"));
    assert_eq!(events_total().await, plan.len() as u64);

    // Dry run: the full report, nothing removed.
    let dry = retention::run(&db.store, &policy, now, true)
        .await
        .expect("dry run");
    let by_table = |r: &retention::Report, t: &str| {
        r.tables
            .iter()
            .find(|x| x.table == t)
            .cloned()
            .expect("table in report")
    };
    assert!(dry.dry_run);
    assert_eq!(dry.cutoff, cut30);
    assert_eq!(
        by_table(&dry, "commerce_events").rows_removed,
        expected_events_removed
    );
    assert_eq!(by_table(&dry, "commerce_events_rejects").rows_removed, 3);
    let dry_dropped: BTreeSet<String> = by_table(&dry, "commerce_events")
        .partitions_dropped
        .iter()
        .map(|p| p.partition.clone())
        .collect();
    assert_eq!(dry_dropped, expected_dropped);
    assert_eq!(
        events_total().await,
        plan.len() as u64,
        "a dry run removes nothing"
    );

    // The real run removes exactly what the dry run announced.
    let run = retention::run(&db.store, &policy, now, false)
        .await
        .expect("run");
    assert!(!run.dry_run);
    assert_eq!(run.tables, dry.tables);
    assert_eq!(
        events_total().await,
        plan.iter().filter(|(_, _, kept)| *kept).count() as u64
    );
    for (store, cutoff) in [("shop-a", cut30), ("shop-b", cut10), ("shop-c", cut30)] {
        let older = count(format!(
            "SELECT count() FROM {db_name}.commerce_events WHERE store_id = '{store}' \
             AND timestamp < fromUnixTimestamp64Milli({})",
            ms(cutoff)
        ))
        .await;
        assert_eq!(older, 0, "{store} keeps nothing before its cutoff");
        let kept = plan
            .iter()
            .filter(|(s, _, kept)| *s == store && *kept)
            .count() as u64;
        let stored = count(format!(
            "SELECT count() FROM {db_name}.commerce_events WHERE store_id = '{store}'"
        ))
        .await;
        assert_eq!(stored, kept, "{store} keeps every row from its cutoff on");
    }
    let rejects_left = count(format!(
        "SELECT count() FROM {db_name}.commerce_events_rejects"
    ))
    .await;
    assert_eq!(rejects_left, 1);
    // The rollup keeps exactly the hours whose events are kept.
    for (store, cutoff) in [("shop-a", cut30), ("shop-b", cut10), ("shop-c", cut30)] {
        for (rollup, time) in [
            ("commerce_visitors", "hour"),
            ("commerce_hourly_counts", "hour"),
            ("commerce_sessions", "hour"),
            ("commerce_customers", "day"),
            ("commerce_product_names", "day"),
            ("commerce_stock", "day"),
        ] {
            let before = count(format!(
                "SELECT count() FROM {db_name}.{rollup} WHERE store_id = '{store}' \
                 AND {time} < fromUnixTimestamp64Milli({})",
                ms(cutoff)
            ))
            .await;
            assert_eq!(before, 0, "{store}: no {rollup} {time} before the cutoff");
        }
    }
    assert_rollup_matches_raw(&db, "shop-a").await;
    assert_rollup_matches_raw(&db, "shop-b").await;
    assert_stock_matches_raw(&db, "shop-c").await;
    let stock_days = count(format!(
        "SELECT count() FROM {db_name}.commerce_stock WHERE store_id = 'shop-c'"
    ))
    .await;
    assert_eq!(
        stock_days, 1,
        "shop-c's stock rollup keeps the cutoff's day alone"
    );
    let partitions: BTreeSet<String> = db
        .store
        .client()
        .query(&format!(
            "SELECT DISTINCT partition_id FROM {} WHERE database = '{db_name}' \
             AND table = '{}' AND active",
            db.every_node("system.parts"),
            db.store.storage_table("commerce_events")
        ))
        .fetch_all::<String>()
        .await
        .expect("parts")
        .into_iter()
        .collect();
    assert!(
        partitions.is_disjoint(&expected_dropped),
        "dropped partitions are gone: {partitions:?}"
    );

    // Idempotent: a second run the same day finds nothing.
    let again = retention::run(&db.store, &policy, now, false)
        .await
        .expect("rerun");
    for t in &again.tables {
        assert_eq!(t.rows_removed, 0, "{t:?}");
        assert!(t.partitions_dropped.is_empty(), "{t:?}");
    }
    db.drop_database().await;
}

#[derive(Debug, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
struct HourCounts {
    hour: u32,
    visitors: u64,
    product_views: u64,
}

/// The hourly rollups of a store (visitors' rows in `commerce_visitors`, event counts in
/// `commerce_hourly_counts`), hour by hour, equal the same counts over the raw events.
async fn assert_rollup_matches_raw(db: &TestDb, store: &str) {
    let fetch = |sql: String| async move {
        db.store
            .client()
            .query(&sql)
            .fetch_all::<HourCounts>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let rollup = fetch(format!(
        "SELECT toUnixTimestamp(hour) AS hour, toUInt64(sum(v)) AS visitors, toUInt64(sum(p)) AS product_views \
         FROM (SELECT hour, uniqExact(visitor_hash) AS v, toInt64(0) AS p FROM commerce_visitors \
               WHERE store_id = '{store}' GROUP BY hour \
               UNION ALL SELECT hour, 0 AS v, sum(events) AS p FROM commerce_hourly_counts \
               WHERE store_id = '{store}' AND type = 'product.viewed' GROUP BY hour) \
         GROUP BY hour HAVING visitors + product_views > 0 ORDER BY hour"
    ))
    .await;
    let raw = fetch(format!(
        "SELECT toUnixTimestamp(toStartOfHour(timestamp)) AS hour, \
         uniqExactIf(visitor, visitor != '') AS visitors, uniqExactIf(id, type = 'product.viewed') AS product_views \
         FROM (SELECT *, if(customer_id != '', customer_id, if(anonymous_id != '', anonymous_id, session_id)) AS visitor \
               FROM commerce_events WHERE store_id = '{store}' AND is_bot = 0) \
         GROUP BY hour HAVING visitors + product_views > 0 ORDER BY hour"
    ))
    .await;
    assert!(!raw.is_empty(), "{store} has events");
    // Sessions by the hour they start: count and those with an order, from the session rollup and raw.
    let sessions = |sql: String| async move {
        db.store
            .client()
            .query(&sql)
            .fetch_all::<(u32, u64, u64)>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let rolled = sessions(format!(
        "SELECT toUnixTimestamp(toStartOfHour(s)) AS h, count(), sum(o) FROM ( \
           SELECT min(start) AS s, max(has_order) AS o FROM commerce_sessions \
           WHERE store_id = '{store}' GROUP BY session_hash) GROUP BY h ORDER BY h"
    ))
    .await;
    let from_raw = sessions(format!(
        "SELECT toUnixTimestamp(toStartOfHour(s)) AS h, count(), sum(o) FROM ( \
           SELECT min(timestamp) AS s, max(toUInt8(type = 'order.completed')) AS o FROM commerce_events \
           WHERE store_id = '{store}' AND NOT is_bot AND session_id != '' GROUP BY cityHash64(session_id)) \
         GROUP BY h ORDER BY h"
    ))
    .await;
    assert_eq!(
        rolled, from_raw,
        "{store}: session rollup equals the raw events"
    );
    // What each session entered with (first source, campaign, referrer site, landing page) and whether
    // it saw one page, from the session rollup's pairs and from the raw events.
    let entries = |sql: String| async move {
        db.store
            .client()
            .query(&sql)
            .fetch_all::<(u64, String, String, String, String, u8)>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let rolled = entries(format!(
        "SELECT session_hash, argMin(first_source.value, first_source.at), \
           argMin(first_campaign.value, first_campaign.at), argMin(first_referrer.value, first_referrer.at), \
           argMin(first_page.value, first_page.at), toUInt8(ifNull(min(page_min) = max(page_max), 0)) \
         FROM commerce_sessions WHERE store_id = '{store}' GROUP BY session_hash ORDER BY session_hash"
    ))
    .await;
    let page = "if(page_path != '', page_path, path(page_url))";
    let from_raw = entries(format!(
        "SELECT cityHash64(session_id) AS h, argMinIf(toString(utm_source), timestamp, utm_source != ''), \
           argMinIf(toString(utm_campaign), timestamp, utm_campaign != ''), \
           argMinIf(domainWithoutWWW(referrer), timestamp, referrer != ''), \
           argMinIf({page}, timestamp, {page} != ''), \
           toUInt8(countIf({page} != '') > 0 AND minIf({page}, {page} != '') = maxIf({page}, {page} != '')) \
         FROM commerce_events WHERE store_id = '{store}' AND NOT is_bot AND session_id != '' \
         GROUP BY h ORDER BY h"
    ))
    .await;
    assert_eq!(
        rolled, from_raw,
        "{store}: what sessions entered with, from the rollup and from the raw events"
    );
    // Each customer's first order, from the customers rollup and from the raw events.
    let first_orders = |sql: String| async move {
        db.store
            .client()
            .query(&sql)
            .fetch_all::<(u64, i64)>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let rolled = first_orders(format!(
        "SELECT customer_hash, toUnixTimestamp64Milli(min(first_order)) FROM commerce_customers \
         WHERE store_id = '{store}' GROUP BY customer_hash ORDER BY customer_hash"
    ))
    .await;
    let from_raw = first_orders(format!(
        "SELECT cityHash64(customer_id) AS h, toUnixTimestamp64Milli(min(timestamp)) FROM commerce_events \
         WHERE store_id = '{store}' AND NOT is_bot AND type = 'order.completed' AND customer_id != '' \
         GROUP BY h ORDER BY h"
    ))
    .await;
    assert!(!from_raw.is_empty(), "{store} has customers with orders");
    assert_eq!(
        rolled, from_raw,
        "{store}: each customer's first order in the rollup equals the raw events'"
    );
    // Each product's latest name per day, from the names rollup and from the raw events (bots
    // included: a name is a catalog fact).
    assert_product_days_match_raw::<(u32, String, i64, String)>(
        db,
        store,
        "commerce_product_names",
        (
            "toString(product_name)",
            "type = 'product.viewed' AND product_id != '' AND product_name != ''",
        ),
    )
    .await;
    assert_stock_matches_raw(db, store).await;
    let differing: Vec<(&HourCounts, &HourCounts)> =
        rollup.iter().zip(&raw).filter(|(a, b)| a != b).collect();
    assert!(
        rollup.len() == raw.len() && differing.is_empty(),
        "{store}: rollup equals the raw events, hour by hour ({} vs {} hours; rollup vs raw where they \
         differ: {:?})",
        rollup.len(),
        raw.len(),
        differing.iter().take(5).collect::<Vec<_>>()
    );
}

/// Each product's latest stock per UTC day (humans' updates; on a tie of times the greater quantity),
/// from the stock rollup and from the raw events.
async fn assert_stock_matches_raw(db: &TestDb, store: &str) {
    assert_product_days_match_raw::<(u32, String, i64, i64)>(
        db,
        store,
        "commerce_stock",
        ("quantity", "NOT is_bot AND type = 'inventory.updated'"),
    )
    .await;
}

/// A rollup kept per store, product and UTC day as the day's latest `(time, value)` pair (`table`) holds,
/// for `store`, the same pairs as the raw events `events` (a condition) whose value is `value`: day (Unix
/// seconds), product, time (ms) and value, on a tie of times the greater value.
async fn assert_product_days_match_raw<T>(
    db: &TestDb,
    store: &str,
    table: &str,
    (value, events): (&str, &str),
) where
    T: clickhouse::RowOwned + clickhouse::RowRead + PartialEq + std::fmt::Debug,
{
    let fetch = |sql: String| async move {
        db.store
            .client()
            .query(&sql)
            .fetch_all::<T>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    };
    let rolled = fetch(format!(
        "SELECT toUnixTimestamp(toDateTime(day, 'UTC')), product_id, \
           toUnixTimestamp64Milli(max(latest).1), max(latest).2 FROM {table} \
         WHERE store_id = '{store}' GROUP BY day, product_id ORDER BY ALL"
    ))
    .await;
    let from_raw = fetch(format!(
        "SELECT toUnixTimestamp(toDateTime(toDate(timestamp), 'UTC')) AS d, product_id, \
           toUnixTimestamp64Milli(max(timestamp)), argMax({value}, (timestamp, {value})) \
         FROM commerce_events WHERE store_id = '{store}' AND {events} \
         GROUP BY d, product_id ORDER BY ALL"
    ))
    .await;
    assert_eq!(
        rolled, from_raw,
        "{store}: each product's latest pair per day in {table} equals the raw events'"
    );
}

async fn send(api: &Api, method: &str, path: &str, key: &str) -> (u16, Value) {
    integration_tests::call(api, method, path, key, None).await
}

#[derive(Debug, PartialEq, Eq, clickhouse::Row, serde::Deserialize)]
struct PerCustomer {
    store_id: String,
    customer_id: String,
    events: u64,
    amount: i64,
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Raw {
    store_id: String,
    customer_id: String,
    anonymous_id: String,
    session_id: String,
    amount: i64,
}

#[tokio::test]
async fn erasing_a_customer_removes_them_everywhere_and_leaves_everyone_else_unchanged() {
    let db = TestDb::new("erasure").await;
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("ns");
    let validator = Validator::from_config(&db.config);
    for store in ["shop-a", "shop-b"] {
        let cfg = DemoConfig {
            seed: 7,
            events: 8_000,
            days: 20,
            end: now - time::Duration::minutes(1),
        };
        demo_load::load(&db.store, &validator, store, cfg)
            .await
            .expect("demo loads");
    }
    // The customer with the most orders in shop-a (the same id exists in shop-b: same seed).
    let victim: String = db
        .scalar(&format!(
            "SELECT customer_id FROM {}.commerce_events WHERE store_id = 'shop-a' AND customer_id != '' \
             AND type = 'order.completed' GROUP BY customer_id ORDER BY count() DESC, customer_id LIMIT 1",
            db.name
        ))
        .await;
    // Pre-login browsing on a device later used by the victim and, separately, by another customer.
    let t = now - time::Duration::hours(2);
    let named_at = (now - time::Duration::hours(3))
        .replace_minute(10)
        .expect("minute")
        .replace_second(0)
        .expect("second");
    let linked = vec![
        event_at(
            "shop-a",
            t,
            json!({"type": "page.viewed", "anonymousId": "anon-shared", "sessionId": "sess-pre"}),
        ),
        event_at(
            "shop-a",
            t + time::Duration::minutes(1),
            json!({"type": "product.viewed", "anonymousId": "anon-shared", "sessionId": "sess-pre",
                   "customerId": victim, "properties": {"productId": "p-1"}}),
        ),
        event_at(
            "shop-a",
            t + time::Duration::minutes(2),
            json!({"type": "page.viewed", "sessionId": "sess-pre"}),
        ),
        event_at(
            "shop-a",
            t + time::Duration::minutes(3),
            json!({"type": "product.viewed", "anonymousId": "anon-shared", "sessionId": "sess-other",
                   "customerId": "someone-else", "properties": {"productId": "p-2"}}),
        ),
        event_at(
            "shop-a",
            t + time::Duration::minutes(4),
            json!({"type": "page.viewed", "anonymousId": "anon-unrelated", "sessionId": "sess-u"}),
        ),
        // A product named by someone else, then renamed by the victim's later view within the same
        // hour: once the victim is erased, the day's name is the other customer's again.
        event_at(
            "shop-a",
            named_at,
            json!({"type": "product.viewed", "sessionId": "sess-other", "customerId": "someone-else",
                   "properties": {"productId": "p-named", "productName": "Original name"}}),
        ),
        event_at(
            "shop-a",
            named_at + time::Duration::minutes(1),
            json!({"type": "product.viewed", "sessionId": "sess-pre", "customerId": victim,
                   "properties": {"productId": "p-named", "productName": "Victim's name"}}),
        ),
        // Stock reported from someone else's session, then from the victim's later that day: once the
        // victim is erased, the day's stock is the first report again.
        event_at(
            "shop-a",
            named_at,
            json!({"type": "inventory.updated", "sessionId": "sess-other", "customerId": "someone-else",
                   "properties": {"productId": "p-stocked", "quantity": 5}}),
        ),
        event_at(
            "shop-a",
            named_at + time::Duration::minutes(1),
            json!({"type": "inventory.updated", "sessionId": "sess-pre", "customerId": victim,
                   "properties": {"productId": "p-stocked", "quantity": 2}}),
        ),
    ];
    db.store
        .insert(&linked, &dedup_token(&linked))
        .await
        .expect("insert linked");
    let rejects = vec![
        reject_at(
            "shop-a",
            now,
            &format!("{{\"type\":\"order.completed\",\"customerId\":\"{victim}\",\"bad\":1}}"),
        ),
        reject_at("shop-a", now, "{\"customerId\":\"someone-else\"}"),
        reject_at("shop-b", now, &format!("{{\"customerId\":\"{victim}\"}}")),
        // Unattributed (the store could not be read when it was rejected) but naming shop-b: not shop-a's.
        reject_at(
            "",
            now,
            &format!("{{\"storeId\":\"shop-b\",\"customerId\":\"{victim}\",\"type\":1}}"),
        ),
        // Unattributed and naming no store: erased with the customer (it may be shop-a's).
        reject_at("", now, &format!("not json {{\"customerId\":\"{victim}\"")),
    ];
    db.store
        .insert_rejects(&rejects, "erasure-rejects")
        .await
        .expect("rejects");

    let per_customer = || async {
        db.store
            .client()
            .query(
                "SELECT store_id, customer_id, count() AS events, sum(amount) AS amount \
                 FROM commerce_events GROUP BY store_id, customer_id ORDER BY store_id, customer_id",
            )
            .fetch_all::<PerCustomer>()
            .await
            .expect("per customer")
    };
    // What must go, computed in Rust over every stored row: the victim's rows in shop-a, and rows of shop-a
    // without a customer that share an anonymous id or a session with them.
    let rows = db
        .store
        .client()
        .query(
            "SELECT store_id, customer_id, anonymous_id, session_id, amount FROM commerce_events",
        )
        .fetch_all::<Raw>()
        .await
        .expect("rows");
    let mine = |r: &Raw| r.store_id == "shop-a" && r.customer_id == victim;
    let anon: BTreeSet<&str> = rows
        .iter()
        .filter(|r| mine(r) && !r.anonymous_id.is_empty())
        .map(|r| r.anonymous_id.as_str())
        .collect();
    let sessions: BTreeSet<&str> = rows
        .iter()
        .filter(|r| mine(r) && !r.session_id.is_empty())
        .map(|r| r.session_id.as_str())
        .collect();
    let goes = |r: &Raw| {
        mine(r)
            || (r.store_id == "shop-a"
                && r.customer_id.is_empty()
                && (anon.contains(r.anonymous_id.as_str())
                    || sessions.contains(r.session_id.as_str())))
    };
    let expected_deleted = rows.iter().filter(|r| goes(r)).count() as u64;
    assert!(
        expected_deleted >= 3,
        "the victim has orders and the linked anonymous events"
    );
    let mut expected: BTreeMap<(String, String), (u64, i64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| !goes(r)) {
        let e = expected
            .entry((r.store_id.clone(), r.customer_id.clone()))
            .or_default();
        e.0 += 1;
        e.1 += r.amount;
    }
    let expected: Vec<PerCustomer> = expected
        .into_iter()
        .map(|((store_id, customer_id), (events, amount))| PerCustomer {
            store_id,
            customer_id,
            events,
            amount,
        })
        .collect();

    let api = db.api(now);
    let path = format!("/analytics/customers/{victim}");

    let (status, body) = send(&api, "DELETE", &path, WRITE_KEY).await;
    assert_eq!(status, 403, "a write key cannot erase: {body}");
    let (status, body) = send(&api, "DELETE", "/analytics/customers/a%00b", READ_KEY).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "customerId");

    let (status, body) = send(&api, "DELETE", &path, READ_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["customerId"], victim.as_str());
    assert_eq!(body["eventsDeleted"], expected_deleted, "{body}");
    assert_eq!(
        body["rejectsDeleted"], 2,
        "shop-a's and the unattributed one naming no store: {body}"
    );
    let shop_b_rejects: u64 = db
        .scalar(&format!(
            "SELECT count() FROM {}.commerce_events_rejects WHERE position(raw, 'shop-b') > 0 \
             OR store_id = 'shop-b'",
            db.name
        ))
        .await;
    assert_eq!(shop_b_rejects, 2, "erasure stays in its store");

    let after = per_customer().await;
    assert_eq!(after, expected, "every other customer is unchanged");
    let (status, metric) = send(
        &api,
        "GET",
        "/analytics/metrics?metric=orders&period=30d",
        READ_KEY,
    )
    .await;
    assert_eq!(status, 200, "{metric}");
    // The orders of the currency the answer is in (the store's main one).
    let orders_left: u64 = db
        .scalar(&format!(
            "SELECT uniqExact(id) FROM {}.commerce_events WHERE store_id = 'shop-a' \
             AND type = 'order.completed' AND currency = '{}'",
            db.name,
            metric["currency"]
                .as_str()
                .expect("orders are in a currency")
        ))
        .await;
    assert_eq!(metric["total"], orders_left);
    let victim_rows: u64 = db
        .scalar(&format!(
            "SELECT count() FROM {}.commerce_events WHERE store_id = 'shop-a' AND \
             (customer_id = '{victim}' OR anonymous_id = 'anon-shared' AND customer_id = '')",
            db.name
        ))
        .await;
    assert_eq!(victim_rows, 0);
    let rejects_left: u64 = db
        .scalar(&format!(
            "SELECT count() FROM {}.commerce_events_rejects",
            db.name
        ))
        .await;
    assert_eq!(
        rejects_left, 3,
        "other customers' and other stores' rejects stay (shop-b's, attributed or not)"
    );

    // The rollup was rebuilt for the hours the erasure touched: it still equals the raw events.
    assert_rollup_matches_raw(&db, "shop-a").await;
    assert_rollup_matches_raw(&db, "shop-b").await;
    let name: String = db
        .scalar(&format!(
            "SELECT max(latest).2 FROM {}.commerce_product_names \
             WHERE store_id = 'shop-a' AND product_id = 'p-named'",
            db.name
        ))
        .await;
    assert_eq!(
        name, "Original name",
        "the product-day the victim renamed is rebuilt from the views left"
    );
    let stock: i64 = db
        .scalar(&format!(
            "SELECT max(latest).2 FROM {}.commerce_stock \
             WHERE store_id = 'shop-a' AND product_id = 'p-stocked'",
            db.name
        ))
        .await;
    assert_eq!(
        stock, 5,
        "the product-day whose stock the victim reported is rebuilt from the updates left"
    );

    // Idempotent.
    let (status, body) = send(&api, "DELETE", &path, READ_KEY).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["eventsDeleted"], 0);
    assert_eq!(body["rejectsDeleted"], 0);
    assert_eq!(per_customer().await, after);
    db.drop_database().await;
}
