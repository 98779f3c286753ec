//! Data lifecycle SQL: retention ([`crate::retention`]) and customer erasure ([`crate::erasure`]).
//!
//! Erasure also keeps the hourly rollups consistent, so no aggregate keeps counting an erased customer:
//! before the events are deleted, their counts are subtracted from `commerce_hourly_counts` (one insert of
//! negative counts, with a deduplication token naming exactly those rows, so an erasure retried after a
//! failure never subtracts twice; inserts landing meanwhile only add); after, the visitors' rows
//! of the hours touched in `commerce_visitors`, the `commerce_sessions` rows of the sessions touched, and
//! the `commerce_product_names` and `commerce_stock` rows of the product-days whose views or inventory
//! updates are erased, are rebuilt from the events left, and the customer's rows of `commerce_customers` deleted. Both delete with lightweight `DELETE` (rows are masked at once, storage is reclaimed by merges) and
//! whole partitions with `ALTER TABLE … DROP PARTITION ID`. Table names come from the fixed list below;
//! every value is a server-side parameter.

use async_trait::async_trait;
use time::OffsetDateTime;

use sha2::{Digest as _, Sha256};

use super::migrations::{
    PRODUCT_NAMES_ROLLUP, PRODUCT_NAMES_ROLLUP_GROUP, SESSIONS_ROLLUP, SESSIONS_ROLLUP_GROUP,
    STOCK_ROLLUP, STOCK_ROLLUP_GROUP, VISITOR_ROWS, VISITOR_ROWS_GROUP,
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
    (VISITORS_TABLE, "hour"),
    (COUNTS_TABLE, "hour"),
    (SESSIONS_TABLE, "hour"),
    // A day's rows: the cutoff is a whole UTC day, so `day < cutoff` removes exactly the days whose
    // events are removed.
    (CUSTOMERS_TABLE, "day"),
    (PRODUCT_NAMES.table, "day"),
    (STOCK.table, "day"),
]);

const VISITORS_TABLE: &str = "commerce_visitors";
const COUNTS_TABLE: &str = "commerce_hourly_counts";
const SESSIONS_TABLE: &str = "commerce_sessions";
const CUSTOMERS_TABLE: &str = "commerce_customers";

/// A rollup kept per store, product and UTC day, of one kind of event.
struct ProductDays {
    table: &'static str,
    /// Its rows of the events a query reads: `{select} FROM <events> {rest}`, `rest` being
    /// `WHERE <condition> GROUP BY …`.
    select: &'static str,
    rest: &'static str,
}

impl ProductDays {
    /// The condition its view puts on the events (between `WHERE` and `GROUP BY` in `rest`): the erased
    /// events its rows may have come from.
    fn events(&self) -> &'static str {
        let condition = self.rest.strip_prefix("WHERE ").unwrap_or(self.rest);
        condition.split(" GROUP BY ").next().unwrap_or(condition)
    }
}

const PRODUCT_NAMES: ProductDays = ProductDays {
    table: "commerce_product_names",
    select: PRODUCT_NAMES_ROLLUP,
    rest: PRODUCT_NAMES_ROLLUP_GROUP,
};

const STOCK: ProductDays = ProductDays {
    table: "commerce_stock",
    select: STOCK_ROLLUP,
    rest: STOCK_ROLLUP_GROUP,
};

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
                    "DELETE FROM {} WHERE {column} < fromUnixTimestamp64Milli({{cutoff:Int64}}, 'UTC') \
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
                "{verb} FROM {table} WHERE {column} < fromUnixTimestamp64Milli({{cutoff:Int64}}, 'UTC') \
                 AND {scope}{and}",
                table = rows.table
            ))
            .param("cutoff", ms(rows.cutoff))
            .param("stores", stores))
    }
}

/// Where a rollup is rebuilt from the raw events: the clients to run on, the rollup's table and the events'
/// table as those clients name them.
struct RollupSites {
    clients: Vec<clickhouse::Client>,
    rollup: String,
    events: String,
}

impl ClickHouseStore {
    /// Node by node on a cluster with nodes (a rollup's rows on a node come from that node's events, as
    /// its view is on the local tables), else once, through the `Distributed` tables on a cluster.
    fn rollup_sites(&self, rollup: &str) -> RollupSites {
        match &self.cluster {
            Some(c) if !c.nodes.is_empty() => RollupSites {
                clients: c.nodes.iter().map(|n| n.client.clone()).collect(),
                rollup: layout::local(rollup),
                events: layout::local(EVENTS_TABLE),
            },
            _ => RollupSites {
                clients: vec![self.client.clone()],
                rollup: rollup.to_owned(),
                events: EVENTS_TABLE.to_owned(),
            },
        }
    }

