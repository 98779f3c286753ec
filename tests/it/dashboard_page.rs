//! The dashboard page in a real browser: starts the local server (the same process `scripts/dev` runs)
//! on a fresh database with demo data, then runs `web/dashboard/tests` (node's test runner driving
//! Debian's Chromium through playwright-core) against it. Screenshots of every dashboard land in
//! `target/dashboard-screenshots/`.
//!
//! Needs `/usr/bin/chromium` (Debian package `chromium`) and `web/dashboard/node_modules` (`npm ci` there;
//! `scripts/test` runs it). Fails, never skips, without them.

use std::process::Command;

use analytics_cli::demo_load;
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::Validator;
use integration_tests::{READ_KEY, TestDb, WRITE_KEY, repo_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_page_passes_its_browser_tests_against_the_local_server() {
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

    let db = TestDb::on(
        &integration_tests::clickhouse_url(),
        "page",
        &[("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.5")],
    )
    .await;
    let now = time::OffsetDateTime::now_utc();
    demo_load::load(
        &db.store,
        &Validator::from_config(&db.config),
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
    let srv = integration_tests::local_server(&db).await;

    let shots = integration_tests::target_dir().join("dashboard-screenshots");
    let url = format!("http://{}", srv.addr);
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
    integration_tests::stop_local_server(&db, srv).await;
    assert!(out.status.success(), "browser tests failed:\n{report}");
    db.drop_database().await;
}
