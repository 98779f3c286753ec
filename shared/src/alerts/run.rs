//! The evaluation run: every store's rules and guards for one slot, each (rule, slot) once, every
//! evaluation logged, each notification sent once.
//!
//! A run evaluates the slot `now` falls in (slots are 5 minutes; a rule with `intervalMinutes` 15 is due
//! at the slots whose minute is a multiple of 15). Per due rule: **claim** (rule, slot) in the warehouse
//! (only the first claimer goes on: a retried or concurrent run skips it), **evaluate** the windows ending
//! [`super::SETTLE_MINUTES`] before the slot, compare with the rule's **last evaluation**, **log** this
//! one, then **notify** its channels when it starts firing (once per episode; not while muted or within
//! the cooldown since the last firing notification) or resolves (only an episode that was notified).
//!
//! Delivery is at least once per channel (a process that dies between a receiver's 2xx and the log may
//! never know it was delivered, but it never starts over: its slot is claimed); the notification id
//! (`X-Analytics-Delivery`, the same on every attempt) lets a receiver drop a repeat.

use serde_json::{Value, json};

use super::evaluate::{self, GuardQueries, Outcome, Values};
use super::webhook::Sender;
use super::{
    AlertStore, Channel, Delivery, Evaluation, Guard, GuardSettings, RuleBody, SETTLE_MINUTES,
    StoredRule,
};
use crate::error::{Error, Result};
use crate::query::ReadStore;

const SLOT_MS: i64 = 5 * 60_000;
/// Stores with events in the last week get the guards.
const ACTIVE_DAYS: i64 = 7;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub stores: usize,
    pub evaluated: usize,
    /// Due rules another run had already claimed.
    pub skipped: usize,
    pub firing: usize,
    pub notifications: usize,
    pub delivered: usize,
    pub failed: usize,
    /// Stores whose evaluation failed (logged), e.g. a read timed out.
    pub errors: usize,
}

/// Evaluates rules and sends their notifications.
#[derive(Debug)]
pub struct Runner<'a> {
    pub reads: &'a dyn ReadStore,
    pub alerts: &'a dyn AlertStore,
    pub sender: Sender,
    /// Where the dashboard page is reached (links in notifications); empty: no link.
    pub public_url: String,
    /// This run's claims.
    pub claimer: String,
}

/// The slot `now` falls in (Unix milliseconds).
pub fn slot_of(now: jiff::Timestamp) -> i64 {
    now.as_millisecond().div_euclid(SLOT_MS) * SLOT_MS
}

/// Every rule and guard of a store: its stored rules, and each guard it has not customized.
pub fn with_guards(mut stored: Vec<StoredRule>) -> Vec<StoredRule> {
    for g in Guard::ALL {
        if !stored.iter().any(|r| r.id == g.id()) {
            stored.push(StoredRule {
                id: g.id().to_owned(),
                body: RuleBody::Guard(g, GuardSettings::default()),
                signing_secret: String::new(),
            });
        }
    }
    stored
}

