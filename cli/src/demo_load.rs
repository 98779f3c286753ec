//! Loads generated demo traffic straight into the store, in bulk.
//!
//! The events are exactly those the API would store: every generated event goes through the same
//! [`Validator`] rules (time, enrichment, bot flag) and the store's own encoding, so the warehouse holds
//! the same rows, and its rollups the same aggregates, as from live traffic. The generator makes its
//! events typed ([`DemoGenerator::trusted`]) and the validator accepts them as such
//! ([`Validator::accept_trusted`]: the JSON parsing and field checks a made event cannot fail are
//! skipped; a unit test checks event by event that this stores what validating their JSON stores). What
//! the bulk path skips is the per-batch lookup of already-stored ids ([`EventStore::insert_new`]): callers
//! load into a store that holds no events, and the generator never repeats an id (a unit test checks it). Where the store offers
//! a staged load ([`EventStore::staged_load`]: ClickHouse on one server), the batches are staged where no
//! materialized view sees them and every rollup is derived once at the end, month by month, instead of
//! insert by insert (an integration test checks both ways store the same rows); each event is then
//! encoded into its month's batch ([`StagedBatch`]) as soon as it is validated, so the loader holds rows,
//! not events.
//!
//! Generation, validation and (staged) encoding run on their own thread, ahead of the inserts, so the CPU
//! that builds events and the warehouse that writes them work at the same time (generating and
//! validating on two threads was tried: 45% more CPU, as every event's memory then changes threads
//! twice, and slower); each batch holds one month's events (see [`generate`]). Progress is a bar with
//! rate and ETA on a terminal, a log line every 5% otherwise (CI, `nohup`), for the events and then for
//! the months published.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use commerce_analytics::demo::{DemoConfig, DemoGenerator};
use commerce_analytics::event::{Event, RequestMeta, Validator};
use commerce_analytics::store::{EncodedBatch, EventStore, StagedBatch, StoreError, dedup_token};
use indicatif::{ProgressBar, ProgressStyle};

/// Events per insert without a staged load: large enough that the warehouse's per-insert cost (parts,
/// view blocks) is spread over many rows, small enough that the batches of events held (one per month,
/// see [`generate`]) stay around 1 GB for a year of traffic.
pub const BULK_BATCH: usize = 100_000;

/// Events per insert of a staged load, whose batches hold encoded rows (~350 bytes an event, against
/// ~1.4 KB of allocations for an event held as itself): fewer, larger parts for the server to merge
/// (see the README's performance section), ~1.4 GB held over a year's 13 months.
pub const STAGED_BATCH: usize = 300_000;

/// A month's batch being filled by the producer: a staged load's encoded rows, or the events
/// themselves for a store that inserts them ([`EventStore::insert_new`]).
enum Filling {
    Encoded(Box<dyn StagedBatch>),
    Events(Vec<Event>),
}

/// A full batch, from the producer to the inserts.
enum Full {
    Encoded(EncodedBatch),
    Events(Vec<Event>),
}

