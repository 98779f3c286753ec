//! `analytics`: run the module locally and administer it.
//!
//! - `analytics serve`: local API on 127.0.0.1:3000 (same handlers as the Lambda functions);
//! - `analytics migrate`: apply schema migrations (also what production runs on deploy);
//! - `analytics demo`: load deterministic demo traffic into a store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use analytics_cli::{demo_load, server};
use clap::{Parser, Subcommand};
use commerce_analytics::config::Config;
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::Validator;
use commerce_analytics::store::ClickHouseStore;

#[derive(Parser)]
#[command(
    name = "analytics",
    about = "Commerce analytics: local server and admin commands"
)]
struct Cli {
    /// YAML config file (the spec's `analytics:` block).
    #[arg(
        long,
        env = "ANALYTICS_CONFIG",
        default_value = "config/local.yaml",
        global = true
    )]
    config: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the API locally.
    Serve {
        #[arg(long, default_value = "127.0.0.1:3000")]
        addr: SocketAddr,
        /// Load this many demo events into the store named by --demo-store when it has none.
        #[arg(long, default_value_t = 0)]
        demo_if_empty: usize,
        #[arg(long, default_value = "demo")]
        demo_store: String,
        #[arg(long, default_value = "var/spill")]
        spill_dir: PathBuf,
    },
    /// Apply pending schema migrations.
    Migrate,
    /// Generate deterministic demo traffic into a store.
    Demo {
        #[arg(long, default_value = "demo")]
        store: String,
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 90)]
        days: u32,
        /// Delete the store's existing events first.
        #[arg(long)]
        replace: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    commerce_analytics::telemetry::init(false);
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_file(&cli.config)?;
    config.ensure_supported()?;
    match cli.cmd {
        Cmd::Migrate => {
            let report = ClickHouseStore::new(&config.clickhouse)
                .migrate(config.max_retention_days())
                .await?;
            eprintln!(
                "schema at version {} (applied now: {:?})",
                report.current_version, report.applied
            );
        }
        Cmd::Demo {
            store,
            events,
            seed,
            days,
            replace,
        } => {
            let ch = ClickHouseStore::new(&config.clickhouse);
            ch.migrate(config.max_retention_days()).await?;
            if replace {
                ch.delete_store(&store).await?;
            } else if ch.count_rows(&store).await? > 0 {
                return Err(format!(
                    "store {store:?} already has events; pass --replace to regenerate"
                )
                .into());
            }
            let started = std::time::Instant::now();
            let n = load_demo(&ch, &config, &store, events, seed, days).await?;
            eprintln!(
                "loaded {n} demo events into store {store:?} in {:.1?}",
                started.elapsed()
            );
        }
        Cmd::Serve {
            addr,
            demo_if_empty,
            demo_store,
            spill_dir,
        } => {
            let opts = server::ServerOptions {
                addr,
                spill_dir,
                shutdown_grace: Duration::from_secs(15),
            };
            let srv = server::start(&config, opts).await?;
            if demo_if_empty > 0 && srv.store.count_rows(&demo_store).await? == 0 {
                let started = std::time::Instant::now();
                let n = load_demo(&srv.store, &config, &demo_store, demo_if_empty, 42, 90).await?;
                eprintln!(
                    "loaded {n} demo events into store {demo_store:?} in {:.1?}",
                    started.elapsed()
                );
            }
            eprintln!(
                "commerce analytics listening on http://{} (Ctrl-C to stop)",
                srv.addr
            );
            shutdown_signal().await;
            eprintln!("shutting down: flushing buffered events");
            let report = srv.stop().await;
            if report.spilled > 0 {
                eprintln!(
                    "{} events spilled to {:?}",
                    report.spilled, report.spill_file
                );
            }
        }
    }
    Ok(())
}

async fn load_demo(
    ch: &ClickHouseStore,
    config: &Config,
    store: &str,
    events: usize,
    seed: u64,
    days: u32,
) -> Result<usize, Box<dyn std::error::Error>> {
    let cfg = DemoConfig {
        seed,
        events,
        days,
        end: time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
    };
    Ok(demo_load::load(ch, &Validator::from_config(config), store, cfg).await?)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