fn delivery_id(store_id: &str, rule_id: &str, slot: i64, kind: &str) -> String {
    let digest = crate::auth::digest_hex(&format!("{store_id}\n{rule_id}\n{slot}\n{kind}"));
    format!("dlv_{}", &digest[..32])
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

impl Runner<'_> {
    pub fn new<'a>(
        reads: &'a dyn ReadStore,
        alerts: &'a dyn AlertStore,
        sender: Sender,
        public_url: &str,
    ) -> Runner<'a> {
        Runner {
            reads,
            alerts,
            sender,
            public_url: public_url.trim_end_matches('/').to_owned(),
            claimer: ulid::Ulid::new().to_string(),
        }
    }

    /// Every store's due rules for the slot of `now`.
    pub async fn run_all(&self, now: jiff::Timestamp) -> Result<Report> {
        let since = now - jiff::SignedDuration::from_hours(24 * ACTIVE_DAYS);
        let stores = self.alerts.alert_stores(since).await?;
        let mut report = Report::default();
        for store in &stores {
            match self.run_store(store, now).await {
                Ok(r) => {
                    report.evaluated += r.evaluated;
                    report.skipped += r.skipped;
                    report.firing += r.firing;
                    report.notifications += r.notifications;
                    report.delivered += r.delivered;
                    report.failed += r.failed;
                }
                Err(e) => {
                    tracing::error!(store, error = %e, "alert evaluation failed");
                    report.errors += 1;
                }
            }
        }
        report.stores = stores.len();
        tracing::info!(report = ?report, "alerts evaluated");
        Ok(report)
    }

    /// One store's due rules for the slot of `now`.
    pub async fn run_store(&self, store_id: &str, now: jiff::Timestamp) -> Result<Report> {
        let slot = slot_of(now);
        let end = slot - SETTLE_MINUTES * 60_000;
        let rules = with_guards(self.alerts.alert_rules(store_id).await?);
        let values = Values::new(self.reads);
        let mut guard_queries: Option<GuardQueries> = None;
        let mut report = Report {
            stores: 1,
            ..Report::default()
        };
        for rule in &rules {
            let minute = slot / 60_000;
            if minute % i64::from(rule.interval_minutes()) != 0 {
                continue;
            }
            if !self
                .alerts
                .claim_slot(store_id, &rule.id, slot, &self.claimer)
                .await?
            {
                report.skipped += 1;
                continue;
            }
            let outcome = match &rule.body {
                RuleBody::Custom(input) => {
                    let checked = super::check(self.reads, store_id, input, now).await?;
                    evaluate::rule(&values, &checked, input.condition, end).await?
                }
                RuleBody::Guard(g, _) => {
                    if guard_queries.is_none() {
                        guard_queries = Some(GuardQueries::of(self.reads, store_id, now).await?);
                    }
                    let queries = guard_queries
                        .as_ref()
                        .ok_or_else(|| Error::Internal("guard queries".into()))?;
                    evaluate::guard(&values, store_id, queries, *g, end).await?
                }
            };
            report.evaluated += 1;
            report.firing += usize::from(outcome.firing);
            let crate::alerts::LastEvaluation {
                last,
                last_fired_slot: last_fired,
            } = self
                .alerts
                .last_evaluation(store_id, &rule.id, slot)
                .await?;
            let was_firing = last.as_ref().is_some_and(|l| l.firing);
            let mut episode_notified =
                was_firing && last.as_ref().is_some_and(|l| l.episode_notified);
            let cooldown_ms = i64::from(rule.cooldown_minutes()) * 60_000;
            let cooled = last_fired.is_none_or(|t| slot - t >= cooldown_ms);
            let notification = if outcome.firing {
                if !episode_notified && !rule.muted() && cooled {
                    episode_notified = true;
                    "firing"
                } else {
                    ""
                }
            } else {
                let resolved = was_firing && episode_notified;
                episode_notified = false;
                if resolved { "resolved" } else { "" }
            };
            let evaluation = Evaluation {
                rule_id: rule.id.clone(),
                slot,
                evaluated_at: jiff::Timestamp::now().as_millisecond(),
                window_from: outcome.window_from,
                window_to: outcome.window_to,
                value: outcome.value,
                expected: outcome.expected,
                firing: outcome.firing,
                notification: notification.to_owned(),
                episode_notified,
                detail: outcome.detail.clone(),
            };
            self.alerts.log_evaluation(store_id, &evaluation).await?;
            if !notification.is_empty() {
                report.notifications += 1;
                let id = delivery_id(store_id, &rule.id, slot, notification);
                let payload = self.payload(store_id, rule, &id, notification, &outcome);
                for d in self.deliver(store_id, rule, slot, &id, &payload).await? {
                    if d.delivered {
                        report.delivered += 1;
                    } else {
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Sends a test notification of `rule` to its channels now (logged as deliveries of kind `test`).
    pub async fn test(
        &self,
        store_id: &str,
        rule: &StoredRule,
        now: jiff::Timestamp,
    ) -> Result<Vec<Delivery>> {
        let at = now.as_millisecond();
        let id = format!("dlv_test_{}", ulid::Ulid::new());
        let outcome = Outcome {
            window_from: at,
            window_to: at,
            value: None,
            expected: None,
            firing: false,
            detail: "a test notification".into(),
        };
        let payload = self.payload(store_id, rule, &id, "test", &outcome);
        self.deliver(store_id, rule, at, &id, &payload).await
    }

    async fn deliver(
        &self,
        store_id: &str,
        rule: &StoredRule,
        slot: i64,
        id: &str,
        payload: &Value,
    ) -> Result<Vec<Delivery>> {
        let mut out = Vec::new();
        for channel in rule.channels() {
            let sent = match channel {
                Channel::Webhook { url } => {
                    self.sender
                        .send(url, &rule.signing_secret, id, payload)
                        .await
                }
                Channel::Sns { topic_arn } => {
                    super::sns::publish(&self.sender, topic_arn, id, payload).await
                }
            };
            let d = Delivery {
                rule_id: rule.id.clone(),
                slot,
                delivery_id: id.to_owned(),
                channel: channel.target().to_owned(),
                delivered: sent.delivered,
                attempts: sent.attempts,
                status: sent.status,
                detail: sent.detail,
                at: jiff::Timestamp::now().as_millisecond(),
            };
            self.alerts.log_delivery(store_id, &d).await?;
            out.push(d);
        }
        Ok(out)
    }

    /// The notification body (see the README's "Alerting" for its fields).
    fn payload(
        &self,
        store_id: &str,
        rule: &StoredRule,
        id: &str,
        kind: &str,
        o: &Outcome,
    ) -> Value {
        let (metric, built_in) = match &rule.body {
            RuleBody::Custom(r) => (r.metric.clone(), false),
            RuleBody::Guard(g, _) => (g.id().to_owned(), true),
        };
        let link = (!self.public_url.is_empty())
            .then(|| format!("{}/dashboard#/d/overview?period=24h", self.public_url));
        let value = o
            .value
            .map_or_else(|| "no value".to_owned(), |v| format!("{v}"));
        let expected = o.expected.map_or_else(String::new, |b| {
            format!(
                ", expected {:.0} ({:.0} to {:.0})",
                b.median,
                b.lower.max(0.0),
                b.upper
            )
        });
        let mark = match kind {
            "firing" => "🔴 Firing",
            "resolved" => "✅ Resolved",
            _ => "🔔 Test",
        };
        let text = format!(
            "{mark}: {} ({store_id}) — {metric} {value} in the window to {}{expected}.{}{}",
            rule.name(),
            rfc3339(o.window_to),
            if o.detail.is_empty() {
                String::new()
            } else {
                format!(" {}.", o.detail)
            },
            link.as_deref()
                .map_or_else(String::new, |l| format!(" {l}"))
        );
        json!({
            "id": id,
            "type": format!("alert.{kind}"),
            "store": store_id,
            "rule": {"id": rule.id, "name": rule.name(), "builtIn": built_in, "metric": metric},
            "value": o.value,
            "expected": o.expected,
            "window": {"from": rfc3339(o.window_from), "to": rfc3339(o.window_to)},
            "detail": o.detail,
            "link": link,
            "text": text,
        })
    }
}
