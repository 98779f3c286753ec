//! The local micro-batching buffer: accepted events wait in memory and are written to the store in
//! batches.
//!
//! Semantics (the spec's `batch_size` / `flush_interval_seconds`):
//! - a batch is written as soon as `batch_size` events are waiting, or when the oldest waiting event has
//!   waited `flush_interval`, whichever comes first; a batch never exceeds `batch_size`;
//! - up to `concurrency` batches are written at once (default 2): ClickHouse spends most of a small
//!   insert on fixed per-insert work, so two in flight nearly double throughput on a busy buffer;
//! - memory is bounded: at most `capacity` events are held (waiting + being written). A call that would
//!   exceed it is refused whole with [`SinkError::Full`] (the API answers 503 + `Retry-After`), never
//!   dropped silently;
//! - a failed write is retried with jittered exponential backoff (capped), keeping the batch intact so its
//!   dedup token is stable: a retry after an ambiguous failure cannot store the batch twice. Writes are
//!   retried until they succeed, because an accepted event must not be lost; meanwhile the buffer fills
//!   and new calls get 503;
//! - [`BufferHandle::shutdown`] stops intake, flushes everything, and after a grace period returns what
//!   could not be written, so the caller can spill it to disk instead of losing it.
//!
//! Events held in memory are lost if the process is killed with SIGKILL; that is the accepted bound for the
//! local runner. On AWS, Firehose holds events durably instead of this buffer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{EventSink, SinkError};
use crate::event::Event;
use crate::retry::Backoff;
use crate::store::{EventStore, dedup_token};

#[derive(Debug, Clone, Copy)]
pub struct BufferConfig {
    pub batch_size: usize,
    pub flush_interval: Duration,
    pub capacity: usize,
    /// Batches written at the same time. Default 2.
    pub concurrency: usize,
    pub backoff: Backoff,
}

impl BufferConfig {
    pub fn from_config(c: &crate::config::Config) -> Self {
        Self {
            batch_size: c.batch_size,
            flush_interval: c.flush_interval,
            capacity: c.max_buffered_events,
            concurrency: 2,
            backoff: Backoff::default(),
        }
    }
}

/// Counters, for logs, tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    pub waiting: usize,
    pub in_flight: usize,
    pub written_events: u64,
    pub written_batches: u64,
    pub failed_attempts: u64,
}

#[derive(Debug)]
struct Shared {
    cfg: BufferConfig,
    store: Arc<dyn EventStore>,
    state: Mutex<State>,
    wake: Notify,
    written_events: AtomicU64,
    written_batches: AtomicU64,
    failed_attempts: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Waiting events with the instant each was accepted.
    queue: VecDeque<(Instant, Event)>,
    in_flight: usize,
    closing: bool,
    /// Set when shutdown gives up on a failing store: the worker stops retrying and returns what it holds.
    abandon: bool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The intake side; cheap to clone.
#[derive(Debug, Clone)]
pub struct BufferedSink {
    shared: Arc<Shared>,
}

/// The worker side: owns the flush task.
#[derive(Debug)]
pub struct BufferHandle {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<Vec<Event>>,
}

impl BufferedSink {
    /// Starts the flush task on the current Tokio runtime.
    pub fn start(store: Arc<dyn EventStore>, cfg: BufferConfig) -> (Self, BufferHandle) {
        let shared = Arc::new(Shared {
            cfg,
            store,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            written_events: AtomicU64::new(0),
            written_batches: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
        });
        let task = tokio::spawn(run(shared.clone()));
        (
            Self {
                shared: shared.clone(),
            },
            BufferHandle { shared, task },
        )
    }

