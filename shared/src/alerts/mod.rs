//! Alerts: rules a store sets on its metrics, three built-in guards, their evaluation on a schedule and
//! their notifications.
//!
//! **Rules** (`/analytics/alerts`, a key with the `manage` scope): a time-series metric of the catalog with
//! its filters and currency, evaluated over a `window` of whole hours (`1h`..`24h`) that ends at the
//! evaluation's *slot* less a settle delay ([`SETTLE_MINUTES`], so events still in a Firehose buffer are
//! not missed), every `intervalMinutes` (a multiple of 5), against a [`Condition`]: `above` / `below` a
//! threshold; `change` against the window just before (a `percent` of −50 fires on a halving, 50 on a rise
//! by half); or `anomaly`, outside the band expected from the same window of the same hour-of-week in the
//! last `weeks` (median ± k robust σ, [`band`]). `cooldownMinutes` is the least time between two firing
//! notifications of a rule; `muted` rules are evaluated and logged but notify no one.
//!
//! **Guards** ([`Guard`]), on for every store with recent events unless muted: *checkout broken* (orders of
//! the last 2 hours — up to 6 for a smaller store — below their band while sessions are not), *traffic collapse* (sessions of the last hour
//! below their band), *stockout of a best seller* (a top-10 product of the last 30 days at stock 0). The
//! anomaly guards stay silent until the expected volume is large enough to tell an outage from a quiet
//! hour (a median of 10 orders, 20 sessions). A guard's `channels` and `muted` are the store's to set.
//!
//! **State** ([`run`]): each (rule, slot) is evaluated once — evaluators first *claim* it in the
//! warehouse, and only the first claim evaluates — and every evaluation is logged. A rule *fires* when its
//! condition starts to hold and *resolves* when it stops; a firing notification goes out once per episode
//! (unless muted or within the cooldown; then as soon as they allow it while it still fires), and a
//! resolved notification only after a firing one. **Channels**: signed webhooks ([`webhook`]).

pub mod band;
pub mod evaluate;
pub mod run;
pub mod sns;
pub mod webhook;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, StoreError};
use crate::query::ReadStore;
use crate::query::metrics::{self, MetricQuery};

/// Minutes between a slot and the end of the windows it evaluates.
pub const SETTLE_MINUTES: i64 = 5;
/// Most rules per store (each is evaluated every interval).
pub const MAX_RULES: usize = 50;

/// What a rule's value is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    Above {
        threshold: f64,
    },
    Below {
        threshold: f64,
    },
    /// Against the window just before: fires when the change is at least `percent` (a negative percent:
    /// a drop of at least that much).
    Change {
        percent: f64,
    },
    Anomaly {
        #[serde(default = "default_weeks")]
        weeks: u32,
        #[serde(default = "default_k")]
        k: f64,
        #[serde(default)]
        direction: Direction,
    },
}

fn default_weeks() -> u32 {
    4
}
fn default_k() -> f64 {
    3.0
}

/// Which side of an anomaly band fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Below,
    Above,
    #[default]
    Both,
}

/// Where notifications go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Channel {
    /// A JSON POST, signed ([`webhook`]); `https` to a public address (loopback too when
    /// `alerts_allow_loopback`).
    Webhook { url: String },
    /// A message published to an Amazon SNS topic ([`sns`]): its email subscribers get the
    /// notification's text (SMS, Lambda and SQS subscribers too).
    Sns {
        #[serde(rename = "topicArn")]
        topic_arn: String,
    },
}

impl Channel {
    /// Where it goes, as the history lists it.
    pub fn target(&self) -> &str {
        match self {
            Channel::Webhook { url } => url,
            Channel::Sns { topic_arn } => topic_arn,
        }
    }
}

/// A rule as a store writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleInput {
    pub name: String,
    pub metric: String,
    /// The metric's filters (`country`, `device`, `browser`, `source`, `landingPage`, `referrer`).
    #[serde(default)]
    pub filters: BTreeMap<String, String>,
    /// Money metrics: the currency (default the store's main one at evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    pub condition: Condition,
    #[serde(default = "default_window")]
    pub window: String,
    #[serde(default = "default_interval")]
    pub interval_minutes: u32,
    #[serde(default = "default_cooldown")]
    pub cooldown_minutes: u32,
    #[serde(default)]
    pub channels: Vec<Channel>,
    #[serde(default)]
    pub muted: bool,
}

