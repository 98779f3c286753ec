//! ClickHouse adapter: the only place that knows ClickHouse SQL and row layouts.
//!
//! Inserts use the official `clickhouse` crate, one `INSERT` per batch, always finished with `end()`;
//! events go as one Native block ([`row::EventsBlock`], checked by the server against the table's
//! columns), other rows as RowBinary (schema validated against the table). Exactly-once storage of events rests on three layers:
//! 1. within a batch, repeated `(store_id, id)` pairs are dropped (first one kept);
//! 2. before each insert, the ids of its rows already stored are looked up and dropped (one query with
//!    the pairs sent as external data, see [`external`]; `id` bloom-filter index, timestamps bounded to
//!    [`DEDUP_HORIZON`] around the rows), so a resent event never adds a
//!    second row (raw counts stay exact before merges, and no rollup row is written twice);
//! 3. each insert carries `insert_deduplication_token` and the table keeps a
//!    `non_replicated_deduplication_window`, so a batch retried after an ambiguous failure (timeout after
//!    the server committed) is stored once even when step 2 ran before the first attempt landed.
//!
//! Two inserts of the same new event racing each other can still both land; `ReplacingMergeTree` collapses
//! such rows on merge and readers count `uniqExact(id)`/`FINAL` where it matters. See [`migrations`].

mod alerts;
mod bulk;
mod external;
pub(crate) mod fx;
mod keys;
pub mod layout;
mod lifecycle;
pub mod migrations;
mod read;
mod row;

use std::time::Duration;

use async_trait::async_trait;
use clickhouse::Client;

use std::collections::HashSet;

use super::{EventStore, Reject, StagedLoad, StoreError, dedup_token};
use crate::config::ClickHouseConfig;
use crate::event::Event;

pub use keys::KEYS_TABLE;
pub use read::READ_COST;
pub use row::{EventRow, RejectRow};

/// How far around a batch's timestamps the pre-insert lookup searches for already-stored ids.
/// An event resent with a timestamp up to this far from the stored copy's is recognized (a resend with the
/// same timestamp, as our SDKs and the `Tracker` do, always is; a later identical row also collapses on
/// merge).
pub const DEDUP_HORIZON: time::Duration = time::Duration::days(1);

/// Chunks of one `insert_batches` call in flight at the same time (each: lookup, then insert).
const CHUNK_CONCURRENCY: usize = 4;

/// Name of the events table (the spec's).
pub const EVENTS_TABLE: &str = "commerce_events";
/// Records that could never become events, with the reason and the raw payload.
pub const REJECTS_TABLE: &str = "commerce_events_rejects";

