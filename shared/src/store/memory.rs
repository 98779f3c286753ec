//! In-memory [`EventStore`] for unit tests: records batches, honours dedup tokens like ClickHouse's insert
//! deduplication, and can be told to fail the next N inserts.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use super::{EventStore, Reject, StoreError};
use crate::event::Event;

#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    fail_next: AtomicUsize,
    reject_next: AtomicUsize,
    attempts: AtomicUsize,
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<Event>,
    batches: Vec<usize>,
    tokens: HashSet<String>,
    rejects: Vec<Reject>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `n` inserts fail with [`StoreError::Unavailable`].
    pub fn fail_next(&self, n: usize) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` inserts fail with [`StoreError::Rejected`] (the data itself refused).
    pub fn reject_next(&self, n: usize) {
        self.reject_next.store(n, Ordering::SeqCst);
    }

    pub fn events(&self) -> Vec<Event> {
        self.lock().events.clone()
    }

    /// Sizes of the batches stored, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.lock().batches.clone()
    }

    pub fn rejects(&self) -> Vec<Reject> {
        self.lock().rejects.clone()
    }

    /// Insert calls made, failed ones included.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn insert(&self, events: &[Event], dedup_token: &str) -> Result<(), StoreError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        let rejecting = self
            .reject_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if rejecting {
            return Err(StoreError::Rejected("injected rejection".into()));
        }
        let mut inner = self.lock();
        if inner.tokens.insert(dedup_token.to_owned()) {
            inner.events.extend_from_slice(events);
            inner.batches.push(events.len());
        }
        Ok(())
    }

    async fn insert_rejects(
        &self,
        rejects: &[Reject],
        dedup_token: &str,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.tokens.insert(format!("rejects:{dedup_token}")) {
            inner.rejects.extend_from_slice(rejects);
        }
        Ok(())
    }
}
