//! Every setting, declared once: its YAML name, environment variable, type, default, parser and meaning.
//!
//! The [`settings!`] declaration below generates the `analytics:` block's shape (every field optional),
//! the environment overrides, the defaults, and [`ALL`], from which [`markdown_table`] renders the
//! README's configuration table (a test checks the README against it). [`super::Config`] validates the
//! resolved values and builds the typed configuration.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::env::{from_str, key_list, list, optional, provider, secret, store_days, text};
use super::{ApiKeyConfig, Provider, Secret};
use crate::error::Result;

/// One setting as documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The key in the YAML `analytics:` block.
    pub name: &'static str,
    /// The environment variable that overrides it.
    pub env: &'static str,
    /// The variable's format when it is not a plain value (e.g. `store:days,...`).
    pub env_format: Option<&'static str>,
    /// The default, as shown to readers.
    pub default: &'static str,
    /// What it means.
    pub doc: &'static str,
}

macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty = $default:expr;
        shown $shown:literal, env $env:literal $(($format:literal))?, parse $parse:path;
    )*) => {
        /// The `analytics:` block as written; every field optional so defaults and env can fill in.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct RawSettings {
            $( $name: Option<$ty>, )*
        }

        /// Every setting with its default applied.
        #[derive(Debug)]
        pub(super) struct Settings {
            $( $(#[doc = $doc])+ pub $name: $ty, )*
        }

        /// Every setting, in the README's order.
        pub const ALL: &[Setting] = &[$(
            Setting {
                name: stringify!($name),
                env: $env,
                env_format: settings!(@format $($format)?),
                default: $shown,
                doc: concat!($($doc),+),
            },
        )*];

        impl RawSettings {
            /// Environment variables override the file, each parsed by its setting's parser.
            pub(super) fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<()> {
                $(
                    if let Some(v) = env($env) {
                        self.$name = Some($parse($env, v)?);
                    }
                )*
                Ok(())
            }

            pub(super) fn resolve(self) -> Settings {
                Settings { $( $name: self.$name.unwrap_or_else(|| $default), )* }
            }
        }
    };
    (@format $format:literal) => { Some($format) };
    (@format) => { None };
}

