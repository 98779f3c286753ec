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
//! Durability: with a [`Wal`] ([`BufferedSink::start_durable`], setting `durable_buffer`), a call is
//! answered only after its events are fsynced to the write-ahead log, and the log forgets them once their
//! batch is stored: a SIGKILL or a power cut loses nothing acknowledged (the next start replays the log).
//! Without it, events held in memory are lost on SIGKILL; a clean shutdown spills them (see
//! [`BufferHandle::close`]). On AWS, Firehose holds events durably instead of this buffer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::wal::Wal;
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
    wal: Option<Wal>,
    state: Mutex<State>,
    wake: Notify,
    written_events: AtomicU64,
    written_batches: AtomicU64,
    failed_attempts: AtomicU64,
}

/// One accepted event waiting for a batch.
#[derive(Debug)]
struct Waiting {
    since: Instant,
    event: Event,
    /// The write-ahead log segment that holds it (durable mode).
    segment: Option<u64>,
}

/// A batch being written.
#[derive(Debug)]
struct Batch {
    events: Vec<Event>,
    /// How many of its events each WAL segment holds: released once the batch is stored.
    segments: Vec<(u64, usize)>,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Waiting>,
    in_flight: usize,
    /// Batches being written, by number: what a shutdown spills if the store does not take them.
    writing: std::collections::BTreeMap<u64, Arc<Batch>>,
    next_batch: u64,
    /// Events admitted but still being appended to the write-ahead log.
    reserved: usize,
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
    /// Starts the flush task on the current Tokio runtime (events held in memory only).
    pub fn start(store: Arc<dyn EventStore>, cfg: BufferConfig) -> (Self, BufferHandle) {
        Self::start_with(store, cfg, None)
    }

    /// Like [`Self::start`], but every accepted event is in `wal` (fsynced) before the call returns.
    pub fn start_durable(
        store: Arc<dyn EventStore>,
        cfg: BufferConfig,
        wal: Wal,
    ) -> (Self, BufferHandle) {
        Self::start_with(store, cfg, Some(wal))
    }

