//! Versioned, idempotent schema migrations, applied by the module itself (dev start, tests, and
//! `analytics migrate` in production).
//!
//! Each migration is a list of statements that are safe to run twice (`IF NOT EXISTS`, `ADD COLUMN IF NOT
//! EXISTS`), recorded in `schema_migrations` after it succeeds. ClickHouse has no DDL transactions, so a
//! crash between a statement and its record simply re-runs harmless statements next time.
//!
//! ## `commerce_events` design
//! - One row per event, every row tagged with `store_id` (the tenant).
//! - `PARTITION BY toYYYYMM(timestamp)`: monthly partitions, so retention drops whole partitions cheaply.
//! - `ORDER BY (store_id, type, toDate(timestamp), id)`: every query filters by store, almost all by type
//!   and time range; the sort key serves them all from the primary index. `id` last makes the key unique
//!   per event.
//! - `ReplacingMergeTree(ingested_at)`: rows with the same sort key collapse on merge, so an event
//!   delivered twice (a client resending the same `id` + `timestamp`, or Firehose redelivering a record)
//!   ends up stored once. Until the merge, readers count `uniqExact(id)` / use `FINAL` where exactness
//!   matters. Why `id` inside the key rather than a separate dedup table: the dedup costs nothing at
//!   insert time and stays correct across partitions of different months only if the timestamp is equal
//!   — which it is for a genuine resend (our SDKs and the `Tracker` stamp the timestamp when the event is
//!   created, not when it is sent).
//! - `non_replicated_deduplication_window` (10,000 blocks since v2) + `insert_deduplication_token` per
//!   batch: a whole batch retried after an ambiguous failure is dropped by the server before it reaches
//!   any materialized view.
//! - Before inserting, the adapter drops events whose `(store_id, id)` is already stored (bloom-filter index
//!   on `id`, bounded to timestamps within 7 days of the batch's), so a client or Firehose resending an
//!   event in a *different* batch does not add a row either; see [`super::ClickHouseStore`].
//! - `properties` stays the spec's JSON string (the spec's query runs verbatim); the facts that metrics
//!   need (`order_id`, `product_id`, `amount`, `currency`, `quantity`, UTM, page) are typed columns filled
//!   at ingest so queries do not parse JSON.
//! - `LowCardinality` for small vocabularies (store, type, country, currency, UTM source/medium/campaign);
//!   ZSTD for long text.
//! - `TTL toDateTime(timestamp) + INTERVAL retention_days DAY` as a safety net for retention; kept in step
//!   with `retention_days` by [`migrate`] on every start.
//!
//! ## Bots (v6)
//! `is_bot` marks events from bots, crawlers and headless browsers ([`crate::event::bots`]). Readers add
//! `is_bot <= {bots:UInt8}` (0 unless the query asks `includeBots=true`); the rollup's views aggregate
//! humans only, so queries that include bots read the raw events.
//!
//! ## `api_keys` (v5)
//! Keys by SHA-256, never the key; see `keys.rs` and [`crate::auth::keys`].
//!
//! ## `commerce_hourly_counts` (v12)
//! Stored human events per store, UTC hour, type and country, as plain counts (`SimpleAggregateFunction(sum)`,
//! fed by `commerce_hourly_counts_mv`): its size follows the number of (hour, type, country) groups, not
//! the events. Counts are exact because exactly-once is enforced where events are written (the adapter's
//! pre-insert lookup and insert tokens, see [`super::ClickHouseStore`]): a duplicate delivery never becomes
//! a stored row, so it never reaches the view. Erasure subtracts the erased rows' counts (negative rows,
//! token-deduplicated) before deleting them; retention cuts it like the events. Until v12 the per-type
//! rows of `commerce_hourly` held a distinct set of every event id (8 bytes per event, 16% of the raw
//! events' compressed bytes at 1M events); v12 deletes them and leaves that table the visitors' sets.
//!
//! ## `commerce_sessions` (v13)
//! One row per store, UTC hour, session (its id's 64-bit hash), country, device and browser: the first
//! event's time and whether the session completed an order in those events (humans only, events with a
//! session). A session is usually one or two rows (two when it crosses an hour), so the table grows with
//! sessions, not events. Readers group rows by `session_hash` again (merges are not awaited), which makes
//! it exact for any bucket boundaries and zone: a session's start is kept to the millisecond. Fed by
//! `commerce_sessions_mv`; only `min`/`max`, so it is idempotent (see [`SESSIONS_ROLLUP`]). Late events
//! add or lower a row's `start`; erasure deletes and rebuilds the rows of the sessions it touched;
//! retention cuts it by `hour` like the other rollups. Size: the 64-bit session hash is 8 incompressible
//! bytes per row and most of it; ZSTD on the other columns took a row from 13.8 to 11.9 bytes (measured
//! on a month of the 100M-event benchmark store).
//!
//! Since v16 a row also keeps its first product view and whether it added to a cart, so the add-to-cart
//! rate (sessions with a product view that added to a cart, bucketed by their first view) is read from
//! it like sessions.
//!
//! Since v17 a row also keeps what the session entered with: its first non-empty `utm_source`,
//! `utm_campaign`, referrer site and page path, each as a `(time, value)` pair whose `min` is the
//! earliest ([`SessionFirst`]; a row without one holds the latest time and `''`), and its smallest and
//! largest page path (a session saw one page when they are equal). Traffic sources, campaigns, landing
//! pages, referrers and breakdowns by them read these rows instead of regrouping every raw event by
//! session (see `read/sessions.rs`). Pairs rather than a value per row keep `min` exact when a
//! session's rows merge in any order or a late event arrives: the value follows its time.
//!
//! ## `commerce_visitors` (v14)
//! Each visitor (64-bit hash of the customer, else anonymous, else session id) once per store, UTC hour
//! and country, as plain rows of a `ReplacingMergeTree` fed by `commerce_visitors_mv` (humans only, see
//! [`VISITOR_ROWS`]). Readers count distinct hashes (`uniqExact`), so a row aggregated twice before its
//! merge changes nothing. It replaced the hourly distinct-set states of `commerce_hourly`, which v14
//! stops feeding and empties: a read merged one deserialized set per hour, where a distinct count over
//! rows hashes each row once (on the 100M-event store: 30 days 144–161 ms against 219–348 ms, 12 months
//! 1.28–1.32 s and 1.25 GiB against 2.05–2.58 s and 1.5–1.6 GiB), and the rows, sorted by hash within
//! each hour, take about what the sets took with `Delta` (211 against 214 MiB after the final merge).
//! Erasure deletes and rebuilds the hours it touched; retention cuts it by `hour` like the other
//! rollups.
//!
//! ## `commerce_customers` (v15)
//! Each customer's first completed order per store and UTC day (the 64-bit hash of their id; humans
//! only; `min` only, see [`CUSTOMERS_ROLLUP`]), fed by `commerce_customers_mv`. New vs returning,
//! cohorts and LTV need every customer's first order ever: they read it here (the `min` over the
//! customer's rows, ~one row per customer and day with an order) instead of grouping every stored order
//! by its customer id string. Retention cuts it by `day` on the events' cutoff, so the first order is the
//! first one kept; erasure deletes the customer's rows; reads with bots read the raw events.
//!
//! ## `commerce_product_names` (v20)
//! Each product's latest name per store and UTC day (the latest `product.viewed` with a `product_name`,
//! bots included, kept as a `(time, name)` pair; `max` only, see [`PRODUCT_NAMES_ROLLUP`]), fed by
//! `commerce_product_names_mv`. The names lookup (`query/names.rs`, whose windows are whole UTC days)
//! reads the `max` over a window's rows instead of that window's product views: one small read per
//! step, a few hundred rows a product a year. Retention cuts it by `day` like the customers' rows;
//! erasure deletes and rebuilds the product-days whose views it erased.
//!
//! ## `commerce_stock` (v21)
//! Each product's latest stock per store and UTC day (the latest `inventory.updated` of a human sender,
//! kept as a `(time, quantity)` pair, the greater quantity on a tie of times; `max` only, see
//! [`STOCK_ROLLUP`]), fed by `commerce_stock_mv`. Stock levels and sell-through need each product's
//! latest stock before the period's end, which may be a year old: they read the whole days before the
//! day the period ends in from here (one row a product a day however often its stock is reported), and
//! that day's updates up to the end from the events. Retention cuts it by `day`; erasure deletes and
//! rebuilds the product-days whose updates it erased; reads with bots read the raw events.
//!
//! ## `commerce_hourly` rollup (v4; one view since v7; visitors only since v12; empty since v14)
//! An `AggregatingMergeTree` fed by a materialized view on every insert into `commerce_events` (two views
//! until v7, which merged them into [`HOURLY_ROLLUP`] to write one block per insert instead of two): per
//! store, UTC hour, type and country the exact distinct set (`uniqExactState` of 64-bit hashes) of event
//! ids, and per store, hour and country (type `'*'`) the distinct set of visitors. Distinct sets rather than counters make the rollup idempotent: re-aggregating
//! events (the backfill racing live inserts, the re-aggregation after an erasure) never over-counts.
//! Read by `visitors` and `product_views` whenever the range's buckets fall on whole UTC hours (see
//! `query.rs`); partitioned by month like the events, so retention treats it the same way.