#[derive(Clone)]
pub struct ClickHouseStore {
    /// Client bound to the module's database.
    client: Client,
    /// Client without a default database (creating the database needs one).
    admin: Client,
    database: String,
    /// `clickhouse_url`, for reports.
    url: String,
    /// Set on a sharded cluster (see [`layout`]).
    cluster: Option<layout::Cluster>,
    /// `max_execution_time` (in milliseconds here) and `max_memory_usage` (bytes) of every read query.
    read_limits: (u64, u64),
    /// Queries that send rows with them: the already-stored lookup ([`external`]).
    external: external::ExternalQueries,
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("database", &self.database)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl ClickHouseStore {
    /// Builds the clients (no I/O). Build once per process and share.
    pub fn new(cfg: &ClickHouseConfig) -> Self {
        let admin_of = |url: &str| {
            // Every statement runs in UTC whatever the server's default time zone: the tables' times are
            // UTC, and a `Date` (a rollup's `day`) or a time without a zone would otherwise convert in
            // the server's zone (a server on Asia/Kolkata read a UTC midnight as the day before's 05:30).
            // A mutation (a lightweight `DELETE`) evaluates its condition in the server's zone whatever
            // the session's, so those conditions name 'UTC' wherever a `Date` or a time is converted
            // (`lifecycle.rs`). CI runs the cluster pass on servers whose default zone is Asia/Kolkata
            // (`scripts/test`).
            let mut admin = Client::with_http_client(http_client())
                .with_url(url)
                .with_setting("session_timezone", "UTC");
            if let Some(user) = &cfg.user {
                admin = admin.with_user(user);
            }
            if !cfg.password.is_empty() {
                admin = admin.with_password(cfg.password.expose());
            }
            admin
        };
        let admin = admin_of(&cfg.url);
        let mut client = admin.clone().with_database(&cfg.database);
        let cluster = cfg.cluster.as_ref().map(|c| layout::Cluster {
            name: c.name.clone(),
            replicated: c.replicated,
            nodes: c
                .nodes
                .iter()
                .map(|url| {
                    let admin = admin_of(url);
                    layout::Node {
                        url: url.clone(),
                        client: admin.clone().with_database(&cfg.database),
                        admin,
                    }
                })
                .collect(),
        });
        if cluster.is_some() {
            // Inserts through `Distributed` tables return only when every shard stored its rows.
            client = client.with_setting("distributed_foreground_insert", "1");
        }
        Self {
            client,
            admin,
            database: cfg.database.clone(),
            url: cfg.url.clone(),
            cluster,
            read_limits: (cfg.query_timeout_ms, cfg.query_max_memory_bytes),
            external: external::ExternalQueries::new(cfg),
        }
    }

    /// The sites of a mutation of `table`'s rows (see [`layout::sites`]).
    fn sites(&self, table: &str) -> Vec<layout::Site> {
        layout::sites(self.cluster.as_ref(), &self.client, &self.url, table)
    }

    /// The table that stores `table`'s rows: itself on one server, its local table on a cluster's nodes.
    pub fn storage_table(&self, table: &str) -> String {
        if self.cluster.is_some() {
            layout::local(table)
        } else {
            table.to_owned()
        }
    }

    /// `OPTIMIZE TABLE … FINAL` of `table` on every node: merges every part now, so replaced rows are gone
    /// (tests and benchmarks; never on a request path).
    pub async fn optimize_final(&self, table: &str) -> Result<(), StoreError> {
        for site in self.sites(table) {
            let sql = match site.table.split_once(" ON CLUSTER ") {
                Some((t, c)) => format!("OPTIMIZE TABLE {t} ON CLUSTER {c} FINAL"),
                None => format!("OPTIMIZE TABLE {} FINAL", site.table),
            };
            site.client.query(&sql).execute().await.map_err(classify)?;
        }
        Ok(())
    }

    /// Drops the module's database, on every node of a cluster (tests and benchmarks clean up with it).
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        let db = &self.database;
        let admins: Vec<(Client, String)> = match &self.cluster {
            None => vec![(self.admin.clone(), format!("DROP DATABASE IF EXISTS {db}"))],
            Some(c) if c.nodes.is_empty() => vec![(
                self.admin.clone(),
                format!("DROP DATABASE IF EXISTS {db} ON CLUSTER {}", c.name),
            )],
            Some(c) => c
                .nodes
                .iter()
                .map(|n| (n.admin.clone(), format!("DROP DATABASE IF EXISTS {db}")))
                .collect(),
        };
        for (admin, sql) in admins {
            admin.query(&sql).execute().await.map_err(classify)?;
        }
        Ok(())
    }

    /// Checks that every node has applied every migration; the error names the nodes that have not.
    pub async fn verify_schema(&self) -> Result<(), StoreError> {
        let nodes: Vec<(String, Client)> = match &self.cluster {
            Some(c) if !c.nodes.is_empty() => c
                .nodes
                .iter()
                .map(|n| (n.url.clone(), n.admin.clone()))
                .collect(),
            _ => vec![(self.url.clone(), self.admin.clone())],
        };
        migrations::verify(&nodes, &self.database).await
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The client bound to the module's database (for the query layer and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `SELECT 1`: whether the server answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.admin
            .query("SELECT 1")
            .execute()
            .await
            .map_err(classify)
    }

    /// Fills `device`, `browser` and `os` of rows stored without them (see
    /// [`migrations::backfill_agent_columns`], which the migration runs); on every node of a cluster. The
    /// user agents parsed.
    pub async fn backfill_agent_columns(&self) -> Result<usize, StoreError> {
        use migrations::{Flavor, backfill_agent_columns};
        let flavor = Flavor::of(self.cluster.as_ref());
        match &self.cluster {
            Some(c) if !c.nodes.is_empty() => {
                let mut parsed = 0;
                for node in &c.nodes {
                    parsed += backfill_agent_columns(&node.admin, &self.database, flavor).await?;
                }
                Ok(parsed)
            }
            _ => backfill_agent_columns(&self.admin, &self.database, flavor).await,
        }
    }