/// What a load did.
#[derive(Debug, Clone, Copy)]
pub struct LoadSummary {
    pub events: usize,
    pub inserts: usize,
    /// The whole load.
    pub elapsed: Duration,
    /// Of which: storing a staged load's events and deriving its rollups at the end
    /// ([`EventStore::staged_load`]); `None` when every insert fed the rollups itself.
    pub rollups: Option<Duration>,
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
        )?;
        match self.rollups {
            Some(rollups) => write!(
                f,
                ", of which {rollups:.1?} publishing (rollups built once)"
            ),
            None => Ok(()),
        }
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
    let progress = Progress::new(cfg.events as u64, "events");
    let staged = store.staged_load().await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Full, StoreError>>(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<Event>>();
    let producer = {
        let validator = validator.clone();
        let store_id = store_id.to_owned();
        let encoder = staged.as_ref().map(|s| s.batch());
        std::thread::spawn(move || generate(cfg, &validator, &store_id, encoder, &tx, &done_rx))
    };
    let mut summary = LoadSummary {
        events: 0,
        inserts: 0,
        elapsed: Duration::ZERO,
        rollups: None,
    };
    let mut failed = None;
    while let Some(batch) = rx.recv().await {
        let stored = match (batch, &staged) {
            (Ok(Full::Encoded(batch)), Some(staged)) => {
                let n = batch.events;
                staged.insert_encoded(batch).await.map(|()| n)
            }
            (Ok(Full::Events(batch)), _) => {
                let token = dedup_token(&batch);
                let stored = store.insert_new(&batch, &token).await;
                let n = batch.len();
                // Back to the producer, whose thread allocated every event (see `generate`); gone if
                // the producer has ended, and then dropped here.
                let _ = done_tx.send(batch);
                stored.map(|()| n)
            }
            (Ok(Full::Encoded(_)), None) => Err(StoreError::Rejected(
                "an encoded batch without a staged load".into(),
            )),
            (Err(e), _) => Err(e),
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
        if let Some(staged) = staged
            && let Err(discard) = staged.discard().await
        {
            eprintln!("demo: the staged events could not be dropped: {discard}");
        }
        return Err(e);
    }
    if let Some(staged) = staged {
        let publishing = Instant::now();
        let progress = Progress::new(0, "months");
        staged
            .publish(&|done, total| progress.steps(done as u64, total as u64))
            .await?;
        progress.finish();
        summary.rollups = Some(publishing.elapsed());
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// The producer: validated batches of one UTC month each ([`STAGED_BATCH`] events encoded by `encoder`'s
/// staged load, else [`BULK_BATCH`] events), until the generator ends or the receiver is gone.
///
/// One month per batch because the warehouse partitions by month: the generator spreads each stretch of
/// sessions over the whole period, so a batch of consecutive events would touch every month and be
/// written as a small part per month (13 parts of ~8,000 rows per insert over 360 days, in the events
/// table and in every rollup), which the server then merges again and again. At most one batch per
/// month is held.
///
/// Encoded, an event is dropped as soon as its row is in its month's block, on this thread, so the next
/// events reuse its memory. Held as events, the inserted batches come back on `done` and are emptied
/// here: an event freed on the thread that allocated it is a local free whose memory the next events
/// reuse, where freeing it on the inserting thread made the allocator collect every block across threads
/// and hand this thread fresh pages to zero (a quarter of the loader's CPU in a profile of 3M events).
fn generate(
    cfg: DemoConfig,
    validator: &Validator,
    store_id: &str,
    encoder: Option<Box<dyn StagedBatch>>,
    tx: &tokio::sync::mpsc::Sender<Result<Full, StoreError>>,
    done: &std::sync::mpsc::Receiver<Vec<Event>>,
) {
    let now = time::OffsetDateTime::now_utc();
    let meta = RequestMeta::default();
    let mut months: BTreeMap<(i32, u8), Filling> = BTreeMap::new();
    let mut spare: Vec<Vec<Event>> = Vec::new();
    for draft in DemoGenerator::new(cfg).trusted() {
        let ev = match validator.accept_trusted(draft, store_id, &meta, now) {
            Ok(ev) => ev,
            Err(e) => {
                let _ = tx.blocking_send(Err(StoreError::Rejected(format!(
                    "demo generator produced an invalid event: {e}"
                ))));
                return;
            }
        };
        let month = (ev.timestamp.year(), u8::from(ev.timestamp.month()));
        let batch = months.entry(month).or_insert_with(|| match &encoder {
            Some(encoder) => Filling::Encoded(encoder.fresh()),
            None => Filling::Events(Vec::with_capacity(BULK_BATCH)),
        });
        let full = match batch {
            Filling::Encoded(rows) => {
                rows.push(&ev);
                (rows.len() == STAGED_BATCH).then(|| Full::Encoded(rows.take()))
            }
            Filling::Events(events) => {
                events.push(ev);
                (events.len() == BULK_BATCH).then(|| {
                    let next = spare
                        .pop()
                        .unwrap_or_else(|| Vec::with_capacity(BULK_BATCH));
                    Full::Events(std::mem::replace(events, next))
                })
            }
        };
        if let Some(full) = full {
            if tx.blocking_send(Ok(full)).is_err() {
                return;
            }
            spare.extend(done.try_iter().map(|mut inserted| {
                inserted.clear();
                inserted
            }));
        }
    }
    for batch in months.into_values() {
        let last = match batch {
            Filling::Encoded(mut rows) if !rows.is_empty() => Full::Encoded(rows.take()),
            Filling::Events(events) if !events.is_empty() => Full::Events(events),
            _ => continue,
        };
        if tx.blocking_send(Ok(last)).is_err() {
            return;
        }
    }
}

/// A bar on a terminal; otherwise a log line at every further 5%.
struct Progress {
    bar: Option<ProgressBar>,
    /// What is counted (`events`, `months`).
    unit: &'static str,
    total: AtomicU64,
    started: Instant,
    logged_step: AtomicU64,
}

impl Progress {
    fn new(total: u64, unit: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {unit} \
                     ({{per_sec}}, ETA {{eta}})"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            unit,
            total: AtomicU64::new(total.max(1)),
            started: Instant::now(),
            logged_step: AtomicU64::new(0),
        }
    }

    /// `done` of a total known only now.
    fn steps(&self, done: u64, total: u64) {
        self.total.store(total.max(1), Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
        self.set(done);
    }

    fn set(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let total = self.total.load(Ordering::Relaxed);
        let step = (done.min(total) * 20) / total;
        if step > self.logged_step.swap(step, Ordering::Relaxed) {
            let secs = self.started.elapsed().as_secs_f64();
            let rate = done as f64 / secs.max(1e-9);
            let eta = (total.saturating_sub(done)) as f64 / rate.max(1e-9);
            // Months take seconds each: "0.0 months/s" would say nothing.
            let pace = if rate >= 1.0 {
                format!("{rate:.1} {}/s", self.unit)
            } else {
                format!("{:.0} s each", 1.0 / rate.max(1e-9))
            };
            eprintln!(
                "demo: {done}/{total} {unit} ({}%), {pace}, ETA {eta:.0} s",
                step * 5,
                unit = self.unit,
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
