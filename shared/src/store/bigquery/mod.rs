//! BigQuery adapter (`provider: bigquery`): the only place that knows BigQuery SQL and its REST API.
//!
//! Every port is implemented: events ([`EventStore`]), reads (`read`), custom dashboards, keys, erasure
//! and retention, over the REST client ([`client`]) with its credentials ([`auth`]) and the versioned
//! schema ([`migrations`]).
//!
//! Exactly-once, the choice: rows are streamed with `insertAll` (its `insertId` is best effort: the emulator
//! ignores it and Google deduplicates only for about a minute), so a batch retried after an ambiguous
//! failure, a duplicate Firehose delivery or a client's resend can store an event twice. Every read keeps
//! one row per `(store_id, id)` (`QUALIFY ROW_NUMBER() OVER (PARTITION BY store_id, id ORDER BY
//! ingested_at) = 1`, [`ONE_ROW_PER_EVENT`]) inside its store, type and time filters, so partition and
//! cluster pruning still apply. Its cost: no extra query per write (a pre-insert lookup, as on ClickHouse,
//! would be one billed query — at least 10 MB — per batch); duplicates take storage until retention (they
//! are rare: retries and resends only); each read sorts the ids of the rows it scans.
//!
//! Real BigQuery refuses `UPDATE`/`DELETE` on rows streamed in the last ~30 minutes; erasure and retention
//! (DML) therefore only reach rows older than that (the emulator has no such limit). Retention's main tool
//! is partition expiration, which has no such restriction.

mod alerts;
pub mod auth;
pub mod client;
mod dashboards;
pub mod fx;
mod keys;
mod lifecycle;
pub mod migrations;
pub mod read;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{EventStore, Reject, StoreError};
use crate::config::BigQueryConfig;
use crate::event::Event;

pub use client::{Client, Param, Rows};

/// The events table.
pub const EVENTS_TABLE: &str = "events";
/// Records that never became events.
pub const REJECTS_TABLE: &str = "events_rejects";

/// The clause every read of the events table applies (after its own `WHERE`) so that an event stored twice
/// counts once.
pub const ONE_ROW_PER_EVENT: &str =
    "QUALIFY ROW_NUMBER() OVER (PARTITION BY store_id, id ORDER BY ingested_at) = 1";

/// The adapter over one dataset.
#[derive(Debug, Clone)]
pub struct BigQueryStore {
    client: Client,
    dataset: String,
}

impl BigQueryStore {
    /// A store on `config`; fails only when the credentials cannot be read.
    pub fn new(config: &BigQueryConfig) -> crate::error::Result<Self> {
        let tokens = auth::TokenSource::from_config(config)?;
        Ok(Self {
            client: Client::new(config, tokens),
            dataset: config.dataset.clone(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// `` `dataset.table` `` for SQL.
    pub fn table(&self, table: &str) -> String {
        format!("`{}.{table}`", self.dataset)
    }

    /// Creates the dataset and applies pending migrations; see [`migrations::migrate`].
    pub async fn migrate(&self, retention_days: u32) -> Result<migrations::Report, StoreError> {
        migrations::migrate(self, retention_days).await
    }

    /// Deletes the dataset and everything in it (tests, benchmarks).
    pub async fn drop_dataset(&self) -> Result<(), StoreError> {
        self.client.delete_dataset(&self.dataset).await
    }

    /// Stored events of `store_id`, each counted once.
    pub async fn count_events(&self, store_id: &str) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM (SELECT id FROM {} WHERE store_id = @store {ONE_ROW_PER_EVENT})",
            self.table(EVENTS_TABLE)
        );
        let rows = self
            .client
            .query(&sql, &[("store", Param::String(store_id.into()))])
            .await?;
        Ok(rows.i64(0, rows.column("n")?)?.max(0) as u64)
    }
}

/// RFC 3339 with microseconds, the form `insertAll` takes for TIMESTAMP columns.
fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// An event as an `insertAll` row (the same columns as ClickHouse's `commerce_events`).
pub fn event_row(e: &Event, ingested_at: time::OffsetDateTime) -> Value {
    let row = super::clickhouse::EventRow::from_event(e);
    json!({
        "store_id": row.store_id,
        "id": row.id,
        "type": row.event_type,
        "timestamp": rfc3339(row.timestamp),
        "received_at": rfc3339(row.received_at),
        "client_timestamp": row.client_timestamp.map(rfc3339),
        "session_id": row.session_id,
        "customer_id": row.customer_id,
        "anonymous_id": row.anonymous_id,
        "properties": row.properties,
        "ip": row.ip,
        "user_agent": row.user_agent,
        "referrer": row.referrer,
        "country": row.country,
        "page_url": row.page_url,
        "page_path": row.page_path,
        "utm_source": row.utm_source,
        "utm_medium": row.utm_medium,
        "utm_campaign": row.utm_campaign,
        "utm_term": row.utm_term,
        "utm_content": row.utm_content,
        "order_id": row.order_id,
        "product_id": row.product_id,
        "amount": row.amount,
        "currency": row.currency,
        "quantity": row.quantity,
        "is_bot": row.is_bot,
        "device": row.device,
        "browser": row.browser,
        "os": row.os,
        "ingested_at": rfc3339(ingested_at),
    })
}

#[async_trait]
impl EventStore for BigQueryStore {
    async fn insert(&self, events: &[Event], _dedup_token: &str) -> Result<(), StoreError> {
        // Repeats inside one batch are dropped here (first kept); repeats across batches are counted once by
        // the reads (see the module docs).
        let mut seen = std::collections::HashSet::new();
        let now = time::OffsetDateTime::now_utc();
        let rows: Vec<Value> = events
            .iter()
            .filter(|e| seen.insert((e.store_id.as_str(), e.id.as_str())))
            .map(|e| event_row(e, now))
            .collect();
        // insertAll takes at most 50,000 rows (and 10 MB) per request.
        for chunk in rows.chunks(500) {
            self.client
                .insert_all(&self.dataset, EVENTS_TABLE, chunk)
                .await?;
        }
        Ok(())
    }

    async fn insert_rejects(
        &self,
        rejects: &[Reject],
        _dedup_token: &str,
    ) -> Result<(), StoreError> {
        let rows: Vec<Value> = rejects
            .iter()
            .map(|r| {
                json!({
                    "received_at": rfc3339(r.received_at),
                    "source": r.source,
                    "request_id": r.request_id,
                    "record_index": r.record_index,
                    "store_id": r.store_id,
                    "event_id": r.event_id,
                    "reason": r.reason,
                    "raw": r.raw,
                })
            })
            .collect();
        for chunk in rows.chunks(500) {
            self.client
                .insert_all(&self.dataset, REJECTS_TABLE, chunk)
                .await?;
        }
        Ok(())
    }
}
