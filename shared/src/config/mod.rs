//! Typed configuration, read once at start.
//!
//! Sources, in order (later wins):
//! 1. defaults (the spec's: `enabled: true`, `provider: clickhouse`, `batch_size: 1000`,
//!    `flush_interval_seconds: 5`, `retention_days: 365`);
//! 2. the YAML file named by `ANALYTICS_CONFIG` (or passed explicitly), shaped like the spec's
//!    `analytics:` block, with `${VAR}` and `${VAR:-default}` interpolation from the environment;
//! 3. environment overrides, for Lambda where there is no file.
//!
//! Each setting is declared once, in [`settings`] (name, variable, type, default, parser, meaning); the
//! README's configuration table is rendered from that declaration. [`interpolate`] expands variables in
//! the file, [`env`] parses variables.
//!
//! Loading fails fast with a message that names the bad setting.
//!
//! Secrets (`clickhouse_password`, API keys) are wrapped in [`Secret`], whose `Debug` prints `***`, so a
//! logged config never shows them.

mod env;
mod interpolate;
pub mod settings;

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ident::{is_identifier, is_origin, is_valid_store_id};

pub use interpolate::interpolate;
use settings::{RawSettings, Settings};

/// A string that must never appear in logs.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Clickhouse,
    Bigquery,
}

/// What a key may do. Write keys (`pk_…`) can only track; read keys (`sk_…`) can also read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Write,
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiKeyConfig {
    pub key: Secret,
    pub store: String,
    pub kind: KeyKind,
    /// Write keys only: the storefront origins (`https://shop.example.com`) whose browsers may use the key.
    /// Empty: any origin. See [`crate::auth`].
    #[serde(default)]
    pub origins: Vec<String>,
}

/// A sharded ClickHouse (see `store::clickhouse::layout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The cluster's name in `remote_servers`.
    pub name: String,
    /// Local tables are `Replicated*MergeTree` (Keeper, `{shard}`/`{replica}` macros).
    pub replicated: bool,
    /// Every node's HTTP URL: DDL and deletes are applied node by node. Empty: `ON CLUSTER`.
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickHouseConfig {
    /// e.g. `http://127.0.0.1:8123` or `https://host:8443`.
    pub url: String,
    /// Set for a sharded cluster; `None`: one server.
    pub cluster: Option<ClusterConfig>,
    /// Limits of every read query: `max_execution_time` (seconds) and `max_memory_usage` (bytes).
    /// `clickhouse_query_timeout_seconds` in milliseconds.
    pub query_timeout_ms: u64,
    pub query_max_memory_bytes: u64,
    /// Database holding the module's tables; created by the migrations. Default `commerce_analytics`.
    pub database: String,
    pub user: Option<String>,
    pub password: Secret,
}

/// `provider: bigquery` (see `store::bigquery`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQueryConfig {
    /// The API's base URL: Google's, or an emulator's.
    pub endpoint: String,
    pub project: String,
    /// Holds the module's tables; created by the migrations. Default `commerce_analytics`.
    pub dataset: String,
    pub location: String,
    /// A service account key (JSON text or a file path); empty: Application Default Credentials.
    pub credentials: Secret,
    /// `bigquery_query_timeout_seconds` in milliseconds: how long one read may take.
    pub read_timeout_ms: u64,
}

impl BigQueryConfig {
    /// Google's endpoint needs credentials; anything else is taken for an emulator, which needs none.
    pub fn is_emulator(&self) -> bool {
        self.endpoint.trim_end_matches('/') != GOOGLE_BIGQUERY
    }
}

/// BigQuery's public API endpoint.
pub const GOOGLE_BIGQUERY: &str = "https://bigquery.googleapis.com";

