//! Storage of events behind a narrow trait.
//!
//! [`EventStore`] is what the sinks and the ingest path need: insert a batch idempotently. The ClickHouse
//! adapter ([`clickhouse::ClickHouseStore`]) owns all SQL; the in-memory [`MemoryStore`] backs unit tests
//! and can inject failures. The BigQuery adapter ([`bigquery::BigQueryStore`]) implements the same trait.
//!
//! Idempotency contract: inserting the same batch again with the same `dedup_token` (a retry after a
//! timeout whose first attempt did land) must not store it twice. [`dedup_token`] derives the token from
//! the batch's store and event ids, so a retried batch always carries the same one.

pub mod bigquery;
pub mod clickhouse;
pub mod memory;
pub mod warehouse;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::event::Event;

pub use self::clickhouse::ClickHouseStore;
pub use crate::error::StoreError;
pub use memory::MemoryStore;
pub use warehouse::Warehouse;

/// A record that can never become an event (undecodable, invalid), kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub received_at: time::OffsetDateTime,
    /// Where it came from, e.g. `firehose`.
    pub source: &'static str,
    pub request_id: String,
    pub record_index: u32,
    /// Store and event id when they could be read; empty otherwise.
    pub store_id: String,
    pub event_id: String,
    pub reason: String,
    /// The payload as received (decoded from base64 when possible, else the base64 text).
    pub raw: String,
}

#[async_trait]
pub trait EventStore: Send + Sync + std::fmt::Debug {
    /// Inserts `events` as one batch. Succeeds only when every row is durably stored.
    async fn insert(&self, events: &[Event], dedup_token: &str) -> Result<(), StoreError>;

    /// Inserts many events in chunks of at most `batch_size`, each chunk idempotent like
    /// [`EventStore::insert`]. Succeeds only when every chunk is stored. Adapters may overlap chunks.
    async fn insert_batches(&self, events: &[Event], batch_size: usize) -> Result<(), StoreError> {
        for chunk in events.chunks(batch_size.max(1)) {
            self.insert(chunk, &dedup_token(chunk)).await?;
        }
        Ok(())
    }

    /// Stores rejected records (idempotent per `dedup_token` like [`EventStore::insert`]).
    async fn insert_rejects(&self, rejects: &[Reject], dedup_token: &str)
    -> Result<(), StoreError>;
}

/// A stable token for a batch: hex SHA-256 over each event's store and id, in order.
pub fn dedup_token<'a>(events: impl IntoIterator<Item = &'a Event>) -> String {
    let mut h = Sha256::new();
    for e in events {
        h.update(e.store_id.as_bytes());
        h.update([0]);
        h.update(e.id.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
