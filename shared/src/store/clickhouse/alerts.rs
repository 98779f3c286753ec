//! Alerts on ClickHouse (migration v11): [`AlertStore`].
//!
//! - `alert_rules`: `ReplacingMergeTree(version)` per (store, id), read with `FINAL` (as dashboards);
//! - `alert_claims`: every claim of a (rule, slot); the winner is the earliest (`claimed_at`, set by the
//!   server, then the claimer's id). A claimer inserts, then reads the slot's claims: only the winner goes
//!   on. Since v18 each claim is inserted with an `insert_deduplication_token` naming its (store, rule,
//!   slot), and the table keeps a deduplication window: the server drops every claim of a slot after the
//!   first one to commit, so all claimers read that one claim and agree on its claimer. Before, the
//!   winner was the earliest server-set `claimed_at` among the claims visible to the reader, and a
//!   claimer that read before a rival's earlier-timed insert was visible won as well (a full test run
//!   of 2026-12-06 caught two simultaneous runs both evaluating one rule);
//! - `alert_log`, `alert_deliveries`: append-only, 90 days.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ClickHouseStore, classify, version};
use crate::alerts::band::Band;
use crate::alerts::{AlertStore, Delivery, Evaluation, History, LastEvaluation, StoredRule};
use crate::store::StoreError;

#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
struct RuleRow {
    store_id: String,
    id: String,
    body: String,
    signing_secret: String,
    version: u64,
    deleted: u8,
}

#[derive(Debug, Clone, clickhouse::Row, Serialize)]
struct ClaimRow {
    store_id: String,
    rule_id: String,
    slot: i64,
    claimer: String,
}

#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
struct LogRow {
    store_id: String,
    rule_id: String,
    slot: i64,
    evaluated_at: i64,
    window_from: i64,
    window_to: i64,
    value: Option<f64>,
    median: Option<f64>,
    lower: Option<f64>,
    upper: Option<f64>,
    firing: u8,
    notification: String,
    episode_notified: u8,
    detail: String,
}

#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
struct DeliveryRow {
    store_id: String,
    rule_id: String,
    slot: i64,
    delivery_id: String,
    channel: String,
    delivered: u8,
    attempts: u32,
    status: u16,
    detail: String,
    sent_at: i64,
}

const LOG_COLUMNS: &str = "store_id, rule_id, slot, evaluated_at, window_from, window_to, value, median, \
                           lower, upper, firing, notification, episode_notified, detail";
const DELIVERY_COLUMNS: &str =
    "store_id, rule_id, slot, delivery_id, channel, delivered, attempts, status, detail, sent_at";

impl From<LogRow> for Evaluation {
    fn from(r: LogRow) -> Self {
        let expected = match (r.median, r.lower, r.upper) {
            (Some(median), Some(lower), Some(upper)) => Some(Band {
                median,
                lower,
                upper,
            }),
            _ => None,
        };
        Evaluation {
            rule_id: r.rule_id,
            slot: r.slot,
            evaluated_at: r.evaluated_at,
            window_from: r.window_from,
            window_to: r.window_to,
            value: r.value,
            expected,
            firing: r.firing == 1,
            notification: r.notification,
            episode_notified: r.episode_notified == 1,
            detail: r.detail,
        }
    }
}

impl From<DeliveryRow> for Delivery {
    fn from(r: DeliveryRow) -> Self {
        Delivery {
            rule_id: r.rule_id,
            slot: r.slot,
            delivery_id: r.delivery_id,
            channel: r.channel,
            delivered: r.delivered == 1,
            attempts: r.attempts,
            status: r.status,
            detail: r.detail,
            at: r.sent_at,
        }
    }
}

impl ClickHouseStore {
    /// A query over one rule's rows: `{store:String}` and `{rule:String}` bound.
    fn rule_query(&self, sql: &str, store_id: &str, rule_id: &str) -> clickhouse::query::Query {
        self.client()
            .query(sql)
            .param("store", store_id)
            .param("rule", rule_id)
    }
}