/// Input limits. Defaults are the documented API limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body, bytes. Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most events in one `POST /analytics/events`. Default 500.
    pub max_batch_events: usize,
    /// Largest single event (its JSON text), bytes. Default 32 KiB (Firehose allows 1,000 KiB a record).
    pub max_event_bytes: usize,
    /// Longest id-like string (`id`, `sessionId`, `customerId`, `orderId`, `productId`). Default 128.
    pub max_id_len: usize,
    /// Deepest nesting inside `properties` (an object directly in `properties` is depth 1). Default 8.
    pub max_property_depth: usize,
    /// Most keys in `properties` (top level). Default 100.
    pub max_property_keys: usize,
    /// Largest Firehose delivery accepted by `ingest`, after gzip decompression, bytes. Default 64 MiB
    /// (Firehose's largest buffer is 64 MiB; on Lambda the Function URL's 6 MB request limit comes first).
    pub max_ingest_bytes: usize,
    /// Read queries of one store in flight at once in a process; more wait their turn (see
    /// [`crate::query::fair`]). Default 8.
    pub reads_per_store: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_batch_events: 500,
            max_event_bytes: 32 * 1024,
            max_id_len: 128,
            max_property_depth: 8,
            max_property_keys: 100,
            max_ingest_bytes: 64 * 1024 * 1024,
            reads_per_store: 8,
        }
    }
}