use std::sync::LazyLock;

use clickhouse::Client;
use regex::Regex;
use serde::Deserialize;

use super::classify;
use super::layout::{Cluster, SHARDED, local};
use crate::error::StoreError;

/// One schema version.
#[derive(Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    /// Statements; `{db}` is replaced by the database name, `{retention_days}` by the setting.
    pub statements: &'static [&'static str],
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "create commerce_events",
        statements: &[r"
CREATE TABLE IF NOT EXISTS {db}.commerce_events
(
    store_id          LowCardinality(String),
    id                String,
    type              LowCardinality(String),
    timestamp         DateTime64(3, 'UTC'),
    received_at       DateTime64(3, 'UTC'),
    client_timestamp  Nullable(DateTime64(3, 'UTC')),
    session_id        String,
    customer_id       String,
    anonymous_id      String,
    properties        String CODEC(ZSTD(3)),
    ip                String,
    user_agent        String CODEC(ZSTD(3)),
    referrer          String CODEC(ZSTD(3)),
    country           LowCardinality(String),
    page_url          String CODEC(ZSTD(3)),
    page_path         String CODEC(ZSTD(3)),
    utm_source        LowCardinality(String),
    utm_medium        LowCardinality(String),
    utm_campaign      LowCardinality(String),
    utm_term          String,
    utm_content       String,
    order_id          String,
    product_id        String,
    amount            Int64 COMMENT 'minor units (cents)',
    currency          LowCardinality(String),
    quantity          Int64,
    ingested_at       DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_id id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_customer customer_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_session session_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (store_id, type, toDate(timestamp), id)
TTL toDateTime(timestamp) + INTERVAL {retention_days} DAY
SETTINGS index_granularity = 8192, non_replicated_deduplication_window = 1000
"],
    },
    Migration {
        version: 2,
        name: "rejects table; longer insert dedup window",
        statements: &[
            // Firehose retries a failed delivery for up to `retry_duration` (2 h at most); in between, other
            // deliveries insert blocks. 10,000 remembered blocks cover that at the stream's buffering pace.
            "ALTER TABLE {db}.commerce_events MODIFY SETTING non_replicated_deduplication_window = 10000",
            r"
CREATE TABLE IF NOT EXISTS {db}.commerce_events_rejects
(
    received_at   DateTime64(3, 'UTC'),
    source        LowCardinality(String),
    request_id    String,
    record_index  UInt32,
    store_id      LowCardinality(String),
    event_id      String,
    reason        String,
    raw           String CODEC(ZSTD(3))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, request_id, record_index)
TTL toDateTime(received_at) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000
",
        ],
    },
    Migration {
        version: 3,
        name: "custom dashboards",
        statements: &[r"
CREATE TABLE IF NOT EXISTS {db}.analytics_dashboards
(
    store_id    LowCardinality(String),
    id          String,
    name        String,
    widgets     String COMMENT 'JSON array of widgets',
    version     UInt64 COMMENT 'milliseconds; the latest version wins',
    deleted     UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (store_id, id)
"],
    },
    Migration {
        version: 4,
        name: "hourly rollup",
        statements: &[
            r"
CREATE TABLE IF NOT EXISTS {db}.commerce_hourly
(
    store_id    LowCardinality(String),
    hour        DateTime('UTC'),
    type        LowCardinality(String) COMMENT 'event type; ''*'' rows hold the visitors of all types',
    country     LowCardinality(String),
    events      AggregateFunction(uniqExact, UInt64) COMMENT 'cityHash64 of event ids (per-type rows)',
    visitors    AggregateFunction(uniqExact, UInt64) COMMENT 'cityHash64 of customer, else anonymous, else session id (''*'' rows)'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (store_id, hour, type, country)
TTL toDateTime(hour) + INTERVAL {retention_days} DAY
",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.commerce_hourly_events_mv TO {db}.commerce_hourly AS \
             {hourly_events} FROM {db}.commerce_events {hourly_events_group}",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.commerce_hourly_visitors_mv TO {db}.commerce_hourly AS \
             {hourly_visitors} FROM {db}.commerce_events {hourly_visitors_group}",
            // Backfill what was stored before the views existed. Rows inserted while this runs may be
            // aggregated twice: harmless, the states are exact distinct sets.
            "INSERT INTO {db}.commerce_hourly {hourly_events} FROM {db}.commerce_events {hourly_events_group}",
            "INSERT INTO {db}.commerce_hourly {hourly_visitors} FROM {db}.commerce_events {hourly_visitors_group}",
        ],
    },
    Migration {
        version: 5,
        name: "create api_keys",
        statements: &[r"
CREATE TABLE IF NOT EXISTS {db}.api_keys
(
    sha256      String COMMENT 'hex SHA-256 of the key; the key itself is never stored',
    prefix      String COMMENT 'first 11 characters, for listings and revocation',
    store_id    String,
    kind        LowCardinality(String) COMMENT 'write (pk_) or read (sk_)',
    origins     Array(String) COMMENT 'write keys: allowed browser origins (empty: any)',
    name        String,
    created_at  DateTime64(3, 'UTC'),
    revoked_at  Nullable(DateTime64(3, 'UTC')),
    version     UInt8 COMMENT '0 created, 1 revoked: the revoked row wins'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY sha256
"],
    },
    Migration {
        version: 6,
        name: "bot flag; the rollup counts humans only",
        statements: &[
            "ALTER TABLE {db}.commerce_events ADD COLUMN IF NOT EXISTS is_bot Bool DEFAULT false \
             COMMENT 'sent by a bot, crawler or headless browser; excluded from metrics by default'",
            // Atomic swap of each view's query (no window in which inserts skip the rollup). Rows stored
            // before this version have is_bot = false, as their rollup rows assumed.
            "ALTER TABLE {db}.commerce_hourly_events_mv MODIFY QUERY \
             {hourly_events} FROM {db}.commerce_events WHERE NOT is_bot {hourly_events_group}",
            "ALTER TABLE {db}.commerce_hourly_visitors_mv MODIFY QUERY \
             {hourly_visitors} FROM {db}.commerce_events WHERE NOT is_bot {hourly_visitors_group}",
        ],
    },
    Migration {
        version: 7,
        name: "one rollup view instead of two",
        statements: &[
            // Created before the old views are dropped, so no insert skips the rollup; rows inserted in
            // between are aggregated twice, which the distinct-set states make harmless.
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.commerce_hourly_mv TO {db}.commerce_hourly AS \
             {hourly_rollup} FROM {db}.commerce_events {hourly_rollup_rest}",
            "DROP VIEW IF EXISTS {db}.commerce_hourly_events_mv",
            "DROP VIEW IF EXISTS {db}.commerce_hourly_visitors_mv",
        ],
    },
    Migration {
        version: 8,
        name: "key scopes",
        statements: &[
            // Empty for every existing key: it keeps its kind's scopes until an operator narrows it.
            "ALTER TABLE {db}.api_keys ADD COLUMN IF NOT EXISTS scopes Array(LowCardinality(String)) \
             DEFAULT [] COMMENT 'track, read, manage, erase; empty: the kind''s defaults'",
        ],
    },
    Migration {
        version: AGENT_COLUMNS,
        name: "device, browser and OS from the user agent",
        // Then [`backfill_agent_columns`] fills them for the rows stored before.
        statements: &[
            "ALTER TABLE {db}.commerce_events ADD COLUMN IF NOT EXISTS device LowCardinality(String) \
             DEFAULT '' COMMENT 'desktop, mobile, tablet, bot, other; empty without a user agent'",
            "ALTER TABLE {db}.commerce_events ADD COLUMN IF NOT EXISTS browser LowCardinality(String) \
             DEFAULT ''",
            "ALTER TABLE {db}.commerce_events ADD COLUMN IF NOT EXISTS os LowCardinality(String) \
             DEFAULT ''",
        ],
    },
    Migration {
        version: 10,
        name: "exchange rates",
        statements: &[r"
CREATE TABLE IF NOT EXISTS {db}.fx_rates
(
    day         Date,
    currency    LowCardinality(String),
    rate        String COMMENT 'units of the currency per euro, as published (text keeps it exact)',
    source      LowCardinality(String),
    loaded_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(loaded_at)
ORDER BY (currency, day)
"],
    },
    Migration {
        version: 11,
        name: "alerts",
        statements: &[
            r"
CREATE TABLE IF NOT EXISTS {db}.alert_rules
(
    store_id        LowCardinality(String),
    id              String,
    body            String COMMENT 'JSON: the rule as written, or a guard''s settings',
    signing_secret  String,
    version         UInt64 COMMENT 'milliseconds; the latest version wins',
    deleted         UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (store_id, id)
",
            r"
CREATE TABLE IF NOT EXISTS {db}.alert_claims
(
    store_id    LowCardinality(String),
    rule_id     String,
    slot        Int64,
    claimer     String,
    claimed_at  DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = MergeTree
ORDER BY (store_id, rule_id, slot)
TTL toDateTime(claimed_at) + INTERVAL 30 DAY
",
            r"
CREATE TABLE IF NOT EXISTS {db}.alert_log
(
    store_id          LowCardinality(String),
    rule_id           String,
    slot              Int64,
    evaluated_at      Int64,
    window_from       Int64,
    window_to         Int64,
    value             Nullable(Float64),
    median            Nullable(Float64),
    lower             Nullable(Float64),
    upper             Nullable(Float64),
    firing            UInt8,
    notification      LowCardinality(String),
    episode_notified  UInt8,
    detail            String
)
ENGINE = MergeTree
ORDER BY (store_id, rule_id, slot)
TTL toDateTime(intDiv(slot, 1000)) + INTERVAL 90 DAY
",
            r"
CREATE TABLE IF NOT EXISTS {db}.alert_deliveries
(
    store_id     LowCardinality(String),
    rule_id      String,
    slot         Int64,
    delivery_id  String,
    channel      String,
    delivered    UInt8,
    attempts     UInt32,
    status       UInt16,
    detail       String,
    sent_at      Int64
)
ENGINE = MergeTree
ORDER BY (store_id, rule_id, slot)
TTL toDateTime(intDiv(sent_at, 1000)) + INTERVAL 90 DAY
",
        ],
    },
    Migration {
        version: 12,
        name: "hourly event counts instead of event id sets",
        statements: &[
            r"
CREATE TABLE IF NOT EXISTS {db}.commerce_hourly_counts
(
    store_id    LowCardinality(String),
    hour        DateTime('UTC'),
    type        LowCardinality(String),
    country     LowCardinality(String),
    events      SimpleAggregateFunction(sum, Int64) COMMENT 'stored human events; an erasure adds its negative'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (store_id, hour, type, country)
TTL toDateTime(hour) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 1000
",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.commerce_hourly_counts_mv TO {db}.commerce_hourly_counts AS \
             {hourly_counts} FROM {db}.commerce_events {hourly_counts_group}",
            // Atomic swap: from here on the old view writes only the visitors' rows.
            "ALTER TABLE {db}.commerce_hourly_mv MODIFY QUERY \
             {hourly_visitors} FROM {db}.commerce_events WHERE NOT is_bot {hourly_visitors_group}",
            // The rows stored before the new view existed (each event once: an unmerged racing duplicate
            // is not counted twice). An insert that began before the view was created is not in it; its
            // `ingested_at` is earlier than the view's creation second. Rows ingested within that second
            // may be counted twice or not at all, so run this migration with ingest paused on a live store.
            "INSERT INTO {db}.commerce_hourly_counts \
             SELECT store_id, toStartOfHour(timestamp) AS hour, type, country, toInt64(uniqExact(id)) AS events \
             FROM {db}.commerce_events WHERE NOT is_bot AND ingested_at < ( \
               SELECT any(metadata_modification_time) FROM system.tables \
               WHERE database = '{db}' AND name = 'commerce_hourly_counts_mv') \
             GROUP BY store_id, hour, type, country",
            // The per-type distinct sets of event ids are what made the rollup grow with the events.
            "ALTER TABLE {db}.commerce_hourly DELETE WHERE type != '*'",
        ],
    },
    Migration {
        version: 13,
        name: "session rollup",
        statements: &[
            r"
CREATE TABLE IF NOT EXISTS {db}.commerce_sessions
(
    store_id      LowCardinality(String),
    hour          DateTime('UTC') COMMENT 'the UTC hour of the session''s events aggregated in this row',
    session_hash  UInt64 COMMENT 'cityHash64(session_id)',
    country       LowCardinality(String) CODEC(ZSTD(3)),
    device        LowCardinality(String) CODEC(ZSTD(3)),
    browser       LowCardinality(String) CODEC(ZSTD(3)),
    start         SimpleAggregateFunction(min, DateTime64(3, 'UTC')) CODEC(ZSTD(3)) COMMENT 'first event of the row',
    has_order     SimpleAggregateFunction(max, UInt8) COMMENT 'an order.completed among the row''s events'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (store_id, hour, session_hash, country, device, browser)
TTL toDateTime(hour) + INTERVAL {retention_days} DAY
",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.commerce_sessions_mv TO {db}.commerce_sessions AS \
             {sessions_rollup_v13} FROM {db}.commerce_events {sessions_rollup_group}",
            // Rows stored before the view: min and max only, so rows the view also aggregated (inserted
            // while this runs) change nothing.
            "INSERT INTO {db}.commerce_sessions {sessions_rollup_v13} FROM {db}.commerce_events {sessions_rollup_group}",
        ],
    },
    Migration {
        version: 14,
        name: "visitor rows instead of distinct sets",
        statements: &[
            r"
CREATE TABLE IF NOT EXISTS {db}.commerce_visitors
(
    store_id      LowCardinality(String),
    hour          DateTime('UTC'),
    visitor_hash  UInt64 CODEC(Delta(8), ZSTD(1)) COMMENT 'cityHash64 of customer, else anonymous, else session id',
    country       LowCardinality(String) CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (store_id, hour, visitor_hash, country)
TTL toDateTime(hour) + INTERVAL {retention_days} DAY
",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.commerce_visitors_mv TO {db}.commerce_visitors AS \
             {visitor_rows} FROM {db}.commerce_events {visitor_rows_group}",
            // Rows stored before the view; an insert landing meanwhile is in both, as the same rows.
            "INSERT INTO {db}.commerce_visitors {visitor_rows} FROM {db}.commerce_events {visitor_rows_group}",
            // The distinct sets are no longer read or fed. The table stays, empty, so the earlier
            // migrations and a cluster's tables keep the shape they were applied with.
            "DROP VIEW IF EXISTS {db}.commerce_hourly_mv",
            "TRUNCATE TABLE IF EXISTS {db}.commerce_hourly",
        ],
    },
    Migration {
        version: 15,
        name: "customers' first orders",
        statements: &[
            r"
CREATE TABLE IF NOT EXISTS {db}.commerce_customers
(
    store_id       LowCardinality(String),
    day            Date COMMENT 'the UTC day of the orders aggregated in this row',
    customer_hash  UInt64 COMMENT 'cityHash64(customer_id)',
    first_order    SimpleAggregateFunction(min, DateTime64(3, 'UTC')) CODEC(ZSTD(3)) COMMENT 'the customer''s first order.completed that day'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (store_id, customer_hash, day)
TTL toDateTime(day) + INTERVAL {retention_days} DAY
",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.commerce_customers_mv TO {db}.commerce_customers AS \
             {customers_rollup} FROM {db}.commerce_events {customers_rollup_group}",
            // Rows stored before the view: `min` only, so rows the view also aggregated change nothing.
            "INSERT INTO {db}.commerce_customers {customers_rollup} FROM {db}.commerce_events {customers_rollup_group}",
        ],
    },
    Migration {
        version: 16,
        name: "sessions' first product view and cart",
        statements: &[
            // Rows written before have the defaults, which `min` and `max` ignore.
            "ALTER TABLE {db}.commerce_sessions \
             ADD COLUMN IF NOT EXISTS first_view SimpleAggregateFunction(min, DateTime64(3, 'UTC')) \
               DEFAULT {no_view} CODEC(ZSTD(3)) \
               COMMENT 'first product.viewed of the row; the latest DateTime64 when none', \
             ADD COLUMN IF NOT EXISTS has_cart SimpleAggregateFunction(max, UInt8) DEFAULT 0 \
               COMMENT 'a cart.item_added among the row''s events'",
            // Atomic swap of the view's query: no insert skips the new columns.
            "ALTER TABLE {db}.commerce_sessions_mv MODIFY QUERY \
             {sessions_rollup_v16} FROM {db}.commerce_events {sessions_rollup_group}",
            // Every row again, now with the new columns: `min`/`max` only, so the rows already there and
            // those the view writes meanwhile change nothing.
            "INSERT INTO {db}.commerce_sessions {sessions_rollup_v16} FROM {db}.commerce_events {sessions_rollup_group}",
        ],
    },
    Migration {
        version: 17,
        name: "sessions' source, campaign, referrer, landing page and pages",
        statements: &[
            // Rows written before have the defaults, which `min` and `max` ignore (a missing `page_min`
            // is NULL, which `min` skips).
            "ALTER TABLE {db}.commerce_sessions \
             ADD COLUMN IF NOT EXISTS first_source {first_type} DEFAULT {no_first} CODEC(ZSTD(9)) \
               COMMENT 'first non-empty utm_source of the row and its time; the latest DateTime64 and an empty value when none', \
             ADD COLUMN IF NOT EXISTS first_campaign {first_type} DEFAULT {no_first} CODEC(ZSTD(9)) \
               COMMENT 'first non-empty utm_campaign of the row and its time', \
             ADD COLUMN IF NOT EXISTS first_referrer {first_type} DEFAULT {no_first} CODEC(ZSTD(9)) \
               COMMENT 'the site (domainWithoutWWW) of the row''s first non-empty referrer and its time', \
             ADD COLUMN IF NOT EXISTS first_page {first_type} DEFAULT {no_first} CODEC(ZSTD(9)) \
               COMMENT 'first non-empty page path of the row and its time', \
             ADD COLUMN IF NOT EXISTS page_min SimpleAggregateFunction(min, LowCardinality(Nullable(String))) \
               COMMENT 'smallest non-empty page path of the row; NULL when none', \
             ADD COLUMN IF NOT EXISTS page_max SimpleAggregateFunction(max, LowCardinality(String)) DEFAULT '' \
               COMMENT 'largest page path of the row; empty when none'",
            // Smaller parts from now on (existing parts as they merge): the session hashes are sorted
            // within each hour, so their deltas are smaller than the hashes; times compress better at a
            // higher level. On a month of the 100M-event store: 28.4 against 27.1 bytes a row.
            "ALTER TABLE {db}.commerce_sessions \
             MODIFY COLUMN session_hash CODEC(Delta(8), ZSTD(1)), MODIFY COLUMN first_view CODEC(ZSTD(9))",
            // Atomic swap of the view's query: no insert skips the new columns.
            "ALTER TABLE {db}.commerce_sessions_mv MODIFY QUERY \
             {sessions_rollup} FROM {db}.commerce_events {sessions_rollup_group}",
            // Every row again, now with the new columns: `min`/`max` only, so the rows already there and
            // those the view writes meanwhile change nothing.
            "INSERT INTO {db}.commerce_sessions {sessions_rollup} FROM {db}.commerce_events {sessions_rollup_group}",
        ],
    },
    Migration {
        version: 18,
        name: "one claim per alert slot",
        statements: &[
            // A claim carries a deduplication token naming its (store, rule, slot): the second claim of a
            // slot is dropped when it commits, so every claimer reads the same single claim (see
            // `alerts.rs`). A replicated table deduplicates by its own window already.
            "ALTER TABLE {db}.alert_claims MODIFY SETTING non_replicated_deduplication_window = 1000",
        ],
    },
    Migration {
        version: 19,
        name: "product names as a column",
        statements: &[
            // Written by every insert ([`super::row::EventRow`]); for the parts stored before, ClickHouse
            // computes the default from `properties` when it reads them, and writes it when it merges
            // them, so no mutation rewrites the table. A string only, as the row writes it
            // (`JSONExtractString` alone turns a number into its digits). The names lookup reads it instead of parsing
            // `properties` (see `query/names.rs`).
            "ALTER TABLE {db}.commerce_events ADD COLUMN IF NOT EXISTS product_name LowCardinality(String) \
             DEFAULT if(JSONType(properties, 'productName') = 'String', \
                        JSONExtractString(properties, 'productName'), '') \
             COMMENT 'properties.productName when a string, else empty'",
        ],
    },
    Migration {
        version: 20,
        name: "product names per day",
        statements: &[
            r"
CREATE TABLE IF NOT EXISTS {db}.commerce_product_names
(
    store_id    LowCardinality(String),
    day         Date COMMENT 'the UTC day of the product views aggregated in this row',
    product_id  String,
    latest      SimpleAggregateFunction(max, Tuple(at DateTime64(3, 'UTC'), name String)) COMMENT 'the day''s latest product.viewed with a name, and that name'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (store_id, product_id, day)
TTL toDateTime(day) + INTERVAL {retention_days} DAY
",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.commerce_product_names_mv TO {db}.commerce_product_names AS \
             {product_names_rollup} FROM {db}.commerce_events {product_names_rollup_group}",
            // Rows stored before the view: `max` only, so rows the view also aggregated change nothing.
            "INSERT INTO {db}.commerce_product_names {product_names_rollup} FROM {db}.commerce_events {product_names_rollup_group}",
        ],
    },
    Migration {
        version: 21,
        name: "stock per day",
        statements: &[
            r"
CREATE TABLE IF NOT EXISTS {db}.commerce_stock
(
    store_id    LowCardinality(String),
    day         Date COMMENT 'the UTC day of the inventory updates aggregated in this row',
    product_id  String,
    latest      SimpleAggregateFunction(max, Tuple(at DateTime64(3, 'UTC'), quantity Int64)) COMMENT 'the day''s latest inventory.updated and its quantity (the greater on a tie of times)'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (store_id, product_id, day)
TTL toDateTime(day) + INTERVAL {retention_days} DAY
",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.commerce_stock_mv TO {db}.commerce_stock AS \
             {stock_rollup} FROM {db}.commerce_events {stock_rollup_group}",
            // Rows stored before the view: `max` only, so rows the view also aggregated change nothing.
            "INSERT INTO {db}.commerce_stock {stock_rollup} FROM {db}.commerce_events {stock_rollup_group}",
        ],
    },
];

/// The migration that adds `device`, `browser` and `os` ([`crate::event::agent`]); its backfill runs in
/// Rust, as ClickHouse has no user-agent parser.
pub const AGENT_COLUMNS: u32 = 9;

/// User agents per backfill mutation: each mutation rewrites the three columns once, and its statement
/// carries two arrays of this many elements.
const AGENT_BATCH: usize = 5_000;

/// Fills `device`, `browser` and `os` of the stored events that have a user agent but no device yet (rows
/// stored before [`AGENT_COLUMNS`], or by an older binary during a rolling deploy), with exactly what
/// ingest writes ([`crate::event::agent::Agent::of`] of the row's `user_agent` and `is_bot`). Reads the
/// distinct (user agent, bot) pairs, parses each once, and rewrites the columns in one mutation per
/// [`AGENT_BATCH`] pairs (`transform` of the pair's hash, computed by ClickHouse, so only numbers and the
/// parser's names are written into the statement). Idempotent; returns the pairs it parsed. On a cluster
/// it runs on every node's local table (or `ON CLUSTER`).
pub async fn backfill_agent_columns(
    admin: &Client,
    db: &str,
    flavor: Flavor<'_>,
) -> Result<usize, StoreError> {
    #[derive(Debug, Deserialize, clickhouse::Row)]
    struct Pair {
        user_agent: String,
        is_bot: bool,
        h: u64,
    }
    let read = format!(
        "SELECT user_agent, is_bot, cityHash64(user_agent, is_bot) AS h FROM {db}.commerce_events \
         WHERE device = '' AND user_agent != '' GROUP BY user_agent, is_bot"
    );
    // With `ON CLUSTER` the read goes through the `Distributed` table; on one node, to its own table.
    let read = if flavor.on_cluster.is_some() {
        read
    } else {
        render_for(&read, db, 0, flavor)
    };
    let pairs = admin
        .query(&read)
        .fetch_all::<Pair>()
        .await
        .map_err(classify)?;
    let quote = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    for (i, batch) in pairs.chunks(AGENT_BATCH).enumerate() {
        let agents: Vec<crate::event::agent::Agent> = batch
            .iter()
            .map(|p| crate::event::agent::Agent::of(&p.user_agent, p.is_bot))
            .collect();
        let hashes = batch
            .iter()
            .map(|p| p.h.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let column = |name: &str, values: Vec<&str>| {
            let values: Vec<String> = values.into_iter().map(quote).collect();
            format!(
                "{name} = transform(cityHash64(user_agent, is_bot), [{hashes}], [{}], {name})",
                values.join(",")
            )
        };
        let sql = render_for(
            &format!(
                "ALTER TABLE {db}.commerce_events UPDATE {}, {}, {} \
                 WHERE device = '' AND user_agent != '' AND cityHash64(user_agent, is_bot) IN ({hashes})",
                column("device", agents.iter().map(|a| a.device).collect()),
                column(
                    "browser",
                    agents.iter().map(|a| a.browser.as_str()).collect()
                ),
                column("os", agents.iter().map(|a| a.os.as_str()).collect()),
            ),
            db,
            0,
            flavor,
        );
        admin
            .query(&sql)
            .with_setting("mutations_sync", "2")
            .with_setting("max_query_size", "67108864")
            .execute()
            .await
            .map_err(classify)?;
        tracing::info!(
            done = (i * AGENT_BATCH + batch.len()),
            of = pairs.len(),
            "backfilled device, browser and OS"
        );
    }
    Ok(pairs.len())
}

/// Both kinds of rollup rows in one pass, for the materialized view: every event is seen twice by the
/// `ARRAY JOIN`, once under its own type (counted in `events`) and once under `'*'` (counted in
/// `visitors`). The result equals [`HOURLY_EVENTS`] ∪ [`HOURLY_VISITORS`] (a test checks it row for row),
/// but each insert into `commerce_events` writes one block into `commerce_hourly` instead of two: on a
/// small server every part written costs several ms, and fewer parts also means fewer merges.
pub const HOURLY_ROLLUP: &str = "SELECT store_id, toStartOfHour(timestamp) AS hour, rollup_type AS type, \
     country, uniqExactStateIf(cityHash64(id), rollup_type != '*') AS events, \
     uniqExactStateIf(cityHash64(if(customer_id != '', customer_id, if(anonymous_id != '', anonymous_id, session_id))), \
       rollup_type = '*' AND (customer_id != '' OR anonymous_id != '' OR session_id != '')) AS visitors";
/// What follows `FROM commerce_events` in [`HOURLY_ROLLUP`].
pub const HOURLY_ROLLUP_REST: &str = "ARRAY JOIN [CAST(type, 'String'), '*'] AS rollup_type \
     WHERE NOT is_bot GROUP BY store_id, hour, rollup_type, country";

/// The rollup's per-type rows: distinct event ids per store, hour, type and country. Used by the
/// materialized view, the backfill and the re-aggregation after an erasure. Distinct sets, not counters:
/// aggregating the same events twice changes nothing, and a duplicate raw row is not counted twice.
pub const HOURLY_EVENTS: &str = "SELECT store_id, toStartOfHour(timestamp) AS hour, type, country, \
     uniqExactState(cityHash64(id)) AS events, uniqExactStateIf(toUInt64(0), 0) AS visitors";
/// The `GROUP BY` of [`HOURLY_EVENTS`].
pub const HOURLY_EVENTS_GROUP: &str = "GROUP BY store_id, hour, type, country";
/// The rollup's `'*'` rows: distinct visitors of every type per store, hour and country (one row per hour
/// and country, so a visitor seen on many pages is one element, not one per page).
pub const HOURLY_VISITORS: &str = "SELECT store_id, toStartOfHour(timestamp) AS hour, '*' AS type, country, \
     uniqExactStateIf(toUInt64(0), 0) AS events, \
     uniqExactStateIf(cityHash64(if(customer_id != '', customer_id, if(anonymous_id != '', anonymous_id, session_id))), \
       customer_id != '' OR anonymous_id != '' OR session_id != '') AS visitors";
/// The `GROUP BY` of [`HOURLY_VISITORS`].
pub const HOURLY_VISITORS_GROUP: &str = "GROUP BY store_id, hour, country";

/// The `commerce_hourly_counts` rows of the events a query reads (`FROM commerce_events` and any `WHERE`
/// go between this and [`HOURLY_COUNTS_GROUP`]): stored human events per store, UTC hour, type and
/// country. Plain counts: exactly-once is enforced where events are written (see
/// [`super::ClickHouseStore`]), so each stored event row is one event, and a duplicate delivery never
/// reaches the view. The materialized view adds `WHERE NOT is_bot` through [`HOURLY_COUNTS_GROUP`].
pub const HOURLY_COUNTS: &str = "SELECT store_id, toStartOfHour(timestamp) AS hour, type, country, \
     toInt64(count()) AS events";
/// What follows `FROM commerce_events` in the view of [`HOURLY_COUNTS`].
pub const HOURLY_COUNTS_GROUP: &str = "WHERE NOT is_bot GROUP BY store_id, hour, type, country";

/// The `commerce_sessions` rows of the events a query reads (`FROM commerce_events` between this and
/// [`SESSIONS_ROLLUP_GROUP`]): per store, UTC hour, session, country, device and browser, the first
/// event's time, whether an order was completed, the first product view ([`NO_VIEW`] when none),
/// whether an item was added to a cart, what the session entered with ([`SESSION_FIRSTS`]: its first
/// non-empty source, campaign, referrer site and page, each with its time, so a session's is the
/// earliest over its rows) and its smallest and largest page path (one page seen when they are equal).
/// Only `min`/`max`, so aggregating an event twice (the backfill racing the view, the rebuild after an
/// erasure, a duplicate row before its merge) changes nothing: this rollup does not rely on exactly-once
/// at all, and a late event lowers the minimums it precedes.
pub const SESSIONS_ROLLUP: &str = concat!(
    "SELECT store_id, toStartOfHour(timestamp) AS hour, \
     cityHash64(session_id) AS session_hash, country, device, browser, min(timestamp) AS start, \
     max(toUInt8(type = 'order.completed')) AS has_order, \
     min(if(type = 'product.viewed', timestamp, ",
    no_view!(),
    ")) AS first_view, max(toUInt8(type = 'cart.item_added')) AS has_cart, \
     min(if(utm_source != '', (timestamp, CAST(utm_source, 'String')), ",
    no_first!(),
    ")) AS first_source, \
     min(if(utm_campaign != '', (timestamp, CAST(utm_campaign, 'String')), ",
    no_first!(),
    ")) AS first_campaign, \
     min(if(referrer != '', (timestamp, domainWithoutWWW(referrer)), ",
    no_first!(),
    ")) AS first_referrer, min(if(",
    page!(),
    " != '', (timestamp, ",
    page!(),
    "), ",
    no_first!(),
    ")) AS first_page, min(if(",
    page!(),
    " != '', ",
    page!(),
    ", NULL)) AS page_min, max(",
    page!(),
    ") AS page_max"
);

/// One "first non-empty value of the session" that [`SESSIONS_ROLLUP`] keeps per row as a
/// `(time, value)` pair (`(`[`NO_VIEW`]`, '')` when the row has none): a session's is the value of the
/// earliest pair over its rows. `raw` and `present` read the same value from a raw event, for the reads
/// that add the raw events of a range's partial hours to the rollup's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFirst {
    /// The rollup's column, a `Tuple(at DateTime64(3, 'UTC'), value String)`.
    pub column: &'static str,
    /// The value of a raw event.
    pub raw: &'static str,
    /// Whether a raw event has one.
    pub present: &'static str,
}

/// The session's first `utm_source`.
pub const FIRST_SOURCE: SessionFirst = SessionFirst {
    column: "first_source",
    raw: "CAST(utm_source, 'String')",
    present: "utm_source != ''",
};
/// The session's first `utm_campaign`.
pub const FIRST_CAMPAIGN: SessionFirst = SessionFirst {
    column: "first_campaign",
    raw: "CAST(utm_campaign, 'String')",
    present: "utm_campaign != ''",
};
/// The site of the session's first referrer (`domainWithoutWWW`; empty when that referrer has no
/// domain, as when read from the raw events).
pub const FIRST_REFERRER: SessionFirst = SessionFirst {
    column: "first_referrer",
    raw: "domainWithoutWWW(referrer)",
    present: "referrer != ''",
};
/// The session's landing page: its first page path ([`PAGE`]).
pub const FIRST_PAGE: SessionFirst = SessionFirst {
    column: "first_page",
    raw: PAGE,
    present: concat!(page!(), " != ''"),
};
/// Every pair [`SESSIONS_ROLLUP`] keeps.
pub const SESSION_FIRSTS: [SessionFirst; 4] =
    [FIRST_SOURCE, FIRST_CAMPAIGN, FIRST_REFERRER, FIRST_PAGE];

/// The literal of [`PAGE`], for `concat!`.
macro_rules! page {
    () => {
        "if(page_path != '', page_path, path(page_url))"
    };
}
use page;
/// An event's page path: `context.page.path` when sent, else the path of `context.page.url`.
pub const PAGE: &str = page!();

/// The literal of [`NO_VIEW`], for the `concat!` of [`SESSIONS_ROLLUP`].
macro_rules! no_view {
    () => {
        "toDateTime64('2299-12-31 23:59:59.999', 3, 'UTC')"
    };
}
use no_view;
/// `first_view` of a row without a product view: the latest `DateTime64`, so `min` over a session's rows
/// is its first view whenever it has one.
pub const NO_VIEW: &str = no_view!();
/// The literal of [`NO_FIRST`], for `concat!`.
macro_rules! no_first {
    () => {
        "(toDateTime64('2299-12-31 23:59:59.999', 3, 'UTC'), '')"
    };
}
use no_first;
/// A [`SessionFirst`] of a row without the value: [`NO_VIEW`] and `''`.
pub const NO_FIRST: &str = no_first!();
/// The type of a [`SessionFirst`] column.
const FIRST_TYPE: &str =
    "SimpleAggregateFunction(min, Tuple(at DateTime64(3, 'UTC'), value String))";
/// [`SESSIONS_ROLLUP`] as v16 set the view, before the entry columns (v17).
const SESSIONS_ROLLUP_V16: &str = concat!(
    "SELECT store_id, toStartOfHour(timestamp) AS hour, \
     cityHash64(session_id) AS session_hash, country, device, browser, min(timestamp) AS start, \
     max(toUInt8(type = 'order.completed')) AS has_order, \
     min(if(type = 'product.viewed', timestamp, ",
    no_view!(),
    ")) AS first_view, max(toUInt8(type = 'cart.item_added')) AS has_cart"
);
/// [`SESSIONS_ROLLUP`] as v13 created the view, before the product columns (v16).
const SESSIONS_ROLLUP_V13: &str = "SELECT store_id, toStartOfHour(timestamp) AS hour, \
     cityHash64(session_id) AS session_hash, country, device, browser, min(timestamp) AS start, \
     max(toUInt8(type = 'order.completed')) AS has_order";
/// What follows `FROM commerce_events` in [`SESSIONS_ROLLUP`]: humans' events with a session.
pub const SESSIONS_ROLLUP_GROUP: &str = "WHERE NOT is_bot AND session_id != '' \
     GROUP BY store_id, hour, session_hash, country, device, browser";

/// The `commerce_visitors` rows of the events a query reads (`FROM commerce_events` between this and
/// [`VISITOR_ROWS_GROUP`]): each visitor (the 64-bit hash of the customer id, else the anonymous id, else
/// the session id) once per store, UTC hour and country. Plain rows, so aggregating an event twice (the
/// backfill racing the view, the rebuild after an erasure) adds a row that a read's distinct count and
/// the table's merges both ignore: this rollup does not rely on exactly-once either.
pub const VISITOR_ROWS: &str = "SELECT store_id, toStartOfHour(timestamp) AS hour, \
     cityHash64(if(customer_id != '', customer_id, if(anonymous_id != '', anonymous_id, session_id))) AS visitor_hash, \
     country";
/// What follows `FROM commerce_events` in [`VISITOR_ROWS`]: humans' events with any visitor id.
pub const VISITOR_ROWS_GROUP: &str = "WHERE NOT is_bot \
     AND (customer_id != '' OR anonymous_id != '' OR session_id != '') \
     GROUP BY store_id, hour, visitor_hash, country";

/// The `commerce_customers` rows of the events a query reads (`FROM commerce_events` between this and
/// [`CUSTOMERS_ROLLUP_GROUP`]): per store, UTC day and customer (their id's 64-bit hash), the first
/// completed order of that day. Only `min`, so aggregating an order twice changes nothing. A customer's
/// first order ever is the `min` over their rows; a row per day rather than per customer lets retention
/// cut it on the same whole-day cutoff as the events, leaving the first order among those kept.
pub const CUSTOMERS_ROLLUP: &str = "SELECT store_id, toDate(timestamp) AS day, \
     cityHash64(customer_id) AS customer_hash, min(timestamp) AS first_order";
/// What follows `FROM commerce_events` in [`CUSTOMERS_ROLLUP`]: humans' completed orders with a customer.
pub const CUSTOMERS_ROLLUP_GROUP: &str = "WHERE NOT is_bot AND type = 'order.completed' \
     AND customer_id != '' GROUP BY store_id, day, customer_hash";

/// The `commerce_product_names` rows of the events a query reads (`FROM commerce_events` between this
/// and [`PRODUCT_NAMES_ROLLUP_GROUP`]): per store, UTC day and product, the latest `product.viewed` that
/// carried a name, as a `(time, name)` pair. Only `max`, so aggregating a view twice changes nothing, and
/// the latest name of any run of days is the `max` over its rows. Bots' views included: a name is a
/// catalog fact, not traffic (see `query/names.rs`).
pub const PRODUCT_NAMES_ROLLUP: &str = "SELECT store_id, toDate(timestamp) AS day, product_id, \
     max((timestamp, CAST(product_name, 'String'))) AS latest";
/// What follows `FROM commerce_events` in [`PRODUCT_NAMES_ROLLUP`]: product views with a name.
pub const PRODUCT_NAMES_ROLLUP_GROUP: &str = "WHERE type = 'product.viewed' AND product_id != '' \
     AND product_name != '' GROUP BY store_id, day, product_id";

/// The `commerce_stock` rows of the events a query reads (`FROM commerce_events` between this and
/// [`STOCK_ROLLUP_GROUP`]): per store, UTC day and product, the latest `inventory.updated` of a human
/// sender as a `(time, quantity)` pair (on a tie of times, the greater quantity). Only `max`, so
/// aggregating an update twice changes nothing, and the latest stock before any day is the `max` over the
/// rows before it.
pub const STOCK_ROLLUP: &str = "SELECT store_id, toDate(timestamp) AS day, product_id, \
     max((timestamp, quantity)) AS latest";
/// What follows `FROM commerce_events` in [`STOCK_ROLLUP`]: humans' inventory updates.
pub const STOCK_ROLLUP_GROUP: &str =
    "WHERE NOT is_bot AND type = 'inventory.updated' GROUP BY store_id, day, product_id";

/// A materialized view on `commerce_events` as the latest migration leaves it: the rollup table it feeds
/// and its query (`{select} FROM <events> {rest}`).
#[derive(Debug, Clone, Copy)]
pub struct RollupView {
    pub view: &'static str,
    pub table: &'static str,
    pub select: &'static str,
    pub rest: &'static str,
}

/// Every view the migrations leave on `commerce_events` (an integration test checks this list against a
/// migrated server's views): what a bulk load without views ([`super::bulk`]) must derive itself.
pub const ROLLUP_VIEWS: [RollupView; 6] = [
    RollupView {
        view: "commerce_hourly_counts_mv",
        table: "commerce_hourly_counts",
        select: HOURLY_COUNTS,
        rest: HOURLY_COUNTS_GROUP,
    },
    RollupView {
        view: "commerce_sessions_mv",
        table: "commerce_sessions",
        select: SESSIONS_ROLLUP,
        rest: SESSIONS_ROLLUP_GROUP,
    },
    RollupView {
        view: "commerce_visitors_mv",
        table: "commerce_visitors",
        select: VISITOR_ROWS,
        rest: VISITOR_ROWS_GROUP,
    },
    RollupView {
        view: "commerce_customers_mv",
        table: "commerce_customers",
        select: CUSTOMERS_ROLLUP,
        rest: CUSTOMERS_ROLLUP_GROUP,
    },
    RollupView {
        view: "commerce_product_names_mv",
        table: "commerce_product_names",
        select: PRODUCT_NAMES_ROLLUP,
        rest: PRODUCT_NAMES_ROLLUP_GROUP,
    },
    RollupView {
        view: "commerce_stock_mv",
        table: "commerce_stock",
        select: STOCK_ROLLUP,
        rest: STOCK_ROLLUP_GROUP,
    },
];

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Versions applied by this run (on any node).
    pub applied: Vec<u32>,
    pub current_version: u32,
    pub ttl_updated: bool,
    /// The nodes migrated (the server's URL, every node's, or `ON CLUSTER <name>`).
    pub nodes: Vec<String>,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct Applied {
    version: u32,
}

/// How statements are written for where they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor<'a> {
    /// A cluster node: tables of [`SHARDED`] are stored as `<name>_local`, with a `Distributed` table
    /// over the cluster's nodes under `<name>` (created as soon as the local table is).
    pub local: bool,
    /// The cluster's name (empty on one server).
    pub cluster: &'a str,
    /// `Replicated*MergeTree` engines (Keeper).
    pub replicated: bool,
    /// `ON CLUSTER <name>` on every DDL statement.
    pub on_cluster: Option<&'a str>,
}

impl Flavor<'_> {
    /// One server.
    pub const SINGLE: Flavor<'static> = Flavor {
        local: false,
        cluster: "",
        replicated: false,
        on_cluster: None,
    };

    /// How statements are written for `cluster`: one server without one; local tables with one, run
    /// `ON CLUSTER` when it names no nodes (a managed cluster's distributed DDL), else on each node.
    pub fn of(cluster: Option<&Cluster>) -> Flavor<'_> {
        match cluster {
            None => Flavor::SINGLE,
            Some(c) => Flavor {
                local: true,
                cluster: &c.name,
                replicated: c.replicated,
                on_cluster: c.nodes.is_empty().then_some(c.name.as_str()),
            },
        }
    }
}

/// Creates the database if needed, applies pending migrations in order, and brings the TTLs in line with
/// `retention_days`; on a cluster also the `Distributed` tables (see [`super::layout`]). Safe to run
/// concurrently with traffic and to run again; a node that missed a migration (it was down) gets it on
/// the next run.
pub async fn migrate(
    admin: &Client,
    url: &str,
    db: &str,
    retention_days: u32,
    cluster: Option<&Cluster>,
) -> Result<Report, StoreError> {
    if !crate::ident::is_identifier(db) {
        return Err(StoreError::Rejected(format!(
            "invalid database name {db:?}"
        )));
    }
    let mut report = Report {
        applied: Vec::new(),
        current_version: MIGRATIONS.last().map_or(0, |m| m.version),
        ttl_updated: false,
        nodes: Vec::new(),
    };
    let outcomes = match cluster {
        None => {
            report.nodes.push(url.to_owned());
            vec![migrate_node(admin, db, retention_days, Flavor::SINGLE).await?]
        }
        Some(c) if c.nodes.is_empty() => {
            let flavor = Flavor::of(Some(c));
            report.nodes.push(format!("ON CLUSTER {}", c.name));
            let outcome = migrate_node(admin, db, retention_days, flavor).await?;
            distributed_tables(admin, db, flavor).await?;
            vec![outcome]
        }
        Some(c) => {
            let flavor = Flavor::of(Some(c));
            let mut outcomes = Vec::new();
            for node in &c.nodes {
                report.nodes.push(node.url.clone());
                outcomes.push(migrate_node(&node.admin, db, retention_days, flavor).await?);
            }
            for node in &c.nodes {
                distributed_tables(&node.admin, db, flavor).await?;
            }
            outcomes
        }
    };
    for (applied, ttl) in outcomes {
        for v in applied {
            if !report.applied.contains(&v) {
                report.applied.push(v);
            }
        }
        report.ttl_updated |= ttl;
    }
    Ok(report)
}

/// The versions applied on each node, checked against [`MIGRATIONS`]: an error names every node that
/// missed one (it was down during `analytics migrate`), so it is migrated before it serves.
pub async fn verify(nodes: &[(String, Client)], db: &str) -> Result<(), StoreError> {
    let wanted: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
    let mut behind = Vec::new();
    for (name, admin) in nodes {
        let done = applied_versions(admin, db).await?;
        let missing: Vec<u32> = wanted
            .iter()
            .copied()
            .filter(|v| !done.contains(v))
            .collect();
        if !missing.is_empty() {
            behind.push(format!("{name} lacks migrations {missing:?}"));
        }
    }
    if behind.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Rejected(format!(
            "schema out of date: {}; run `analytics migrate`",
            behind.join("; ")
        )))
    }
}

async fn applied_versions(admin: &Client, db: &str) -> Result<Vec<u32>, StoreError> {
    Ok(admin
        .query(&format!(
            "SELECT DISTINCT version FROM {db}.schema_migrations ORDER BY version"
        ))
        .fetch_all::<Applied>()
        .await
        .map_err(classify)?
        .into_iter()
        .map(|a| a.version)
        .collect())
}

/// How often a backfill's progress is logged.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a migration's backfill (an `INSERT … SELECT` over every stored event: minutes on a big store),
/// logging every [`PROGRESS_EVERY`] the rows it has read of the server's estimate, and an ETA, from
/// `system.processes` (found by the statement's own `query_id`). The progress is best effort: a failed
/// look-up is logged and the backfill goes on.
async fn backfill_with_progress(admin: &Client, sql: &str, version: u32) -> Result<(), StoreError> {
    #[derive(Debug, Deserialize, clickhouse::Row)]
    struct Progress {
        read_rows: u64,
        total_rows_approx: u64,
        elapsed: f64,
    }
    let query_id = format!("migration-v{version}-{}", ulid::Ulid::new());
    let run = admin
        .query(sql)
        .with_setting("query_id", query_id.as_str())
        .execute();
    tokio::pin!(run);
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    ticks.tick().await;
    loop {
        tokio::select! {
            done = &mut run => return done.map_err(classify),
            _ = ticks.tick() => {
                let progress = admin
                    .query(
                        "SELECT read_rows, total_rows_approx, elapsed FROM system.processes \
                         WHERE query_id = ?",
                    )
                    .bind(query_id.as_str())
                    .fetch_optional::<Progress>()
                    .await;
                match progress {
                    Ok(Some(p)) if p.total_rows_approx > 0 && p.read_rows > 0 => {
                        let done = p.read_rows as f64 / p.total_rows_approx as f64;
                        tracing::info!(
                            version,
                            rows = p.read_rows,
                            of = p.total_rows_approx,
                            percent = format!("{:.0}", done * 100.0),
                            eta_seconds = format!("{:.0}", p.elapsed * (1.0 - done) / done),
                            "backfilling"
                        );
                    }
                    Ok(_) => tracing::info!(version, "backfilling"),
                    Err(e) => tracing::warn!(version, error = %e, "backfill progress unknown"),
                }
            }
        }
    }
}

/// Applies the pending migrations on one node (or once `ON CLUSTER`); the versions applied and whether a
/// TTL changed.
async fn migrate_node(
    admin: &Client,
    db: &str,
    retention_days: u32,
    flavor: Flavor<'_>,
) -> Result<(Vec<u32>, bool), StoreError> {
    let exec = |sql: String| async move { admin.query(&sql).execute().await.map_err(classify) };
    exec(with_cluster(
        &format!("CREATE DATABASE IF NOT EXISTS {db}"),
        flavor,
    ))
    .await?;
    exec(with_cluster(
        &format!(
            "CREATE TABLE IF NOT EXISTS {db}.schema_migrations \
             (version UInt32, name String, applied_at DateTime DEFAULT now()) \
             ENGINE = ReplacingMergeTree ORDER BY version"
        ),
        flavor,
    ))
    .await?;
    let done = applied_versions(admin, db).await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| !done.contains(&m.version)) {
        for stmt in m.statements {
            let sql = render_for(stmt, db, retention_days, flavor);
            if sql.starts_with("INSERT INTO") {
                backfill_with_progress(admin, &sql, m.version).await?;
            } else {
                exec(sql.clone()).await?;
            }
            // The `Distributed` table over a local table just created, so later statements (a backfill
            // through it) find it.
            if let Some((table, key)) = created_sharded(&sql, flavor) {
                exec(distributed_ddl(db, flavor.cluster, table, key, flavor)).await?;
            }
        }
        if m.version == AGENT_COLUMNS {
            backfill_agent_columns(admin, db, flavor).await?;
        }
        admin
            .query(&format!(
                "INSERT INTO {db}.schema_migrations (version, name) VALUES (?, ?)"
            ))
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await
            .map_err(classify)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        applied.push(m.version);
    }
    let ttl_updated = sync_ttl(admin, db, retention_days, flavor).await?;
    Ok((applied, ttl_updated))
}

/// The `Distributed` table over each local table of [`SHARDED`], and any column a later migration added
/// to the local table (a `Distributed` table copies the columns it was created with).
async fn distributed_tables(
    admin: &Client,
    db: &str,
    flavor: Flavor<'_>,
) -> Result<(), StoreError> {
    for (table, key) in SHARDED {
        admin
            .query(&distributed_ddl(db, flavor.cluster, table, key, flavor))
            .execute()
            .await
            .map_err(classify)?;
        #[derive(Debug, Deserialize, clickhouse::Row)]
        struct Column {
            name: String,
            ty: String,
        }
        let missing = admin
            .query(
                "SELECT name, type AS ty FROM system.columns WHERE database = ? AND table = ? \
                 AND name NOT IN (SELECT name FROM system.columns WHERE database = ? AND table = ?) \
                 ORDER BY position",
            )
            .bind(db)
            .bind(local(table))
            .bind(db)
            .bind(*table)
            .fetch_all::<Column>()
            .await
            .map_err(classify)?;
        for c in missing {
            let sql = with_cluster(
                &format!(
                    "ALTER TABLE {db}.{table} ADD COLUMN IF NOT EXISTS `{}` {}",
                    c.name, c.ty
                ),
                flavor,
            );
            admin.query(&sql).execute().await.map_err(classify)?;
        }
    }
    Ok(())
}

/// The table of [`SHARDED`] (and its key) whose local table `sql` creates on a cluster node.
fn created_sharded(sql: &str, flavor: Flavor<'_>) -> Option<(&'static str, &'static str)> {
    if !flavor.local {
        return None;
    }
    let created = CREATED_TABLE.captures(sql)?;
    SHARDED
        .iter()
        .find(|(t, _)| local(t) == created[1])
        .map(|(t, k)| (*t, *k))
}

/// `CREATE TABLE … AS <local> ENGINE = Distributed(…)` for one table of [`SHARDED`].
pub fn distributed_ddl(
    db: &str,
    cluster: &str,
    table: &str,
    key: &str,
    flavor: Flavor<'_>,
) -> String {
    with_cluster(
        &format!(
            "CREATE TABLE IF NOT EXISTS {db}.{table} AS {db}.{local} \
             ENGINE = Distributed({cluster}, {db}, {local}, {key})",
            local = local(table)
        ),
        flavor,
    )
}

fn render(stmt: &str, db: &str, retention_days: u32) -> String {
    stmt.replace("{stock_rollup_group}", STOCK_ROLLUP_GROUP)
        .replace("{stock_rollup}", STOCK_ROLLUP)
        .replace("{product_names_rollup_group}", PRODUCT_NAMES_ROLLUP_GROUP)
        .replace("{product_names_rollup}", PRODUCT_NAMES_ROLLUP)
        .replace("{customers_rollup_group}", CUSTOMERS_ROLLUP_GROUP)
        .replace("{customers_rollup}", CUSTOMERS_ROLLUP)
        .replace("{visitor_rows_group}", VISITOR_ROWS_GROUP)
        .replace("{visitor_rows}", VISITOR_ROWS)
        .replace("{sessions_rollup_group}", SESSIONS_ROLLUP_GROUP)
        .replace("{sessions_rollup_v13}", SESSIONS_ROLLUP_V13)
        .replace("{sessions_rollup_v16}", SESSIONS_ROLLUP_V16)
        .replace("{sessions_rollup}", SESSIONS_ROLLUP)
        .replace("{first_type}", FIRST_TYPE)
        .replace("{no_first}", NO_FIRST)
        .replace("{no_view}", NO_VIEW)
        .replace("{hourly_counts_group}", HOURLY_COUNTS_GROUP)
        .replace("{hourly_counts}", HOURLY_COUNTS)
        .replace("{hourly_rollup_rest}", HOURLY_ROLLUP_REST)
        .replace("{hourly_rollup}", HOURLY_ROLLUP)
        .replace("{hourly_events_group}", HOURLY_EVENTS_GROUP)
        .replace("{hourly_visitors_group}", HOURLY_VISITORS_GROUP)
        .replace("{hourly_events}", HOURLY_EVENTS)
        .replace("{hourly_visitors}", HOURLY_VISITORS)
        .replace("{db}", db)
        .replace("{retention_days}", &retention_days.to_string())
}

/// A migration statement as it runs under `flavor`: on a cluster node the tables of [`SHARDED`] are their
/// local tables (except for the backfill inserts `ON CLUSTER`, which go through the `Distributed` tables
/// from the one node they run on), replicated engines carry the Keeper path and replica macros, and DDL
/// gets `ON CLUSTER`.
pub fn render_for(stmt: &str, db: &str, retention_days: u32, flavor: Flavor<'_>) -> String {
    let mut sql = render(stmt, db, retention_days);
    let is_insert = sql.trim_start().starts_with("INSERT");
    if flavor.local && !(is_insert && flavor.on_cluster.is_some()) {
        sql = SHARDED_NAME
            .replace_all(&sql, |c: &regex::Captures<'_>| {
                format!("{}.{}", &c[1], local(&c[2]))
            })
            .into_owned();
    }
    if flavor.replicated {
        let table = CREATED_TABLE
            .captures(&sql)
            .map(|c| c[1].to_owned())
            .unwrap_or_default();
        sql = MERGE_TREE_ENGINE
            .replace(&sql, |c: &regex::Captures<'_>| {
                let args = c.get(3).map(|a| a.as_str()).unwrap_or("");
                format!(
                    "ENGINE = Replicated{}MergeTree('/clickhouse/tables/{{shard}}/{db}/{table}', '{{replica}}'{}{})",
                    &c[1],
                    if args.is_empty() { "" } else { ", " },
                    args
                )
            })
            .into_owned()
            .replace(
                "non_replicated_deduplication_window",
                "replicated_deduplication_window",
            );
    }
    if is_insert {
        sql
    } else {
        with_cluster(&sql, flavor)
    }
}

/// `ON CLUSTER <name>` after the object of a DDL statement, when the flavor says so.
fn with_cluster(sql: &str, flavor: Flavor<'_>) -> String {
    match flavor.on_cluster {
        Some(name) => DDL_OBJECT
            .replace(sql, |c: &regex::Captures<'_>| {
                format!("{} ON CLUSTER {name}", &c[1])
            })
            .into_owned(),
        None => sql.to_owned(),
    }
}

/// `db.table` for a table of [`SHARDED`] (not a longer name that starts with one).
static SHARDED_NAME: LazyLock<Regex> = LazyLock::new(|| {
    let names: Vec<&str> = SHARDED.iter().map(|(t, _)| *t).collect();
    Regex::new(&format!(r"\b(\w+)\.({})\b", names.join("|"))).expect("static pattern")
});

/// The table a `CREATE TABLE` statement creates.
static CREATED_TABLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"CREATE TABLE IF NOT EXISTS \w+\.(\w+)").expect("static pattern"));

/// A `*MergeTree` engine clause and its arguments.
static MERGE_TREE_ENGINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"ENGINE = (\w*)MergeTree(\(([^)]*)\))?").expect("static pattern"));

/// The object a DDL statement names, up to where `ON CLUSTER` goes.
static DDL_OBJECT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*((?:CREATE (?:TABLE|MATERIALIZED VIEW|DATABASE) IF NOT EXISTS|ALTER TABLE|DROP (?:VIEW|TABLE) IF EXISTS|TRUNCATE TABLE IF EXISTS) [\w.]+)",
    )
    .expect("static pattern")
});

