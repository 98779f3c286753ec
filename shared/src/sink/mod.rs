//! Where accepted events go.
//!
//! [`EventSink::send_batch`] either accepts every event it is given (buffered durably enough for the
//! deployment, or delivered) or reports which ids it did not accept; the API answers 202 only for accepted
//! events and 503 + `Retry-After` for the rest. Implementations:
//! - [`buffer::BufferedSink`]: the local micro-batching buffer in front of an [`EventStore`] (the local
//!   server; on AWS, Firehose plays this role);
//! - [`StoreSink`]: one store insert per call (a Lambda without Firehose: no background work may outlive
//!   the invocation);
//! - [`DiscardSink`]: `enabled: false`;
//! - [`MemorySink`]: unit tests.

pub mod buffer;
pub mod firehose;
pub mod wal;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Error;
use crate::event::Event;
use crate::store::{EventStore, StoreError, dedup_token};

pub use buffer::{BufferConfig, BufferHandle, BufferedSink};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The buffer is at capacity; nothing from this call was accepted.
    #[error("the event buffer is full ({capacity} events); retry after {retry_after:?}")]
    Full {
        capacity: usize,
        retry_after: Duration,
    },
    /// Delivery failed for `failed_ids` (the others were accepted).
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
        failed_ids: Vec<String>,
    },
    /// Shutting down; nothing from this call was accepted.
    #[error("the service is shutting down")]
    Closed,
}

impl SinkError {
    /// Converts into the API error, naming the ids that were not accepted.
    pub fn into_error(self, all_ids: impl FnOnce() -> Vec<String>) -> Error {
        match self {
            SinkError::Full { retry_after, .. } => Error::Unavailable {
                message: self.to_string(),
                retry_after,
                failed_ids: all_ids(),
            },
            SinkError::Unavailable {
                message,
                retry_after,
                failed_ids,
            } => Error::Unavailable {
                message,
                retry_after,
                failed_ids,
            },
            SinkError::Closed => Error::Unavailable {
                message: self.to_string(),
                retry_after: Duration::from_secs(5),
                failed_ids: all_ids(),
            },
        }
    }
}

#[async_trait]
pub trait EventSink: Send + Sync + std::fmt::Debug {
    async fn send_batch(&self, events: Vec<Event>) -> Result<(), SinkError>;
}

/// Inserts each call's events straight into the store (one batch, with a dedup token).
#[derive(Debug, Clone)]
pub struct StoreSink {
    store: Arc<dyn EventStore>,
}

impl StoreSink {
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl EventSink for StoreSink {
    async fn send_batch(&self, events: Vec<Event>) -> Result<(), SinkError> {
        let token = dedup_token(&events);
        self.store.insert(&events, &token).await.map_err(|e| {
            if let StoreError::Rejected(msg) = &e {
                tracing::error!(error = %msg, "store rejected a validated batch");
            }
            SinkError::Unavailable {
                message: "storage is unavailable; retry later".into(),
                retry_after: Duration::from_secs(1),
                failed_ids: events.iter().map(|e| e.id.clone()).collect(),
            }
        })
    }
}

/// A store that refuses every write (a warehouse client that could not be built).
#[derive(Debug)]
struct Unconfigured;

#[async_trait]
impl EventStore for Unconfigured {
    async fn insert(&self, _: &[Event], _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "the warehouse client is not configured".into(),
        ))
    }
    async fn insert_rejects(&self, _: &[crate::store::Reject], _: &str) -> Result<(), StoreError> {
        Err(StoreError::Unavailable(
            "the warehouse client is not configured".into(),
        ))
    }
}

/// Accepts and drops everything (`enabled: false`, documented kill switch).
#[derive(Debug, Default, Clone, Copy)]
pub struct DiscardSink;

#[async_trait]
impl EventSink for DiscardSink {
    async fn send_batch(&self, _events: Vec<Event>) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Records events in memory; for handler tests.
#[derive(Debug, Default)]
pub struct MemorySink {
    events: Mutex<Vec<Event>>,
    reject_with: Mutex<Option<SinkError>>,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    /// The next call fails with this error.
    pub fn fail_next(&self, err: SinkError) {
        *self.reject_with.lock().unwrap_or_else(|p| p.into_inner()) = Some(err);
    }
}

#[async_trait]
impl EventSink for MemorySink {
    async fn send_batch(&self, events: Vec<Event>) -> Result<(), SinkError> {
        if let Some(err) = self
            .reject_with
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            return Err(err);
        }
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(events);
        Ok(())
    }
}

/// The sink of the `track` Lambda: Firehose when `FIREHOSE_STREAM_NAME` is set, else direct inserts into
/// the configured warehouse; nothing when disabled. Clients are built here, once per cold start.
pub async fn lambda_sink(config: &crate::config::Config) -> Arc<dyn EventSink> {
    if !config.enabled {
        return Arc::new(DiscardSink);
    }
    match &config.firehose_stream_name {
        Some(stream) => {
            let api = firehose::SdkFirehose::from_env(stream.clone()).await;
            Arc::new(firehose::FirehoseSink::new(Arc::new(api)))
        }
        None => {
            match crate::store::Warehouse::from_config(config) {
                Ok(warehouse) => Arc::new(StoreSink::new(warehouse.events())),
                // `Wiring::from_env` built the same warehouse before this, so this cannot happen; if it
                // did, every track call answers 503 instead of the function failing to start silently.
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the warehouse client");
                    Arc::new(StoreSink::new(Arc::new(Unconfigured)))
                }
            }
        }
    }
}
