//! Data lifecycle on BigQuery: customer erasure ([`crate::erasure`]) and the retention job's storage side
//! ([`crate::retention`]), with the same meaning as on ClickHouse.
//!
//! Partitions are daily (`DATE(time)`, id `YYYYMMDD`); a whole expired partition is removed with a
//! `DELETE` whose filter covers exactly that day, which BigQuery applies as a metadata-only partition
//! delete (not billed as a scan). Partition expiration (`migrations`) is the safety net behind the job.
//! Real BigQuery refuses `DELETE` on rows streamed in about the last 30 minutes: erasure of a customer
//! active in that window fails with a retryable error until their rows leave the streaming buffer; the
//! emulator has no such buffer.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::client::Param;
use super::{BigQueryStore, EVENTS_TABLE, REJECTS_TABLE};
use crate::erasure::{ErasureReport, ErasureStore};
use crate::error::StoreError;
use crate::retention::{Expired, Partition, RetainedTables, RetentionStore, Scope};

/// Tables with per-event rows and the time column each is cut on.
const RETAINED: RetainedTables =
    RetainedTables(&[(EVENTS_TABLE, "timestamp"), (REJECTS_TABLE, "received_at")]);

fn micros(t: OffsetDateTime) -> Param {
    Param::Timestamp((t.unix_timestamp_nanos() / 1000) as i64)
}

/// The `store_id` condition of a scope, reading `@stores`.
fn scope_sql(scope: &Scope) -> (&'static str, &[String]) {
    match scope {
        Scope::Stores(s) => ("store_id IN UNNEST(@stores)", s),
        Scope::AllExcept(s) => ("store_id NOT IN UNNEST(@stores)", s),
    }
}

/// The first instant after the day of a `YYYYMMDD` partition id.
fn day_partition_end(id: &str) -> Option<OffsetDateTime> {
    let format = time::macros::format_description!("[year][month][day]");
    let day = time::Date::parse(id, format).ok()?;
    Some(day.next_day()?.midnight().assume_utc())
}

impl BigQueryStore {
    /// The distinct non-empty values of `column` in the customer's events. (`GROUP BY`, not `SELECT
    /// DISTINCT … AS v`, which the emulator answers with a spurious "dataset not found".)
    async fn linked(
        &self,
        store_id: &str,
        customer_id: &str,
        column: &str,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT {column} AS v FROM {} WHERE store_id = @store AND customer_id = @customer \
             AND {column} != '' GROUP BY v",
            self.table(EVENTS_TABLE)
        );
        let rows = self
            .client()
            .query(
                &sql,
                &[
                    ("store", Param::String(store_id.into())),
                    ("customer", Param::String(customer_id.into())),
                ],
            )
            .await?;
        Ok((0..rows.rows.len()).map(|r| rows.string(r, 0)).collect())
    }
}

#[async_trait]
impl ErasureStore for BigQueryStore {
    async fn erase_customer(
        &self,
        store_id: &str,
        customer_id: &str,
    ) -> Result<ErasureReport, StoreError> {
        let step = |what: &'static str| {
            move |e: StoreError| match e {
                StoreError::Rejected(m) => StoreError::Rejected(format!("erasure, {what}: {m}")),
                StoreError::Unavailable(m) => {
                    StoreError::Unavailable(format!("erasure, {what}: {m}"))
                }
                StoreError::ReadLimit(m) => StoreError::ReadLimit(format!("erasure, {what}: {m}")),
                StoreError::ReadTimeout(m) => {
                    StoreError::ReadTimeout(format!("erasure, {what}: {m}"))
                }
            }
        };
        let anonymous_ids = self
            .linked(store_id, customer_id, "anonymous_id")
            .await
            .map_err(step("linked anonymous ids"))?;
        let sessions = self
            .linked(store_id, customer_id, "session_id")
            .await
            .map_err(step("linked sessions"))?;
        let params = [
            ("store", Param::String(store_id.into())),
            ("customer", Param::String(customer_id.into())),
            ("anon", Param::Strings(anonymous_ids.clone())),
            ("sessions", Param::Strings(sessions.clone())),
        ];
        let events_where = "store_id = @store AND (customer_id = @customer OR (customer_id = '' \
             AND (anonymous_id IN UNNEST(@anon) OR session_id IN UNNEST(@sessions))))";
        let events_table = self.table(EVENTS_TABLE);
        // Events counted once each (a resent event may have two rows; both go).
        let counted = self
            .client()
            .query(
                &format!("SELECT COUNT(DISTINCT id) FROM {events_table} WHERE {events_where}"),
                &params,
            )
            .await
            .map_err(step("counting events"))?;
        let events = counted.i64(0, 0)?.max(0) as u64;
        if events > 0 {
            self.client()
                .query(
                    &format!("DELETE FROM {events_table} WHERE {events_where}"),
                    &params,
                )
                .await?;
        }
        // As on ClickHouse: a reject names the customer when their id appears as a JSON string; an
        // unattributed reject is included unless its raw text names another store.
        let rejects_where = "(store_id = @store OR (store_id = '' \
             AND IFNULL(JSON_VALUE(SAFE.PARSE_JSON(raw), '$.storeId'), '') IN ('', @store))) \
             AND STRPOS(raw, CONCAT('\"', @customer, '\"')) > 0";
        let rejects_table = self.table(REJECTS_TABLE);
        let reject_params = &params[..2];
        let counted = self
            .client()
            .query(
                &format!("SELECT COUNT(*) FROM {rejects_table} WHERE {rejects_where}"),
                reject_params,
            )
            .await
            .map_err(step("counting rejects"))?;
        let rejects = counted.i64(0, 0)?.max(0) as u64;
        if rejects > 0 {
            self.client()
                .query(
                    &format!("DELETE FROM {rejects_table} WHERE {rejects_where}"),
                    reject_params,
                )
                .await?;
        }
        Ok(ErasureReport {
            customer_id: customer_id.to_owned(),
            events_deleted: events,
            rejects_deleted: rejects,
            anonymous_ids: anonymous_ids.len() as u64,
            sessions: sessions.len() as u64,
        })
    }
}

