//! Data lifecycle SQL: retention ([`crate::retention`]) and customer erasure ([`crate::erasure`]).
//!
//! Erasure also rebuilds the `commerce_hourly` rollup rows of the hours it touched, so no aggregate keeps
//! counting an erased customer. Both delete with lightweight `DELETE` (rows are masked at once, storage is reclaimed by merges) and
//! whole partitions with `ALTER TABLE … DROP PARTITION ID`. Table names come from the fixed list below;
//! every value is a server-side parameter.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::migrations::{
    HOURLY_EVENTS, HOURLY_EVENTS_GROUP, HOURLY_VISITORS, HOURLY_VISITORS_GROUP,
};
use super::{ClickHouseStore, EVENTS_TABLE, classify, layout};
use crate::erasure::{ErasureReport, ErasureStore};
use crate::error::StoreError;
use crate::retention::{
    Expired, Partition, RetainedTables, RetentionStore, Scope, month_partition_end,
};

/// Tables with per-event rows and the time column each is cut on.
const RETAINED: RetainedTables = RetainedTables(&[
    (EVENTS_TABLE, "timestamp"),
    (super::REJECTS_TABLE, "received_at"),
    // Per-hour aggregates: the cutoff is a whole UTC day, so `hour < cutoff` removes exactly the hours whose
    // events are removed.
    (HOURLY_TABLE, "hour"),
]);

