//! Benchmarks that print figures (not tests); each is described in its file under `cli/src/bench/`.
//!
//! `cargo run --release -p analytics-cli --bin bench -- track [--events 1000000]`
//! `cargo run --release -p analytics-cli --bin bench -- firehose`
//! `cargo run --release -p analytics-cli --bin bench -- queries [--events 10000000] [--period 30d|12m] [--calls 9]`
//! `cargo run --release -p analytics-cli --bin bench -- neighbour [--events 1000000 --calls 50]`
//! `cargo run --release -p analytics-cli --bin bench -- cluster --nodes URL,URL [--events N --stored N]`

use analytics_cli::bench::{self, BenchResult};
use clap::{Parser, Subcommand};

/// The allocator of `analytics` (see its `main.rs`), so the bench's demo loads and local server cost what
/// the shipped command's do.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "Benchmarks of the commerce analytics module (figures on stdout)")]
struct Args {
    /// ClickHouse to run against.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The track API end to end against one bare JSONEachRow insert per batch.
    Track {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
    /// The Firehose ingest path against one bare insert per delivery.
    Firehose,
    /// One server against a 2-shard cluster: tracking, reads and storage (`scripts/clickhouse start
    /// --shards 2` for the cluster).
    Cluster {
        /// Every node's HTTP URL.
        #[arg(long, env = "CLICKHOUSE_NODES", value_delimiter = ',')]
        nodes: Vec<String>,
        /// Events tracked through the API on each side.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Events loaded on each side for the reads.
        #[arg(long, default_value_t = 1_000_000)]
        stored: usize,
    },
    /// One store's read latency alone and while another store renders a 20-widget dashboard on 4
    /// connections.
    Neighbour {
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 50)]
        calls: usize,
    },
    /// Read latency through the local API over a demo store (loaded once, kept).
    Queries {
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
        /// The period of every read: `30d` (funnel over 7 days) or `12m` (funnel over 90 days).
        #[arg(long, default_value = "30d", value_parser = ["30d", "12m"])]
        period: String,
        /// Calls per figure (its p50), after a warm-up; fewer for a large store's 12-month reads.
        #[arg(long, default_value_t = 9)]
        calls: usize,
    },
}

#[tokio::main]
async fn main() -> BenchResult {
    bench::peak::init();
    let args = Args::parse();
    let url = &args.clickhouse_url;
    match args.bench {
        Bench::Track { events } => bench::track::run(url, events).await,
        Bench::Firehose => bench::firehose::run(url).await,
        Bench::Queries {
            events,
            period,
            calls,
        } => bench::queries::run(url, events, &period, calls).await,
        Bench::Neighbour { events, calls } => bench::neighbour::run(url, events, calls).await,
        Bench::Cluster {
            nodes,
            events,
            stored,
        } => bench::cluster::run(url, &nodes, events, stored).await,
    }
}
