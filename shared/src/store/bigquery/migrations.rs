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

pub const MIGRATIONS: &[Migration] = &[
    Migration {
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
    ingested_at       TIMESTAMP NOT NULL,
    device            STRING,
    browser           STRING,
    os                STRING
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
    },
    Migration {
        version: AGENT_COLUMNS,
        name: "device, browser and OS from the user agent",
        // A table created by version 1 today has the columns already (the emulator's `insertAll` keeps
        // writing the columns a table was created with, whatever `ADD COLUMN` adds later); an older
        // table gets them here. Then [`backfill_agent_columns`] fills them for the rows stored before.
        statements: &[
            "ALTER TABLE `{ds}.events` ADD COLUMN IF NOT EXISTS device STRING \
         OPTIONS (description = 'desktop, mobile, tablet, bot, other; empty without a user agent')",
            "ALTER TABLE `{ds}.events` ADD COLUMN IF NOT EXISTS browser STRING",
            "ALTER TABLE `{ds}.events` ADD COLUMN IF NOT EXISTS os STRING",
        ],
    },
    Migration {
        version: EXCHANGE_RATES,
        name: "exchange rates",
        statements: &[r"
CREATE TABLE IF NOT EXISTS `{ds}.fx_rates`
(
    day         DATE NOT NULL,
    currency    STRING NOT NULL,
    rate        STRING NOT NULL OPTIONS (description = 'units of the currency per euro, as published (text keeps it exact)'),
    source      STRING,
    loaded_at   TIMESTAMP NOT NULL OPTIONS (description = 'the latest load of a day and currency wins')
)
CLUSTER BY currency"],
    },
    Migration {
        version: ALERTS,
        name: "alerts",
        statements: &[
            r"
CREATE TABLE IF NOT EXISTS `{ds}.alert_rules`
(
    store_id        STRING NOT NULL,
    id              STRING NOT NULL,
    body            STRING NOT NULL OPTIONS (description = 'JSON: the rule as written, or a guard''s settings'),
    signing_secret  STRING NOT NULL,
    version         INT64 NOT NULL OPTIONS (description = 'milliseconds; the latest version wins'),
    deleted         BOOL NOT NULL
)
CLUSTER BY store_id",
            r"
CREATE TABLE IF NOT EXISTS `{ds}.alert_claims`
(
    store_id    STRING NOT NULL,
    rule_id     STRING NOT NULL,
    slot        INT64 NOT NULL,
    claimer     STRING NOT NULL,
    claimed_at  TIMESTAMP NOT NULL
)
CLUSTER BY store_id, rule_id",
            r"
CREATE TABLE IF NOT EXISTS `{ds}.alert_log`
(
    store_id          STRING NOT NULL,
    rule_id           STRING NOT NULL,
    slot              INT64 NOT NULL,
    evaluated_at      INT64 NOT NULL,
    window_from       INT64 NOT NULL,
    window_to         INT64 NOT NULL,
    value             FLOAT64,
    median            FLOAT64,
    lower             FLOAT64,
    upper             FLOAT64,
    firing            BOOL NOT NULL,
    notification      STRING NOT NULL,
    episode_notified  BOOL NOT NULL,
    detail            STRING NOT NULL
)
CLUSTER BY store_id, rule_id",
            r"
CREATE TABLE IF NOT EXISTS `{ds}.alert_deliveries`
(
    store_id     STRING NOT NULL,
    rule_id      STRING NOT NULL,
    slot         INT64 NOT NULL,
    delivery_id  STRING NOT NULL,
    channel      STRING NOT NULL,
    delivered    BOOL NOT NULL,
    attempts     INT64 NOT NULL,
    status       INT64 NOT NULL,
    detail       STRING NOT NULL,
    sent_at      INT64 NOT NULL
)
CLUSTER BY store_id, rule_id",
        ],
    },
];

/// The migration that adds `device`, `browser` and `os` ([`crate::event::agent`]).
pub const AGENT_COLUMNS: i64 = 2;

/// The migration that adds `fx_rates` ([`crate::fx`]).
pub const EXCHANGE_RATES: i64 = 3;

/// The migration that adds the alert tables ([`crate::alerts`]), the latest.
pub const ALERTS: i64 = 4;

/// Fills `device`, `browser` and `os` of the stored events that have a user agent but no device (rows
/// stored before [`AGENT_COLUMNS`]) with what ingest writes ([`crate::event::agent::Agent::of`] of the
/// row's `user_agent` and `is_bot`): the distinct (user agent, bot) pairs are parsed once each and
/// written with one `UPDATE` per distinct result (a few dozen: the parser's vocabulary is small), the
/// agents passed as an array parameter. Idempotent; returns the pairs parsed.
///
/// Real BigQuery refuses DML on rows still in the streaming buffer (about 90 minutes after `insertAll`),
/// so rows ingested that recently are left alone; they were written by a binary that already fills the
/// columns, unless an older binary was still running during the deploy (their device stays empty).
pub async fn backfill_agent_columns(store: &BigQueryStore) -> Result<usize, StoreError> {
    let client = store.client();
    let ds = store.dataset();
    const SETTLED: &str = "ingested_at < TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 90 MINUTE)";
    let pending =
        format!("device IS NULL AND user_agent IS NOT NULL AND user_agent != '' AND {SETTLED}");
    let rows = client
        .query(
            &format!(
                "SELECT user_agent, IF(IFNULL(is_bot, FALSE), 1, 0) AS bot FROM `{ds}.events` \
                 WHERE {pending} GROUP BY user_agent, bot"
            ),
            &[],
        )
        .await?;
    let mut by_result: std::collections::BTreeMap<(crate::event::agent::Agent, bool), Vec<String>> =
        std::collections::BTreeMap::new();
    for r in 0..rows.rows.len() {
        let user_agent = rows.string(r, 0);
        let bot = rows.i64(r, 1)? == 1;
        by_result
            .entry((crate::event::agent::Agent::of(&user_agent, bot), bot))
            .or_default()
            .push(user_agent);
    }
    for ((agent, bot), agents) in by_result {
        client
            .query(
                &format!(
                    "UPDATE `{ds}.events` SET device = @device, browser = @browser, os = @os \
                     WHERE {pending} AND IFNULL(is_bot, FALSE) = @bot AND user_agent IN UNNEST(@agents)"
                ),
                &[
                    ("device", Param::String(agent.device.into())),
                    ("browser", Param::String(agent.browser)),
                    ("os", Param::String(agent.os)),
                    ("bot", Param::Bool(bot)),
                    ("agents", Param::Strings(agents)),
                ],
            )
            .await?;
    }
    Ok(rows.rows.len())
}

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
        if m.version == AGENT_COLUMNS {
            backfill_agent_columns(store).await?;
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
