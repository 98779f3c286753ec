//! The highest peak memory of any ClickHouse read since the last [`take`], for the read benchmarks'
//! "peak" column: a `tracing` layer that keeps the largest `peak_memory_bytes` of the adapter's
//! [`READ_COST`] events (each read's own peak on the server, from its `X-ClickHouse-Summary`; what
//! `system.query_log.memory_usage` records, read without waiting for the log to be flushed).
//!
//! [`init`] replaces [`commerce_analytics::telemetry::init`] in the bench binary: the usual log lines
//! (`RUST_LOG`, default `info`) plus this layer, which sees the read-cost events whatever `RUST_LOG` says.
//! On a cluster a read's figure is its initiator's: the shards' parts of the query are accounted on the
//! shards.

use std::sync::atomic::{AtomicU64, Ordering};

use commerce_analytics::store::READ_COST;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

static PEAK: AtomicU64 = AtomicU64::new(0);

/// Installs the log output and the peak-memory layer (once; a second call changes nothing).
pub fn init() {
    let logs = tracing_subscriber::fmt::layer()
        .compact()
        .with_writer(std::io::stderr)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")));
    let peaks = PeakLayer.with_filter(Targets::new().with_target(READ_COST, tracing::Level::DEBUG));
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(peaks)
        .try_init();
}

/// The highest peak memory of a read since the last call, in bytes (0 when no read reported one), and
/// starts over.
pub fn take() -> u64 {
    PEAK.swap(0, Ordering::Relaxed)
}

/// [`take`] in MiB, for the benches' tables.
pub fn take_mib() -> f64 {
    take() as f64 / (1024.0 * 1024.0)
}

struct PeakLayer;

impl<S: tracing::Subscriber> Layer<S> for PeakLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let mut seen = PeakField(None);
        event.record(&mut seen);
        if let Some(bytes) = seen.0 {
            PEAK.fetch_max(bytes, Ordering::Relaxed);
        }
    }
}

struct PeakField(Option<u64>);

impl Visit for PeakField {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "peak_memory_bytes" {
            self.0 = Some(value);
        }
    }

    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layer_keeps_the_largest_peak_of_read_cost_events_and_take_starts_over() {
        let subscriber = tracing_subscriber::registry().with(
            PeakLayer.with_filter(Targets::new().with_target(READ_COST, tracing::Level::DEBUG)),
        );
        tracing::subscriber::with_default(subscriber, || {
            take();
            tracing::debug!(target: READ_COST, peak_memory_bytes = 5_u64, "read cost");
            tracing::debug!(target: READ_COST, peak_memory_bytes = 9_u64, "read cost");
            tracing::debug!(target: READ_COST, peak_memory_bytes = 7_u64, "read cost");
            tracing::debug!(target: "elsewhere", peak_memory_bytes = 100_u64, "not a read");
            assert_eq!(take(), 9);
            assert_eq!(take(), 0);
        });
    }
}
