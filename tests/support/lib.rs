//! Shared set-up for the integration tests: each test gets its own ClickHouse database on the real server
//! (so tests never see each other's rows), and helpers to run extra servers for fault tests.
//!
//! Integration tests never skip: when ClickHouse is not reachable they fail with how to start it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use commerce_analytics::config::Config;
use commerce_analytics::store::ClickHouseStore;

pub const WRITE_KEY: &str = "pk_test_write_key_0001";
pub const READ_KEY: &str = "sk_test_read_key_00001";

/// The validator of the default limits with a year's retention, as the tests that build events directly
/// (and set their timestamps themselves) use it.
pub fn validator() -> commerce_analytics::event::Validator {
    commerce_analytics::event::Validator {
        limits: Default::default(),
        retention_days: 365,
        anonymize_ip: true,
    }
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                repo_root().join(p)
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
}

fn newest_source(dir: &Path) -> std::time::SystemTime {
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs")
                && let Ok(m) = entry.metadata().and_then(|m| m.modified())
            {
                newest = newest.max(m);
            }
        }
    }
    newest
}

/// The debug binary `name` of the workspace, refusing a missing one or one older than the core crate or
/// the given source folders (relative to the repo root): tests must never run yesterday's code.
pub fn debug_binary(name: &str, sources: &[&str]) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is missing: build the binaries first with `cargo build --bins --workspace` \
                 (scripts/test does)",
                path.display()
            )
        });
    let root = repo_root();
    for src in std::iter::once("shared/src").chain(sources.iter().copied()) {
        let src = root.join(src);
        assert!(
            newest_source(&src) <= built,
            "{} is older than {}: rebuild with `cargo build --bins --workspace`",
            path.display(),
            src.display()
        );
    }
    path
}

/// The BigQuery emulator's URL (`scripts/bigquery`; `BIGQUERY_ENDPOINT`, default http://127.0.0.1:9050).
pub fn bigquery_endpoint() -> String {
    std::env::var("BIGQUERY_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9050".into())
}

