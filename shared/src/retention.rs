//! Retention: the scheduled job that removes event data past `retention_days`.
//!
//! ## Contract
//! - **Cutoff.** Retention counts whole UTC days: with `retention_days = N`, a run at any time on day D
//!   keeps every row from `D - N` 00:00 UTC on and removes everything before it. So the result of a run
//!   does not depend on the hour it runs, and a rerun the same day removes nothing more.
//! - **Every table that keeps per-event rows** (the store adapter lists them: events, rejects, and any
//!   per-event table added later) is cut at the same instant, on its own time column.
//! - **Cheap first.** A monthly partition whose whole month lies before the *earliest-kept* instant of every
//!   store (the longest retention) is dropped (`DROP PARTITION`: metadata only). What remains past a cutoff
//!   lives in boundary partitions and is removed with a lightweight `DELETE`, which hides the rows at once
//!   and frees the space on later merges.
//! - **Per-store overrides** (`store_retention_days`): stores with an override are cut at their own
//!   cutoff, all other stores at the default one; one `DELETE` per distinct cutoff.
//! - **Idempotent**: a second run finds nothing. `dry_run` reports what a run would remove and changes
//!   nothing. The [`Report`] is returned (the Lambda's response) and logged as one structured JSON line.
//! - Table TTL (`max_retention_days`) stays as a safety net behind the job, never ahead of it.
//!
//! Custom dashboards hold no per-event rows and are not touched. The rollups (`commerce_visitors`,
//! `commerce_hourly_counts`, `commerce_sessions`) are listed by the adapter like the events and partitioned by month like them: since the cutoff is a whole
//! UTC day, `hour < cutoff` removes exactly the hours whose events are removed, so what a dashboard reads
//! from the rollup always matches what is left in the raw events.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;
use time::{Date, Month, OffsetDateTime, Time};

use crate::config::Config;
use crate::error::StoreError;

/// Which stores a cutoff applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "stores")]
pub enum Scope {
    /// Exactly these stores (those with an override of the same number of days).
    Stores(Vec<String>),
    /// Every store but these (the default retention; rows without a store belong here).
    AllExcept(Vec<String>),
}

/// One monthly partition of a table, with its live row count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The adapter's partition id (`YYYYMM` for ClickHouse's `toYYYYMM`).
    pub id: String,
    /// First instant after the partition's month: every row in it is older than this.
    pub end: OffsetDateTime,
    pub rows: u64,
}

/// An adapter's tables with per-event rows, each with the time column it is cut on.
#[derive(Debug, Clone, Copy)]
pub struct RetainedTables(pub &'static [(&'static str, &'static str)]);

impl RetainedTables {
    /// The table names, for [`RetentionStore::retained_tables`].
    pub fn names(self) -> Vec<&'static str> {
        self.0.iter().map(|(t, _)| *t).collect()
    }

    /// The time column `table` is cut on; a table not listed is refused (never a guessed column).
    pub fn time_column(self, table: &str) -> Result<&'static str, StoreError> {
        self.0
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, c)| *c)
            .ok_or_else(|| StoreError::Rejected(format!("{table} is not a retained table")))
    }
}

/// What the retention job needs from storage.
/// The rows of `table` whose stores are in `scope` and whose time is before `cutoff`.
#[derive(Debug, Clone, Copy)]
pub struct Expired<'a> {
    pub table: &'a str,
    pub scope: &'a Scope,
    pub cutoff: OffsetDateTime,
}

#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Tables holding per-event rows, each cut on its own time column.
    fn retained_tables(&self) -> Vec<&'static str>;
    /// The table's partitions with rows.
    async fn partitions(&self, table: &str) -> Result<Vec<Partition>, StoreError>;
    /// Where the retention job acts, for the report: the server, or every node of a cluster.
    fn nodes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Drops a whole partition (on every node).
    async fn drop_partition(&self, table: &str, partition: &str) -> Result<(), StoreError>;
    /// The expired rows outside the `skip` partitions.
    async fn count_expired(&self, rows: &Expired<'_>, skip: &[String]) -> Result<u64, StoreError>;
    /// Deletes the expired rows; when it returns they are no longer visible.
    async fn delete_expired(&self, rows: &Expired<'_>) -> Result<(), StoreError>;
}

/// `retention_days` and its per-store overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub default_days: u32,
    pub store_days: BTreeMap<String, u32>,
}

/// One cutoff and the stores it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub days: u32,
    pub cutoff: OffsetDateTime,
    pub scope: Scope,
}