    /// Applies pending migrations; see [`migrations::migrate`].
    pub async fn migrate(&self, retention_days: u32) -> Result<migrations::Report, StoreError> {
        migrations::migrate(
            &self.admin,
            &self.url,
            &self.database,
            retention_days,
            self.cluster.as_ref(),
        )
        .await
    }

    /// Rows stored for a store (duplicates not yet merged away included); for tests and tools.
    pub async fn count_rows(&self, store_id: &str) -> Result<u64, StoreError> {
        self.client
            .query("SELECT count() FROM commerce_events WHERE store_id = ?")
            .bind(store_id)
            .fetch_one::<u64>()
            .await
            .map_err(classify)
    }

    /// Distinct events stored for a store (what every metric counts).
    pub async fn count_events(&self, store_id: &str) -> Result<u64, StoreError> {
        self.client
            .query("SELECT uniqExact(id) FROM commerce_events WHERE store_id = ?")
            .bind(store_id)
            .fetch_one::<u64>()
            .await
            .map_err(classify)
    }

    /// Lightweight-deletes every row of a store (demo reset), on every node.
    pub async fn delete_store(&self, store_id: &str) -> Result<(), StoreError> {
        for site in self.sites(EVENTS_TABLE) {
            site.client
                .query(&format!("DELETE FROM {} WHERE store_id = ?", site.table))
                .bind(store_id)
                .execute()
                .await
                .map_err(classify)?;
        }
        Ok(())
    }
}

impl ClickHouseStore {
    /// The events not stored yet, first occurrence of each `(store_id, id)` only.
    async fn fresh<'a>(&self, events: &'a [Event]) -> Result<Vec<&'a Event>, StoreError> {
        let unique = first_occurrences(events);
        self.not_stored(&unique).await
    }

    /// The events of `events` whose `(store_id, id)` is not stored yet (`events` holds no repeats).
    async fn not_stored<'a>(&self, events: &[&'a Event]) -> Result<Vec<&'a Event>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let stored = self.stored_ids_in(events).await?;
        let stored: HashSet<(&str, &str)> = stored
            .iter()
            .map(|(s, id)| (s.as_str(), id.as_str()))
            .collect();
        let fresh: Vec<&Event> = events
            .iter()
            .filter(|e| !stored.contains(&(e.store_id.as_str(), e.id.as_str())))
            .copied()
            .collect();
        if fresh.len() < events.len() {
            tracing::info!(
                skipped = events.len() - fresh.len(),
                "skipped events already stored"
            );
        }
        Ok(fresh)
    }

    /// One chunk of [`EventStore::insert_batches`]: look up which of its events are stored already, then
    /// insert the others with a token derived from exactly those rows.
    async fn write_chunk(&self, chunk: &[&Event]) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let fresh = self.not_stored(chunk).await?;
        let looked_up = started.elapsed();
        self.write_rows(&fresh, &dedup_token(fresh.iter().copied()))
            .await?;
        tracing::debug!(
            events = chunk.len(),
            lookup_ms = looked_up.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "chunk stored"
        );
        Ok(())
    }

    /// One `INSERT` of `rows` with the given dedup token, finished with `end()`.
    async fn write_rows(&self, rows: &[&Event], dedup_token: &str) -> Result<(), StoreError> {
        self.write_rows_to(EVENTS_TABLE, rows, dedup_token).await
    }

    /// [`Self::write_rows`] into `table` (the events table or a staging table of its shape).
    async fn write_rows_to(
        &self,
        table: &str,
        rows: &[&Event],
        dedup_token: &str,
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut block = row::EventsBlock::default();
        for e in rows {
            block.push(&EventRow::from_event(e));
        }
        self.write_block_to(table, block.take(), dedup_token).await
    }

    /// Sends one Native block of events ([`row::EventsBlock`]) to `table`.
    async fn write_block_to(
        &self,
        table: &str,
        block: bytes::Bytes,
        dedup_token: &str,
    ) -> Result<(), StoreError> {
        let mut insert = self
            .client
            .insert_formatted_with(format!("INSERT INTO {table} FORMAT Native"))
            .with_timeouts(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)))
            .with_setting("insert_deduplication_token", dedup_token);
        insert.send(block).await.map_err(classify)?;
        insert.end().await.map_err(classify)
    }

    /// The `(store_id, id)` pairs of `events` stored already, within [`DEDUP_HORIZON`] of their times: one
    /// query, the pairs sent along as the external table `batch` ([`external`]).
    async fn stored_ids_in(&self, events: &[&Event]) -> Result<Vec<(String, String)>, StoreError> {
        let mut batch = external::Table::new("batch", "store_id String, id String");
        let (mut from, mut to) = (events[0].timestamp, events[0].timestamp);
        for e in events {
            batch.push_row(&[&e.store_id, &e.id]);
            from = from.min(e.timestamp);
            to = to.max(e.timestamp);
        }
        let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        self.external
            .fetch(
                &stored_ids_sql(ms(from - DEDUP_HORIZON), ms(to + DEDUP_HORIZON)),
                &batch,
            )
            .await
    }
}