/// How the local server treats connections (on AWS, API Gateway does this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections at most; one more is answered 503 and closed. Default 4096.
    pub max_connections: usize,
    /// Time to send a request's headers, and to stay idle between requests. Default 10 s.
    pub header_timeout: Duration,
    /// Time to send a request's body; past it 408. Default 30 s.
    pub body_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `false`: the track endpoints still validate and answer 202, but store nothing (a kill switch that
    /// does not break storefronts).
    pub enabled: bool,
    pub provider: Provider,
    pub clickhouse: ClickHouseConfig,
    /// Set when `provider: bigquery`.
    pub bigquery: Option<BigQueryConfig>,
    /// Events per batch write. Default 1000.
    pub batch_size: usize,
    /// Longest time an accepted event waits in the local buffer before it is written. Default 5 s.
    pub flush_interval: Duration,
    /// Events older than this many days are removed by the scheduled retention job (see
    /// [`crate::retention`]); table TTL is a safety net at the longest retention. Default 365.
    pub retention_days: u32,
    /// Per-store overrides of `retention_days` (YAML `store_retention_days: {shop-a: 30}`, env
    /// `ANALYTICS_STORE_RETENTION_DAYS=shop-a:30,shop-b:730`).
    pub store_retention_days: std::collections::BTreeMap<String, u32>,
    /// Capacity of the local buffer, events; beyond it track answers 503 + `Retry-After`. Default
    /// 100 × `batch_size`.
    pub max_buffered_events: usize,
    /// Local server: answer 202 only once events are fsynced to the write-ahead log. Default true.
    pub durable_buffer: bool,
    /// Local server: how it treats connections (see [`ServerLimits`]).
    pub server: ServerLimits,
    /// Where the `rates` function reads the ECB's reference rates ([`crate::fx::refresh`]).
    pub rates_url: String,
    /// Alert webhooks may go to loopback ([`crate::alerts::webhook`]).
    pub alerts_allow_loopback: bool,
    /// The dashboard page's address, for notification links.
    pub public_url: String,
    /// Zero the last IPv4 octet / keep only the IPv6 /48 before storing. Default true.
    pub anonymize_ip: bool,
    /// Bootstrap keys (the committed development keys locally). Requests are authenticated against the key
    /// table in ClickHouse only; these are seeded into it, if absent, by the local server and by
    /// `analytics migrate` (a revoked seed key stays revoked). See [`crate::auth`].
    pub keys: Vec<ApiKeyConfig>,
    /// How long a warm process trusts what it read from the key table (found or not), seconds: the bound
    /// on how late a revocation takes effect. Default 60; 0 reads the table on every request.
    pub key_cache_ttl_seconds: u32,
    /// Requests per second each API key may make, per process (token bucket; 0 = no in-app limit; see
    /// [`crate::ratelimit`]). Default 1000: a store's storefronts share one write key.
    pub rate_limit_per_second: u32,
    /// Burst size of that bucket. Default 2000.
    pub rate_limit_burst: u32,
    /// Delivery stream of the `track` Lambda. Set: events go to Firehose; unset: straight to ClickHouse.
    pub firehose_stream_name: Option<String>,
    /// The access key Firehose sends in `X-Amz-Firehose-Access-Key` to `ingest`. Required by the ingest
    /// Lambda; when empty (local tests against moto, which sends no such header) ingest accepts any caller.
    pub firehose_access_key: Secret,
    /// Origins allowed to call the read routes cross-origin (see [`crate::api`]); empty: none.
    pub dashboard_origins: Vec<String>,
    pub limits: Limits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRoot {
    analytics: Option<RawSettings>,
}

impl Config {
    /// Reads `ANALYTICS_CONFIG` (if set) and the process environment.
    pub fn from_env() -> Result<Self> {
        let env = |name: &str| std::env::var(name).ok();
        let text = match env("ANALYTICS_CONFIG") {
            Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                Error::Config(format!("cannot read ANALYTICS_CONFIG file {path}: {e}"))
            })?),
            None => None,
        };
        Self::from_sources(text.as_deref(), &env)
    }

    /// Reads the given YAML file plus the process environment.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::from_sources(Some(&text), &|name: &str| std::env::var(name).ok())
    }

    /// Builds the config from an optional YAML text and an environment lookup (injectable for tests).
    pub fn from_sources(yaml: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let mut raw = match yaml {
            Some(text) => {
                let text = interpolate(text, env)?;
                let root: FileRoot = serde_yaml_ng::from_str(&text)
                    .map_err(|e| Error::Config(format!("config file: {e}")))?;
                root.analytics.unwrap_or_default()
            }
            None => RawSettings::default(),
        };
        raw.apply_env(env)?;
        Self::from_settings(raw.resolve())
    }

    /// Checks the resolved settings and builds the typed configuration.
    fn from_settings(raw: Settings) -> Result<Self> {
        let bigquery = bigquery_of(&raw)?;
        let batch_size = raw.batch_size;
        if !(1..=100_000).contains(&batch_size) {
            return Err(Error::Config(format!(
                "batch_size must be 1..=100000, got {batch_size}"
            )));
        }
        let flush = raw.flush_interval_seconds;
        if !(flush > 0.0 && flush <= 3600.0) {
            return Err(Error::Config(format!(
                "flush_interval_seconds must be > 0 and <= 3600, got {flush}"
            )));
        }
        let query_timeout_ms = read_timeout_ms(
            "clickhouse_query_timeout_seconds",
            raw.clickhouse_query_timeout_seconds,
        )?;
        let retention_days = raw.retention_days;
        if retention_days == 0 {
            return Err(Error::Config("retention_days must be at least 1".into()));
        }
        let store_retention_days = raw.store_retention_days;
        for (store, days) in &store_retention_days {
            if !is_valid_store_id(store) {
                return Err(Error::Config(format!(
                    "store_retention_days: store {store:?} must match [a-z0-9][a-z0-9_-]{{0,63}}"
                )));
            }
            if *days == 0 {
                return Err(Error::Config(format!(
                    "store_retention_days.{store} must be at least 1"
                )));
            }
        }
        let max_buffered_events = raw.max_buffered_events.unwrap_or(batch_size * 100);
        if max_buffered_events < batch_size {
            return Err(Error::Config(format!(
                "max_buffered_events ({max_buffered_events}) must be >= batch_size ({batch_size})"
            )));
        }
        for (name, value) in [
            ("server_max_connections", raw.server_max_connections),
            (
                "server_header_timeout_seconds",
                raw.server_header_timeout_seconds as usize,
            ),
            (
                "server_body_timeout_seconds",
                raw.server_body_timeout_seconds as usize,
            ),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        let url = raw.clickhouse_url;
        let provider = raw.provider;
        if provider == Provider::Clickhouse && url.is_empty() {
            return Err(Error::Config(
                "clickhouse_url is not set (set CLICKHOUSE_URL or analytics.clickhouse_url)".into(),
            ));
        }
        if !url.is_empty() {
            check_http_url("clickhouse_url", &url)?;
        }
        let database = raw.clickhouse_database;
        if !is_identifier(&database) {
            return Err(Error::Config(format!(
                "clickhouse_database {database:?} must match [A-Za-z_][A-Za-z0-9_]*"
            )));
        }
        if let Some(bad) = raw.dashboard_origins.iter().find(|o| !is_origin(o)) {
            return Err(Error::Config(format!(
                "dashboard_origins: {bad:?} must be scheme://host[:port], e.g. https://bi.example.com"
            )));
        }
        let cluster = cluster_of(
            raw.clickhouse_cluster,
            raw.clickhouse_replicated,
            raw.clickhouse_nodes,
        )?;
        let keys = raw.keys;
        for (i, k) in keys.iter().enumerate() {
            if k.key.expose().len() < 8 {
                return Err(Error::Config(format!(
                    "keys[{i}].key must be at least 8 characters"
                )));
            }
            if k.kind == KeyKind::Read && !k.origins.is_empty() {
                return Err(Error::Config(format!(
                    "keys[{i}]: origins apply to write keys only (read keys never belong in a browser)"
                )));
            }
            if let Some(bad) = k.origins.iter().find(|o| !is_origin(o)) {
                return Err(Error::Config(format!(
                    "keys[{i}].origins: {bad:?} must be scheme://host[:port], e.g. https://shop.example.com"
                )));
            }
            if !is_valid_store_id(&k.store) {
                return Err(Error::Config(format!(
                    "keys[{i}].store {:?} must match [a-z0-9][a-z0-9_-]{{0,63}}",
                    k.store
                )));
            }
        }
        Ok(Self {
            enabled: raw.enabled,
            provider,
            bigquery,
            clickhouse: ClickHouseConfig {
                url,
                cluster,
                query_timeout_ms,
                query_max_memory_bytes: raw.clickhouse_query_max_memory_bytes,
                database,
                user: Some(raw.clickhouse_user).filter(|u| !u.is_empty()),
                password: raw.clickhouse_password,
            },
            batch_size,
            flush_interval: Duration::from_secs_f64(flush),
            retention_days,
            store_retention_days,
            max_buffered_events,
            durable_buffer: raw.durable_buffer,
            server: ServerLimits {
                max_connections: raw.server_max_connections,
                header_timeout: Duration::from_secs(raw.server_header_timeout_seconds.into()),
                body_timeout: Duration::from_secs(raw.server_body_timeout_seconds.into()),
            },
            rates_url: raw.rates_url,
            alerts_allow_loopback: raw.alerts_allow_loopback,
            public_url: raw.public_url,
            anonymize_ip: raw.anonymize_ip,
            keys,
            key_cache_ttl_seconds: raw.key_cache_ttl_seconds,
            rate_limit_per_second: raw.rate_limit_per_second,
            rate_limit_burst: raw.rate_limit_burst,
            firehose_stream_name: Some(raw.firehose_stream_name).filter(|s| !s.is_empty()),
            firehose_access_key: raw.firehose_access_key,
            dashboard_origins: raw.dashboard_origins,
            limits: Limits::default(),
        })
    }

    /// Retention of one store: its override, else `retention_days`.
    pub fn retention_days_for(&self, store_id: &str) -> u32 {
        self.store_retention_days
            .get(store_id)
            .copied()
            .unwrap_or(self.retention_days)
    }

    /// The longest retention of any store: the table TTL (a safety net) must not cut below it.
    pub fn max_retention_days(&self) -> u32 {
        self.store_retention_days
            .values()
            .copied()
            .fold(self.retention_days, u32::max)
    }

    /// The ingest Lambda refuses to start without an access key: its Function URL is public.
    pub fn require_firehose_access_key(&self) -> Result<&Secret> {
        if self.firehose_access_key.expose().len() < 16 {
            return Err(Error::Config(
                "FIREHOSE_ACCESS_KEY must be set (at least 16 characters) for the ingest function"
                    .into(),
            ));
        }
        Ok(&self.firehose_access_key)
    }
}

