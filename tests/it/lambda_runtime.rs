//! Every fixture in `events/` through its function's real binary, under a Lambda Runtime API
//! (`test_support::runtime_api`), against the real ClickHouse: what `cargo lambda invoke --data-file` and
//! `sam local invoke -e` do, without Docker. One process per function; its first event is a cold start,
//! the rest warm invocations.
//!
//! The function binaries must be built first (`cargo build --bins --workspace`; `scripts/test` does it).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use integration_tests::{TestDb, repo_root};
use serde_json::Value;
use test_support::runtime_api::{self, Reply};

/// What each fixture must produce: the HTTP status for API events, the report's `dryRun` for retention.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Status(u16),
    Retention {
        dry_run: bool,
    },
    /// The rates function stored this many rates (from the XML served by [`serve_rates`]).
    Rates(usize),
    /// The alerts function evaluated the stores with recent events (the guards, at least).
    Alerts,
}

/// (fixture, function, expectation). Every file in `events/` must be listed.
const FIXTURES: &[(&str, &str, Expect)] = &[
    ("track-event.json", "track", Expect::Status(202)),
    ("track-event-base64.json", "track", Expect::Status(202)),
    ("track-order.json", "track", Expect::Status(202)),
    ("track-batch.json", "track", Expect::Status(202)),
    ("track-invalid.json", "track", Expect::Status(400)),
    ("track-malformed-json.json", "track", Expect::Status(400)),
    ("track-unauthorized.json", "track", Expect::Status(401)),
    ("firehose-delivery.json", "ingest", Expect::Status(200)),
    ("firehose-delivery-gzip.json", "ingest", Expect::Status(200)),
    (
        "firehose-delivery-with-rejects.json",
        "ingest",
        Expect::Status(200),
    ),
    (
        "firehose-delivery-malformed.json",
        "ingest",
        Expect::Status(400),
    ),
    (
        "firehose-delivery-no-key.json",
        "ingest",
        Expect::Status(401),
    ),
    (
        "firehose-delivery-wrong-key.json",
        "ingest",
        Expect::Status(403),
    ),
    ("metrics-revenue.json", "metrics", Expect::Status(200)),
    ("metrics-best-sellers.json", "metrics", Expect::Status(200)),
    ("metrics-cohorts.json", "metrics", Expect::Status(200)),
    (
        "metrics-dashboard-overview.json",
        "metrics",
        Expect::Status(200),
    ),
    ("funnel-checkout.json", "funnel", Expect::Status(200)),
    ("erasure-customer.json", "erasure", Expect::Status(200)),
    (
        "retention-dry-run.json",
        "retention",
        Expect::Retention { dry_run: true },
    ),
    (
        "retention-schedule.json",
        "retention",
        Expect::Retention { dry_run: false },
    ),
    ("rates-schedule.json", "rates", Expect::Rates(3)),
    ("alerts-schedule.json", "alerts", Expect::Alerts),
];

/// The ECB's XML layout with three rates over two days, as the rates function reads it.
const RATES_XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
<Cube><Cube time="2026-11-27"><Cube currency="USD" rate="1.1172"/><Cube currency="JPY" rate="175.68"/></Cube>
<Cube time="2026-11-26"><Cube currency="USD" rate="1.1101"/></Cube></Cube></gesmes:Envelope>"#;

/// Answers every request on a loopback port with [`RATES_XML`] (the ECB's endpoint, for the function);
/// its URL.
fn serve_rates() -> String {
    serve("200 OK", RATES_XML)
}

/// Answers every request on a loopback port with `status` and `body`; its URL.
fn serve(status: &'static str, body: &'static str) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/eurofxref-hist-90d.xml",
        listener.local_addr().expect("addr")
    );
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut request = [0_u8; 4096];
            let _ = conn.read(&mut request);
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// The debug binary of a function, refusing a missing or stale one.
fn binary(function: &str) -> PathBuf {
    integration_tests::debug_binary(function, &[format!("functions/{function}").as_str()])
}

