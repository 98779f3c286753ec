//! Alerts on BigQuery (migration v4): [`AlertStore`], as on ClickHouse (`store/clickhouse/alerts.rs`).
//! Every write is a DML `INSERT` (not streamed), so a claim is visible to the read that follows it; a
//! rule's latest version wins as for dashboards; the claim winner is the earliest (`claimed_at`, then the
//! claimer's id).

use async_trait::async_trait;

use super::BigQueryStore;
use super::client::{Param, Rows};
use crate::alerts::band::Band;
use crate::alerts::{AlertStore, Delivery, Evaluation, History, LastEvaluation, StoredRule};
use crate::error::StoreError;

const LOG_COLUMNS: &str = "rule_id, slot, evaluated_at, window_from, window_to, value, median, lower, \
                           upper, firing, notification, episode_notified, detail";
const DELIVERY_COLUMNS: &str =
    "rule_id, slot, delivery_id, channel, delivered, attempts, status, detail, sent_at";

fn opt(rows: &Rows, r: usize, c: usize) -> Result<Option<f64>, StoreError> {
    match rows.cell(r, c) {
        None => Ok(None),
        Some(_) => rows.f64(r, c).map(Some),
    }
}

fn flag(rows: &Rows, r: usize, c: usize) -> bool {
    rows.cell(r, c) == Some("true")
}

fn evaluations(rows: &Rows) -> Result<Vec<Evaluation>, StoreError> {
    (0..rows.rows.len())
        .map(|r| {
            let expected = match (opt(rows, r, 6)?, opt(rows, r, 7)?, opt(rows, r, 8)?) {
                (Some(median), Some(lower), Some(upper)) => Some(Band {
                    median,
                    lower,
                    upper,
                }),
                _ => None,
            };
            Ok(Evaluation {
                rule_id: rows.string(r, 0),
                slot: rows.i64(r, 1)?,
                evaluated_at: rows.i64(r, 2)?,
                window_from: rows.i64(r, 3)?,
                window_to: rows.i64(r, 4)?,
                value: opt(rows, r, 5)?,
                expected,
                firing: flag(rows, r, 9),
                notification: rows.string(r, 10),
                episode_notified: flag(rows, r, 11),
                detail: rows.string(r, 12),
            })
        })
        .collect()
}

/// A nullable float as two parameters (`@x_set`, `@x`): the emulator and BigQuery both take them.
fn nullable(value: Option<f64>) -> (Param, Param) {
    (
        Param::Bool(value.is_some()),
        Param::Float64(value.unwrap_or(0.0)),
    )
}

#[async_trait]
impl AlertStore for BigQueryStore {
    async fn alert_rules(&self, store_id: &str) -> Result<Vec<StoredRule>, StoreError> {
        let sql = format!(
            "SELECT id, body, signing_secret FROM ( \
               SELECT id, body, signing_secret, deleted FROM {} WHERE store_id = @store \
               QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY version DESC, deleted DESC) = 1) \
             WHERE NOT deleted ORDER BY id",
            self.table("alert_rules")
        );
        let rows = self
            .client()
            .query(&sql, &[("store", Param::String(store_id.into()))])
            .await?;
        (0..rows.rows.len())
            .map(|r| {
                StoredRule::from_stored(&rows.string(r, 0), &rows.string(r, 1), &rows.string(r, 2))
                    .map_err(|e| StoreError::Rejected(e.to_string()))
            })
            .collect()
    }

    async fn save_alert_rule(
        &self,
        store_id: &str,
        rule: &StoredRule,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        let body = rule
            .body_json()
            .map_err(|e| StoreError::Rejected(e.to_string()))?;
        self.write_rule(store_id, &rule.id, &body, &rule.signing_secret, at, false)
            .await
    }

    async fn delete_alert_rule(
        &self,
        store_id: &str,
        id: &str,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        self.write_rule(store_id, id, "{}", "", at, true).await
    }