#[async_trait]
impl RetentionStore for BigQueryStore {
    fn retained_tables(&self) -> Vec<&'static str> {
        RETAINED.names()
    }

    async fn partitions(&self, table: &str) -> Result<Vec<Partition>, StoreError> {
        let column = RETAINED.time_column(table)?;
        // Reads one column; INFORMATION_SCHEMA.PARTITIONS would read none but is not in the emulator.
        let sql = format!(
            "SELECT FORMAT_DATE('%Y%m%d', DATE({column})) AS p, COUNT(*) AS n FROM {} \
             GROUP BY p ORDER BY p",
            self.table(table)
        );
        let rows = self.client().query(&sql, &[]).await?;
        (0..rows.rows.len())
            .filter_map(|r| {
                let id = rows.string(r, 0);
                let end = day_partition_end(&id)?;
                Some(rows.i64(r, 1).map(|n| Partition {
                    id,
                    end,
                    rows: n.max(0) as u64,
                }))
            })
            .collect()
    }

    async fn drop_partition(&self, table: &str, partition: &str) -> Result<(), StoreError> {
        let column = RETAINED.time_column(table)?;
        let day = day_partition_end(partition)
            .ok_or_else(|| StoreError::Rejected(format!("{partition:?} is not a day partition")))?;
        self.client()
            .query(
                &format!(
                    "DELETE FROM {} WHERE DATE({column}) = DATE(@day)",
                    self.table(table)
                ),
                &[("day", micros(day - time::Duration::days(1)))],
            )
            .await
            .map(|_| ())
    }

    async fn count_expired(&self, rows: &Expired<'_>, skip: &[String]) -> Result<u64, StoreError> {
        let column = RETAINED.time_column(rows.table)?;
        let (scope, stores) = scope_sql(rows.scope);
        let counted = self
            .client()
            .query(
                &format!(
                    "SELECT COUNT(*) FROM {} WHERE {column} < @cutoff AND {scope} \
                     AND FORMAT_DATE('%Y%m%d', DATE({column})) NOT IN UNNEST(@skip)",
                    self.table(rows.table)
                ),
                &[
                    ("cutoff", micros(rows.cutoff)),
                    ("stores", Param::Strings(stores.to_vec())),
                    ("skip", Param::Strings(skip.to_vec())),
                ],
            )
            .await?;
        Ok(counted.i64(0, 0)?.max(0) as u64)
    }

    async fn delete_expired(&self, rows: &Expired<'_>) -> Result<(), StoreError> {
        let column = RETAINED.time_column(rows.table)?;
        let (scope, stores) = scope_sql(rows.scope);
        self.client()
            .query(
                &format!(
                    "DELETE FROM {} WHERE {column} < @cutoff AND {scope}",
                    self.table(rows.table)
                ),
                &[
                    ("cutoff", micros(rows.cutoff)),
                    ("stores", Param::Strings(stores.to_vec())),
                ],
            )
            .await
            .map(|_| ())
    }
}
