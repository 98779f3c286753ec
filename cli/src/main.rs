//! `analytics`: run the module locally and administer it.
//!
//! - `analytics serve`: local API on 127.0.0.1:3000 (same handlers as the Lambda functions);
//! - `analytics migrate`: apply schema migrations and seed the configured keys (also what production runs
//!   on deploy);
//! - `analytics keys create|list|revoke`: manage API keys in the key table (see `commerce_analytics::auth`);
//! - `analytics demo`: load deterministic demo traffic into a store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use analytics_cli::{demo_load, server};
use clap::{Parser, Subcommand};
use commerce_analytics::auth::{KeyStore, Scope, keys};
use commerce_analytics::config::{Config, KeyKind, Provider};
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::Validator;
use commerce_analytics::store::ClickHouseStore;
use commerce_analytics::store::bigquery::{self, BigQueryStore};
use time::OffsetDateTime;

/// mimalloc instead of glibc's allocator: the demo loader builds and drops millions of small strings and
/// JSON values on one thread while the insert encodes them on another, and glibc's `malloc`/`free` (arena
/// locks, consolidation) were about a quarter of the loader's samples in `perf`. Measured: loading 3M
/// demo events took 24.4 s of user CPU instead of 29.0 s (same run, alternating).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Where a memory buffer (`durable_buffer: false`) spills at shutdown.
        #[arg(long, default_value = "var/spill")]
        spill_dir: PathBuf,
        /// The durable buffer's write-ahead log (`durable_buffer: true`, the default).
        #[arg(long, default_value = "var/wal")]
        wal_dir: PathBuf,
    },
    /// Apply pending schema migrations and seed the configured keys into the key table.
    Migrate,
    /// Manage API keys (stored hashed in ClickHouse).
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Exchange rates for `convert=true` (stored in the warehouse's `fx_rates`).
    Rates {
        #[command(subcommand)]
        cmd: RatesCmd,
    },
    /// Alert rules and guards ([`commerce_analytics::alerts`]).
    Alerts {
        #[command(subcommand)]
        cmd: AlertsCmd,
    },
    /// Generate deterministic demo traffic into a store (and the exchange rates it needs).
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

#[derive(Subcommand)]
enum AlertsCmd {
    /// Evaluate every store's due rules and guards now (as the `alerts` function does every 5 minutes)
    /// and print what was done.
    Run,
}

#[derive(Subcommand)]
enum RatesCmd {
    /// Load rates from a file in the ECB's CSV layout (`Date,USD,JPY,…`, as `data/fx/eurofxref-hist.csv`)
    /// or XML (`eurofxref-hist-90d.xml`); a day loaded again replaces its rates.
    Load {
        #[arg(long)]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create a key; prints it once (only its SHA-256 and prefix are stored).
    Create {
        #[arg(long)]
        store: String,
        /// `write` (pk_, publishable, can only track) or `read` (sk_, secret, every endpoint).
        #[arg(long)]
        kind: String,
        /// Write keys: a storefront origin allowed to use the key from a browser (repeatable).
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// What the key may do: track, read, manage (dashboards), erase (customers); repeatable. Default:
        /// the kind's (write: track; read: all four).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A label for listings.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List keys (prefix only, never the key).
    List {
        #[arg(long)]
        store: Option<String>,
    },
    /// Revoke the live key with this prefix (as `keys list` shows it) or key id. Warm processes stop
    /// accepting it within `key_cache_ttl_seconds`.
    Revoke { prefix: String },
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
    match cli.cmd {
        Cmd::Migrate if config.provider == Provider::Bigquery => {
            let Some(bq) = &config.bigquery else {
                return Err("provider bigquery without its settings".into());
            };
            let store = BigQueryStore::new(bq)?;
            let report = store.migrate(config.max_retention_days()).await?;
            let seeded = keys::seed(&store, &config.keys, OffsetDateTime::now_utc()).await?;
            eprintln!(
                "BigQuery dataset {}.{} at schema version {} (applied now: {:?}); {seeded} configured \
                 key(s) seeded",
                bq.project,
                bq.dataset,
                bigquery::migrations::version(&store).await?,
                report.applied
            );
        }
        Cmd::Migrate => {
            let store = ClickHouseStore::new(&config.clickhouse);
            let report = store.migrate(config.max_retention_days()).await?;
            // Every node must now be at the current version; this names any that is not.
            store.verify_schema().await?;
            let seeded = keys::seed(&store, &config.keys, OffsetDateTime::now_utc()).await?;
            eprintln!(
                "schema at version {} on {} (applied now: {:?}); {seeded} configured key(s) seeded",
                report.current_version,
                report.nodes.join(", "),
                report.applied
            );
        }
        Cmd::Rates {
            cmd: RatesCmd::Load { file },
        } => {
            let warehouse = commerce_analytics::store::Warehouse::from_config(&config)?;
            warehouse.migrate(config.max_retention_days()).await?;
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("reading {}: {e}", file.display()))?;
            let rates = if text.trim_start().starts_with('<') {
                commerce_analytics::fx::parse_ecb_xml(&text)
            } else {
                commerce_analytics::fx::parse_ecb_csv(&text)
            }
            .map_err(|e| format!("{}: {e}", file.display()))?;
            let stored = warehouse
                .rates()
                .put_rates(&rates, commerce_analytics::fx::ECB_SOURCE)
                .await?;
            eprintln!(
                "loaded {stored} exchange rates from {} into {}",
                file.display(),
                warehouse.describe(&config)
            );
        }
        Cmd::Alerts {
            cmd: AlertsCmd::Run,
        } => {
            let warehouse = commerce_analytics::store::Warehouse::from_config(&config)?;
            warehouse.migrate(config.max_retention_days()).await?;
            let alerts = warehouse.alerts();
            let reads = warehouse.reads();
            let runner = commerce_analytics::alerts::run::Runner::new(
                reads.as_ref(),
                alerts.as_ref(),
                commerce_analytics::alerts::webhook::Sender::new(config.alerts_allow_loopback),
                &config.public_url,
            );
            let report = runner.run_all(jiff::Timestamp::now()).await?;
            eprintln!(
                "alerts evaluated: {}",
                serde_json::to_string(&report).map_err(|e| e.to_string())?
            );
        }
        Cmd::Keys { cmd } => {
            let store = ClickHouseStore::new(&config.clickhouse);
            store.migrate(config.max_retention_days()).await?;
            manage_keys(&store, cmd).await?;
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
            let summary = load_demo(&ch, &config, &store, events, seed, days).await?;
            eprintln!("loaded demo traffic into store {store:?}: {summary}");
            let rates =
                demo_load::load_rates(&ch, commerce_analytics::fx::utc_day(jiff::Timestamp::now()))
                    .await?;
            eprintln!("loaded {rates} exchange rates (ECB history, carried forward to today)");
        }
        Cmd::Serve {
            addr,
            demo_if_empty,
            demo_store,
            spill_dir,
            wal_dir,
        } => {
            let opts = server::ServerOptions {
                spill_dir,
                wal_dir,
                ..server::ServerOptions::new(addr)
            };
            let srv = server::start(&config, opts).await?;
            if demo_if_empty > 0 && srv.warehouse.count_events(&demo_store).await? == 0 {
                let summary = load_demo(
                    &*srv.warehouse.events(),
                    &config,
                    &demo_store,
                    demo_if_empty,
                    42,
                    90,
                )
                .await?;
                eprintln!("loaded demo traffic into store {demo_store:?}: {summary}");
                let rates = demo_load::load_rates(
                    &*srv.warehouse.rates(),
                    commerce_analytics::fx::utc_day(jiff::Timestamp::now()),
                )
                .await?;
                eprintln!("loaded {rates} exchange rates (ECB history, carried forward to today)");
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
    ch: &dyn commerce_analytics::store::EventStore,
    config: &Config,
    store: &str,
    events: usize,
    seed: u64,
    days: u32,
) -> Result<demo_load::LoadSummary, Box<dyn std::error::Error>> {
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

/// The `keys` subcommands. The created key and listings go to stdout (scriptable); notes to stderr.
async fn manage_keys(
    store: &ClickHouseStore,
    cmd: KeysCmd,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write;
    let mut out = std::io::stdout();
    match cmd {
        KeysCmd::Create {
            store: store_id,
            kind,
            origins,
            scopes,
            name,
        } => {
            let kind = match kind.as_str() {
                "write" => KeyKind::Write,
                "read" => KeyKind::Read,
                other => return Err(format!("--kind {other:?}: expected write or read").into()),
            };
            let scopes = scopes
                .iter()
                .map(|s| {
                    Scope::parse(s).ok_or_else(|| {
                        format!("--scope {s:?}: expected track, read, manage or erase")
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let (secret, row) = keys::create_scoped(
                store,
                &store_id,
                kind,
                scopes,
                origins,
                &name,
                OffsetDateTime::now_utc(),
            )
            .await?;
            eprintln!(
                "created {} key {} for store {:?}; shown once, store it now:",
                row.kind_name(),
                row.prefix,
                row.store_id
            );
            writeln!(out, "{secret}")?;
        }
        KeysCmd::List { store: store_id } => {
            writeln!(
                out,
                "{:<12} {:<13} {:<20} {:<6} {:<24} {:<24} {:<26} ORIGINS / NAME",
                "PREFIX", "KEY ID", "STORE", "KIND", "CREATED", "REVOKED", "SCOPES"
            )?;
            for k in store.list_keys(store_id.as_deref()).await? {
                writeln!(
                    out,
                    "{:<12} {:<13} {:<20} {:<6} {:<24} {:<24} {:<26} {} {}",
                    k.prefix,
                    &k.sha256[..12],
                    k.store_id,
                    k.kind_name(),
                    rfc3339(k.created_at),
                    k.revoked_at.map_or_else(|| "-".to_owned(), rfc3339),
                    k.principal_scopes()
                        .iter()
                        .map(|s| s.name())
                        .collect::<Vec<_>>()
                        .join(","),
                    k.origins.join(","),
                    k.name
                )?;
            }
        }
        KeysCmd::Revoke { prefix } => {
            let row = keys::revoke(store, &prefix, OffsetDateTime::now_utc()).await?;
            eprintln!(
                "revoked {} ({} key of store {:?}); warm functions refuse it within their key cache TTL",
                row.prefix,
                row.kind_name(),
                row.store_id
            );
        }
    }
    Ok(())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