/// The BigQuery settings, checked when `provider: bigquery` (else `None`).
fn bigquery_of(raw: &settings::Settings) -> Result<Option<BigQueryConfig>> {
    if raw.provider != Provider::Bigquery {
        return Ok(None);
    }
    let project = raw.bigquery_project.trim();
    if project.is_empty() {
        return Err(Error::Config(
            "bigquery_project is not set (set BIGQUERY_PROJECT or analytics.bigquery_project)"
                .into(),
        ));
    }
    // Project ids: 6-30 characters of lowercase letters, digits and hyphens (an optional `domain:` prefix).
    let plain = project.rsplit(':').next().unwrap_or(project);
    if !plain
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(Error::Config(format!(
            "bigquery_project {project:?} must be a project id (lowercase letters, digits, hyphens)"
        )));
    }
    let dataset = raw.bigquery_dataset.trim();
    if dataset.is_empty()
        || dataset.len() > 1024
        || !dataset
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(Error::Config(format!(
            "bigquery_dataset {dataset:?} must be letters, digits and underscores"
        )));
    }
    let location = raw.bigquery_location.trim();
    if location.is_empty()
        || !location
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(Error::Config(format!(
            "bigquery_location {location:?} must be a location such as US, EU or europe-west1"
        )));
    }
    let endpoint = raw
        .bigquery_endpoint
        .trim()
        .trim_end_matches('/')
        .to_owned();
    check_http_url("bigquery_endpoint", &endpoint)?;
    let read_timeout_ms = read_timeout_ms(
        "bigquery_query_timeout_seconds",
        raw.bigquery_query_timeout_seconds,
    )?;
    Ok(Some(BigQueryConfig {
        endpoint,
        project: project.to_owned(),
        dataset: dataset.to_owned(),
        location: location.to_owned(),
        credentials: raw.bigquery_credentials.clone(),
        read_timeout_ms,
    }))
}