fn default_window() -> String {
    "1h".into()
}
fn default_interval() -> u32 {
    5
}
fn default_cooldown() -> u32 {
    60
}

/// A guard's settings (its condition is built in).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuardSettings {
    #[serde(default)]
    pub channels: Vec<Channel>,
    #[serde(default)]
    pub muted: bool,
}

/// The built-in guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    CheckoutBroken,
    TrafficCollapse,
    BestSellerStockout,
}

impl Guard {
    pub const ALL: [Guard; 3] = [
        Guard::CheckoutBroken,
        Guard::TrafficCollapse,
        Guard::BestSellerStockout,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Guard::CheckoutBroken => "checkout_broken",
            Guard::TrafficCollapse => "traffic_collapse",
            Guard::BestSellerStockout => "best_seller_stockout",
        }
    }

    pub fn parse(id: &str) -> Option<Guard> {
        Guard::ALL.into_iter().find(|g| g.id() == id)
    }

    pub fn name(self) -> &'static str {
        match self {
            Guard::CheckoutBroken => "Checkout broken",
            Guard::TrafficCollapse => "Traffic collapse",
            Guard::BestSellerStockout => "Best seller out of stock",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Guard::CheckoutBroken => {
                "orders of the last 2 hours (up to 6 for smaller stores: the shortest window with 10 orders \
                 expected) below the band of the same hours in the last 4 weeks (k = 3) while sessions are \
                 not; from a median of 10 orders"
            }
            Guard::TrafficCollapse => {
                "sessions of the last hour below the band of the same hour in the last 4 weeks (k = 3); from a \
                 median of 20 sessions"
            }
            Guard::BestSellerStockout => {
                "a product among the 10 best sellers of the last 30 days (units) has stock 0"
            }
        }
    }
}

/// A rule or guard as stored: its id, what the store wrote, and the secret its webhooks are signed with.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRule {
    pub id: String,
    pub body: RuleBody,
    pub signing_secret: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleBody {
    Custom(RuleInput),
    Guard(Guard, GuardSettings),
}

impl StoredRule {
    pub fn name(&self) -> String {
        match &self.body {
            RuleBody::Custom(r) => r.name.clone(),
            RuleBody::Guard(g, _) => g.name().to_owned(),
        }
    }

    pub fn channels(&self) -> &[Channel] {
        match &self.body {
            RuleBody::Custom(r) => &r.channels,
            RuleBody::Guard(_, s) => &s.channels,
        }
    }

    pub fn muted(&self) -> bool {
        match &self.body {
            RuleBody::Custom(r) => r.muted,
            RuleBody::Guard(_, s) => s.muted,
        }
    }

    pub fn cooldown_minutes(&self) -> u32 {
        match &self.body {
            RuleBody::Custom(r) => r.cooldown_minutes,
            RuleBody::Guard(..) => 60,
        }
    }

    pub fn interval_minutes(&self) -> u32 {
        match &self.body {
            RuleBody::Custom(r) => r.interval_minutes,
            RuleBody::Guard(..) => 5,
        }
    }