    fn start_with(
        store: Arc<dyn EventStore>,
        cfg: BufferConfig,
        wal: Option<Wal>,
    ) -> (Self, BufferHandle) {
        let shared = Arc::new(Shared {
            cfg,
            store,
            wal,
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
        let n = events.len();
        self.admit(n)?;
        let segment = match &self.shared.wal {
            None => None,
            Some(wal) => match wal.append(&events).await {
                Ok(segment) => Some(segment),
                Err(e) => {
                    self.shared.lock().reserved -= n;
                    tracing::error!(error = %e, events = n, "write-ahead log unavailable");
                    return Err(SinkError::Unavailable {
                        message: "the event buffer cannot write to disk; retry later".into(),
                        retry_after: Duration::from_secs(1),
                        failed_ids: events.iter().map(|e| e.id.clone()).collect(),
                    });
                }
            },
        };
        let mut st = self.shared.lock();
        st.reserved -= n;
        // Durable mode: even if shutdown began during the append, the events are in the log and the next
        // start stores them; they were accepted.
        let was_empty = st.queue.is_empty();
        let since = Instant::now();
        st.queue.extend(events.into_iter().map(|event| Waiting {
            since,
            event,
            segment,
        }));
        let ready = st.queue.len() >= self.shared.cfg.batch_size;
        drop(st);
        // Wake the worker when a full batch is ready, or when the queue went from empty to non-empty (so it
        // arms the flush-interval timer).
        if ready || was_empty {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

impl BufferedSink {
    /// Reserves room for `n` events, or refuses the whole call.
    fn admit(&self, n: usize) -> Result<(), SinkError> {
        let cfg = self.shared.cfg;
        let mut st = self.shared.lock();
        if st.closing {
            return Err(SinkError::Closed);
        }
        if st.queue.len() + st.in_flight + st.reserved + n > cfg.capacity {
            return Err(SinkError::Full {
                capacity: cfg.capacity,
                retry_after: cfg.flush_interval.max(Duration::from_secs(1)),
            });
        }
        st.reserved += n;
        Ok(())
    }
}

impl BufferHandle {
    pub fn stats(&self) -> BufferStats {
        stats(&self.shared)
    }

    /// Whether accepted events are in a write-ahead log (then nothing needs spilling at shutdown).
    pub fn is_durable(&self) -> bool {
        self.shared.wal.is_some()
    }

    /// Stops intake and returns a copy of every event held (waiting or being written), so a shutdown can
    /// put them on disk *before* it spends its grace period on the store: a supervisor that kills the
    /// process during the last flush then loses nothing.
    pub fn close(&self) -> Vec<Event> {
        let mut st = self.shared.lock();
        st.closing = true;
        let mut held: Vec<Event> = st.writing.values().flat_map(|b| b.events.clone()).collect();
        held.extend(st.queue.iter().map(|w| w.event.clone()));
        held
    }

    /// Stops intake, flushes what is buffered and waits up to `grace` for the store. Returns the events that
    /// could not be written (empty when everything landed). In durable mode those stay in the write-ahead
    /// log for the next start; the log's last segment is deleted when everything landed.
    pub async fn shutdown(self, grace: Duration) -> Vec<Event> {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        let BufferHandle { shared, mut task } = self;
        let left = match tokio::time::timeout(grace, &mut task).await {
            Ok(joined) => joined.unwrap_or_default(),
            Err(_) => {
                shared.lock().abandon = true;
                shared.wake.notify_one();
                task.await.unwrap_or_default()
            }
        };
        if let Some(wal) = &shared.wal
            && left.is_empty()
        {
            wal.close();
        }
        left
    }
}

/// What the worker should do next.
enum Next {
    Write(Arc<Batch>, u64),
    WaitUntil(Option<Instant>),
    Stop,
}

fn next(shared: &Shared) -> Next {
    let cfg = shared.cfg;
    let mut st = shared.lock();
    let Some(Waiting { since: oldest, .. }) = st.queue.front() else {
        return if st.closing {
            Next::Stop
        } else {
            Next::WaitUntil(None)
        };
    };
    let due = *oldest + cfg.flush_interval;
    if st.queue.len() >= cfg.batch_size || st.closing || Instant::now() >= due {
        let n = st.queue.len().min(cfg.batch_size);
        let mut events = Vec::with_capacity(n);
        let mut segments: Vec<(u64, usize)> = Vec::new();
        for w in st.queue.drain(..n) {
            if let Some(seg) = w.segment {
                match segments.last_mut() {
                    Some((last, count)) if *last == seg => *count += 1,
                    _ => segments.push((seg, 1)),
                }
            }
            events.push(w.event);
        }
        st.in_flight += events.len();
        let batch = Arc::new(Batch { events, segments });
        let number = st.next_batch;
        st.next_batch += 1;
        st.writing.insert(number, batch.clone());
        Next::Write(batch, number)
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
            unwritten.extend(st.queue.drain(..).map(|w| w.event));
            st.in_flight = 0;
            st.writing.clear();
            return unwritten;
        }
        let can_write = writers.len() < shared.cfg.concurrency.max(1);
        let next = if can_write {
            next(&shared)
        } else {
            Next::WaitUntil(None)
        };
        match next {
            Next::Write(batch, number) => {
                writers.spawn(write_with_retry(shared.clone(), batch, number));
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
async fn write_with_retry(
    shared: Arc<Shared>,
    batch: Arc<Batch>,
    number: u64,
) -> Result<(), Vec<Event>> {
    let events = &batch.events;
    let token = dedup_token(events);
    let mut attempt = 0u32;
    let give_back = || {
        let mut st = shared.lock();
        st.in_flight -= events.len();
        st.writing.remove(&number);
        events.clone()
    };
    loop {
        match shared.store.insert(events, &token).await {
            Ok(()) => {
                {
                    let mut st = shared.lock();
                    st.in_flight -= events.len();
                    st.writing.remove(&number);
                }
                if let Some(wal) = &shared.wal {
                    for (segment, n) in &batch.segments {
                        wal.release(*segment, *n);
                    }
                }
                shared
                    .written_events
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                shared.written_batches.fetch_add(1, Ordering::Relaxed);
                if attempt > 0 {
                    tracing::info!(
                        events = events.len(),
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
                    error = %e, retryable = e.is_retryable(), events = events.len(), attempt,
                    retry_in_ms = delay.as_millis() as u64, "batch write failed; will retry"
                );
                attempt = attempt.saturating_add(1);
                if shared.lock().abandon {
                    return Err(give_back());
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = shared.wake.notified() => {}
                }
                if shared.lock().abandon {
                    return Err(give_back());
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

    #[tokio::test]
    async fn a_durable_buffer_keeps_every_acknowledged_event_on_disk_until_it_is_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(MemoryStore::new());
        store.fail_next(usize::MAX);
        let wal = Wal::open(dir.path()).expect("wal");
        let (sink, handle) =
            BufferedSink::start_durable(store.clone(), cfg(10, 10, 1000), wal.clone());
        let sent = events(25);
        sink.send_batch(sent.clone()).await.expect("accepted");
        // A SIGKILL now: another process replays the folder and stores all 25, none lost.
        let elsewhere = MemoryStore::new();
        let replayed = super::super::wal::replay(dir.path(), &elsewhere).await;
        assert_eq!(replayed.events, 25);
        // Back in this process, the store recovers: the batches land and the log forgets them.
        store.fail_next(0);
        assert!(handle.shutdown(Duration::from_secs(5)).await.is_empty());
        assert_eq!(store.events().len(), 25);
        assert_eq!(wal.stats().outstanding, 0);
        assert_eq!(
            wal.stats().segments,
            0,
            "a clean shutdown leaves no log behind"
        );
    }

    #[tokio::test]
    async fn a_durable_buffer_answers_503_when_it_cannot_write_its_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = Wal::open(&dir.path().join("wal")).expect("wal");
        // The folder disappears under the log: appends fail, and the call is refused, not acknowledged.
        std::fs::remove_dir_all(dir.path().join("wal")).expect("rm");
        let store = Arc::new(MemoryStore::new());
        let (sink, _handle) = BufferedSink::start_durable(store, cfg(10, 10, 1000), wal);
        let err = sink
            .send_batch(events(3))
            .await
            .expect_err("not durable, not accepted");
        assert!(
            matches!(&err, SinkError::Unavailable { failed_ids, .. } if failed_ids.len() == 3),
            "{err:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn close_hands_back_every_held_event_including_batches_being_written() {
        let store = Arc::new(MemoryStore::new());
        store.fail_next(usize::MAX);
        let (sink, handle) = BufferedSink::start(store.clone(), cfg(4, 100, 100));
        let sent = events(10);
        sink.send_batch(sent.clone()).await.expect("accepted");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            handle.stats().in_flight > 0,
            "some batches are being written"
        );
        let mut held: Vec<String> = handle.close().iter().map(|e| e.id.clone()).collect();
        let mut want: Vec<String> = sent.iter().map(|e| e.id.clone()).collect();
        held.sort();
        want.sort();
        assert_eq!(held, want);
        assert!(matches!(
            sink.send_batch(events(1)).await,
            Err(SinkError::Closed)
        ));
    }
}