/// Rewrites the TTL of every table with per-event rows when `retention_days` changed, or when it is not
/// the TTL written here; existing parts are not rewritten (`materialize_ttl_after_modify = 0`): the TTL is
/// applied as parts merge and the retention job enforces the exact cutoff. Returns whether any table
/// changed.
///
/// A rollup keyed by a `Date` converts it in UTC (`toDateTime(day, 'UTC')`): without the zone a `Date`
/// becomes the server's midnight, so on a server whose default zone is not UTC the day's rows expired
/// hours apart from that day's events (the tables' DDL before 2026-12-07 wrote it so; the first
/// migration run after rewrites it). Times (`DateTime64(3, 'UTC')`, `DateTime('UTC')`) keep their own
/// zone.
async fn sync_ttl(
    admin: &Client,
    db: &str,
    retention_days: u32,
    flavor: Flavor<'_>,
) -> Result<bool, StoreError> {
    let mut changed = false;
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
        let table = if flavor.local {
            local(table)
        } else {
            table.to_owned()
        };
        let engine: String = admin
            .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = ?")
            .bind(db)
            .bind(&table)
            .fetch_one()
            .await
            .map_err(classify)?;
        let wanted = format!("TTL {expiry} + toIntervalDay({retention_days})");
        if engine.contains(&wanted) {
            continue;
        }
        let sql = with_cluster(
            &format!(
                "ALTER TABLE {db}.{table} MODIFY TTL {expiry} + INTERVAL {retention_days} DAY"
            ),
            flavor,
        );
        admin
            .query(&sql)
            .with_setting("materialize_ttl_after_modify", "0")
            .execute()
            .await
            .map_err(classify)?;
        tracing::info!(table, retention_days, "updated TTL");
        changed = true;
    }
    Ok(changed)
}