    /// The JSON the API answers (the signing secret included: only `manage` keys read rules).
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = match &self.body {
            RuleBody::Custom(r) => serde_json::to_value(r).unwrap_or_default(),
            RuleBody::Guard(g, s) => {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["name"] = g.name().into();
                v["description"] = g.description().into();
                v
            }
        };
        v["id"] = self.id.clone().into();
        v["builtIn"] = matches!(self.body, RuleBody::Guard(..)).into();
        v["signingSecret"] = self.signing_secret.clone().into();
        v
    }

    /// The stored text of the body.
    pub fn body_json(&self) -> Result<String> {
        match &self.body {
            RuleBody::Custom(r) => serde_json::to_string(r),
            RuleBody::Guard(_, s) => serde_json::to_string(s),
        }
        .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Reads a stored row back.
    pub fn from_stored(id: &str, body: &str, signing_secret: &str) -> Result<StoredRule> {
        let bad = |e: serde_json::Error| Error::Internal(format!("stored alert rule {id}: {e}"));
        let body = match Guard::parse(id) {
            Some(g) => RuleBody::Guard(g, serde_json::from_str(body).map_err(bad)?),
            None => RuleBody::Custom(serde_json::from_str(body).map_err(bad)?),
        };
        Ok(StoredRule {
            id: id.to_owned(),
            body,
            signing_secret: signing_secret.to_owned(),
        })
    }
}

/// A new webhook signing secret (`whsec_` and 32 random characters).
pub fn new_signing_secret() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut s = String::from("whsec_");
    for _ in 0..32 {
        s.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    s
}

/// One evaluation, as logged.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub rule_id: String,
    /// The slot (Unix milliseconds).
    pub slot: i64,
    pub evaluated_at: i64,
    /// The window `[from, to)` (Unix milliseconds).
    pub window_from: i64,
    pub window_to: i64,
    pub value: Option<f64>,
    pub expected: Option<band::Band>,
    pub firing: bool,
    /// `firing`, `resolved` or empty: the notification this evaluation sent.
    pub notification: String,
    /// Whether the current firing episode was notified.
    pub episode_notified: bool,
    pub detail: String,
}

/// One channel's delivery of a notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub rule_id: String,
    pub slot: i64,
    pub delivery_id: String,
    pub channel: String,
    pub delivered: bool,
    pub attempts: u32,
    /// The last HTTP status, or 0 when none answered.
    pub status: u16,
    pub detail: String,
    pub at: i64,
}