const HOURLY_TABLE: &str = "commerce_hourly";

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// `store_id` condition of a scope, reading the `{stores:Array(String)}` parameter.
fn scope_sql(scope: &Scope) -> (&'static str, &[String]) {
    match scope {
        Scope::Stores(s) => ("has({stores:Array(String)}, store_id)", s),
        Scope::AllExcept(s) => ("NOT has({stores:Array(String)}, store_id)", s),
    }
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct PartitionRow {
    partition: String,
    rows: u64,
}

#[async_trait]
impl ErasureStore for ClickHouseStore {
    async fn erase_customer(
        &self,
        store_id: &str,
        customer_id: &str,
    ) -> Result<ErasureReport, StoreError> {
        self.erase(store_id, customer_id).await
    }
}

#[async_trait]
impl RetentionStore for ClickHouseStore {
    fn retained_tables(&self) -> Vec<&'static str> {
        RETAINED.names()
    }

    async fn partitions(&self, table: &str) -> Result<Vec<Partition>, StoreError> {
        RETAINED.time_column(table)?;
        let rows = self
            .client
            .query(&format!(
                "SELECT _partition_id AS partition, count() AS rows FROM {table} \
                 GROUP BY partition ORDER BY partition"
            ))
            .fetch_all::<PartitionRow>()
            .await
            .map_err(classify)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(Partition {
                    end: month_partition_end(&r.partition)?,
                    id: r.partition,
                    rows: r.rows,
                })
            })
            .collect())
    }

    async fn drop_partition(&self, table: &str, partition: &str) -> Result<(), StoreError> {
        RETAINED.time_column(table)?;
        for site in self.sites(table) {
            site.client
                .query(&format!("ALTER TABLE {} DROP PARTITION ID ?", site.table))
                .bind(partition)
                .execute()
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    fn nodes(&self) -> Vec<String> {
        self.sites(EVENTS_TABLE)
            .into_iter()
            .map(|s| s.node)
            .collect()
    }

    async fn count_expired(&self, rows: &Expired<'_>, skip: &[String]) -> Result<u64, StoreError> {
        self.expired(
            "SELECT count()",
            rows,
            " AND NOT has({skip:Array(String)}, _partition_id)",
        )?
        .param("skip", skip)
        .fetch_one::<u64>()
        .await
        .map_err(classify)
    }

    async fn delete_expired(&self, rows: &Expired<'_>) -> Result<(), StoreError> {
        for site in self.sites(rows.table) {
            let column = RETAINED.time_column(rows.table)?;
            let (scope, stores) = scope_sql(rows.scope);
            site.client
                .query(&format!(
                    "DELETE FROM {} WHERE {column} < fromUnixTimestamp64Milli({{cutoff:Int64}}) \
                     AND {scope}",
                    site.table
                ))
                .param("cutoff", ms(rows.cutoff))
                .param("stores", stores)
                .execute()
                .await
                .map_err(classify)?;
        }
        Ok(())
    }
}

impl ClickHouseStore {
    /// `{verb} FROM` the expired rows (`and`: more conditions), with their parameters bound; through the
    /// `Distributed` table on a cluster (every shard counted).
    fn expired(
        &self,
        verb: &str,
        rows: &Expired<'_>,
        and: &str,
    ) -> Result<clickhouse::query::Query, StoreError> {
        let column = RETAINED.time_column(rows.table)?;
        let (scope, stores) = scope_sql(rows.scope);
        Ok(self
            .client
            .query(&format!(
                "{verb} FROM {table} WHERE {column} < fromUnixTimestamp64Milli({{cutoff:Int64}}) \
                 AND {scope}{and}",
                table = rows.table
            ))
            .param("cutoff", ms(rows.cutoff))
            .param("stores", stores))
    }
}

impl ClickHouseStore {
    /// Rebuilds the rollup rows of `hours` (Unix seconds) of a store from the raw events left: the rows are
    /// deleted, then the hours aggregated again. An insert landing meanwhile is at worst aggregated twice,
    /// which the rollup's distinct sets absorb.
    async fn reaggregate_hours(&self, store_id: &str, hours: &[u32]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (hours.iter().min(), hours.iter().max()) else {
            return Ok(());
        };
        for site in self.sites(HOURLY_TABLE) {
            site.client
                .query(&format!(
                    "DELETE FROM {} WHERE store_id = {{store:String}} \
                     AND has({{hours:Array(UInt32)}}, toUnixTimestamp(hour))",
                    site.table
                ))
                .param("store", store_id)
                .param("hours", hours)
                .execute()
                .await
                .map_err(classify)?;
        }
        // On a cluster node the hours are rebuilt from that node's events into its own rollup (the rollup is
        // sharded like its view's source); `ON CLUSTER`, through the `Distributed` tables from one node.
        let (sources, rollup, events) = match &self.cluster {
            Some(c) if !c.nodes.is_empty() => (
                c.nodes.iter().map(|n| n.client.clone()).collect(),
                layout::local(HOURLY_TABLE),
                layout::local(EVENTS_TABLE),
            ),
            _ => (
                vec![self.client.clone()],
                HOURLY_TABLE.to_owned(),
                EVENTS_TABLE.to_owned(),
            ),
        };
        for client in sources {
            for (select, group) in [
                (HOURLY_EVENTS, HOURLY_EVENTS_GROUP),
                (HOURLY_VISITORS, HOURLY_VISITORS_GROUP),
            ] {
                client
                    .query(&format!(
                        "INSERT INTO {rollup} {select} FROM {events} \
                         WHERE store_id = {{store:String}} AND NOT is_bot \
                         AND timestamp >= toDateTime({{first:UInt32}}, 'UTC') \
                         AND timestamp < toDateTime({{last:UInt32}}, 'UTC') + INTERVAL 1 HOUR \
                         AND has({{hours:Array(UInt32)}}, toUnixTimestamp(toStartOfHour(timestamp))) {group}"
                    ))
                    .param("store", store_id)
                    .param("hours", hours)
                    .param("first", *first)
                    .param("last", *last)
                    .execute()
                    .await
                    .map_err(classify)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct Linked {
    anonymous_ids: Vec<String>,
    sessions: Vec<String>,
}

impl ClickHouseStore {
    /// See [`crate::erasure`]: the customer's own events, the anonymous ids and sessions they used (rows of
    /// those without another customer's id), and rejected records that name them.
    pub(super) async fn erase(
        &self,
        store_id: &str,
        customer_id: &str,
    ) -> Result<ErasureReport, StoreError> {
        let linked = self
            .client
            .query(&format!(
                "SELECT groupUniqArrayIf(anonymous_id, anonymous_id != '') AS anonymous_ids, \
                 groupUniqArrayIf(session_id, session_id != '') AS sessions \
                 FROM {EVENTS_TABLE} WHERE store_id = {{store:String}} AND customer_id = {{customer:String}}"
            ))
            .param("store", store_id)
            .param("customer", customer_id)
            .fetch_one::<Linked>()
            .await
            .map_err(classify)?;
        let events_where = "store_id = {store:String} AND (customer_id = {customer:String} \
             OR (customer_id = '' AND (has({anon:Array(String)}, anonymous_id) \
                                       OR has({sessions:Array(String)}, session_id))))";
        let events = self
            .client
            .query(&format!(
                "SELECT count() FROM {EVENTS_TABLE} WHERE {events_where}"
            ))
            .param("store", store_id)
            .param("customer", customer_id)
            .param("anon", &linked.anonymous_ids)
            .param("sessions", &linked.sessions)
            .fetch_one::<u64>()
            .await
            .map_err(classify)?;
        if events > 0 {
            let hours: Vec<u32> = self
                .client
                .query(&format!(
                    "SELECT DISTINCT toUnixTimestamp(toStartOfHour(timestamp)) FROM {EVENTS_TABLE} \
                     WHERE {events_where}"
                ))
                .param("store", store_id)
                .param("customer", customer_id)
                .param("anon", &linked.anonymous_ids)
                .param("sessions", &linked.sessions)
                .fetch_all()
                .await
                .map_err(classify)?;
            for site in self.sites(EVENTS_TABLE) {
                site.client
                    .query(&format!("DELETE FROM {} WHERE {events_where}", site.table))
                    .param("store", store_id)
                    .param("customer", customer_id)
                    .param("anon", &linked.anonymous_ids)
                    .param("sessions", &linked.sessions)
                    .execute()
                    .await
                    .map_err(classify)?;
            }
            self.reaggregate_hours(store_id, &hours).await?;
        }
        // A rejected record is raw text: it names the customer when their id appears as a JSON string.
        // Records whose store could not be read are included unless they name another store (better to
        // erase too much of a reject than too little, but never another store's).
        // Unattributed records whose raw text names another store (`"storeId"`) are that store's, not this one's.
        let rejects_where = "(store_id = {store:String} OR (store_id = '' \
             AND JSONExtractString(raw, 'storeId') IN ('', {store:String}))) \
             AND position(raw, concat('\"', {customer:String}, '\"')) > 0";
        let table = super::REJECTS_TABLE;
        let rejects = self
            .client
            .query(&format!(
                "SELECT count() FROM {table} WHERE {rejects_where}"
            ))
            .param("store", store_id)
            .param("customer", customer_id)
            .fetch_one::<u64>()
            .await
            .map_err(classify)?;
        if rejects > 0 {
            for site in self.sites(table) {
                site.client
                    .query(&format!("DELETE FROM {} WHERE {rejects_where}", site.table))
                    .param("store", store_id)
                    .param("customer", customer_id)
                    .execute()
                    .await
                    .map_err(classify)?;
            }
        }
        Ok(ErasureReport {
            customer_id: customer_id.to_owned(),
            events_deleted: events,
            rejects_deleted: rejects,
            anonymous_ids: linked.anonymous_ids.len() as u64,
            sessions: linked.sessions.len() as u64,
        })
    }
}
