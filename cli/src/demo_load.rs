//! Loads generated demo traffic straight into the store, in bulk.
//!
//! The events are exactly those the API would store: every generated event goes through the same
//! [`Validator`] (enrichment, bot flag, typed facts) and the store's own insert, so the warehouse's
//! materialized views (rollups) see the same rows as from live traffic. What the bulk path skips is only
//! the per-batch lookup of already-stored ids ([`EventStore::insert_new`]): callers load into a store that
//! holds no events, and the generator never repeats an id (a unit test checks it).
//!
//! Generation and validation run on their own thread, one batch ahead of the inserts, so the CPU that
//! builds events and the warehouse that writes them work at the same time. Progress is a bar with rate
//! and ETA on a terminal, a log line every 5% otherwise (CI, `nohup`).

use std::io::IsTerminal as _;
use std::time::{Duration, Instant};

use commerce_analytics::demo::{DemoConfig, DemoGenerator};
use commerce_analytics::event::{Event, RequestMeta, Validator};
use commerce_analytics::store::{EventStore, StoreError, dedup_token};
use indicatif::{ProgressBar, ProgressStyle};

/// Events per insert: large enough that the warehouse's per-insert cost (parts, view blocks) is spread
/// over many rows, small enough that two batches in the pipeline stay around 200 MB.
pub const BULK_BATCH: usize = 100_000;

/// What a load did.
#[derive(Debug, Clone, Copy)]
pub struct LoadSummary {
    pub events: usize,
    pub inserts: usize,
    pub elapsed: Duration,
}

impl LoadSummary {
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl std::fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events in {} inserts, {:.1?} ({:.0} events/s)",
            self.events,
            self.inserts,
            self.elapsed,
            self.events_per_second()
        )
    }
}

/// Generates and inserts demo events for `store_id`, which must hold no events yet.
pub async fn load(
    store: &dyn EventStore,
    validator: &Validator,
    store_id: &str,
    cfg: DemoConfig,
) -> Result<LoadSummary, StoreError> {
    if cfg.days >= validator.retention_days {
        return Err(StoreError::Rejected(format!(
            "demo traffic over {} days would start beyond retention_days ({}); use fewer days",
            cfg.days, validator.retention_days
        )));
    }
    let started = Instant::now();
    let progress = Progress::new(cfg.events as u64);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<Event>, StoreError>>(1);
    let producer = {
        let validator = validator.clone();
        let store_id = store_id.to_owned();
        std::thread::spawn(move || generate(cfg, &validator, &store_id, &tx))
    };
    let mut summary = LoadSummary {
        events: 0,
        inserts: 0,
        elapsed: Duration::ZERO,
    };
    let mut failed = None;
    while let Some(batch) = rx.recv().await {
        let stored = match batch {
            Ok(batch) => store
                .insert_new(&batch, &dedup_token(&batch))
                .await
                .map(|()| batch.len()),
            Err(e) => Err(e),
        };
        match stored {
            Ok(n) => {
                summary.events += n;
                summary.inserts += 1;
                progress.set(summary.events as u64);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    // Dropping the receiver stops the producer at its next batch.
    drop(rx);
    let _ = producer.join();
    progress.finish();
    if let Some(e) = failed {
        return Err(e);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The producer: validated batches of [`BULK_BATCH`] events, until the generator ends or the receiver
/// is gone.
fn generate(
    cfg: DemoConfig,
    validator: &Validator,
    store_id: &str,
    tx: &tokio::sync::mpsc::Sender<Result<Vec<Event>, StoreError>>,
) {
    let now = time::OffsetDateTime::now_utc();
    let meta = RequestMeta::default();
    let mut batch = Vec::with_capacity(BULK_BATCH);
    for value in DemoGenerator::new(cfg) {
        match validator.validate(value, store_id, &meta, now) {
            Ok(ev) => batch.push(ev),
            Err(e) => {
                let _ = tx.blocking_send(Err(StoreError::Rejected(format!(
                    "demo generator produced an invalid event: {e}"
                ))));
                return;
            }
        }
        if batch.len() == BULK_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BULK_BATCH));
            if tx.blocking_send(Ok(full)).is_err() {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(Ok(batch));
    }
}

/// A bar on a terminal; otherwise a log line at every further 5%.
struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    started: Instant,
    logged_step: std::sync::atomic::AtomicU64,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events \
                     ({per_sec}, ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            total: total.max(1),
            started: Instant::now(),
            logged_step: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let step = (done.min(self.total) * 20) / self.total;
        if step
            > self
                .logged_step
                .swap(step, std::sync::atomic::Ordering::Relaxed)
        {
            let secs = self.started.elapsed().as_secs_f64();
            let rate = done as f64 / secs.max(1e-9);
            let eta = (self.total.saturating_sub(done)) as f64 / rate.max(1e-9);
            eprintln!(
                "demo: {done}/{} events ({}%), {rate:.0} events/s, ETA {eta:.0} s",
                self.total,
                step * 5
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The committed ECB history (`data/fx/eurofxref-hist.csv`), built into the binary so the demo converts
/// wherever it runs.
pub const ECB_HISTORY: &str = include_str!("../../data/fx/eurofxref-hist.csv");

/// Loads exchange rates for demo traffic: the committed ECB history, and each currency's last rate
/// carried forward over the weekdays since (the demo's traffic runs up to today, the history stops at its
/// last publication), stored with a source that says so. Returns how many rates were stored.
pub async fn load_rates(
    rates: &dyn commerce_analytics::fx::RateStore,
    through: jiff::civil::Date,
) -> Result<usize, Box<dyn std::error::Error>> {
    use commerce_analytics::fx;
    let history = fx::parse_ecb_csv(ECB_HISTORY)?;
    let last = history.iter().map(|r| r.day).max();
    let carried = fx::carry_forward(&history, through);
    let mut stored = rates.put_rates(&history, fx::ECB_SOURCE).await?;
    if let Some(last) = last
        && !carried.is_empty()
    {
        stored += rates
            .put_rates(
                &carried,
                &format!(
                    "{} of {last}, carried forward for demo traffic",
                    fx::ECB_SOURCE
                ),
            )
            .await?;
    }
    Ok(stored)
}