    pub fn stats(&self) -> BufferStats {
        stats(&self.shared)
    }
}

fn stats(shared: &Shared) -> BufferStats {
    let st = shared.lock();
    BufferStats {
        waiting: st.queue.len(),
        in_flight: st.in_flight,
        written_events: shared.written_events.load(Ordering::Relaxed),
        written_batches: shared.written_batches.load(Ordering::Relaxed),
        failed_attempts: shared.failed_attempts.load(Ordering::Relaxed),
    }
}

#[async_trait]
impl EventSink for BufferedSink {
    async fn send_batch(&self, events: Vec<Event>) -> Result<(), SinkError> {
        if events.is_empty() {
            return Ok(());
        }
        let cfg = self.shared.cfg;
        let mut st = self.shared.lock();
        if st.closing {
            return Err(SinkError::Closed);
        }
        if st.queue.len() + st.in_flight + events.len() > cfg.capacity {
            return Err(SinkError::Full {
                capacity: cfg.capacity,
                retry_after: cfg.flush_interval.max(Duration::from_secs(1)),
            });
        }
        let was_empty = st.queue.is_empty();
        let now = Instant::now();
        st.queue.extend(events.into_iter().map(|e| (now, e)));
        let ready = st.queue.len() >= cfg.batch_size;
        drop(st);
        // Wake the worker when a full batch is ready, or when the queue went from empty to non-empty (so it
        // arms the flush-interval timer).
        if ready || was_empty {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

impl BufferHandle {
    pub fn stats(&self) -> BufferStats {
        stats(&self.shared)
    }

    /// Stops intake, flushes what is buffered and waits up to `grace` for the store. Returns the events that
    /// could not be written (empty when everything landed).
    pub async fn shutdown(self, grace: Duration) -> Vec<Event> {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        let BufferHandle { shared, mut task } = self;
        match tokio::time::timeout(grace, &mut task).await {
            Ok(joined) => joined.unwrap_or_default(),
            Err(_) => {
                shared.lock().abandon = true;
                shared.wake.notify_one();
                task.await.unwrap_or_default()
            }
        }
    }
}

/// What the worker should do next.
enum Next {
    Write(Vec<Event>),
    WaitUntil(Option<Instant>),
    Stop,
}

fn next(shared: &Shared) -> Next {
    let cfg = shared.cfg;
    let mut st = shared.lock();
    let Some((oldest, _)) = st.queue.front() else {
        return if st.closing {
            Next::Stop
        } else {
            Next::WaitUntil(None)
        };
    };
    let due = *oldest + cfg.flush_interval;
    if st.queue.len() >= cfg.batch_size || st.closing || Instant::now() >= due {
        let n = st.queue.len().min(cfg.batch_size);
        let batch: Vec<Event> = st.queue.drain(..n).map(|(_, e)| e).collect();
        st.in_flight += batch.len();
        Next::Write(batch)
    } else {
        Next::WaitUntil(Some(due))
    }
}

async fn run(shared: Arc<Shared>) -> Vec<Event> {
    let mut writers: JoinSet<Result<(), Vec<Event>>> = JoinSet::new();
    let mut unwritten: Vec<Event> = Vec::new();
    loop {
        while let Some(done) = writers.try_join_next() {
            if let Ok(Err(batch)) = done {
                unwritten.extend(batch);
            }
        }
        if !unwritten.is_empty() {
            // Shutdown gave up on the store: let the other writers finish or give up too, then hand back
            // everything still held.
            while let Some(done) = writers.join_next().await {
                if let Ok(Err(batch)) = done {
                    unwritten.extend(batch);
                }
            }
            let mut st = shared.lock();
            unwritten.extend(st.queue.drain(..).map(|(_, e)| e));
            st.in_flight = 0;
            return unwritten;
        }
        let can_write = writers.len() < shared.cfg.concurrency.max(1);
        let next = if can_write {
            next(&shared)
        } else {
            Next::WaitUntil(None)
        };
        match next {
            Next::Write(batch) => {
                writers.spawn(write_with_retry(shared.clone(), batch));
            }
            Next::Stop if writers.is_empty() => return Vec::new(),
            Next::Stop => {
                let _ = writers
                    .join_next()
                    .await
                    .map(|r| r.map(|w| w.map_err(|b| unwritten.extend(b))));
            }
            Next::WaitUntil(due) => {
                let timer = async {
                    match due {
                        Some(due) => tokio::time::sleep_until(due).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = timer => {}
                    Some(done) = writers.join_next(), if !writers.is_empty() => {
                        if let Ok(Err(batch)) = done {
                            unwritten.extend(batch);
                        }
                    }
                }
            }
        }
    }
}

/// Writes one batch, retrying with backoff until it lands; gives the batch back only when shutdown
/// abandons it.
async fn write_with_retry(shared: Arc<Shared>, batch: Vec<Event>) -> Result<(), Vec<Event>> {
    let token = dedup_token(&batch);
    let mut attempt = 0u32;
    loop {
        match shared.store.insert(&batch, &token).await {
            Ok(()) => {
                shared.lock().in_flight -= batch.len();
                shared
                    .written_events
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                shared.written_batches.fetch_add(1, Ordering::Relaxed);
                if attempt > 0 {
                    tracing::info!(
                        events = batch.len(),
                        attempts = attempt + 1,
                        "batch written after retries"
                    );
                }
                return Ok(());
            }
            Err(e) => {
                shared.failed_attempts.fetch_add(1, Ordering::Relaxed);
                let delay = shared.cfg.backoff.delay(attempt);
                tracing::warn!(
                    error = %e, retryable = e.is_retryable(), events = batch.len(), attempt,
                    retry_in_ms = delay.as_millis() as u64, "batch write failed; will retry"
                );
                attempt = attempt.saturating_add(1);
                if shared.lock().abandon {
                    shared.lock().in_flight -= batch.len();
                    return Err(batch);
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shared.wake.notified() => {}
                }
                if shared.lock().abandon {
                    shared.lock().in_flight -= batch.len();
                    return Err(batch);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn events(n: usize) -> Vec<Event> {
        // A fresh prefix per call: batches must not repeat ids (repeats would deduplicate).
        crate::event::test_page_views(&format!("{}_", ulid::Ulid::new()), n)
    }

    fn cfg(batch_size: usize, flush_ms: u64, capacity: usize) -> BufferConfig {
        BufferConfig {
            batch_size,
            flush_interval: Duration::from_millis(flush_ms),
            capacity,
            concurrency: 1,
            backoff: Backoff {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_is_written_without_waiting_for_the_interval() {
        let store = Arc::new(MemoryStore::new());
        let (sink, handle) = BufferedSink::start(store.clone(), cfg(10, 60_000, 100));
        sink.send_batch(events(25)).await.expect("accepted");
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            store.batch_sizes(),
            vec![10, 10],
            "two full batches, 5 left waiting"
        );
        assert!(handle.shutdown(Duration::from_secs(1)).await.is_empty());
        assert_eq!(
            store.batch_sizes(),
            vec![10, 10, 5],
            "shutdown flushes the rest"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_is_written_when_the_oldest_event_has_waited_the_interval() {
        let store = Arc::new(MemoryStore::new());
        let (sink, _handle) = BufferedSink::start(store.clone(), cfg(1000, 5000, 10_000));
        sink.send_batch(events(3)).await.expect("accepted");
        tokio::time::sleep(Duration::from_millis(4900)).await;
        assert!(store.events().is_empty(), "not before the interval");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(store.batch_sizes(), vec![3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_buffer_refuses_the_whole_call_instead_of_dropping() {
        let store = Arc::new(MemoryStore::new());
        store.fail_next(usize::MAX);
        let (sink, _handle) = BufferedSink::start(store.clone(), cfg(10, 1000, 20));
        sink.send_batch(events(15)).await.expect("fits");
        let err = sink.send_batch(events(6)).await.expect_err("over capacity");
        assert!(
            matches!(err, SinkError::Full { capacity: 20, .. }),
            "{err:?}"
        );
        sink.send_batch(events(5))
            .await
            .expect("exactly at capacity still fits");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_writes_are_retried_with_the_same_batch_until_they_land() {
        let store = Arc::new(MemoryStore::new());
        store.fail_next(3);
        let (sink, handle) = BufferedSink::start(store.clone(), cfg(5, 100, 100));
        sink.send_batch(events(5)).await.expect("accepted");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(store.batch_sizes(), vec![5]);
        assert_eq!(store.attempts(), 4);
        assert_eq!(handle.stats().failed_attempts, 3);
        assert_eq!(handle.stats().written_events, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_with_the_store_down_returns_every_unwritten_event() {
        for concurrency in [1, 2, 4] {
            let store = Arc::new(MemoryStore::new());
            store.fail_next(usize::MAX);
            let cfg = BufferConfig {
                concurrency,
                ..cfg(4, 100, 100)
            };
            let (sink, handle) = BufferedSink::start(store.clone(), cfg);
            let sent = events(10);
            let mut want: Vec<String> = sent.iter().map(|e| e.id.clone()).collect();
            sink.send_batch(sent).await.expect("accepted");
            tokio::time::sleep(Duration::from_millis(300)).await;
            let left = handle.shutdown(Duration::from_secs(2)).await;
            let mut left_ids: Vec<String> = left.iter().map(|e| e.id.clone()).collect();
            left_ids.sort();
            want.sort();
            assert_eq!(
                left_ids, want,
                "nothing accepted is lost (concurrency {concurrency})"
            );
            assert!(matches!(
                sink.send_batch(events(1)).await,
                Err(SinkError::Closed)
            ));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_writers_store_every_event_exactly_once() {
        let store = Arc::new(MemoryStore::new());
        store.fail_next(5);
        let cfg = BufferConfig {
            concurrency: 3,
            ..cfg(10, 100, 10_000)
        };
        let (sink, handle) = BufferedSink::start(store.clone(), cfg);
        let mut want = Vec::new();
        for _ in 0..20 {
            let batch = events(50);
            want.extend(batch.iter().map(|e| e.id.clone()));
            sink.send_batch(batch).await.expect("accepted");
        }
        assert!(handle.shutdown(Duration::from_secs(10)).await.is_empty());
        let mut got: Vec<String> = store.events().iter().map(|e| e.id.clone()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(
            store.batch_sizes().iter().all(|n| *n <= 10),
            "batches never exceed batch_size"
        );
    }
}