/// The alerts port: rules, claims, the evaluation log and deliveries.
#[async_trait]
pub trait AlertStore: Send + Sync + std::fmt::Debug {
    /// The store's stored rules (custom ones and customized guards).
    async fn alert_rules(&self, store_id: &str) -> Result<Vec<StoredRule>, StoreError>;
    /// Creates or replaces a rule as of `at` (the latest save wins).
    async fn save_alert_rule(
        &self,
        store_id: &str,
        rule: &StoredRule,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError>;
    /// Deletes a rule as of `at`.
    async fn delete_alert_rule(
        &self,
        store_id: &str,
        id: &str,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError>;
    /// Stores with events since `since` (the guards' candidates) or with rules.
    async fn alert_stores(&self, since: jiff::Timestamp) -> Result<Vec<String>, StoreError>;
    /// Claims (rule, slot) for `claimer`; true when this claimer is the first.
    async fn claim_slot(
        &self,
        store_id: &str,
        rule_id: &str,
        slot: i64,
        claimer: &str,
    ) -> Result<bool, StoreError>;
    /// The rule's latest evaluation before `slot`, and the slot of its latest firing notification.
    async fn last_evaluation(
        &self,
        store_id: &str,
        rule_id: &str,
        slot: i64,
    ) -> Result<LastEvaluation, StoreError>;
    async fn log_evaluation(&self, store_id: &str, e: &Evaluation) -> Result<(), StoreError>;
    async fn log_delivery(&self, store_id: &str, d: &Delivery) -> Result<(), StoreError>;
    /// The rule's latest evaluations (newest first) and their deliveries.
    async fn alert_history(
        &self,
        store_id: &str,
        rule_id: &str,
        limit: u32,
    ) -> Result<History, StoreError>;
}

/// What a rule's next evaluation needs from its past ([`AlertStore::last_evaluation`]).
#[derive(Debug, Clone)]
pub struct LastEvaluation {
    /// The latest evaluation before the slot being evaluated, if any.
    pub last: Option<Evaluation>,
    /// The slot (ms) of the latest firing notification, for the cooldown.
    pub last_fired_slot: Option<i64>,
}

/// A rule's history ([`AlertStore::alert_history`]), newest first.
#[derive(Debug, Clone)]
pub struct History {
    pub evaluations: Vec<Evaluation>,
    pub deliveries: Vec<Delivery>,
}

/// A custom rule checked and ready to evaluate: its metric query (range replaced per window).
#[derive(Debug, Clone)]
pub struct Checked {
    pub query: MetricQuery,
    pub window_hours: i64,
}

/// Checks a rule as written (every error names its field) and returns its metric query.
pub async fn check(
    reads: &dyn ReadStore,
    store_id: &str,
    r: &RuleInput,
    now: jiff::Timestamp,
) -> Result<Checked> {
    let name = r.name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_value",
            "name",
            "name must be 1 to 100 characters, no control characters",
        ));
    }
    let window_hours = r
        .window
        .strip_suffix('h')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| (1..=24).contains(n))
        .ok_or_else(|| {
            Error::invalid(
                "invalid_value",
                "window",
                format!(
                    "window must be whole hours from 1h to 24h, not {:?}",
                    r.window
                ),
            )
        })?;
    if r.interval_minutes == 0 || !r.interval_minutes.is_multiple_of(5) || r.interval_minutes > 1440
    {
        return Err(Error::invalid(
            "invalid_value",
            "intervalMinutes",
            "intervalMinutes must be a multiple of 5 from 5 to 1440",
        ));
    }
    if r.cooldown_minutes > 7 * 1440 {
        return Err(Error::invalid(
            "invalid_value",
            "cooldownMinutes",
            "cooldownMinutes must be at most 10080 (a week)",
        ));
    }
    match r.condition {
        Condition::Above { threshold } | Condition::Below { threshold }
            if !threshold.is_finite() =>
        {
            return Err(Error::invalid(
                "invalid_value",
                "condition.threshold",
                "threshold must be a number",
            ));
        }
        Condition::Change { percent } if !percent.is_finite() || percent == 0.0 => {
            return Err(Error::invalid(
                "invalid_value",
                "condition.percent",
                "percent must be a non-zero number (negative: a drop)",
            ));
        }
        Condition::Anomaly { weeks, k, .. } if !(2..=12).contains(&weeks) => {
            let _ = k;
            return Err(Error::invalid(
                "invalid_value",
                "condition.weeks",
                "weeks must be from 2 to 12",
            ));
        }
        Condition::Anomaly { k, .. } if !(k.is_finite() && (0.5..=10.0).contains(&k)) => {
            return Err(Error::invalid(
                "invalid_value",
                "condition.k",
                "k must be from 0.5 to 10",
            ));
        }
        _ => {}
    }
    if r.channels.len() > 5 {
        return Err(Error::invalid(
            "invalid_value",
            "channels",
            "a rule has at most 5 channels",
        ));
    }
    // The metric, its filters and currency, through the metrics endpoint's own parser.
    let query_string = {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("metric", &r.metric)
            .append_pair("period", "24h")
            .append_pair("timezone", "UTC");
        if let Some(c) = &r.currency {
            q.append_pair("currency", c);
        }
        for (k, v) in &r.filters {
            if !crate::query::params::Filters::NAMES.contains(&k.as_str()) {
                return Err(Error::invalid(
                    "unknown_parameter",
                    format!("filters.{k}"),
                    format!(
                        "unknown filter {k:?}; filters are {}",
                        crate::query::params::Filters::NAMES.join(", ")
                    ),
                ));
            }
            q.append_pair(k, v);
        }
        q.finish()
    };
    let query = match metrics::parse(reads, store_id, &query_string, now).await {
        Ok(metrics::Request::Series(query)) => query,
        Ok(_) => {
            return Err(Error::invalid(
                "invalid_value",
                "metric",
                "alerts watch time-series metrics (revenue, orders, sessions, …), not ranked ones",
            ));
        }
        Err(Error::Invalid(mut e)) => {
            if crate::query::params::Filters::NAMES.contains(&e.field.as_str()) {
                e.field = format!("filters.{}", e.field);
            }
            return Err(Error::Invalid(e));
        }
        Err(e) => return Err(e),
    };
    Ok(Checked {
        query,
        window_hours,
    })
}