settings! {
    /// `false`: events are still validated and answered with 202, but nothing is stored (a kill switch
    /// that never breaks storefronts)
    enabled: bool = true;
    shown "`true`", env "ANALYTICS_ENABLED", parse from_str;

    /// `clickhouse` or `bigquery` (the `bigquery_*` settings; see "BigQuery")
    provider: Provider = Provider::Clickhouse;
    shown "`clickhouse`", env "ANALYTICS_PROVIDER", parse provider;

    /// `http://` or `https://` URL of ClickHouse
    clickhouse_url: String = String::new();
    shown "– (required)", env "CLICKHOUSE_URL", parse text;

    /// the database of the module's tables, created by the migrations
    clickhouse_database: String = "commerce_analytics".into();
    shown "`commerce_analytics`", env "CLICKHOUSE_DATABASE", parse text;

    /// the ClickHouse cluster (its name in `remote_servers`); set: the sharded layout (local tables on every
    /// node, `Distributed` tables over them; see "Running on a cluster"); empty: one server
    clickhouse_cluster: String = String::new();
    shown "none", env "CLICKHOUSE_CLUSTER", parse text;

    /// with a cluster: the local tables are `Replicated*MergeTree` (`{shard}`/`{replica}` macros, Keeper)
    clickhouse_replicated: bool = false;
    shown "`false`", env "CLICKHOUSE_REPLICATED", parse from_str;

    /// with a cluster: the HTTP URL of every node, for clusters without distributed DDL (schema changes and
    /// deletes are applied node by node); empty: `ON CLUSTER` through `clickhouse_url`
    clickhouse_nodes: Vec<String> = Vec::new();
    shown "none", env "CLICKHOUSE_NODES" ("url,url,..."), parse list;

    /// longest a read query may run on ClickHouse, seconds, fractions allowed (`max_execution_time`); past
    /// it the read answers 504 `read_timeout` instead of slowing every other store. Under 30 s, so that
    /// behind API Gateway (30 s per request) and the metrics function (30 s) this JSON error arrives first
    clickhouse_query_timeout_seconds: f64 = 25.0;
    shown "`25`", env "CLICKHOUSE_QUERY_TIMEOUT_SECONDS", parse from_str;

    /// most memory a read query may use on ClickHouse, bytes (`max_memory_usage`); past three quarters of it
    /// (a funnel's: 0.425) the read's aggregation and sorting spill to disk, past all of it the read answers 422 `read_too_large`
    clickhouse_query_max_memory_bytes: u64 = 2 * 1024 * 1024 * 1024;
    shown "`2147483648` (2 GiB)", env "CLICKHOUSE_QUERY_MAX_MEMORY_BYTES", parse from_str;

    /// ClickHouse user (empty: the server's default user)
    clickhouse_user: String = String::new();
    shown "none", env "CLICKHOUSE_USER", parse text;

    /// ClickHouse password; never logged
    clickhouse_password: Secret = Secret::default();
    shown "none", env "CLICKHOUSE_PASSWORD", parse secret;

    /// `provider: bigquery`: the Google Cloud project that runs the queries and holds the dataset
    bigquery_project: String = String::new();
    shown "none", env "BIGQUERY_PROJECT", parse text;

    /// `provider: bigquery`: the dataset holding the module's tables; created by the migrations
    bigquery_dataset: String = "commerce_analytics".into();
    shown "`commerce_analytics`", env "BIGQUERY_DATASET", parse text;

    /// `provider: bigquery`: the dataset's location (`US`, `EU`, `europe-west1`, …)
    bigquery_location: String = "US".into();
    shown "`US`", env "BIGQUERY_LOCATION", parse text;

    /// `provider: bigquery`: the service account key, as its JSON text or as the path of the JSON file;
    /// never logged. Empty: Application Default Credentials (see Deploying); ignored with an emulator
    /// `bigquery_endpoint`
    bigquery_credentials: Secret = Secret::default();
    shown "none", env "BIGQUERY_CREDENTIALS", parse secret;

    /// `provider: bigquery`: the API's base URL; set it to an emulator's (`http://127.0.0.1:9050`,
    /// `scripts/bigquery`), which takes no credentials
    bigquery_endpoint: String = "https://bigquery.googleapis.com".into();
    shown "`https://bigquery.googleapis.com`", env "BIGQUERY_ENDPOINT", parse text;

    /// `provider: bigquery`: longest a read may take on BigQuery, seconds, fractions allowed (the module
    /// stops waiting then, and the job's `jobTimeoutMs` stops it soon after); past it the read answers 504
    /// `read_timeout`. Under 30 s, as `clickhouse_query_timeout_seconds`
    bigquery_query_timeout_seconds: f64 = 25.0;
    shown "`25`", env "BIGQUERY_QUERY_TIMEOUT_SECONDS", parse from_str;

    /// events per batch write (maximum), 1 to 100,000
    batch_size: usize = 1000;
    shown "`1000`", env "ANALYTICS_BATCH_SIZE", parse from_str;

    /// longest wait of a buffered event before it is written, seconds (> 0, ≤ 3600)
    flush_interval_seconds: f64 = 5.0;
    shown "`5`", env "ANALYTICS_FLUSH_INTERVAL_SECONDS", parse from_str;

    /// enforced by the scheduled `retention` function (see Deploying); older timestamps are rejected at
    /// ingest
    retention_days: u32 = 365;
    shown "`365`", env "ANALYTICS_RETENTION_DAYS", parse from_str;

    /// per-store overrides of `retention_days` (YAML `store_retention_days: {shop-a: 30}`); the table TTL
    /// follows the longest
    store_retention_days: BTreeMap<String, u32> = BTreeMap::new();
    shown "none", env "ANALYTICS_STORE_RETENTION_DAYS" ("store:days,..."), parse store_days;

    /// local buffer capacity, events; beyond it track answers 503 with `Retry-After`
    max_buffered_events: Option<usize> = None;
    shown "`100 × batch_size`", env "ANALYTICS_MAX_BUFFERED_EVENTS", parse optional;

    /// local server: answer 202 only once the events are fsynced to a write-ahead log (`--wal-dir`,
    /// default `var/wal`), replayed at the next start, so even a SIGKILL or a power cut loses nothing
    /// acknowledged; `false` keeps them in memory only (faster; a SIGKILL loses what is buffered)
    durable_buffer: bool = true;
    shown "`true`", env "ANALYTICS_DURABLE_BUFFER", parse from_str;

    /// local server: open connections at most; one more is answered `503` (JSON) and closed
    server_max_connections: usize = 4096;
    shown "`4096`", env "ANALYTICS_SERVER_MAX_CONNECTIONS", parse from_str;

    /// local server: seconds a connection may take to send a request's headers, and may stay idle
    /// between requests, before it is closed
    server_header_timeout_seconds: u32 = 10;
    shown "`10`", env "ANALYTICS_SERVER_HEADER_TIMEOUT_SECONDS", parse from_str;

    /// local server: seconds a client may take to send a request's body; past it `408
    /// request_timeout`
    server_body_timeout_seconds: u32 = 30;
    shown "`30`", env "ANALYTICS_SERVER_BODY_TIMEOUT_SECONDS", parse from_str;

    /// where the scheduled `rates` function reads the ECB's reference rates (XML; the last 90 days, so a
    /// missed day is filled the next time) for `convert=true`; `https` (plain `http` only to loopback)
    rates_url: String = crate::fx::ECB_90_DAYS_URL.into();
    shown "the ECB's `eurofxref-hist-90d.xml`", env "ANALYTICS_RATES_URL", parse text;

    /// alert webhooks may also go to loopback addresses, over `http` too (development receivers; the
    /// local configuration sets it); never private or link-local ones
    alerts_allow_loopback: bool = false;
    shown "`false`", env "ANALYTICS_ALERTS_ALLOW_LOOPBACK", parse from_str;

    /// where the dashboard page is reached (`https://analytics.example.com`), for the links in alert
    /// notifications; empty: notifications carry no link
    public_url: String = String::new();
    shown "none", env "ANALYTICS_PUBLIC_URL", parse text;

    /// zero the last IPv4 octet / keep only the IPv6 /48 before storing (see "The event")
    anonymize_ip: bool = true;
    shown "`true`", env "ANALYTICS_ANONYMIZE_IP", parse from_str;

    /// bootstrap keys, each bound to a store; `kind` is `write` or `read`; write keys may list the
    /// storefront origins allowed to use them (YAML `origins: [https://shop.example.com]`). Seeded into
    /// the key table by `analytics serve` and `analytics migrate` when absent; requests are checked
    /// against the table only (local config: the two dev keys)
    keys: Vec<ApiKeyConfig> = Vec::new();
    shown "none", env "ANALYTICS_API_KEYS" ("key:store:kind[:origin|origin],..."), parse key_list;

    /// how long a process trusts a key lookup (found, unknown or revoked), seconds: the revocation bound;
    /// `0` reads the key table on every request
    key_cache_ttl_seconds: u32 = 60;
    shown "`60`", env "ANALYTICS_KEY_CACHE_TTL_SECONDS", parse from_str;

    /// requests per second each API key may make in each process (a Lambda instance, the local server;
    /// token bucket); over it: `429 rate_limited` with `Retry-After`; `0` turns it off. API Gateway's
    /// throttling (template parameters) bounds the whole API
    rate_limit_per_second: u32 = 1000;
    shown "`1000`", env "ANALYTICS_RATE_LIMIT_PER_SECOND", parse from_str;

    /// burst size of that token bucket
    rate_limit_burst: u32 = 2000;
    shown "`2000`", env "ANALYTICS_RATE_LIMIT_BURST", parse from_str;

    /// browser origins (`https://bi.example.com`) that may call the read routes cross-origin, e.g. a
    /// dashboard hosted elsewhere; the built-in page is same-origin and needs none. Track routes follow
    /// each write key's own origins instead
    dashboard_origins: Vec<String> = Vec::new();
    shown "none", env "ANALYTICS_DASHBOARD_ORIGINS" ("origin,origin,..."), parse list;

    /// `track` Lambda: set → events go to this Firehose stream; unset → inserted into ClickHouse directly
    firehose_stream_name: String = String::new();
    shown "none", env "FIREHOSE_STREAM_NAME", parse text;

    /// the key Firehose sends to `ingest` (`X-Amz-Firehose-Access-Key`); required (≥ 16 characters) by
    /// the ingest Lambda (local config: a dev key)
    firehose_access_key: Secret = Secret::default();
    shown "none", env "FIREHOSE_ACCESS_KEY", parse secret;
}

/// The README's configuration table: one row per setting.
pub fn markdown_table() -> String {
    let cell = |s: &str| {
        s.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace('|', "\\|")
    };
    let mut out =
        String::from("| Setting | Env override | Default | Meaning |\n|---|---|---|---|\n");
    for s in ALL {
        let env = match s.env_format {
            Some(f) => format!("`{}` (`{}`)", s.env, f),
            None => format!("`{}`", s.env),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            s.name,
            cell(&env),
            s.default,
            cell(s.doc)
        ));
    }
    out
}