    async fn alert_stores(&self, since: jiff::Timestamp) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT store_id FROM ( \
               SELECT store_id FROM {} WHERE timestamp >= @since \
               UNION ALL SELECT store_id FROM {}) ORDER BY store_id",
            self.table(super::EVENTS_TABLE),
            self.table("alert_rules")
        );
        let rows = self
            .client()
            .query(&sql, &[("since", Param::Timestamp(since.as_microsecond()))])
            .await?;
        Ok((0..rows.rows.len()).map(|r| rows.string(r, 0)).collect())
    }

    async fn claim_slot(
        &self,
        store_id: &str,
        rule_id: &str,
        slot: i64,
        claimer: &str,
    ) -> Result<bool, StoreError> {
        let table = self.table("alert_claims");
        let params = [
            ("store", Param::String(store_id.into())),
            ("rule", Param::String(rule_id.into())),
            ("slot", Param::Int64(slot)),
            ("claimer", Param::String(claimer.into())),
        ];
        self.client()
            .query(
                &format!(
                    "INSERT INTO {table} (store_id, rule_id, slot, claimer, claimed_at) \
                     VALUES (@store, @rule, @slot, @claimer, CURRENT_TIMESTAMP())"
                ),
                &params,
            )
            .await?;
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT claimer FROM {table} WHERE store_id = @store AND rule_id = @rule \
                     AND slot = @slot ORDER BY claimed_at, claimer LIMIT 1"
                ),
                &params[..3],
            )
            .await?;
        Ok(rows.rows.len() == 1 && rows.string(0, 0) == claimer)
    }

    async fn last_evaluation(
        &self,
        store_id: &str,
        rule_id: &str,
        slot: i64,
    ) -> Result<LastEvaluation, StoreError> {
        let table = self.table("alert_log");
        let params = [
            ("store", Param::String(store_id.into())),
            ("rule", Param::String(rule_id.into())),
            ("slot", Param::Int64(slot)),
        ];
        let last = self
            .client()
            .query(
                &format!(
                    "SELECT {LOG_COLUMNS} FROM {table} WHERE store_id = @store AND rule_id = @rule \
                     AND slot < @slot ORDER BY slot DESC, evaluated_at DESC LIMIT 1"
                ),
                &params,
            )
            .await?;
        let fired = self
            .client()
            .query(
                &format!(
                    "SELECT MAX(slot) FROM {table} WHERE store_id = @store AND rule_id = @rule \
                     AND slot < @slot AND notification = 'firing'"
                ),
                &params,
            )
            .await?;
        let fired = match fired.cell(0, 0) {
            None => None,
            Some(_) => Some(fired.i64(0, 0)?),
        };
        Ok(LastEvaluation {
            last: evaluations(&last)?.into_iter().next(),
            last_fired_slot: fired,
        })
    }

    async fn log_evaluation(&self, store_id: &str, e: &Evaluation) -> Result<(), StoreError> {
        let (value_set, value) = nullable(e.value);
        let (band_set, median) = nullable(e.expected.map(|b| b.median));
        let (_, lower) = nullable(e.expected.map(|b| b.lower));
        let (_, upper) = nullable(e.expected.map(|b| b.upper));
        let sql = format!(
            "INSERT INTO {} (store_id, {LOG_COLUMNS}) VALUES (@store, @rule, @slot, @evaluated_at, \
               @window_from, @window_to, IF(@value_set, @value, NULL), IF(@band_set, @median, NULL), \
               IF(@band_set, @lower, NULL), IF(@band_set, @upper, NULL), @firing, @notification, \
               @episode_notified, @detail)",
            self.table("alert_log")
        );
        self.client()
            .query(
                &sql,
                &[
                    ("store", Param::String(store_id.into())),
                    ("rule", Param::String(e.rule_id.clone())),
                    ("slot", Param::Int64(e.slot)),
                    ("evaluated_at", Param::Int64(e.evaluated_at)),
                    ("window_from", Param::Int64(e.window_from)),
                    ("window_to", Param::Int64(e.window_to)),
                    ("value_set", value_set),
                    ("value", value),
                    ("band_set", band_set),
                    ("median", median),
                    ("lower", lower),
                    ("upper", upper),
                    ("firing", Param::Bool(e.firing)),
                    ("notification", Param::String(e.notification.clone())),
                    ("episode_notified", Param::Bool(e.episode_notified)),
                    ("detail", Param::String(e.detail.clone())),
                ],
            )
            .await
            .map(|_| ())
    }

    async fn log_delivery(&self, store_id: &str, d: &Delivery) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (store_id, {DELIVERY_COLUMNS}) VALUES (@store, @rule, @slot, @delivery_id, \
               @channel, @delivered, @attempts, @status, @detail, @at)",
            self.table("alert_deliveries")
        );
        self.client()
            .query(
                &sql,
                &[
                    ("store", Param::String(store_id.into())),
                    ("rule", Param::String(d.rule_id.clone())),
                    ("slot", Param::Int64(d.slot)),
                    ("delivery_id", Param::String(d.delivery_id.clone())),
                    ("channel", Param::String(d.channel.clone())),
                    ("delivered", Param::Bool(d.delivered)),
                    ("attempts", Param::Int64(i64::from(d.attempts))),
                    ("status", Param::Int64(i64::from(d.status))),
                    ("detail", Param::String(d.detail.clone())),
                    ("at", Param::Int64(d.at)),
                ],
            )
            .await
            .map(|_| ())
    }

    async fn alert_history(
        &self,
        store_id: &str,
        rule_id: &str,
        limit: u32,
    ) -> Result<History, StoreError> {
        let params = [
            ("store", Param::String(store_id.into())),
            ("rule", Param::String(rule_id.into())),
            ("limit", Param::Int64(i64::from(limit))),
        ];
        let log = self
            .client()
            .query(
                &format!(
                    "SELECT {LOG_COLUMNS} FROM {} WHERE store_id = @store AND rule_id = @rule \
                     ORDER BY slot DESC, evaluated_at DESC LIMIT @limit",
                    self.table("alert_log")
                ),
                &params,
            )
            .await?;
        let rows = self
            .client()
            .query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM {} WHERE store_id = @store AND rule_id = @rule \
                     ORDER BY sent_at DESC LIMIT @limit",
                    self.table("alert_deliveries")
                ),
                &params,
            )
            .await?;
        let deliveries = (0..rows.rows.len())
            .map(|r| {
                Ok(Delivery {
                    rule_id: rows.string(r, 0),
                    slot: rows.i64(r, 1)?,
                    delivery_id: rows.string(r, 2),
                    channel: rows.string(r, 3),
                    delivered: flag(&rows, r, 4),
                    attempts: u32::try_from(rows.i64(r, 5)?).unwrap_or(0),
                    status: u16::try_from(rows.i64(r, 6)?).unwrap_or(0),
                    detail: rows.string(r, 7),
                    at: rows.i64(r, 8)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(History {
            evaluations: evaluations(&log)?,
            deliveries,
        })
    }
}

impl BigQueryStore {
    async fn write_rule(
        &self,
        store_id: &str,
        id: &str,
        body: &str,
        secret: &str,
        at: jiff::Timestamp,
        deleted: bool,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (store_id, id, body, signing_secret, version, deleted) \
             VALUES (@store, @id, @body, @secret, @version, @deleted)",
            self.table("alert_rules")
        );
        self.client()
            .query(
                &sql,
                &[
                    ("store", Param::String(store_id.into())),
                    ("id", Param::String(id.into())),
                    ("body", Param::String(body.into())),
                    ("secret", Param::String(secret.into())),
                    ("version", Param::Int64(at.as_millisecond())),
                    ("deleted", Param::Bool(deleted)),
                ],
            )
            .await
            .map(|_| ())
    }
}
