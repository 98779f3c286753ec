//! The dashboard page in a real browser: starts the local server (the same process `scripts/dev` runs)
//! on a fresh database with demo data, then runs `web/dashboard/tests` (node's test runner driving
//! Debian's Chromium through playwright-core) against it. Screenshots of every dashboard land in
//! `target/dashboard-screenshots/`.
//!
//! It runs twice: on ClickHouse, and on the BigQuery emulator (`provider: bigquery`).
//!
//! Needs `/usr/bin/chromium` (Debian package `chromium`) and `web/dashboard/node_modules` (`npm ci` there;
//! `scripts/test` runs it). Fails, never skips, without them.

use std::process::Command;

use analytics_cli::demo_load;
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::Validator;
use integration_tests::{READ_KEY, TestDb, WRITE_KEY, repo_root};

/// Runs the page's browser tests against the server at `addr`; screenshots into `shots`. Fails the test
/// (with node's report) when they fail.
async fn run_browser_tests(
    addr: std::net::SocketAddr,
    shots: std::path::PathBuf,
) -> (bool, String) {
    let web = repo_root().join("web/dashboard");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does"
    );
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "run `npm ci` in web/dashboard first (scripts/test does)"
    );
    let url = format!("http://{addr}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(["--test", "--test-reporter=spec", "tests/"])
            .current_dir(&web)
            .env("DASHBOARD_URL", url)
            .env("READ_KEY", READ_KEY)
            .env("WRITE_KEY", WRITE_KEY)
            .env("CHROMIUM", chromium)
            .env("SCREENSHOT_DIR", &shots)
            .output()
    })
    .await
    .expect("joined")
    .expect("node runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    (out.status.success(), report)
}

/// The demo data every run of the page loads: 60,000 events over 120 days for `shop-a`, and the exchange
/// rates the reporting currency needs (as `scripts/dev` loads them).
async fn load_demo<S>(store: &S, config: &commerce_analytics::config::Config)
where
    S: commerce_analytics::store::EventStore + commerce_analytics::fx::RateStore,
{
    let now = time::OffsetDateTime::now_utc();
    demo_load::load(
        store,
        &Validator::from_config(config),
        "shop-a",
        DemoConfig {
            seed: 42,
            events: 60_000,
            days: 120,
            end: now - time::Duration::minutes(5),
        },
    )
    .await
    .expect("demo data");
    demo_load::load_rates(
        store,
        commerce_analytics::fx::utc_day(jiff::Timestamp::now()),
    )
    .await
    .expect("exchange rates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_passes_its_browser_tests_against_the_local_server() {
    let db = TestDb::on(
        &integration_tests::clickhouse_url(),
        "page",
        &[
            ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.5"),
            // The alerts test sends a test notification to a receiver on loopback.
            ("ANALYTICS_ALERTS_ALLOW_LOOPBACK", "true"),
        ],
    )
    .await;
    load_demo(&db.store, &db.config).await;
    let srv = integration_tests::local_server(&db).await;
    let shots = integration_tests::target_dir().join("dashboard-screenshots");
    let (passed, report) = run_browser_tests(srv.addr, shots).await;
    integration_tests::stop_local_server(&db, srv).await;
    assert!(passed, "browser tests failed:\n{report}");
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_passes_its_browser_tests_on_bigquery() {
    use commerce_analytics::store::Warehouse;
    let config = integration_tests::bigquery_config(
        "page",
        &[
            ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.5"),
            // The alerts test sends a test notification to a receiver on loopback.
            ("ANALYTICS_ALERTS_ALLOW_LOOPBACK", "true"),
        ],
    );
    let Warehouse::BigQuery(bq) = Warehouse::from_config(&config).expect("warehouse") else {
        panic!("a BigQuery configuration");
    };
    bq.migrate(config.retention_days)
        .await
        .expect("the BigQuery emulator (scripts/bigquery start)");
    load_demo(&bq, &config).await;
    let name = format!("page-bq-{}", ulid::Ulid::new());
    let srv = integration_tests::local_server_with(&config, &name).await;
    let shots = integration_tests::target_dir().join("dashboard-screenshots-bigquery");
    let (passed, report) = run_browser_tests(srv.addr, shots).await;
    integration_tests::stop_local_server_with(&name, srv).await;
    assert!(passed, "browser tests failed on BigQuery:\n{report}");
    bq.drop_dataset().await.expect("drop");
}