impl Policy {
    pub fn from_config(config: &Config) -> Self {
        Self {
            default_days: config.retention_days,
            store_days: config.store_retention_days.clone(),
        }
    }

    /// The cutoffs in force at `now`: the default one first, then one per distinct override.
    pub fn rules(&self, now: OffsetDateTime) -> Vec<Rule> {
        let overridden: Vec<String> = self.store_days.keys().cloned().collect();
        let mut rules = vec![Rule {
            days: self.default_days,
            cutoff: cutoff(now, self.default_days),
            scope: Scope::AllExcept(overridden),
        }];
        let mut by_days: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (store, days) in &self.store_days {
            by_days.entry(*days).or_default().push(store.clone());
        }
        rules.extend(by_days.into_iter().map(|(days, stores)| Rule {
            days,
            cutoff: cutoff(now, days),
            scope: Scope::Stores(stores),
        }));
        rules
    }
}

/// Start of the UTC day `now` is in, minus `days` days.
pub fn cutoff(now: OffsetDateTime, days: u32) -> OffsetDateTime {
    let midnight = now
        .to_offset(time::UtcOffset::UTC)
        .replace_time(Time::MIDNIGHT);
    midnight - time::Duration::days(i64::from(days))
}

/// First instant after the month of a `YYYYMM` partition id; `None` for any other id.
pub fn month_partition_end(id: &str) -> Option<OffsetDateTime> {
    if id.len() != 6 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = id[..4].parse().ok()?;
    let month: u8 = id[4..].parse().ok()?;
    let month = Month::try_from(month).ok()?;
    let (y, m) = if month == Month::December {
        (year + 1, Month::January)
    } else {
        (year, month.next())
    };
    Some(
        Date::from_calendar_date(y, m, 1)
            .ok()?
            .midnight()
            .assume_utc(),
    )
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dry_run: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub ran_at: OffsetDateTime,
    /// The default cutoff (stores without an override): rows before it are gone.
    #[serde(with = "time::serde::rfc3339")]
    pub cutoff: OffsetDateTime,
    pub retention_days: u32,
    /// Every cutoff applied (the default one first).
    pub rules: Vec<RuleReport>,
    pub tables: Vec<TableReport>,
    /// Where partitions were dropped and rows deleted: the server, each node of a cluster, or
    /// `ON CLUSTER <name>`.
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleReport {
    pub retention_days: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub cutoff: OffsetDateTime,
    pub scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableReport {
    pub table: String,
    /// Whole partitions dropped (or that would be, in a dry run), with their rows.
    pub partitions_dropped: Vec<DroppedPartition>,
    /// Rows removed by `DELETE` outside the dropped partitions, per rule (same order as `rules`).
    pub rows_deleted: Vec<u64>,
    /// All rows removed from the table: dropped partitions' rows plus deleted rows.
    pub rows_removed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DroppedPartition {
    pub partition: String,
    pub rows: u64,
}

/// Runs (or, with `dry_run`, plans) retention at `now`.
pub async fn run(
    store: &dyn RetentionStore,
    policy: &Policy,
    now: OffsetDateTime,
    dry_run: bool,
) -> Result<Report, StoreError> {
    let rules = policy.rules(now);
    // A partition may go whole only when every store's cutoff is past its month: the earliest cutoff
    // (the longest retention) decides.
    let earliest = rules
        .iter()
        .map(|r| r.cutoff)
        .min()
        .unwrap_or_else(|| cutoff(now, policy.default_days));
    let mut tables = Vec::new();
    for table in store.retained_tables() {
        let dropped: Vec<Partition> = store
            .partitions(table)
            .await?
            .into_iter()
            .filter(|p| p.end <= earliest)
            .collect();
        let skip: Vec<String> = dropped.iter().map(|p| p.id.clone()).collect();
        if !dry_run {
            for p in &dropped {
                store.drop_partition(table, &p.id).await?;
            }
        }
        let mut rows_deleted = Vec::with_capacity(rules.len());
        for rule in &rules {
            let expired = Expired {
                table,
                scope: &rule.scope,
                cutoff: rule.cutoff,
            };
            let n = store.count_expired(&expired, &skip).await?;
            if n > 0 && !dry_run {
                store.delete_expired(&expired).await?;
            }
            rows_deleted.push(n);
        }
        let rows_removed =
            dropped.iter().map(|p| p.rows).sum::<u64>() + rows_deleted.iter().sum::<u64>();
        tables.push(TableReport {
            table: table.to_owned(),
            partitions_dropped: dropped
                .into_iter()
                .map(|p| DroppedPartition {
                    partition: p.id,
                    rows: p.rows,
                })
                .collect(),
            rows_deleted,
            rows_removed,
        });
    }
    let report = Report {
        dry_run,
        ran_at: now,
        cutoff: rules[0].cutoff,
        retention_days: policy.default_days,
        rules: rules
            .iter()
            .map(|r| RuleReport {
                retention_days: r.days,
                cutoff: r.cutoff,
                scope: r.scope.clone(),
            })
            .collect(),
        tables,
        nodes: store.nodes(),
    };
    tracing::info!(
        report = %serde_json::to_string(&report).unwrap_or_default(),
        dry_run,
        "retention run"
    );
    Ok(report)
}

/// The retention Lambda's handler: runs retention at the clock's "now" (a dry run when the input asks, see
/// [`is_dry_run`]) and returns the report.
pub async fn handle(
    store: &dyn RetentionStore,
    policy: &Policy,
    clock: &dyn crate::clock::Clock,
    input: &serde_json::Value,
) -> Result<Report, StoreError> {
    run(store, policy, clock.now(), is_dry_run(input)).await
}

/// The input of the retention Lambda: an EventBridge schedule event (run for real), or any JSON object with
/// `"dryRun": true` at the top level or in `detail` (what would go; nothing changes).
pub fn is_dry_run(input: &serde_json::Value) -> bool {
    let flag = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_bool);
    flag(input.get("dryRun"))
        .or_else(|| flag(input.get("detail").and_then(|d| d.get("dryRun"))))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_cutoff_is_midnight_utc_of_the_day_retention_days_back_whatever_the_hour() {
        for now in [
            datetime!(2026-11-26 00:00:00 UTC),
            datetime!(2026-11-26 23:59:59.999 UTC),
            datetime!(2026-11-27 01:00 +03:00),
        ] {
            assert_eq!(cutoff(now, 30), datetime!(2026-10-27 00:00 UTC), "{now}");
        }
        assert_eq!(
            cutoff(datetime!(2026-03-01 12:00 UTC), 365),
            datetime!(2025-03-01 00:00 UTC)
        );
    }

    #[test]
    fn month_partition_ids_end_at_the_first_instant_of_the_next_month() {
        for (id, end) in [
            ("202601", Some(datetime!(2026-02-01 00:00 UTC))),
            ("202512", Some(datetime!(2026-01-01 00:00 UTC))),
            ("202602", Some(datetime!(2026-03-01 00:00 UTC))),
            ("all", None),
            ("202613", None),
            ("2026011", None),
        ] {
            assert_eq!(month_partition_end(id), end, "{id}");
        }
    }

    #[test]
    fn overrides_get_one_rule_per_distinct_length_and_the_default_excludes_them() {
        let policy = Policy {
            default_days: 90,
            store_days: BTreeMap::from([
                ("a".to_owned(), 30),
                ("b".to_owned(), 730),
                ("c".to_owned(), 30),
            ]),
        };
        let rules = policy.rules(datetime!(2026-11-26 10:00 UTC));
        assert_eq!(
            rules,
            vec![
                Rule {
                    days: 90,
                    cutoff: datetime!(2026-08-28 00:00 UTC),
                    scope: Scope::AllExcept(vec!["a".into(), "b".into(), "c".into()]),
                },
                Rule {
                    days: 30,
                    cutoff: datetime!(2026-10-27 00:00 UTC),
                    scope: Scope::Stores(vec!["a".into(), "c".into()]),
                },
                Rule {
                    days: 730,
                    cutoff: datetime!(2024-11-26 00:00 UTC),
                    scope: Scope::Stores(vec!["b".into()]),
                },
            ]
        );
    }

    #[test]
    fn dry_run_is_read_from_the_top_level_or_the_schedule_detail() {
        for (input, dry) in [
            (serde_json::json!({}), false),
            (serde_json::json!({"dryRun": true}), true),
            (serde_json::json!({"dryRun": false}), false),
            (
                serde_json::json!({"detail-type": "Scheduled Event", "detail": {}}),
                false,
            ),
            (serde_json::json!({"detail": {"dryRun": true}}), true),
            (serde_json::json!({"dryRun": "yes"}), false),
        ] {
            assert_eq!(is_dry_run(&input), dry, "{input}");
        }
    }
}