/// The already-stored lookup between two times (epoch milliseconds): the stored rows whose `(store_id,
/// id)` is one of the `batch` table's. The pair against the table itself rather than each column
/// against its own subquery: on the 100M-event bench store (the query alone, p50 of 15) 10.9 against
/// 16.6 ms for 7,400 pairs, 4.7 against 5.1 for 500; on a 40,000-event table 4.9 against 4.2 and 2.8
/// against 2.8.
fn stored_ids_sql(from_ms: i64, to_ms: i64) -> String {
    format!(
        "SELECT store_id, id FROM {EVENTS_TABLE} WHERE (store_id, id) IN batch \
         AND timestamp >= fromUnixTimestamp64Milli({from_ms}) AND timestamp <= fromUnixTimestamp64Milli({to_ms})"
    )
}

/// The first occurrence of each `(store_id, id)`, in order.
fn first_occurrences(events: &[Event]) -> Vec<&Event> {
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(events.len());
    events
        .iter()
        .filter(|e| seen.insert((e.store_id.as_str(), e.id.as_str())))
        .collect()
}

#[async_trait]
impl EventStore for ClickHouseStore {
    async fn insert(&self, events: &[Event], dedup_token: &str) -> Result<(), StoreError> {
        let fresh = self.fresh(events).await?;
        self.write_rows(&fresh, dedup_token).await
    }

    /// Repeats inside the call are still dropped; only the lookup of earlier batches' ids is skipped.
    async fn insert_new(&self, events: &[Event], dedup_token: &str) -> Result<(), StoreError> {
        self.write_rows(&first_occurrences(events), dedup_token)
            .await
    }

    async fn staged_load(&self) -> Result<Option<Box<dyn StagedLoad>>, StoreError> {
        Ok(self
            .open_staged_load()
            .await?
            .map(|load| Box::new(load) as Box<dyn StagedLoad>))
    }

