//! The demo loader's staged load (`commerce_analytics::store::StagedLoad`): events staged where no view
//! sees them, every rollup derived at the end, must leave exactly what inserting the same batches through
//! the views leaves — raw rows and every rollup table, row for row after merges.

use analytics_cli::demo_load;
use async_trait::async_trait;
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::Event;
use commerce_analytics::store::clickhouse::migrations::ROLLUP_VIEWS;
use commerce_analytics::store::{ClickHouseStore, EventStore, Reject, StoreError};
use integration_tests::{TestDb, on_cluster, validator};

/// The same store with no staged load: the loader inserts batch by batch, through the views.
#[derive(Debug)]
struct ThroughViews<'a>(&'a ClickHouseStore);

#[async_trait]
impl EventStore for ThroughViews<'_> {
    async fn insert(&self, events: &[Event], dedup_token: &str) -> Result<(), StoreError> {
        self.0.insert(events, dedup_token).await
    }

    async fn insert_new(&self, events: &[Event], dedup_token: &str) -> Result<(), StoreError> {
        self.0.insert_new(events, dedup_token).await
    }

    async fn insert_rejects(
        &self,
        rejects: &[Reject],
        dedup_token: &str,
    ) -> Result<(), StoreError> {
        self.0.insert_rejects(rejects, dedup_token).await
    }
}

/// Demo traffic over four months (four partitions), in several batches.
fn traffic() -> DemoConfig {
    DemoConfig {
        seed: 7,
        events: 40_000,
        days: 100,
        end: time::OffsetDateTime::now_utc() - time::Duration::hours(1),
    }
}

/// Every row of `table` after merges (`FINAL`), as text, sorted; `except` names columns left out.
async fn rows(db: &TestDb, table: &str, except: &str) -> Vec<String> {
    let columns = if except.is_empty() {
        "*".to_owned()
    } else {
        format!("* EXCEPT ({except})")
    };
    let sql =
        format!("SELECT formatRow('TabSeparated', {columns}) FROM {table} FINAL ORDER BY ALL");
    db.store
        .client()
        .query(&sql)
        .fetch_all::<String>()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_load_stores_exactly_the_rows_and_rollups_that_inserting_through_the_views_stores()
{
    let (viewed, staged) = tokio::join!(TestDb::new("load_views"), TestDb::new("load_staged"));
    let (v, traffic) = (validator(), traffic());
    let through_views =
        demo_load::load(&ThroughViews(&viewed.store), &v, "shop-a", traffic.clone())
            .await
            .expect("load through the views");
    let at_once = demo_load::load(&staged.store, &v, "shop-a", traffic)
        .await
        .expect("staged load");
    assert!(through_views.events >= 40_000, "{through_views}");
    assert_eq!(at_once.events, through_views.events);
    assert!(through_views.rollups.is_none());
    // One server stages; a cluster inserts through its `Distributed` table and views like any insert.
    assert_eq!(at_once.rollups.is_some(), !on_cluster(), "{at_once}");

    // `received_at` and `ingested_at` are the clock's when each load ran.
    let (a, b) = (
        rows(&viewed, "commerce_events", "received_at, ingested_at").await,
        rows(&staged, "commerce_events", "received_at, ingested_at").await,
    );
    assert_eq!(a.len(), through_views.events);
    assert!(a == b, "the raw events are the same rows");
    for view in ROLLUP_VIEWS {
        let (a, b) = (
            rows(&viewed, view.table, "").await,
            rows(&staged, view.table, "").await,
        );
        assert!(a.len() >= 50, "{} has rows ({})", view.table, a.len());
        assert_eq!(a.len(), b.len(), "{}: as many rows", view.table);
        let differing: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).take(3).collect();
        assert!(
            differing.is_empty(),
            "{}: the same rows (through the views vs staged): {differing:?}",
            view.table
        );
    }
    let left: u64 = staged
        .scalar(&format!(
            "SELECT count() FROM system.tables WHERE database = '{}' AND name LIKE 'commerce_events_staged%'",
            staged.name
        ))
        .await;
    assert_eq!(left, 0, "the staging table is dropped");
    viewed.drop_database().await;
    staged.drop_database().await;
}

#[tokio::test]
async fn the_staged_loads_rollup_list_names_every_view_the_migrations_leave_on_the_events() {
    let db = TestDb::new("load_view_list").await;
    let mut views: Vec<(String, String)> = db
        .store
        .client()
        .query(
            "SELECT name, create_table_query FROM system.tables \
             WHERE database = currentDatabase() AND engine = 'MaterializedView' ORDER BY name",
        )
        .fetch_all()
        .await
        .expect("views");
    views.retain(|(_, create)| create.contains("commerce_events"));
    let mut listed: Vec<&str> = ROLLUP_VIEWS.iter().map(|v| v.view).collect();
    listed.sort_unstable();
    let names: Vec<&str> = views.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, listed, "the views reading commerce_events");
    for view in ROLLUP_VIEWS {
        let (_, create) = views.iter().find(|(n, _)| n == view.view).expect("listed");
        let target = db.store.storage_table(view.table);
        assert!(
            create.contains(&format!(" TO {}.{target} ", db.name)),
            "{} feeds {target}: {create}",
            view.view
        );
    }
    db.drop_database().await;
}

#[tokio::test]
async fn a_discarded_staged_load_leaves_no_events_and_no_staging_table() {
    let db = TestDb::new("load_discard").await;
    let Some(staged) = db.store.staged_load().await.expect("staged load") else {
        assert!(on_cluster(), "one server stages its loads");
        db.drop_database().await;
        return;
    };
    let events: Vec<Event> = commerce_analytics::demo::DemoGenerator::new(traffic())
        .take(500)
        .map(|value| {
            validator()
                .validate(
                    value,
                    "shop-a",
                    &Default::default(),
                    time::OffsetDateTime::now_utc(),
                )
                .expect("valid demo event")
        })
        .collect();
    staged.insert(&events, "token-1").await.expect("staged");
    let staged_tables = format!(
        "SELECT count() FROM system.tables WHERE database = '{}' AND name LIKE 'commerce_events_staged%'",
        db.name
    );
    assert_eq!(db.scalar::<u64>(&staged_tables).await, 1);
    staged.discard().await.expect("discarded");
    assert_eq!(db.scalar::<u64>(&staged_tables).await, 0);
    assert_eq!(
        db.scalar::<u64>("SELECT count() FROM commerce_events")
            .await,
        0
    );
    for view in ROLLUP_VIEWS {
        assert_eq!(
            db.scalar::<u64>(&format!("SELECT count() FROM {}", view.table))
                .await,
            0,
            "{} is empty",
            view.table
        );
    }
    db.drop_database().await;
}
