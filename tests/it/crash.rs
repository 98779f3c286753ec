//! Fault tests of the `analytics serve` process itself (the built binary, not an in-process server):
//! killed with SIGKILL under load, every event it answered 202 is stored exactly once after the restart
//! (durable buffer); stopped with SIGTERM under load, it exits cleanly with every acknowledged event stored
//! exactly once.

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_tests::{TestDb, WRITE_KEY, debug_binary, eventually, repo_root};
use serde_json::json;

/// One `analytics serve` process over the test database.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(db: &TestDb, dir: &std::path::Path, extra_env: &[(&str, &str)]) -> Self {
        let port = integration_tests::free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(debug_binary("analytics", &["cli/src"]));
        cmd.arg("--config")
            .arg(repo_root().join("config/local.yaml"))
            .args(["serve", "--addr", &addr])
            .arg("--wal-dir")
            .arg(dir.join("wal"))
            .arg("--spill-dir")
            .arg(dir.join("spill"))
            .env("CLICKHOUSE_URL", &db.config.clickhouse.url)
            .env("CLICKHOUSE_DATABASE", &db.name)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("analytics serve starts");
        Self { child, addr }
    }

    async fn ready(&self) {
        let url = format!("http://{}/health", self.addr);
        let up = eventually(Duration::from_secs(60), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        assert!(up, "analytics serve did not answer /health within 60 s");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal}");
    }

    /// Waits for the process to exit; returns how long that took and whether it exited successfully.
    fn wait(&mut self, within: Duration) -> (Duration, bool) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return (started.elapsed(), status.success());
            }
            assert!(started.elapsed() < within, "still running after {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Eight clients send batches of 50 page views with unique ids until `stop` is set; returns the ids
/// answered 202. Requests that fail (the server died) are simply not counted as acknowledged.
fn load(
    addr: &str,
    prefix: &'static str,
    stop: Arc<Mutex<bool>>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let addr = addr.to_owned();
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut clients = tokio::task::JoinSet::new();
        for c in 0..8 {
            let (client, addr, stop) = (client.clone(), addr.clone(), stop.clone());
            clients.spawn(async move {
                let mut acked = Vec::new();
                for batch in 0.. {
                    if *stop.lock().unwrap_or_else(|p| p.into_inner()) {
                        break;
                    }
                    let ids: Vec<String> = (0..50)
                        .map(|i| format!("{prefix}_{c}_{batch}_{i}"))
                        .collect();
                    let events: Vec<_> = ids
                        .iter()
                        .map(|id| json!({"id": id, "type": "page.viewed"}))
                        .collect();
                    let sent = client
                        .post(format!("http://{addr}/analytics/events"))
                        .bearer_auth(WRITE_KEY)
                        .json(&json!({ "events": events }))
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match sent {
                        Ok(resp) if resp.status() == 202 => acked.extend(ids),
                        Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        Err(_) => break,
                    }
                }
                acked
            });
        }
        let mut acked = Vec::new();
        while let Some(ids) = clients.join_next().await {
            acked.extend(ids.expect("client"));
        }
        acked
    })
}

/// Every acknowledged id is stored exactly once (ids not acknowledged may be stored too: their request was
/// in the log when the process died, unanswered).
async fn assert_stored_exactly_once(db: &TestDb, acked: &[String]) {
    let stored: Vec<String> = db
        .store
        .client()
        .query("SELECT id FROM commerce_events WHERE store_id = 'shop-a'")
        .fetch_all::<String>()
        .await
        .expect("ids");
    let rows = stored.len();
    let stored: HashSet<String> = stored.into_iter().collect();
    assert_eq!(rows, stored.len(), "no event stored twice");
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

fn work_dir(name: &str) -> std::path::PathBuf {
    let dir = repo_root()
        .join("var")
        .join(format!("it-crash-{name}-{}", ulid::Ulid::new()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test]
async fn a_sigkill_under_load_loses_no_acknowledged_event_with_the_durable_buffer() {
    let db = TestDb::new("sigkill").await;
    let dir = work_dir("sigkill");
    // A long flush interval and big batches: most acknowledged events are only in the buffer at the kill.
    let env = [
        ("ANALYTICS_DURABLE_BUFFER", "true"),
        ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "30"),
        ("ANALYTICS_BATCH_SIZE", "100000"),
    ];
    let mut serve = Serve::start(&db, &dir, &env);
    serve.ready().await;
    let stop = Arc::new(Mutex::new(false));
    let clients = load(&serve.addr, "kill", stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    serve.signal("-KILL");
    serve.wait(Duration::from_secs(10));
    *stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
    let acked = clients.await.expect("load");
    assert!(
        acked.len() >= 1_000,
        "the load was real: {} acknowledged",
        acked.len()
    );
    let before: u64 = db
        .scalar("SELECT count() FROM commerce_events WHERE store_id = 'shop-a'")
        .await;
    assert!(
        before < acked.len() as u64,
        "the kill caught acknowledged events in the buffer ({before} stored of {})",
        acked.len()
    );

    // The next start replays the write-ahead log before it listens.
    let mut again = Serve::start(&db, &dir, &env);
    again.ready().await;
    assert_stored_exactly_once(&db, &acked).await;
    again.signal("-TERM");
    let (_, clean) = again.wait(Duration::from_secs(30));
    assert!(clean, "a SIGTERM exits with status 0");
    let _ = std::fs::remove_dir_all(&dir);
    db.drop_database().await;
}

#[tokio::test]
async fn a_sigterm_under_load_exits_cleanly_with_every_acknowledged_event_stored_once() {
    for durable in ["true", "false"] {
        let db = TestDb::new("sigterm").await;
        let dir = work_dir("sigterm");
        let env = [
            ("ANALYTICS_DURABLE_BUFFER", durable),
            ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "30"),
            ("ANALYTICS_BATCH_SIZE", "100000"),
        ];
        let mut serve = Serve::start(&db, &dir, &env);
        serve.ready().await;
        let stop = Arc::new(Mutex::new(false));
        let clients = load(&serve.addr, "term", stop.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        serve.signal("-TERM");
        let (_, clean) = serve.wait(Duration::from_secs(30));
        assert!(clean, "exit status 0 (durable: {durable})");
        *stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        let acked = clients.await.expect("load");
        assert!(
            acked.len() >= 1_000,
            "the load was real: {} acknowledged",
            acked.len()
        );
        assert_stored_exactly_once(&db, &acked).await;
        let left = std::fs::read_dir(dir.join("wal")).map_or(0, |d| d.count());
        assert_eq!(
            left, 0,
            "a clean shutdown with ClickHouse up leaves no log (durable: {durable})"
        );
        let _ = std::fs::remove_dir_all(&dir);
        db.drop_database().await;
    }
}
