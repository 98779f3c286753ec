//! The BigQuery schema, versioned like the ClickHouse migrations: each migration runs once, in order, and
//! is recorded in `schema_migrations`; every statement is idempotent (`IF NOT EXISTS`), so a run
//! interrupted between a statement and its record is simply repeated.
//!
//! Layout choices:
//! - `events`: the columns of ClickHouse's `commerce_events`, `PARTITION BY DATE(timestamp)` (a 30-day
//!   read scans 30 partitions, not the table: the dry-run bytes show it) and `CLUSTER BY store_id, type`
//!   (a store's rows of one type sit together, so a store's read skips the other stores' blocks);
//! - partition expiration is the retention safety net: `partition_expiration_days` follows the longest
//!   retention on every `migrate` (like the ClickHouse TTL); the retention job deletes shorter per-store
//!   retention with DML;
//! - `events_rejects`, `analytics_dashboards` and `api_keys` as on ClickHouse, versioned rows where
//!   ClickHouse relies on `ReplacingMergeTree` (the latest version of a key or dashboard wins in reads).

use super::client::Param;
use super::{BigQueryStore, EVENTS_TABLE, REJECTS_TABLE};
use crate::store::StoreError;

/// One schema change.
#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    /// Statements; `{ds}` is replaced by the dataset.
    pub statements: &'static [&'static str],
}

pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "events, rejects, custom dashboards, API keys",
    statements: &[
        r"
CREATE TABLE IF NOT EXISTS `{ds}.events`
(
    store_id          STRING NOT NULL,
    id                STRING NOT NULL,
    type              STRING NOT NULL,
    timestamp         TIMESTAMP NOT NULL,
    received_at       TIMESTAMP NOT NULL,
    client_timestamp  TIMESTAMP,
    session_id        STRING,
    customer_id       STRING,
    anonymous_id      STRING,
    properties        STRING OPTIONS (description = 'the event''s properties as JSON'),
    ip                STRING,
    user_agent        STRING,
    referrer          STRING,
    country           STRING,
    page_url          STRING,
    page_path         STRING,
    utm_source        STRING,
    utm_medium        STRING,
    utm_campaign      STRING,
    utm_term          STRING,
    utm_content       STRING,
    order_id          STRING,
    product_id        STRING,
    amount            INT64 OPTIONS (description = 'minor units of currency'),
    currency          STRING,
    quantity          INT64,
    is_bot            BOOL,
    ingested_at       TIMESTAMP NOT NULL
)
PARTITION BY DATE(timestamp)
CLUSTER BY store_id, type",
        r"
CREATE TABLE IF NOT EXISTS `{ds}.events_rejects`
(
    received_at   TIMESTAMP NOT NULL,
    source        STRING,
    request_id    STRING,
    record_index  INT64,
    store_id      STRING,
    event_id      STRING,
    reason        STRING,
    raw           STRING
)
PARTITION BY DATE(received_at)",
        r"
CREATE TABLE IF NOT EXISTS `{ds}.analytics_dashboards`
(
    store_id    STRING NOT NULL,
    id          STRING NOT NULL,
    name        STRING,
    widgets     STRING OPTIONS (description = 'JSON array of widgets'),
    version     INT64 OPTIONS (description = 'milliseconds; the latest version wins'),
    deleted     BOOL
)
CLUSTER BY store_id",
        r"
CREATE TABLE IF NOT EXISTS `{ds}.api_keys`
(
    sha256      STRING NOT NULL OPTIONS (description = 'hex SHA-256 of the key; the key itself is never stored'),
    prefix      STRING,
    store_id    STRING,
    kind        STRING,
    origins     ARRAY<STRING>,
    scopes      ARRAY<STRING>,
    name        STRING,
    created_at  TIMESTAMP,
    revoked_at  TIMESTAMP,
    version     INT64 OPTIONS (description = '0 created, 1 revoked: the highest version wins')
)
CLUSTER BY sha256",
    ],
}];

/// What [`migrate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub applied: Vec<i64>,
}

/// Creates the dataset if needed, applies pending migrations in order and sets the partition expiration to
/// `retention_days`. Safe to run on every start and from several processes at once.
pub async fn migrate(store: &BigQueryStore, retention_days: u32) -> Result<Report, StoreError> {
    let client = store.client();
    let ds = store.dataset();
    client.ensure_dataset(ds).await?;
    client
        .query(
            &format!(
                "CREATE TABLE IF NOT EXISTS `{ds}.schema_migrations` \
                 (version INT64 NOT NULL, name STRING, applied_at TIMESTAMP)"
            ),
            &[],
        )
        .await?;
    let done = client
        .query(
            &format!("SELECT DISTINCT version FROM `{ds}.schema_migrations`"),
            &[],
        )
        .await?;
    let applied_before: Vec<i64> = (0..done.rows.len())
        .map(|r| done.i64(r, 0))
        .collect::<Result<_, _>>()?;
    let mut report = Report::default();
    for m in MIGRATIONS {
        if applied_before.contains(&m.version) {
            continue;
        }
        for statement in m.statements {
            client.query(&statement.replace("{ds}", ds), &[]).await?;
        }
        client
            .query(
                &format!(
                    "INSERT INTO `{ds}.schema_migrations` (version, name, applied_at) \
                     VALUES (@version, @name, CURRENT_TIMESTAMP())"
                ),
                &[
                    ("version", Param::Int64(m.version)),
                    ("name", Param::String(m.name.into())),
                ],
            )
            .await?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied BigQuery migration"
        );
        report.applied.push(m.version);
    }
    for table in [EVENTS_TABLE, REJECTS_TABLE] {
        client
            .query(
                &format!(
                    "ALTER TABLE `{ds}.{table}` SET OPTIONS (partition_expiration_days = {retention_days})"
                ),
                &[],
            )
            .await?;
    }
    Ok(report)
}

/// The highest applied version (0 before the first migration).
pub async fn version(store: &BigQueryStore) -> Result<i64, StoreError> {
    let ds = store.dataset();
    let rows = store
        .client()
        .query(
            &format!("SELECT IFNULL(MAX(version), 0) AS v FROM `{ds}.schema_migrations`"),
            &[],
        )
        .await?;
    rows.i64(0, 0)
}