    /// Repeats inside the call are dropped first (so chunks never share an event), then every chunk of
    /// `batch_size` runs its own lookup and insert, [`CHUNK_CONCURRENCY`] chunks at a time: one chunk's
    /// lookup overlaps another's insert. After a failure no new chunk starts; the ones in flight are
    /// finished (never abandoned mid-insert), and the first error is returned.
    async fn insert_batches(&self, events: &[Event], batch_size: usize) -> Result<(), StoreError> {
        use futures_util::StreamExt as _;
        let unique = first_occurrences(events);
        let mut chunks = unique.chunks(batch_size.max(1));
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut first_error = None;
        loop {
            while first_error.is_none() && in_flight.len() < CHUNK_CONCURRENCY {
                match chunks.next() {
                    Some(chunk) => in_flight.push(self.write_chunk(chunk)),
                    None => break,
                }
            }
            match in_flight.next().await {
                Some(Err(e)) if first_error.is_none() => first_error = Some(e),
                Some(_) => {}
                None => break,
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn insert_rejects(
        &self,
        rejects: &[Reject],
        dedup_token: &str,
    ) -> Result<(), StoreError> {
        if rejects.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .client
            .insert::<RejectRow>(REJECTS_TABLE)
            .await
            .map_err(classify)?
            .with_timeouts(Some(Duration::from_secs(30)), Some(Duration::from_secs(60)))
            .with_setting("insert_deduplication_token", dedup_token);
        for r in rejects {
            insert
                .write(&RejectRow::from_reject(r))
                .await
                .map_err(classify)?;
        }
        insert.end().await.map_err(classify)
    }
}

/// The HTTP client under clickhouse-rs, built here for two reasons:
/// - `TCP_NODELAY`: inserts stream their body in chunks; with Nagle's algorithm on, the last small chunk
///   waits for the server's delayed ACK, adding ~40 ms to about every other insert (measured: 500-row
///   inserts took 55 ms instead of 14 ms);
/// - TLS: `https://` URLs (ClickHouse Cloud, any TLS-terminated cluster) work, with the Mozilla root
///   certificates bundled (Lambda images carry no usable system store).
fn http_client<B>() -> hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    B,
>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        // ClickHouse closes idle keep-alive connections after 3 s; drop ours before that.
        .pool_idle_timeout(Duration::from_secs(2))
        .build(https)
}

/// ClickHouse server error codes worth retrying: overload, timeouts, network, shutdown, memory pressure.
const RETRYABLE_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE
    159, // TIMEOUT_EXCEEDED
    164, // READONLY (replica temporarily read-only)
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    279, // ALL_CONNECTION_TRIES_FAILED (a shard of a cluster is unreachable)
    319, // UNKNOWN_STATUS_OF_INSERT
    394, // QUERY_WAS_CANCELLED
    425, // SYSTEM_ERROR
    999, // KEEPER_EXCEPTION
];

/// Maps a client error to retryable or not. Transport failures and overload codes are retryable;
/// parse/type/schema errors are not.
/// A row version from a save's time: milliseconds, the latest wins (`ReplacingMergeTree(version)`).
pub(crate) fn version(at: jiff::Timestamp) -> u64 {
    u64::try_from(at.as_millisecond()).unwrap_or(0)
}

impl ClickHouseStore {
    /// One row into `table`, in one finished insert (the small per-store tables: dashboards, alerts).
    pub(crate) async fn insert_row<T>(&self, table: &str, row: &T) -> Result<(), StoreError>
    where
        T: clickhouse::Row + serde::Serialize,
        for<'a> T: clickhouse::RowWrite<Value<'a> = T>,
    {
        self.insert_one(table, row, None).await
    }

    /// [`Self::insert_row`] with an `insert_deduplication_token`: into a table that keeps a
    /// deduplication window, every insert of the same `token` after the first to commit is dropped.
    pub(crate) async fn insert_row_once<T>(
        &self,
        table: &str,
        row: &T,
        token: &str,
    ) -> Result<(), StoreError>
    where
        T: clickhouse::Row + serde::Serialize,
        for<'a> T: clickhouse::RowWrite<Value<'a> = T>,
    {
        self.insert_one(table, row, Some(token)).await
    }

    async fn insert_one<T>(
        &self,
        table: &str,
        row: &T,
        token: Option<&str>,
    ) -> Result<(), StoreError>
    where
        T: clickhouse::Row + serde::Serialize,
        for<'a> T: clickhouse::RowWrite<Value<'a> = T>,
    {
        let mut insert = self.client().insert::<T>(table).await.map_err(classify)?;
        if let Some(token) = token {
            insert = insert.with_setting("insert_deduplication_token", token);
        }
        insert.write(row).await.map_err(classify)?;
        insert.end().await.map_err(classify)
    }
}

pub fn classify(e: clickhouse::error::Error) -> StoreError {
    use clickhouse::error::Error as E;
    match &e {
        E::Network(_) | E::TimedOut => StoreError::Unavailable(e.to_string()),
        E::BadResponse(text) => match classify_response(text) {
            StoreError::Unavailable(_) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Rejected(e.to_string()),
        },
        _ => StoreError::Rejected(e.to_string()),
    }
}

/// [`classify`] for the text of a ClickHouse error answer.
fn classify_response(text: &str) -> StoreError {
    match server_code(text) {
        Some(code) if RETRYABLE_CODES.contains(&code) => StoreError::Unavailable(text.to_owned()),
        Some(_) => StoreError::Rejected(text.to_owned()),
        // No ClickHouse error code: a proxy or load balancer answered (502/503...). Retry.
        None => StoreError::Unavailable(text.to_owned()),
    }
}

/// [`classify`] for a read query: past its own memory limit (`max_memory_usage`, set on every read) it is
/// [`StoreError::ReadLimit`], past its own time limit (`max_execution_time`: `TIMEOUT_EXCEEDED`, or
/// `TOO_SLOW` when ClickHouse estimates it would pass it) [`StoreError::ReadTimeout`], since the same read
/// would fail again. Past the *server's* memory (`Memory limit (total) exceeded`: other queries hold it)
/// stays retryable, as do inserts over any limit and timeouts of the network rather than the query.
pub fn classify_read(e: clickhouse::error::Error) -> StoreError {
    if let clickhouse::error::Error::BadResponse(text) = &e {
        match server_code(text) {
            Some(MEMORY_LIMIT_EXCEEDED)
                if text.contains("Query memory limit exceeded")
                    || text.contains("Memory limit (for query) exceeded") =>
            {
                return StoreError::ReadLimit(e.to_string());
            }
            Some(TIMEOUT_EXCEEDED) if text.contains("Timeout exceeded: elapsed") => {
                return StoreError::ReadTimeout(e.to_string());
            }
            Some(TOO_SLOW) => return StoreError::ReadTimeout(e.to_string()),
            _ => {}
        }
    }
    classify(e)
}

const TIMEOUT_EXCEEDED: u32 = 159;
const TOO_SLOW: u32 = 160;
const MEMORY_LIMIT_EXCEEDED: u32 = 241;

fn server_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_already_stored_lookup_reads_the_pairs_sent_with_it_between_two_times() {
        insta::assert_snapshot!(stored_ids_sql(1_796_083_200_000, 1_796_256_000_000));
    }