    /// Rebuilds rows of `rollup` from the raw events left: its rows matching `rows` are deleted (on every
    /// node), then `select FROM <events> rest` inserted again on its [`RollupSites`]; `bind` binds the
    /// parameters both statements name (`{store:String}` always).
    async fn rebuild(
        &self,
        rollup: &str,
        rows: &str,
        (select, rest): (&str, &str),
        bind: impl Fn(clickhouse::query::Query) -> clickhouse::query::Query,
    ) -> Result<(), StoreError> {
        for site in self.sites(rollup) {
            bind(site.client.query(&format!(
                "DELETE FROM {} WHERE store_id = {{store:String}} AND {rows}",
                site.table
            )))
            .execute()
            .await
            .map_err(classify)?;
        }
        let RollupSites {
            clients,
            rollup,
            events,
        } = self.rollup_sites(rollup);
        for client in clients {
            bind(client.query(&format!(
                "INSERT INTO {rollup} {select} FROM {events} {rest}"
            )))
            .execute()
            .await
            .map_err(classify)?;
        }
        Ok(())
    }

    /// Rebuilds the visitors' rows of `hours` (Unix seconds) of a store from the raw events left: the rows
    /// are deleted, then the hours aggregated again. An insert landing meanwhile is at worst aggregated
    /// twice, as the same rows, which a distinct count ignores.
    async fn reaggregate_hours(&self, store_id: &str, hours: &[u32]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (hours.iter().min(), hours.iter().max()) else {
            return Ok(());
        };
        let rest = VISITOR_ROWS_GROUP.replacen(
            "WHERE ",
            "WHERE store_id = {store:String} \
             AND timestamp >= toDateTime({first:UInt32}, 'UTC') \
             AND timestamp < toDateTime({last:UInt32}, 'UTC') + INTERVAL 1 HOUR \
             AND has({hours:Array(UInt32)}, toUnixTimestamp(toStartOfHour(timestamp))) AND ",
            1,
        );
        self.rebuild(
            VISITORS_TABLE,
            "has({hours:Array(UInt32)}, toUnixTimestamp(hour))",
            (VISITOR_ROWS, &rest),
            |q| {
                q.param("store", store_id)
                    .param("hours", hours)
                    .param("first", *first)
                    .param("last", *last)
            },
        )
        .await
    }

    /// Rebuilds the `commerce_sessions` rows of `sessions` (ids) of a store from the raw events left: the
    /// rows are deleted, then the sessions aggregated again. The rollup holds only `min`/`max`, so an
    /// insert landing meanwhile, aggregated by its view and again here, changes nothing.
    async fn rebuild_sessions(
        &self,
        store_id: &str,
        sessions: &[String],
    ) -> Result<(), StoreError> {
        if sessions.is_empty() {
            return Ok(());
        }
        let rest = SESSIONS_ROLLUP_GROUP.replacen(
            "WHERE ",
            "WHERE store_id = {store:String} AND has({sessions:Array(String)}, session_id) AND ",
            1,
        );
        self.rebuild(
            SESSIONS_TABLE,
            "session_hash IN (SELECT cityHash64(arrayJoin({sessions:Array(String)})))",
            (SESSIONS_ROLLUP, &rest),
            |q| q.param("store", store_id).param("sessions", sessions),
        )
        .await
    }

    /// Rebuilds the rows of `rollup` of `erased` (product-days) of a store from the raw events left: the
    /// rows are deleted, then the days' events aggregated again. `max` only, so an insert landing
    /// meanwhile, aggregated by its view and again here, changes nothing.
    async fn rebuild_product_days(
        &self,
        store_id: &str,
        rollup: &ProductDays,
        erased: &[ProductDay],
    ) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (
            erased.iter().map(|n| n.day).min(),
            erased.iter().map(|n| n.day).max(),
        ) else {
            return Ok(());
        };
        let days: Vec<u32> = erased.iter().map(|n| n.day).collect();
        let products: Vec<&str> = erased.iter().map(|n| n.product_id.as_str()).collect();
        let keys = "has(arrayZip({days:Array(UInt32)}, {products:Array(String)}), ";
        let rest = rollup.rest.replacen(
            "WHERE ",
            &format!(
                "WHERE store_id = {{store:String}} \
                 AND timestamp >= toDateTime({{first:UInt32}}, 'UTC') \
                 AND timestamp < toDateTime({{last:UInt32}}, 'UTC') + INTERVAL 1 DAY \
                 AND {keys}(toUnixTimestamp(toDateTime(toDate(timestamp), 'UTC')), product_id)) AND "
            ),
            1,
        );
        self.rebuild(
            rollup.table,
            &format!("{keys}(toUnixTimestamp(toDateTime(day, 'UTC')), product_id))"),
            (rollup.select, &rest),
            |q| {
                q.param("store", store_id)
                    .param("days", &days)
                    .param("products", &products)
                    .param("first", first)
                    .param("last", last)
            },
        )
        .await
    }

    /// Adds the negative of the counts of the events about to be erased (`events_where`, `events` rows) to
    /// `commerce_hourly_counts`, where the view had added them: node by node on a cluster with nodes (each
    /// node's counts came from its own events), else in one statement. The token names the store, the
    /// customer and the rows, so a retry of an erasure that failed before its delete subtracts nothing
    /// again (the table keeps a deduplication window); one that already deleted finds no rows.
    async fn subtract_counts(
        &self,
        store_id: &str,
        customer_id: &str,
        events_where: &str,
        linked: &Linked,
        events: u64,
    ) -> Result<(), StoreError> {
        let RollupSites {
            clients,
            rollup: counts,
            events: raw,
        } = self.rollup_sites(COUNTS_TABLE);
        let token = format!(
            "{:x}",
            Sha256::digest(format!(
                "erase-counts\n{store_id}\n{customer_id}\n{events}\n{}\n{}",
                linked.anonymous_ids.join(","),
                linked.sessions.join(",")
            ))
        );
        for (node, client) in clients.into_iter().enumerate() {
            client
                .query(&format!(
                    "INSERT INTO {counts} SELECT store_id, toStartOfHour(timestamp) AS hour, type, country, \
                     -toInt64(count()) AS events FROM {raw} WHERE {events_where} AND NOT is_bot \
                     GROUP BY store_id, hour, type, country"
                ))
                .param("store", store_id)
                .param("customer", customer_id)
                .param("anon", &linked.anonymous_ids)
                .param("sessions", &linked.sessions)
                .with_setting("insert_deduplication_token", format!("{token}-{node}"))
                .execute()
                .await
                .map_err(classify)?;
        }
        Ok(())
    }
}