#[async_trait]
impl AlertStore for ClickHouseStore {
    async fn alert_rules(&self, store_id: &str) -> Result<Vec<StoredRule>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT store_id, id, body, signing_secret, version, deleted FROM alert_rules FINAL \
                 WHERE store_id = {store:String} AND deleted = 0 ORDER BY id",
            )
            .param("store", store_id)
            .fetch_all::<RuleRow>()
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|r| {
                StoredRule::from_stored(&r.id, &r.body, &r.signing_secret)
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
        self.insert_row(
            "alert_rules",
            &RuleRow {
                store_id: store_id.to_owned(),
                id: rule.id.clone(),
                body,
                signing_secret: rule.signing_secret.clone(),
                version: version(at),
                deleted: 0,
            },
        )
        .await
    }

    async fn delete_alert_rule(
        &self,
        store_id: &str,
        id: &str,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        self.insert_row(
            "alert_rules",
            &RuleRow {
                store_id: store_id.to_owned(),
                id: id.to_owned(),
                body: "{}".into(),
                signing_secret: String::new(),
                version: version(at),
                deleted: 1,
            },
        )
        .await
    }

    async fn alert_stores(&self, since: jiff::Timestamp) -> Result<Vec<String>, StoreError> {
        self.client()
            .query(
                "SELECT store_id FROM commerce_visitors WHERE hour >= fromUnixTimestamp64Milli({since:Int64}) \
                 GROUP BY store_id \
                 UNION DISTINCT \
                 SELECT store_id FROM alert_rules FINAL WHERE deleted = 0 GROUP BY store_id \
                 ORDER BY store_id",
            )
            .param("since", since.as_millisecond())
            .fetch_all::<String>()
            .await
            .map_err(classify)
    }

    async fn claim_slot(
        &self,
        store_id: &str,
        rule_id: &str,
        slot: i64,
        claimer: &str,
    ) -> Result<bool, StoreError> {
        self.insert_row_once(
            "alert_claims",
            &ClaimRow {
                store_id: store_id.to_owned(),
                rule_id: rule_id.to_owned(),
                slot,
                claimer: claimer.to_owned(),
            },
            &format!("claim\u{1f}{store_id}\u{1f}{rule_id}\u{1f}{slot}"),
        )
        .await?;
        let winner: String = self
            .rule_query(
                "SELECT argMin(claimer, (claimed_at, claimer)) FROM alert_claims \
                 WHERE store_id = {store:String} AND rule_id = {rule:String} AND slot = {slot:Int64}",
                store_id,
                rule_id,
            )
            .param("slot", slot)
            .fetch_one()
            .await
            .map_err(classify)?;
        Ok(winner == claimer)
    }

    async fn last_evaluation(
        &self,
        store_id: &str,
        rule_id: &str,
        slot: i64,
    ) -> Result<LastEvaluation, StoreError> {
        let last = self
            .rule_query(
                &format!(
                    "SELECT {LOG_COLUMNS} FROM alert_log WHERE store_id = {{store:String}} \
                     AND rule_id = {{rule:String}} AND slot < {{slot:Int64}} \
                     ORDER BY slot DESC, evaluated_at DESC LIMIT 1"
                ),
                store_id,
                rule_id,
            )
            .param("slot", slot)
            .fetch_optional::<LogRow>()
            .await
            .map_err(classify)?;
        let fired: Option<i64> = self
            .rule_query(
                "SELECT maxOrNull(slot) FROM alert_log WHERE store_id = {store:String} \
                 AND rule_id = {rule:String} AND slot < {slot:Int64} AND notification = 'firing'",
                store_id,
                rule_id,
            )
            .param("slot", slot)
            .fetch_one()
            .await
            .map_err(classify)?;
        Ok(LastEvaluation {
            last: last.map(Evaluation::from),
            last_fired_slot: fired,
        })
    }

    async fn log_evaluation(&self, store_id: &str, e: &Evaluation) -> Result<(), StoreError> {
        self.insert_row(
            "alert_log",
            &LogRow {
                store_id: store_id.to_owned(),
                rule_id: e.rule_id.clone(),
                slot: e.slot,
                evaluated_at: e.evaluated_at,
                window_from: e.window_from,
                window_to: e.window_to,
                value: e.value,
                median: e.expected.map(|b| b.median),
                lower: e.expected.map(|b| b.lower),
                upper: e.expected.map(|b| b.upper),
                firing: u8::from(e.firing),
                notification: e.notification.clone(),
                episode_notified: u8::from(e.episode_notified),
                detail: e.detail.clone(),
            },
        )
        .await
    }

    async fn log_delivery(&self, store_id: &str, d: &Delivery) -> Result<(), StoreError> {
        self.insert_row(
            "alert_deliveries",
            &DeliveryRow {
                store_id: store_id.to_owned(),
                rule_id: d.rule_id.clone(),
                slot: d.slot,
                delivery_id: d.delivery_id.clone(),
                channel: d.channel.clone(),
                delivered: u8::from(d.delivered),
                attempts: d.attempts,
                status: d.status,
                detail: d.detail.clone(),
                sent_at: d.at,
            },
        )
        .await
    }

    async fn alert_history(
        &self,
        store_id: &str,
        rule_id: &str,
        limit: u32,
    ) -> Result<History, StoreError> {
        let log = self
            .rule_query(
                &format!(
                    "SELECT {LOG_COLUMNS} FROM alert_log \
                 WHERE store_id = {{store:String}} AND rule_id = {{rule:String}} \
                 ORDER BY slot DESC, evaluated_at DESC LIMIT {{limit:UInt32}}"
                ),
                store_id,
                rule_id,
            )
            .param("limit", limit)
            .fetch_all::<LogRow>()
            .await
            .map_err(classify)?;
        let deliveries = self
            .rule_query(
                &format!(
                    "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries \
                 WHERE store_id = {{store:String}} AND rule_id = {{rule:String}} \
                 ORDER BY sent_at DESC LIMIT {{limit:UInt32}}"
                ),
                store_id,
                rule_id,
            )
            .param("limit", limit)
            .fetch_all::<DeliveryRow>()
            .await
            .map_err(classify)?;
        Ok(History {
            evaluations: log.into_iter().map(Evaluation::from).collect(),
            deliveries: deliveries.into_iter().map(Delivery::from).collect(),
        })
    }
}