    #[test]
    fn server_error_codes_decide_retryability() {
        let cases = [
            ("Code: 252. DB::Exception: Too many parts", true),
            ("Code: 27. DB::Exception: Cannot parse input", false),
            ("Code: 60. DB::Exception: Unknown table", false),
            ("<html>502 Bad Gateway</html>", true),
            (
                "Code: 279. DB::Exception: All connection tries failed. Log: Code: 210. \
                 DB::NetException: Connection refused (127.0.0.1:19101) (ALL_CONNECTION_TRIES_FAILED)",
                true,
            ),
        ];
        for (text, retryable) in cases {
            let err = classify(clickhouse::error::Error::BadResponse(text.into()));
            assert_eq!(err.is_retryable(), retryable, "{text}");
        }
        assert!(classify(clickhouse::error::Error::TimedOut).is_retryable());
    }

    #[test]
    fn a_read_over_its_own_memory_or_time_limit_is_not_worth_retrying_but_over_the_servers_is() {
        let cases = [
            (
                "Code: 241. DB::Exception: Query memory limit exceeded: would use 2.00 GiB (attempt to \
                 allocate chunk of 4.31 MiB), maximum: 2.00 GiB: While executing AggregatingTransform. \
                 (MEMORY_LIMIT_EXCEEDED) (version 26.9.2.1)",
                "read over its memory limit",
            ),
            (
                "Code: 241. DB::Exception: Memory limit (for query) exceeded: would use 9.31 GiB \
                 (attempt to allocate chunk of 4194304 bytes), maximum: 9.31 GiB. (MEMORY_LIMIT_EXCEEDED)",
                "read over its memory limit",
            ),
            (
                "Code: 241. DB::Exception: Memory limit (total) exceeded: would use 21.50 GiB (attempt \
                 to allocate chunk of 4.00 MiB), maximum: 21.49 GiB. (MEMORY_LIMIT_EXCEEDED)",
                "storage unavailable",
            ),
            (
                "Code: 159. DB::Exception: Timeout exceeded: elapsed 25002.199 ms, maximum: 25000.000 \
                 ms. (TIMEOUT_EXCEEDED) (version 26.9.2.1)",
                "read over its time limit",
            ),
            (
                "Code: 160. DB::Exception: Estimated query execution time (61.3 seconds) is too long. \
                 Maximum: 25. Estimated rows to process: 100000000 (TOO_SLOW)",
                "read over its time limit",
            ),
            (
                "Code: 159. DB::Exception: Distributed DDL task /clickhouse/task_queue/ddl/query-0000000003 \
                 is not finished on 1 of 2 hosts. (TIMEOUT_EXCEEDED)",
                "storage unavailable",
            ),
            ("Code: 60. DB::Exception: Unknown table", "storage rejected"),
        ];
        for (text, kind) in cases {
            let err = classify_read(clickhouse::error::Error::BadResponse(text.into()));
            assert!(err.to_string().starts_with(kind), "{text}: {err}");
        }
    }
}
