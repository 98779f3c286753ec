//! Contract fuzzing: schemathesis (PyPI, in the project venv) generates requests for every operation of
//! `shared/openapi.yaml` and sends them to the local server on a real ClickHouse with demo data. Checks:
//! no 5xx, every status code, content type and body as documented. Bounded: 25 examples per operation
//! and phase, fixed seed.

use std::process::Command;

use analytics_cli::demo_load;
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::Validator;
use integration_tests::{READ_KEY, TestDb, WRITE_KEY, repo_root};

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";

fn schemathesis() -> std::path::PathBuf {
    let out = Command::new(repo_root().join("scripts/pyenv"))
        .output()
        .expect("scripts/pyenv runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    std::path::Path::new(&python).with_file_name("schemathesis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_the_openapi_document_says() {
    let st = tokio::task::spawn_blocking(schemathesis)
        .await
        .expect("joined");
    assert!(
        st.exists(),
        "{} is missing (scripts/requirements.txt)",
        st.display()
    );
    let db = TestDb::new("contract").await;
    demo_load::load(
        &db.store,
        &Validator::from_config(&db.config),
        "shop-a",
        DemoConfig {
            seed: 5,
            events: 5_000,
            days: 60,
            end: time::OffsetDateTime::now_utc() - time::Duration::minutes(5),
        },
    )
    .await
    .expect("demo data");
    let srv = integration_tests::local_server(&db).await;
    let schema = format!("http://{}/analytics/openapi.json", srv.addr);

    // Every documented operation is routed: without a key it answers a documented status (401, or 200 when
    // public), never the router's 404 / 405.
    let doc: serde_json::Value = reqwest::get(&schema)
        .await
        .expect("document")
        .json()
        .await
        .expect("JSON");
    let http = reqwest::Client::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in ["get", "post", "put", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let url = format!(
                "http://{}{}",
                srv.addr,
                path.replace("{id}", "overview")
                    .replace("{customerId}", "c1")
            );
            let resp = http
                .request(method.to_uppercase().parse().expect("method"), &url)
                .body("{}")
                .send()
                .await
                .expect("answered");
            let status = resp.status().as_u16();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let documented = item[method]["responses"].get(status.to_string()).is_some();
            assert!(
                documented && status != 404 && status != 405,
                "{method} {path}: {status} {body}"
            );
        }
    }
    assert_eq!(operations, 22, "documented operations");
    let runs = [
        ("track", WRITE_KEY, "^/analytics/events?$"),
        (
            "reads",
            READ_KEY,
            "^/analytics/(metrics|funnel|cohorts|live|dashboards)",
        ),
        (
            "the rest",
            READ_KEY,
            "^/(analytics/(customers|ingest|openapi|alerts)|health)",
        ),
    ];
    let mut failures = Vec::new();
    for (name, key, paths) in runs {
        let (st, schema) = (st.clone(), schema.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new(st)
                .args([
                    "run",
                    &schema,
                    "--checks",
                    CHECKS,
                    "--max-examples",
                    "25",
                    "--seed",
                    "7",
                ])
                .args([
                    "--phases",
                    "examples,coverage,fuzzing",
                    "--include-path-regex",
                    paths,
                ])
                .args(["--header", &format!("Authorization: Bearer {key}")])
                .args([
                    "--header",
                    "X-Amz-Firehose-Access-Key: contract-test-access-key",
                ])
                .env("NO_COLOR", "1")
                // Its crash cache (`.schemathesis/`) goes under the build's scratch directory, not into
                // the working tree where every run rewrote a committed file.
                .current_dir(env!("CARGO_TARGET_TMPDIR"))
                .output()
        })
        .await
        .expect("joined")
        .expect("schemathesis runs");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("== schemathesis: {name}\n{report}");
        if !out.status.success() {
            failures.push(name);
        }
    }
    integration_tests::stop_local_server(&db, srv).await;
    assert!(
        failures.is_empty(),
        "schemathesis found failures in: {failures:?} (report above)"
    );
    db.drop_database().await;
}
