//! The storefront SDK (`sdk/js`): its unit tests (vitest, type contract) and its browser test (the built
//! bundle in Debian's Chromium on a storefront origin, against the local server; events read back from
//! ClickHouse). Needs `sdk/js/node_modules` (`npm ci`; `scripts/test` runs it) and `/usr/bin/chromium`.

use std::process::{Command, Output};

use integration_tests::{TestDb, WRITE_KEY, repo_root};

fn npm(args: &[&str], env: &[(&str, String)]) -> Output {
    let sdk = repo_root().join("sdk/js");
    assert!(
        sdk.join("node_modules/vitest").exists(),
        "run `npm ci` in sdk/js first (scripts/test does)"
    );
    Command::new("npm")
        .args(args)
        .current_dir(sdk)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("npm runs")
}

fn assert_ok(what: &str, out: &Output) {
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{report}");
    assert!(out.status.success(), "{what} failed:\n{report}");
}

#[test]
fn the_sdk_unit_tests_and_type_contract_pass() {
    assert_ok("npm test (vitest + tsc)", &npm(&["test"], &[]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_sdk_tracks_from_a_storefront_page_into_clickhouse() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does"
    );
    let build = tokio::task::spawn_blocking(|| npm(&["run", "build"], &[]))
        .await
        .expect("joined");
    assert_ok("npm run build", &build);

    let db = TestDb::on(
        &integration_tests::clickhouse_url(),
        "sdk",
        &[("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.2")],
    )
    .await;
    let srv = integration_tests::local_server(&db).await;
    let env = vec![
        ("API_URL", format!("http://{}", srv.addr)),
        ("WRITE_KEY", WRITE_KEY.to_owned()),
        ("CLICKHOUSE_URL", db.config.clickhouse.url.clone()),
        ("CLICKHOUSE_DATABASE", db.name.clone()),
        ("CHROMIUM", chromium),
    ];
    let out = tokio::task::spawn_blocking(move || npm(&["run", "e2e"], &env))
        .await
        .expect("joined");
    integration_tests::stop_local_server(&db, srv).await;
    assert_ok("the SDK browser test", &out);
    db.drop_database().await;
}
