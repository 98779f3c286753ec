//! Cold-start figures of the Lambda functions (a benchmark that prints figures, not a test).
//!
//! `cargo lambda build --release` (or `--arm64` where the aarch64 target is installed), then
//! `cargo run --release -p analytics-cli --bin coldstart -- [--dir target/lambda] [--runs 20]`
//!
//! Each function binary (`<dir>/<function>/bootstrap`) is started `--runs` times under a local Lambda
//! Runtime API (`test_support::runtime_api`, the interface `cargo lambda watch --only-lambda-apis` also
//! serves), with the Lambda environment (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`,
//! `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, `AWS_LAMBDA_FUNCTION_VERSION`) and `config/local.yaml` pointing at
//! the ClickHouse at `CLICKHOUSE_URL`. Two figures per start:
//! - **init**: process start → first `GET /runtime/invocation/next` (config read, clients built: what Lambda
//!   bills and reports as `Init Duration`);
//! - **first response**: process start → the first invocation's response posted (includes the first
//!   ClickHouse round trips; the event is one of `events/`).
//!
//! With `--bigquery-endpoint URL` (an emulator, `scripts/bigquery start`), every case also runs with
//! `provider: bigquery` against it, interleaved with the ClickHouse runs, so the two read side by side.
//!
//! `track` runs twice: as deployed (Firehose sink: the AWS SDK client is built during init, with
//! `FIREHOSE_STREAM_NAME` set and static credentials; only init is meaningful there, no Firehose is called
//! before the first response is measured) and with the direct ClickHouse sink.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use commerce_analytics::config::Config;
use commerce_analytics::store::ClickHouseStore;
use test_support::runtime_api::{self, Reply};

/// Extra environment variables of one case.
type Env = &'static [(&'static str, &'static str)];

/// (label, function, fixture, extra environment)
const CASES: &[(&str, &str, &str, Env)] = &[
    (
        "track (Firehose sink)",
        "track",
        "track-unauthorized.json",
        &[("FIREHOSE_STREAM_NAME", "coldstart-bench")],
    ),
    ("track (direct sink)", "track", "track-event.json", &[]),
    ("ingest", "ingest", "firehose-delivery.json", &[]),
    ("metrics", "metrics", "metrics-revenue.json", &[]),
    ("funnel", "funnel", "funnel-checkout.json", &[]),
    ("erasure", "erasure", "erasure-customer.json", &[]),
    ("retention", "retention", "retention-dry-run.json", &[]),
];

#[derive(Debug, clap::Parser)]
#[command(about = "Cold-start figures of the Lambda function binaries")]
struct Args {
    /// Where `cargo lambda build` put the functions (`<dir>/<function>/bootstrap`); default
    /// `$CARGO_TARGET_DIR/lambda` or `target/lambda`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Starts per function.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// ClickHouse the functions talk to.
    #[arg(long, env = "CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    /// Also run every case with `provider: bigquery` against this BigQuery emulator.
    #[arg(long)]
    bigquery_endpoint: Option<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Args = clap::Parser::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("repo root")?
        .to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = args.dir.unwrap_or_else(|| target.join("lambda"));
    let runs = args.runs;
    let url = args.clickhouse_url;
    let database = "coldstart_bench";

    let config = Config::from_sources(None, &|k: &str| match k {
        "CLICKHOUSE_URL" => Some(url.clone()),
        "CLICKHOUSE_DATABASE" => Some(database.to_owned()),
        _ => None,
    })?;
    let store = ClickHouseStore::new(&config.clickhouse);
    store.migrate(365).await?;
    // The functions authenticate against the key table; seed the development keys they are configured with.
    let local = Config::from_file(&root.join("config/local.yaml"))?;
    commerce_analytics::auth::keys::seed(&store, &local.keys, time::OffsetDateTime::now_utc())
        .await?;

    let mut providers: Vec<(&str, Vec<(String, String)>)> = vec![("clickhouse", Vec::new())];
    if let Some(endpoint) = &args.bigquery_endpoint {
        let bq_env: Vec<(String, String)> = vec![
            ("ANALYTICS_PROVIDER".into(), "bigquery".into()),
            ("BIGQUERY_ENDPOINT".into(), endpoint.clone()),
            ("BIGQUERY_PROJECT".into(), "local-project".into()),
            ("BIGQUERY_DATASET".into(), database.into()),
        ];
        let bq_config = Config::from_sources(None, &|k: &str| {
            bq_env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })?;
        let bq = commerce_analytics::store::bigquery::BigQueryStore::new(
            bq_config.bigquery.as_ref().ok_or("bigquery settings")?,
        )?;
        bq.migrate(365).await?;
        commerce_analytics::auth::keys::seed(&bq, &local.keys, time::OffsetDateTime::now_utc())
            .await?;
        providers.push(("bigquery", bq_env));
    }

    let base_env: Vec<(String, String)> = vec![
        (
            "ANALYTICS_CONFIG".into(),
            root.join("config/local.yaml").to_string_lossy().into(),
        ),
        ("CLICKHOUSE_URL".into(), url.clone()),
        ("CLICKHOUSE_DATABASE".into(), database.into()),
        ("RUST_LOG".into(), "warn".into()),
        ("AWS_ACCESS_KEY_ID".into(), "bench".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "bench".into()),
    ];
    println!(
        "cold starts: {runs} process starts per function, binaries from {}",
        dir.display()
    );
    println!(
        "{:<26} {:<10} {:>9} {:>9} {:>9} {:>16} {:>10}",
        "function", "provider", "init p50", "init p90", "init max", "1st resp p50 ms", "binary"
    );
    for ((label, function, fixture, extra), (provider, provider_env)) in CASES
        .iter()
        .flat_map(|case| providers.iter().map(move |p| (case, p)))
    {
        let binary = dir.join(function).join("bootstrap");
        let size = std::fs::metadata(&binary)
            .map_err(|e| {
                format!(
                    "{}: {e} (run `cargo lambda build --release` first)",
                    binary.display()
                )
            })?
            .len();
        let event = std::fs::read(root.join("events").join(fixture))?;
        let mut env = base_env.clone();
        env.extend(provider_env.iter().cloned());
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let (mut inits, mut firsts) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let run = runtime_api::invoke(
                &binary,
                function,
                &env,
                vec![event.clone()],
                Duration::from_secs(30),
            )
            .await?;
            if let Some(Reply::Error(e)) = run.replies.first() {
                return Err(format!("{label}: {e}").into());
            }
            inits.push(run.init);
            firsts.push(run.first_response);
        }
        inits.sort();
        firsts.sort();
        println!(
            "{:<26} {:<10} {:>9} {:>9} {:>9} {:>16} {:>8.1}MB",
            label,
            provider,
            ms(percentile(&inits, 0.5)),
            ms(percentile(&inits, 0.9)),
            ms(percentile(&inits, 1.0)),
            ms(percentile(&firsts, 0.5)),
            size as f64 / 1e6,
        );
    }
    Ok(())
}
