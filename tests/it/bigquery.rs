//! The BigQuery adapter against the real emulator (`scripts/bigquery`): the client's contract (errors
//! answered with 200, paging, int64 timestamps, parameters), the versioned schema, and event writes that
//! count a resent event once.

use commerce_analytics::event::{Event, RequestMeta, Validator};
use commerce_analytics::store::EventStore;
use commerce_analytics::store::bigquery::{EVENTS_TABLE, Param, migrations};
use integration_tests::test_bigquery;

/// `n` valid page views of store `shop-a` with ids `<prefix><i>`.
fn page_views(prefix: &str, n: usize) -> Vec<Event> {
    let v = Validator {
        limits: Default::default(),
        retention_days: 365,
        anonymize_ip: true,
    };
    let now = time::OffsetDateTime::now_utc();
    (0..n)
        .map(|i| {
            let wire = serde_json::json!({"id": format!("{prefix}{i}"), "type": "page.viewed"});
            v.validate(wire, "shop-a", &RequestMeta::default(), now)
                .expect("valid")
        })
        .collect()
}

#[tokio::test]
async fn migrations_create_the_schema_once_and_a_second_run_applies_nothing() {
    let store = test_bigquery("bq_migrate").await;
    assert_eq!(migrations::version(&store).await.expect("version"), 1);
    let again = store.migrate(365).await.expect("idempotent");
    assert!(again.applied.is_empty(), "{again:?}");
    let tables = store
        .client()
        .query(
            &format!(
                "SELECT table_name FROM `{}.INFORMATION_SCHEMA.TABLES` ORDER BY table_name",
                store.dataset()
            ),
            &[],
        )
        .await
        .expect("tables");
    let names: Vec<String> = (0..tables.rows.len())
        .map(|r| tables.string(r, 0))
        .collect();
    for want in [
        "analytics_dashboards",
        "api_keys",
        "events",
        "events_rejects",
        "schema_migrations",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn a_resent_event_is_stored_again_but_counted_once() {
    let store = test_bigquery("bq_resend").await;
    let first = page_views("resend_", 3);
    store.insert(&first, "t1").await.expect("insert");
    // A client resends two of them in a later batch (and one repeats inside the batch).
    let again = vec![first[0].clone(), first[1].clone(), first[1].clone()];
    store.insert(&again, "t2").await.expect("insert again");
    let raw = store
        .client()
        .query(
            &format!("SELECT COUNT(*) FROM {}", store.table(EVENTS_TABLE)),
            &[],
        )
        .await
        .expect("count");
    assert_eq!(
        raw.i64(0, 0).expect("n"),
        5,
        "insertAll kept the resend (no insertId dedup)"
    );
    assert_eq!(store.count_events("shop-a").await.expect("count"), 3);
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn timestamps_and_parameters_round_trip_exactly() {
    let store = test_bigquery("bq_types").await;
    let mut events = page_views("types_", 1);
    let at = time::macros::datetime!(2026-03-29 01:30:00.123 UTC);
    events[0].timestamp = at;
    store.insert(&events, "t").await.expect("insert");
    let rows = store
        .client()
        .query(
            &format!(
                "SELECT timestamp, id FROM {} WHERE store_id = @store AND id IN UNNEST(@ids) \
                 AND timestamp >= @from",
                store.table(EVENTS_TABLE)
            ),
            &[
                ("store", Param::String("shop-a".into())),
                (
                    "ids",
                    Param::Strings(vec![events[0].id.clone(), "other".into()]),
                ),
                (
                    "from",
                    Param::Timestamp((at.unix_timestamp_nanos() / 1000) as i64 - 1),
                ),
            ],
        )
        .await
        .expect("query");
    assert_eq!(rows.rows.len(), 1);
    assert_eq!(
        rows.i64(0, rows.column("timestamp").expect("column"))
            .expect("micros"),
        (at.unix_timestamp_nanos() / 1000) as i64,
        "int64 microseconds, exactly"
    );
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn a_failing_query_is_an_error_even_when_the_emulator_answers_200() {
    let store = test_bigquery("bq_errors").await;
    let err = store
        .client()
        .query(
            "SELECT no_such_column FROM `no_such_dataset.no_such_table`",
            &[],
        )
        .await
        .expect_err("a failing query fails");
    assert!(!err.is_retryable(), "{err}");
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn a_large_result_is_read_page_by_page_to_the_last_row() {
    let store = test_bigquery("bq_pages").await;
    let rows = store
        .client()
        .query(
            "SELECT x FROM UNNEST(GENERATE_ARRAY(1, 120000)) AS x ORDER BY x",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(rows.rows.len(), 120_000);
    assert_eq!(rows.i64(119_999, 0).expect("last"), 120_000);
    store.drop_dataset().await.expect("drop");
}