#[tokio::test]
async fn every_event_fixture_runs_through_its_function_binary() {
    let events_dir = repo_root().join("events");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&events_dir)
        .expect("events/")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let listed: BTreeSet<String> = FIXTURES.iter().map(|(f, _, _)| (*f).to_owned()).collect();
    assert_eq!(
        on_disk, listed,
        "every events/ fixture has an expectation here"
    );

    let db = TestDb::new("runtime").await;
    // The functions authenticate against the key table: seed the development keys their config names
    // (`analytics migrate` does this on a real deployment).
    let local =
        commerce_analytics::config::Config::from_file(&repo_root().join("config/local.yaml"))
            .expect("local config");
    commerce_analytics::auth::keys::seed(&db.store, &local.keys, time::OffsetDateTime::now_utc())
        .await
        .expect("seeded");
    // A page view of the demo store in the last hour, so the alerts function (which runs first) has a
    // store with recent events to guard.
    let seen = commerce_analytics::event::Validator::from_config(&local)
        .validate(
            serde_json::json!({"type": "page.viewed", "sessionId": "s_runtime"}),
            "demo",
            &Default::default(),
            time::OffsetDateTime::now_utc(),
        )
        .expect("valid");
    commerce_analytics::store::EventStore::insert(&db.store, &[seen], "runtime")
        .await
        .expect("stored");
    let env: Vec<(String, String)> = vec![
        (
            "ANALYTICS_CONFIG".into(),
            repo_root()
                .join("config/local.yaml")
                .to_string_lossy()
                .into(),
        ),
        ("CLICKHOUSE_URL".into(), integration_tests::clickhouse_url()),
        ("CLICKHOUSE_DATABASE".into(), db.name.clone()),
        ("RUST_LOG".into(), "warn".into()),
        ("ANALYTICS_RATES_URL".into(), serve_rates()),
    ];
    let functions: BTreeSet<&str> = FIXTURES.iter().map(|(_, f, _)| *f).collect();
    for function in functions {
        let cases: Vec<&(&str, &str, Expect)> =
            FIXTURES.iter().filter(|(_, f, _)| *f == function).collect();
        let events = cases
            .iter()
            .map(|(file, _, _)| std::fs::read(events_dir.join(file)).expect("fixture"))
            .collect();
        let run = runtime_api::invoke(
            &binary(function),
            function,
            &env,
            events,
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(run.init > Duration::ZERO && run.init <= run.first_response);
        for ((file, _, expect), reply) in cases.iter().zip(&run.replies) {
            let Reply::Response(body) = reply else {
                panic!("{file}: {function} answered an error: {reply:?}");
            };
            match expect {
                Expect::Status(status) => {
                    assert_eq!(body["statusCode"], *status, "{file}: {body}");
                    let inner: Value = serde_json::from_str(body["body"].as_str().unwrap_or(""))
                        .unwrap_or_else(|e| panic!("{file}: body is JSON: {e}: {body}"));
                    if *status >= 400 && function != "ingest" {
                        assert!(inner["error"]["code"].is_string(), "{file}: {inner}");
                    }
                }
                Expect::Rates(n) => {
                    assert_eq!(body["rates"], *n, "{file}: {body}");
                    assert_eq!(body["lastDay"], "2026-11-27", "{file}: {body}");
                }
                Expect::Alerts => {
                    assert_eq!(body["errors"], 0, "{file}: {body}");
                    assert!(body["stores"].as_u64() >= Some(1), "{file}: {body}");
                    assert!(body["evaluated"].as_u64() >= Some(3), "{file}: {body}");
                }
                Expect::Retention { dry_run } => {
                    assert_eq!(body["dryRun"], *dry_run, "{file}: {body}");
                    assert_eq!(body["retentionDays"], 365, "{file}: {body}");
                    // Every table with per-event rows or per-hour/day aggregates, cut alike.
                    let tables: Vec<&str> = body["tables"]
                        .as_array()
                        .map(|t| t.iter().filter_map(|t| t["table"].as_str()).collect())
                        .unwrap_or_default();
                    assert_eq!(
                        tables,
                        [
                            "commerce_events",
                            "commerce_events_rejects",
                            "commerce_visitors",
                            "commerce_hourly_counts",
                            "commerce_sessions",
                            "commerce_customers",
                            "commerce_product_names",
                            "commerce_stock"
                        ],
                        "{body}"
                    );
                }
            }
        }
    }
    // The track and ingest fixtures really stored their events.
    let stored: u64 = db
        .scalar(&format!(
            "SELECT count() FROM {}.commerce_events WHERE store_id = 'demo'",
            db.name
        ))
        .await;
    assert!(stored > 0, "track and ingest fixtures store events");
    // The rates function stored its rates where conversions read them.
    let rates: u64 = db
        .scalar(&format!(
            "SELECT count() FROM {}.fx_rates WHERE day = '2026-11-27' AND currency IN ('USD', 'JPY')",
            db.name
        ))
        .await;
    assert_eq!(rates, 2, "the rates function stores the rates it read");
    db.drop_database().await;
}

#[tokio::test]
async fn a_rates_load_refuses_plain_http_off_loopback_and_bad_answers_storing_nothing() {
    let db = TestDb::new("rates").await;
    let http = reqwest::Client::new();
    for (url, why) in [
        (
            "http://www.ecb.europa.eu/rates.xml".to_owned(),
            "only https",
        ),
        (serve("500 Internal Server Error", "oops"), "HTTP 500"),
        (serve("200 OK", "<html>maintenance</html>"), "no rates"),
        (serve("200 OK", "not xml at all"), "not XML"),
    ] {
        let err = commerce_analytics::fx::refresh(&http, &url, &db.store)
            .await
            .expect_err(&url);
        assert!(err.to_string().contains(why), "{url}: {err}");
    }
    let stored: u64 = db
        .scalar(&format!("SELECT count() FROM {}.fx_rates", db.name))
        .await;
    assert_eq!(stored, 0, "nothing stored from a bad answer");
    let report = commerce_analytics::fx::refresh(&http, &serve_rates(), &db.store)
        .await
        .expect("stored");
    assert_eq!(
        (report.rates, report.first_day.as_deref()),
        (3, Some("2026-11-26"))
    );
    db.drop_database().await;
}