/// A product and UTC day (Unix seconds) whose rollup row (a name, a stock) an erasure may change.
#[derive(Debug, clickhouse::Row, serde::Deserialize)]
struct ProductDay {
    day: u32,
    product_id: String,
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
        // The parameters of every statement over the erased events (`events_where`).
        let bind = |q: clickhouse::query::Query| {
            q.param("store", store_id)
                .param("customer", customer_id)
                .param("anon", &linked.anonymous_ids)
                .param("sessions", &linked.sessions)
        };
        let events_where = "store_id = {store:String} AND (customer_id = {customer:String} \
             OR (customer_id = '' AND (has({anon:Array(String)}, anonymous_id) \
                                       OR has({sessions:Array(String)}, session_id))))";
        let events = bind(self.client.query(&format!(
            "SELECT count() FROM {EVENTS_TABLE} WHERE {events_where}"
        )))
        .fetch_one::<u64>()
        .await
        .map_err(classify)?;
        if events > 0 {
            let hours: Vec<u32> = bind(self.client.query(&format!(
                "SELECT DISTINCT toUnixTimestamp(toStartOfHour(timestamp)) FROM {EVENTS_TABLE} \
                     WHERE {events_where}"
            )))
            .fetch_all()
            .await
            .map_err(classify)?;
            // Every session with a row erased: the customer's, and the linked anonymous ids' others.
            let touched_sessions: Vec<String> = bind(self.client.query(&format!(
                "SELECT DISTINCT session_id FROM {EVENTS_TABLE} \
                     WHERE {events_where} AND session_id != ''"
            )))
            .fetch_all()
            .await
            .map_err(classify)?;
            // Every product-day whose name or stock came, or may have come, from an erased event.
            let mut erased_days = Vec::new();
            for rollup in [&PRODUCT_NAMES, &STOCK] {
                let days: Vec<ProductDay> = bind(self.client.query(&format!(
                    "SELECT DISTINCT toUnixTimestamp(toDateTime(toDate(timestamp), 'UTC')) AS day, \
                     product_id FROM {EVENTS_TABLE} WHERE {events_where} AND ({})",
                    rollup.events()
                )))
                .fetch_all()
                .await
                .map_err(classify)?;
                erased_days.push((rollup, days));
            }
            self.subtract_counts(store_id, customer_id, events_where, &linked, events)
                .await?;
            for site in self.sites(EVENTS_TABLE) {
                bind(
                    site.client
                        .query(&format!("DELETE FROM {} WHERE {events_where}", site.table)),
                )
                .execute()
                .await
                .map_err(classify)?;
            }
            self.reaggregate_hours(store_id, &hours).await?;
            self.rebuild_sessions(store_id, &touched_sessions).await?;
            for (rollup, days) in &erased_days {
                self.rebuild_product_days(store_id, rollup, days).await?;
            }
            // Their orders are all erased (every one carries their id), so are their first orders.
            for site in self.sites(CUSTOMERS_TABLE) {
                site.client
                    .query(&format!(
                        "DELETE FROM {} WHERE store_id = {{store:String}} \
                         AND customer_hash = cityHash64({{customer:String}})",
                        site.table
                    ))
                    .param("store", store_id)
                    .param("customer", customer_id)
                    .execute()
                    .await
                    .map_err(classify)?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_day_rollup_names_the_events_its_view_reads() {
        for (rollup, events) in [
            (
                &PRODUCT_NAMES,
                "type = 'product.viewed' AND product_id != '' AND product_name != ''",
            ),
            (&STOCK, "NOT is_bot AND type = 'inventory.updated'"),
        ] {
            assert_eq!(rollup.events(), events, "{}", rollup.table);
        }
    }
}