/// The configuration of a fresh dataset `it_<hint>_<random>` on the BigQuery emulator (`provider:
/// bigquery`), with the test keys of `shop-a` and `overrides` (`ENV_NAME`, value).
pub fn bigquery_config(hint: &str, overrides: &[(&str, &str)]) -> Config {
    let dataset = format!("it_{hint}_{}", ulid::Ulid::new().to_string().to_lowercase());
    let mut env: Vec<(String, String)> = vec![
        ("ANALYTICS_PROVIDER".into(), "bigquery".into()),
        (
            "BIGQUERY_PROJECT".into(),
            std::env::var("BIGQUERY_PROJECT").unwrap_or_else(|_| "local-project".into()),
        ),
        ("BIGQUERY_DATASET".into(), dataset),
        ("BIGQUERY_ENDPOINT".into(), bigquery_endpoint()),
        (
            "ANALYTICS_API_KEYS".into(),
            format!("{WRITE_KEY}:shop-a:write,{READ_KEY}:shop-a:read"),
        ),
    ];
    env.extend(
        overrides
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Config::from_sources(None, &|k: &str| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .expect("bigquery test config")
}

/// A fresh, migrated dataset `it_<hint>_<random>` on the BigQuery emulator. Panics (fails the test) when
/// the emulator cannot be reached.
pub async fn test_bigquery(hint: &str) -> commerce_analytics::store::bigquery::BigQueryStore {
    test_bigquery_with(hint, &[]).await.1
}

/// [`test_bigquery`] with settings overridden as in [`bigquery_config`], and the configuration.
pub async fn test_bigquery_with(
    hint: &str,
    overrides: &[(&str, &str)],
) -> (Config, commerce_analytics::store::bigquery::BigQueryStore) {
    let config = bigquery_config(hint, overrides);
    let store = commerce_analytics::store::bigquery::BigQueryStore::new(
        config.bigquery.as_ref().expect("bigquery settings"),
    )
    .expect("store");
    if let Err(e) = store.migrate(config.retention_days).await {
        panic!(
            "the BigQuery emulator is not usable at {} ({e}). BigQuery tests need it: start it \
             with `scripts/bigquery start`, or run the whole suite with `scripts/test`.",
            bigquery_endpoint()
        );
    }
    (config, store)
}

pub fn clickhouse_url() -> String {
    std::env::var("CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// The settings that put the module on a cluster, passed through from the environment.
pub const CLUSTER_SETTINGS: [&str; 3] = [
    "CLICKHOUSE_CLUSTER",
    "CLICKHOUSE_NODES",
    "CLICKHOUSE_REPLICATED",
];

/// Whether the suite runs on a cluster (see [`TestDb::new`]).
pub fn on_cluster() -> bool {
    std::env::var("CLICKHOUSE_CLUSTER").is_ok_and(|c| !c.is_empty())
}

/// A fresh database on the shared test server.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub config: Config,
    pub store: ClickHouseStore,
}

impl TestDb {
    /// Creates `it_<hint>_<random>` and applies the migrations. Panics (fails the test) when ClickHouse
    /// cannot be reached.
    /// On a cluster when the environment names one (`CLICKHOUSE_CLUSTER`, `CLICKHOUSE_NODES`: how
    /// `scripts/test` runs the suite a second time on the local 2-shard cluster).
    pub async fn new(hint: &str) -> Self {
        let cluster: Vec<(&str, String)> = CLUSTER_SETTINGS
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v)))
            .collect();
        let overrides: Vec<(&str, &str)> = cluster.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Self::on(&clickhouse_url(), hint, &overrides).await
    }

    /// Same, on a given server URL with extra config overrides (`ENV_NAME`, value).
    pub async fn on(url: &str, hint: &str, overrides: &[(&str, &str)]) -> Self {
        let name = format!("it_{hint}_{}", ulid::Ulid::new().to_string().to_lowercase());
        let keys = format!("{WRITE_KEY}:shop-a:write,{READ_KEY}:shop-a:read");
        let mut env: Vec<(String, String)> = vec![
            ("CLICKHOUSE_URL".into(), url.into()),
            ("CLICKHOUSE_DATABASE".into(), name.clone()),
            ("ANALYTICS_API_KEYS".into(), keys),
        ];
        env.extend(
            overrides
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = Config::from_sources(None, &|k: &str| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .expect("test config");
        let store = ClickHouseStore::new(&config.clickhouse);
        if let Err(e) = store.ping().await {
            panic!(
                "ClickHouse is not reachable at {url} ({e}). Integration tests need the real server: \
                 start it with `scripts/clickhouse start`, or run the whole suite with `scripts/test`."
            );
        }
        store
            .migrate(config.retention_days)
            .await
            .expect("migrations apply");
        commerce_analytics::auth::keys::seed(&store, &config.keys, time::OffsetDateTime::now_utc())
            .await
            .expect("keys seeded");
        Self {
            name,
            config,
            store,
        }
    }

    /// Runs a query returning one value.
    pub async fn scalar<T>(&self, sql: &str) -> T
    where
        T: clickhouse::RowOwned + clickhouse::RowRead,
    {
        self.store
            .client()
            .query(sql)
            .fetch_one::<T>()
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The API over this database as the local server wires it (reads and erasure; the tracker discards),
    /// with the clock fixed at `now`.
    pub fn api(&self, now: time::OffsetDateTime) -> commerce_analytics::api::Api {
        use std::sync::Arc;
        let clock = Arc::new(commerce_analytics::clock::FixedClock::new(now));
        let tracker = commerce_analytics::tracker::Tracker::new(
            commerce_analytics::event::Validator::from_config(&self.config),
            Arc::new(commerce_analytics::sink::DiscardSink),
            clock.clone(),
        );
        commerce_analytics::api::Api::new(
            Arc::new(tracker),
            // The real key table, as every deployed function reads it.
            commerce_analytics::auth::Authenticator::from_config(
                Arc::new(self.store.clone()),
                &self.config,
            ),
            self.config.limits,
        )
        .with_queries(Arc::new(self.store.clone()), clock)
    }

    /// The API as the `track` Lambda wires it without Firehose: each request's events inserted into this
    /// database before the answer, keys from its key table.
    pub fn tracking_api(&self) -> commerce_analytics::api::Api {
        use std::sync::Arc;
        let store: Arc<dyn commerce_analytics::store::EventStore> = Arc::new(self.store.clone());
        let tracker = commerce_analytics::tracker::Tracker::new(
            commerce_analytics::event::Validator::from_config(&self.config),
            Arc::new(commerce_analytics::sink::StoreSink::new(store)),
            Arc::new(commerce_analytics::clock::SystemClock),
        );
        commerce_analytics::api::Api::new(
            Arc::new(tracker),
            commerce_analytics::auth::Authenticator::from_config(
                Arc::new(self.store.clone()),
                &self.config,
            ),
            self.config.limits,
        )
    }

    /// A system table read from every node: `clusterAllReplicas(<cluster>, system.x)` on a cluster.
    pub fn every_node(&self, system_table: &str) -> String {
        match &self.config.clickhouse.cluster {
            Some(c) => format!("clusterAllReplicas({}, {system_table})", c.name),
            None => system_table.to_owned(),
        }
    }

    /// How many nodes hold the data (1 on one server).
    pub fn nodes(&self) -> usize {
        self.config
            .clickhouse
            .cluster
            .as_ref()
            .map_or(1, |c| c.nodes.len().max(1))
    }

    pub async fn drop_database(&self) {
        let _ = self.store.drop_database().await;
    }
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to `timeout` until `store_id` holds exactly `n` distinct events; panics naming what it found
/// otherwise (after a restart, a flush or a replay).
pub async fn await_events(store: &ClickHouseStore, store_id: &str, n: u64, timeout: Duration) {
    let stored = eventually(timeout, || async {
        store.count_events(store_id).await.unwrap_or(0) == n
    })
    .await;
    assert!(
        stored,
        "expected {n} events of {store_id} stored; got {:?}",
        store.count_events(store_id).await
    );
}

/// A private ClickHouse server (own port and data directory) for tests that stop and start it.
#[derive(Debug)]
pub struct PrivateClickHouse {
    pub port: u16,
    pub data_dir: PathBuf,
}

impl PrivateClickHouse {
    pub fn new(port: u16) -> Self {
        let data_dir = repo_root()
            .join("var")
            .join(format!("it-clickhouse-{port}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        Self { port, data_dir }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn script(&self, cmd: &str) {
        let out = std::process::Command::new(repo_root().join("scripts/clickhouse"))
            .arg(cmd)
            .env("CLICKHOUSE_PORT", self.port.to_string())
            .env("CLICKHOUSE_DATA_DIR", &self.data_dir)
            .output()
            .expect("run scripts/clickhouse");
        assert!(
            out.status.success(),
            "scripts/clickhouse {cmd} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start(&self) {
        self.script("start");
    }

    pub fn stop(&self) {
        self.script("stop");
    }
}

impl Drop for PrivateClickHouse {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo_root().join("scripts/clickhouse"))
            .arg("stop")
            .env("CLICKHOUSE_PORT", self.port.to_string())
            .env("CLICKHOUSE_DATA_DIR", &self.data_dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A private, persistent BigQuery emulator (own ports and data, `scripts/bigquery` with
/// `BIGQUERY_PERSISTENT=1`) for tests that stop and restart it: its data survives the restart.
#[derive(Debug)]
pub struct PrivateBigQuery {
    pub port: u16,
    pub grpc_port: u16,
    pub data_dir: PathBuf,
}

impl PrivateBigQuery {
    pub fn new(port: u16, grpc_port: u16) -> Self {
        let data_dir = repo_root().join("var").join(format!("it-bigquery-{port}"));
        let _ = std::fs::remove_dir_all(&data_dir);
        Self {
            port,
            grpc_port,
            data_dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn script(&self, cmd: &str) -> std::process::Output {
        std::process::Command::new(repo_root().join("scripts/bigquery"))
            .arg(cmd)
            .env("BIGQUERY_PORT", self.port.to_string())
            .env("BIGQUERY_GRPC_PORT", self.grpc_port.to_string())
            .env("BIGQUERY_DATA_DIR", &self.data_dir)
            .env("BIGQUERY_PERSISTENT", "1")
            .output()
            .expect("run scripts/bigquery")
    }

    pub fn start(&self) {
        let out = self.script("start");
        assert!(
            out.status.success(),
            "scripts/bigquery start failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        let out = self.script("stop");
        assert!(out.status.success(), "scripts/bigquery stop failed");
    }
}

impl Drop for PrivateBigQuery {
    fn drop(&mut self) {
        let _ = self.script("stop");
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A private 2-shard ClickHouse cluster (own ports and data) for tests that stop and start one node.
#[derive(Debug)]
pub struct PrivateCluster {
    /// HTTP port of node 1 (node 2: the next one).
    pub port: u16,
    tcp_port: u16,
    data_dir: PathBuf,
}

/// The first port of the kernel's ephemeral range (`ip_local_port_range`; 32768 when it cannot be read).
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `n` consecutive loopback ports free now, for a server another process starts (a ClickHouse node, the
/// local server, the BigQuery emulator). Picked below the kernel's ephemeral range: a port from that range
/// (what binding port 0 gives) can be handed to any outgoing connection, and the suite's own clients open
/// many, between this check and the server's bind, which failed a node's start with "Address already in
/// use". Below it only another listener can take the port, and ports are drawn at random.
pub fn free_ports(n: u16) -> u16 {
    use std::hash::{BuildHasher, RandomState};
    const LOWEST: u16 = 10_000;
    let span = u64::from(ephemeral_low().saturating_sub(LOWEST + n).max(1_000));
    let random = RandomState::new();
    for attempt in 0u64.. {
        let first = LOWEST + (random.hash_one(attempt) % span) as u16;
        if (first..first + n).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return first;
        }
    }
    unreachable!("the loop only ends by returning")
}

/// One such port ([`free_ports`]).
pub fn free_port() -> u16 {
    free_ports(1)
}

impl PrivateCluster {
    /// Picks free ports and starts both nodes.
    pub fn launch() -> Self {
        let port = free_ports(2);
        let tcp_port = loop {
            let p = free_ports(2);
            if p.abs_diff(port) > 1 {
                break p;
            }
        };
        let cluster = Self {
            port,
            tcp_port,
            data_dir: repo_root().join("var").join(format!("it-cluster-{port}")),
        };
        let _ = std::fs::remove_dir_all(&cluster.data_dir);
        cluster.run("start", None);
        cluster
    }

    /// The settings that put a [`TestDb`] on this cluster (with [`TestDb::on`] and [`Self::url`]).
    pub fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CLICKHOUSE_CLUSTER", "analytics".to_owned()),
            (
                "CLICKHOUSE_NODES",
                format!("{},{}", self.node_url(1), self.node_url(2)),
            ),
        ]
    }

    pub fn url(&self) -> String {
        self.node_url(1)
    }

    pub fn node_url(&self, node: u16) -> String {
        format!("http://127.0.0.1:{}", self.port + node - 1)
    }

    fn script(&self, cmd: &str, node: Option<u16>) -> std::process::Output {
        let mut c = std::process::Command::new(repo_root().join("scripts/clickhouse"));
        c.arg(cmd)
            .args(["--shards", "2"])
            .env("CLICKHOUSE_PORT", self.port.to_string())
            .env("CLICKHOUSE_TCP_PORT", self.tcp_port.to_string())
            .env("CLICKHOUSE_DATA_DIR", &self.data_dir)
            .env("CLICKHOUSE_CLUSTER", "analytics");
        if let Some(n) = node {
            c.args(["--node", &n.to_string()]);
        }
        c.output().expect("run scripts/clickhouse")
    }

    fn run(&self, cmd: &str, node: Option<u16>) {
        let out = self.script(cmd, node);
        assert!(
            out.status.success(),
            "scripts/clickhouse {cmd} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop_node(&self, node: u16) {
        self.run("stop", Some(node));
    }

    pub fn start_node(&self, node: u16) {
        self.run("start", Some(node));
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self.script("stop", None);
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Sends one request to an in-process API with a bearer key; returns the status and the JSON body
/// (`null` when the body is not JSON).
pub async fn call(
    api: &commerce_analytics::api::Api,
    method: &str,
    path_and_query: &str,
    key: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    call_with(api, method, path_and_query, key, &[], body).await
}

/// [`call`] with extra request headers (`origin`, `user-agent`, …).
pub async fn call_with(
    api: &commerce_analytics::api::Api,
    method: &str,
    path_and_query: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = lambda_http::http::Request::builder()
        .method(method)
        .uri(format!("https://api.example.com{path_and_query}"))
        .header("authorization", format!("Bearer {key}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req
        .body(body.map_or(lambda_http::Body::Empty, |b| {
            lambda_http::Body::Text(b.to_string())
        }))
        .expect("request");
    let resp = api.handle(req).await;
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(resp.body().as_ref()).unwrap_or(serde_json::Value::Null),
    )
}

/// A GET as the Lambda runtime hands it to the API: with an invocation context whose deadline is
/// `deadline_ms` (Unix milliseconds), as the runtime sets it from the function's timeout.
pub async fn get_on_lambda(
    api: &commerce_analytics::api::Api,
    path_and_query: &str,
    key: &str,
    deadline_ms: u64,
) -> (u16, serde_json::Value) {
    use lambda_http::RequestExt;
    let mut context = lambda_http::Context::default();
    context.deadline = deadline_ms;
    let req = lambda_http::http::Request::builder()
        .method("GET")
        .uri(format!("https://api.example.com{path_and_query}"))
        .header("authorization", format!("Bearer {key}"))
        .body(lambda_http::Body::Empty)
        .expect("request")
        .with_lambda_context(context);
    let resp = api.handle(req).await;
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(resp.body().as_ref()).unwrap_or(serde_json::Value::Null),
    )
}

/// A GET through the API as it answers it: status, headers and the body as text (CSV exports).
pub async fn get_raw(
    api: &commerce_analytics::api::Api,
    path_and_query: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> (u16, lambda_http::http::HeaderMap, String) {
    let mut req = lambda_http::http::Request::builder()
        .method("GET")
        .uri(format!("https://api.example.com{path_and_query}"))
        .header("authorization", format!("Bearer {key}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = api
        .handle(req.body(lambda_http::Body::Empty).expect("request"))
        .await;
    let status = resp.status().as_u16();
    let body = String::from_utf8_lossy(resp.body().as_ref()).into_owned();
    (status, resp.headers().clone(), body)
}

/// The local server (`analytics serve`) on a free loopback port over `db`, as `scripts/dev` runs it.
/// Stop it with [`stop_local_server`], which also removes its spill directory.
pub async fn local_server(db: &TestDb) -> analytics_cli::server::LocalServer {
    local_server_with(&db.config, &db.name).await
}

/// The local server on `config` (either provider), its buffer files under `var/it-spill-<name>`.
/// Stop it with [`stop_local_server_with`].
pub async fn local_server_with(config: &Config, name: &str) -> analytics_cli::server::LocalServer {
    let spill = spill_dir_of(name);
    analytics_cli::server::start(
        config,
        analytics_cli::server::ServerOptions {
            addr: "127.0.0.1:0".parse().expect("addr"),
            wal_dir: spill.join("wal"),
            spill_dir: spill,
            shutdown_grace: Duration::from_secs(5),
        },
    )
    .await
    .expect("the local server starts")
}

/// Stops a server from [`local_server`] (its buffer flushes) and removes its spill directory.
pub async fn stop_local_server(db: &TestDb, srv: analytics_cli::server::LocalServer) {
    stop_local_server_with(&db.name, srv).await;
}

/// Stops a server from [`local_server_with`] and removes its buffer files.
pub async fn stop_local_server_with(name: &str, srv: analytics_cli::server::LocalServer) {
    srv.stop().await;
    let _ = std::fs::remove_dir_all(spill_dir_of(name));
}

fn spill_dir_of(name: &str) -> PathBuf {
    repo_root().join("var").join(format!("it-spill-{name}"))
}

/// Asserts that a read was refused for its size as the API promises: `status` with `code`, the field
/// `period`, and a message that says what to do (a shorter period) without the warehouse's own text.
pub fn assert_read_refused(status: u16, body: &serde_json::Value, want: (u16, &str)) {
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["field"].as_str()
        ),
        (want.0, Some(want.1), Some("period")),
        "a read past its limit says which and what to do, not 503 'retry later': {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("shorter period") && !m.contains("Code:")),
        "the message says what to do, not the server's text: {body}"
    );
}