/// Snapshots of the DDL for a cluster: what a replicated cluster with distributed DDL runs (`ON CLUSTER`,
/// `Replicated*MergeTree`), and what each node of a cluster without it runs. The local engine here has no
/// Keeper, so the replicated form is proven by these snapshots and the documentation, not by a run.
#[cfg(test)]
mod tests {
    use super::*;

    fn all_statements(flavor: Flavor<'_>) -> String {
        let mut out = String::new();
        for m in MIGRATIONS {
            out.push_str(&format!("-- v{} {}\n", m.version, m.name));
            for stmt in m.statements {
                let sql = render_for(stmt, "analytics_db", 365, flavor);
                out.push_str(&sql.split_whitespace().collect::<Vec<_>>().join(" "));
                out.push_str(";\n");
                if let Some((table, key)) = created_sharded(&sql, flavor) {
                    out.push_str(&distributed_ddl(
                        "analytics_db",
                        "analytics",
                        table,
                        key,
                        flavor,
                    ));
                    out.push_str(";\n");
                }
            }
        }
        out
    }

    #[test]
    fn a_replicated_cluster_with_distributed_ddl_gets_replicated_local_tables_on_cluster() {
        insta::assert_snapshot!(all_statements(Flavor {
            local: true,
            cluster: "analytics",
            replicated: true,
            on_cluster: Some("analytics"),
        }));
    }

    #[test]
    fn each_node_of_a_cluster_without_distributed_ddl_gets_local_tables() {
        insta::assert_snapshot!(all_statements(Flavor {
            local: true,
            cluster: "analytics",
            replicated: false,
            on_cluster: None,
        }));
    }

    #[test]
    fn one_server_runs_the_migrations_as_written() {
        for m in MIGRATIONS {
            for stmt in m.statements {
                assert_eq!(
                    render_for(stmt, "db", 30, Flavor::SINGLE),
                    render(stmt, "db", 30)
                );
            }
        }
    }
}
