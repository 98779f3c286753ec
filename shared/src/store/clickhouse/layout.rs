//! Where the tables live: one server, or a sharded (and possibly replicated) cluster.
//!
//! ## One server
//! Every table is a plain `*MergeTree` table under its own name.
//!
//! ## A cluster (`clickhouse_cluster` set)
//! Each table with rows per event or per key (see [`SHARDED`]) becomes two:
//! - `<name>_local` on every node: the storage (`Replicated*MergeTree` with the `{shard}`/`{replica}`
//!   macros when `clickhouse_replicated`), holding that shard's rows; materialized views (the hourly
//!   rollups) read and write local tables, so each shard aggregates its own events;
//! - `<name>`: a `Distributed` table over the local ones on every node, so every query of the module runs
//!   unchanged on any node (reads fan out to every shard and merge; the module's inserts go through it
//!   with `distributed_foreground_insert = 1`, so an insert returns only when every shard stored its rows).
//!
//! Sharding keys put together what must be together: all copies of one event (so duplicates collapse and
//! the exactly-once lookup finds them) and a session's events (so a session's rows merge on one shard):
//! `cityHash64(store_id, session_id)`, or the event id for events without a session. A customer's sessions
//! may live on different shards; every read aggregates through the `Distributed` table in one `GROUP BY`
//! per key (two-stage aggregation: partial states on the shards, merged on the initiator), so customer
//! funnels, cohorts and LTV stay exact — the whole correctness suite runs on a 2-shard cluster to prove it.
//! Keys and dashboards are sharded by their own key, so every version of one key or dashboard is on one
//! shard and `FINAL` through the `Distributed` table keeps the latest.
//!
//! `schema_migrations` stays local on every node: each node records the versions it applied.
//!
//! Schema changes and deletes (retention, erasure) act on the local tables of every node: node by node
//! through `clickhouse_nodes` (clusters without distributed DDL, and the local test cluster), or once with
//! `ON CLUSTER` through `clickhouse_url` when `clickhouse_nodes` is empty.

use clickhouse::Client;

/// Tables stored as `<name>_local` on every node with a `Distributed` table `<name>` over them, and each
/// one's sharding key.
pub const SHARDED: &[(&str, &str)] = &[
    (
        "commerce_events",
        "cityHash64(store_id, if(session_id != '', session_id, id))",
    ),
    (
        "commerce_events_rejects",
        "cityHash64(request_id, record_index)",
    ),
    ("commerce_hourly", "cityHash64(store_id, hour)"),
    ("commerce_hourly_counts", "cityHash64(store_id, hour)"),
    ("commerce_sessions", "cityHash64(store_id, session_hash)"),
    ("commerce_visitors", "cityHash64(store_id, hour)"),
    ("commerce_customers", "cityHash64(store_id, customer_hash)"),
    ("commerce_product_names", "cityHash64(store_id, product_id)"),
    ("commerce_stock", "cityHash64(store_id, product_id)"),
    ("api_keys", "cityHash64(sha256)"),
    ("analytics_dashboards", "cityHash64(store_id, id)"),
    ("fx_rates", "cityHash64(currency, day)"),
    ("alert_rules", "cityHash64(store_id, id)"),
    ("alert_claims", "cityHash64(store_id, rule_id, slot)"),
    ("alert_log", "cityHash64(store_id, rule_id)"),
    ("alert_deliveries", "cityHash64(store_id, rule_id)"),
];

/// The name of a table's storage on a node of a cluster.
pub fn local(table: &str) -> String {
    format!("{table}_local")
}

/// The cluster side of a [`super::ClickHouseStore`].
#[derive(Clone)]
pub struct Cluster {
    pub name: String,
    pub replicated: bool,
    /// Every node, bound to the module's database, with its URL; empty: `ON CLUSTER`.
    pub nodes: Vec<Node>,
}

/// One node of a cluster.
#[derive(Clone)]
pub struct Node {
    pub url: String,
    /// Bound to the module's database.
    pub client: Client,
    /// Without a database (creating the database needs one).
    pub admin: Client,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("replicated", &self.replicated)
            .field(
                "nodes",
                &self
                    .nodes
                    .iter()
                    .map(|n| n.url.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Where a mutation of a table's rows runs: a client, the table expression to name after `DELETE FROM` or
/// `ALTER TABLE`, and the node it stands for (reports name it).
#[derive(Clone)]
pub struct Site {
    pub client: Client,
    /// `commerce_events`, `commerce_events_local`, or `commerce_events_local ON CLUSTER c`.
    pub table: String,
    pub node: String,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("table", &self.table)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// The sites of a mutation of `table`'s rows: the table itself on one server; its local table on every
/// node of a cluster, node by node or `ON CLUSTER`.
pub fn sites(cluster: Option<&Cluster>, client: &Client, url: &str, table: &str) -> Vec<Site> {
    match cluster {
        None => vec![Site {
            client: client.clone(),
            table: table.to_owned(),
            node: url.to_owned(),
        }],
        Some(c) if c.nodes.is_empty() => vec![Site {
            client: client.clone(),
            table: format!("{} ON CLUSTER {}", local(table), c.name),
            node: format!("ON CLUSTER {}", c.name),
        }],
        Some(c) => c
            .nodes
            .iter()
            .map(|n| Site {
                client: n.client.clone(),
                table: local(table),
                node: n.url.clone(),
            })
            .collect(),
    }
}