/// A read time limit in seconds (`setting`), checked and in milliseconds: at least a millisecond (0 would
/// be no limit at all on ClickHouse), at most an hour.
fn read_timeout_ms(setting: &str, seconds: f64) -> Result<u64> {
    if !(0.001..=3600.0).contains(&seconds) {
        return Err(Error::Config(format!(
            "{setting} must be >= 0.001 and <= 3600, got {seconds}"
        )));
    }
    Ok((seconds * 1000.0).round() as u64)
}

/// The cluster settings, checked: nodes and replication need a cluster name; nodes are http(s) URLs.
fn cluster_of(name: String, replicated: bool, nodes: Vec<String>) -> Result<Option<ClusterConfig>> {
    if name.is_empty() {
        if replicated || !nodes.is_empty() {
            return Err(Error::Config(
                "clickhouse_replicated and clickhouse_nodes need clickhouse_cluster (CLICKHOUSE_CLUSTER)"
                    .into(),
            ));
        }
        return Ok(None);
    }
    if !is_identifier(&name) {
        return Err(Error::Config(format!(
            "clickhouse_cluster {name:?} must match [A-Za-z_][A-Za-z0-9_]*"
        )));
    }
    for (i, node) in nodes.iter().enumerate() {
        check_http_url(&format!("clickhouse_nodes[{i}]"), node)?;
    }
    Ok(Some(ClusterConfig {
        name,
        replicated,
        nodes,
    }))
}

/// An `http://` or `https://` URL, or an error naming `setting`.
fn check_http_url(setting: &str, url: &str) -> Result<()> {
    let parsed = url::Url::parse(url)
        .map_err(|e| Error::Config(format!("{setting} {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::Config(format!(
            "{setting} must be http:// or https://, got {url:?}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
