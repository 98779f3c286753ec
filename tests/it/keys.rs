//! API keys on the real ClickHouse: the admin command creates, lists and revokes them; only digests are
//! stored; the development keys are seeded and stay revoked once revoked; a revocation reaches a warm
//! process within the key cache TTL and a cold one at once.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use commerce_analytics::api::Api;
use commerce_analytics::auth::{Authenticator, KeyStore, StoredKey, digest_hex, keys};
use commerce_analytics::clock::{Clock, FixedClock};
use commerce_analytics::config::KeyKind;
use integration_tests::{READ_KEY, TestDb, call, call_with, debug_binary, repo_root};
use serde_json::json;
use time::OffsetDateTime;

/// Runs `analytics <args>` against the test database; returns stdout, failing the test on a non-zero exit.
fn analytics(db: &TestDb, args: &[&str]) -> String {
    let out = Command::new(debug_binary("analytics", &["cli/src"]))
        .arg("--config")
        .arg(repo_root().join("config/local.yaml"))
        .args(args)
        .env("CLICKHOUSE_URL", &db.config.clickhouse.url)
        .env("CLICKHOUSE_DATABASE", &db.name)
        .env("RUST_LOG", "warn")
        .output()
        .expect("analytics runs");
    assert!(
        out.status.success(),
        "analytics {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// An API over the test database whose key cache lives on `clock`.
fn api(db: &TestDb, clock: Arc<dyn Clock>) -> Api {
    let tracker = commerce_analytics::tracker::Tracker::new(
        commerce_analytics::event::Validator::from_config(&db.config),
        Arc::new(commerce_analytics::sink::DiscardSink),
        clock.clone(),
    );
    let keys = Authenticator::new(
        Arc::new(db.store.clone()),
        Duration::from_secs(60),
        clock.clone(),
    );
    Api::new(Arc::new(tracker), keys, db.config.limits)
        .with_queries(Arc::new(db.store.clone()), clock)
}

#[tokio::test]
async fn the_admin_command_creates_lists_and_revokes_keys_stored_only_as_digests() {
    let db = TestDb::new("keys").await;
    let secret = analytics(
        &db,
        &[
            "keys",
            "create",
            "--store",
            "shop-b",
            "--kind",
            "read",
            "--name",
            "bi export",
        ],
    )
    .trim()
    .to_owned();
    assert!(secret.starts_with("sk_") && secret.len() == 35, "{secret}");

    // Nothing in the table holds the key; its digest and prefix are there.
    let columns: Vec<String> = db
        .store
        .client()
        .query(
            "SELECT concat(sha256, '|', prefix, '|', store_id, '|', kind, '|', name, '|', \
             arrayStringConcat(origins, ',')) FROM api_keys",
        )
        .fetch_all()
        .await
        .expect("rows");
    assert!(columns.iter().all(|c| !c.contains(&secret)), "{columns:?}");
    assert!(
        columns.iter().any(|c| c.starts_with(&digest_hex(&secret))),
        "{columns:?}"
    );

    let listing = analytics(&db, &["keys", "list", "--store", "shop-b"]);
    assert!(listing.contains(&secret[..11]), "{listing}");
    assert!(!listing.contains(&secret), "listing shows the prefix only");
    assert!(
        listing.contains("bi export") && !listing.contains("shop-a"),
        "{listing}"
    );

    // The key reads its own store's data.
    let clock = Arc::new(FixedClock::new(OffsetDateTime::now_utc()));
    let warm = api(&db, clock.clone());
    let (status, body) = call(
        &warm,
        "GET",
        "/analytics/metrics?metric=revenue",
        &secret,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    analytics(&db, &["keys", "revoke", &secret[..11]]);

    // A warm process trusts its cache until the TTL passes, then refuses the key; a cold one refuses at once.
    let (status, _) = call(
        &warm,
        "GET",
        "/analytics/metrics?metric=revenue",
        &secret,
        None,
    )
    .await;
    assert_eq!(status, 200, "inside the documented 60 s bound");
    clock.advance(time::Duration::seconds(60));
    let (status, body) = call(
        &warm,
        "GET",
        "/analytics/metrics?metric=revenue",
        &secret,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    let cold = api(&db, Arc::new(FixedClock::new(OffsetDateTime::now_utc())));
    let (status, _) = call(
        &cold,
        "GET",
        "/analytics/metrics?metric=revenue",
        &secret,
        None,
    )
    .await;
    assert_eq!(status, 401);

    let listing = analytics(&db, &["keys", "list"]);
    let line = listing
        .lines()
        .find(|l| l.starts_with(&secret[..11]))
        .expect("still listed");
    assert!(!line.contains(" - "), "shows when it was revoked: {line}");
    db.drop_database().await;
}

#[tokio::test]
async fn write_keys_from_the_command_track_only_from_their_origins_and_cannot_read() {
    let db = TestDb::new("keys_origin").await;
    let secret = analytics(
        &db,
        &[
            "keys",
            "create",
            "--store",
            "shop-b",
            "--kind",
            "write",
            "--origin",
            "https://shop-b.example",
        ],
    )
    .trim()
    .to_owned();
    assert!(secret.starts_with("pk_"), "{secret}");
    let api = api(&db, Arc::new(FixedClock::new(OffsetDateTime::now_utc())));
    let event = json!({"type": "product.viewed", "sessionId": "s1", "properties": {"productId": "p1", "price": 100, "currency": "EUR"}});
    for (origin, expected) in [
        (Some("https://shop-b.example"), 202),
        (Some("https://evil.example"), 403),
        (None, 202),
    ] {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        let (status, body) = call_with(
            &api,
            "POST",
            "/analytics/event",
            &secret,
            &headers,
            Some(event.clone()),
        )
        .await;
        assert_eq!(status, expected, "{origin:?}: {body}");
    }
    let (status, body) = call(
        &api,
        "GET",
        "/analytics/metrics?metric=revenue",
        &secret,
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = call(
        &api,
        "GET",
        "/analytics/metrics?metric=revenue",
        "sk_made_up_key",
        None,
    )
    .await;
    assert_eq!(status, 401);
    db.drop_database().await;
}

#[tokio::test]
async fn migrate_seeds_the_development_keys_and_a_revoked_one_stays_revoked() {
    let db = TestDb::new("keys_seed").await;
    let local =
        commerce_analytics::config::Config::from_file(&repo_root().join("config/local.yaml"))
            .expect("local config");
    analytics(&db, &["migrate"]);
    let dev = &local.keys[0];
    let sha = digest_hex(dev.key.expose());
    let found = db
        .store
        .find_key(&sha)
        .await
        .expect("lookup")
        .expect("seeded");
    assert_eq!((found.store_id.as_str(), found.kind), ("demo", dev.kind));

    analytics(&db, &["keys", "revoke", &sha[..12]]);
    analytics(&db, &["migrate"]);
    // Even a seeding insert racing the revocation (a live row written after it) loses to the revoked row,
    // before and after the table merges.
    db.store
        .put_keys(&[StoredKey::from_secret(
            dev.key.expose(),
            "demo",
            dev.kind,
            vec![],
            "late seed",
            OffsetDateTime::now_utc(),
        )])
        .await
        .expect("late insert");
    for merged in [false, true] {
        if merged {
            db.store.optimize_final("api_keys").await.expect("optimize");
        }
        let row = db
            .store
            .find_key(&sha)
            .await
            .expect("lookup")
            .expect("kept");
        assert!(row.revoked_at.is_some(), "merged={merged}: {row:?}");
        let listed = db.store.list_keys(Some("demo")).await.expect("list");
        let row = listed.iter().find(|k| k.sha256 == sha).expect("listed");
        assert!(row.revoked_at.is_some(), "merged={merged}: {row:?}");
    }
    // The other development key is untouched.
    let other = db
        .store
        .find_key(&digest_hex(local.keys[1].key.expose()))
        .await
        .expect("lookup")
        .expect("seeded");
    assert!(other.principal().is_some_and(|p| p.kind == KeyKind::Read));
    // And creating a key for an invalid store is refused with the field at fault.
    let err = keys::create(
        &db.store,
        "Bad Store",
        KeyKind::Read,
        vec![],
        "",
        OffsetDateTime::now_utc(),
    )
    .await
    .expect_err("refused");
    assert_eq!(err.field(), Some("store"));
    db.drop_database().await;
}

#[tokio::test]
async fn a_key_narrowed_to_reading_reads_but_cannot_manage_erase_or_track() {
    let db = TestDb::new("scoped").await;
    let secret = analytics(
        &db,
        &[
            "keys", "create", "--store", "shop-a", "--kind", "read", "--scope", "read", "--name",
            "bi",
        ],
    )
    .trim()
    .to_owned();
    let listing = analytics(&db, &["keys", "list", "--store", "shop-a"]);
    let line = listing
        .lines()
        .find(|l| l.starts_with(&secret[..11]))
        .expect("listed");
    assert!(line.contains(" read ") || line.contains(" read"), "{line}");
    assert!(!line.contains("erase"), "shows its one scope: {line}");
    let api = api(&db, Arc::new(FixedClock::new(OffsetDateTime::now_utc())));
    let (status, body) = call(
        &api,
        "GET",
        "/analytics/metrics?metric=orders",
        &secret,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for (method, path, body) in [
        ("DELETE", "/analytics/customers/cust_1", None),
        (
            "POST",
            "/analytics/dashboards",
            Some(
                serde_json::json!({"name": "x", "widgets": [{"title": "t", "endpoint": "metrics", "params": {"metric": "orders"}}]}),
            ),
        ),
        (
            "POST",
            "/analytics/event",
            Some(serde_json::json!({"type": "page.viewed"})),
        ),
    ] {
        let (status, answer) = call(&api, method, path, &secret, body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {answer}"
        );
    }
    // A read key without scopes (every key made before scopes existed) still does everything.
    let (status, body) = call(
        &api,
        "DELETE",
        "/analytics/customers/cust_1",
        READ_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    db.drop_database().await;
}
