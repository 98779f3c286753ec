//! Row layout of `commerce_events` for RowBinary inserts. Column order and types must match
//! [`super::migrations`]; the client validates them against the live table before the first insert.

use clickhouse::Row;
use serde::Serialize;
use time::OffsetDateTime;

use crate::event::Event;

#[derive(Debug, Row, Serialize)]
pub struct EventRow<'a> {
    pub store_id: &'a str,
    pub id: &'a str,
    #[serde(rename = "type")]
    pub event_type: &'a str,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub timestamp: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub received_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis::option")]
    pub client_timestamp: Option<OffsetDateTime>,
    pub session_id: &'a str,
    pub customer_id: &'a str,
    pub anonymous_id: &'a str,
    pub properties: String,
    pub ip: &'a str,
    pub user_agent: &'a str,
    pub referrer: &'a str,
    pub country: &'a str,
    pub page_url: &'a str,
    pub page_path: &'a str,
    pub utm_source: &'a str,
    pub utm_medium: &'a str,
    pub utm_campaign: &'a str,
    pub utm_term: &'a str,
    pub utm_content: &'a str,
    pub order_id: &'a str,
    pub product_id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    pub quantity: i64,
    /// Migration v6; see [`crate::event::bots`].
    pub is_bot: bool,
    /// Migration v9; see [`crate::event::agent`].
    pub device: &'static str,
    pub browser: String,
    pub os: String,
}

impl<'a> EventRow<'a> {
    pub fn from_event(e: &'a Event) -> Self {
        let s = |o: &'a Option<String>| o.as_deref().unwrap_or("");
        let page = e.context.page.as_ref();
        let campaign = e.context.campaign.as_ref();
        let c = |f: fn(&'a crate::event::Campaign) -> &'a Option<String>| {
            campaign.and_then(|c| f(c).as_deref()).unwrap_or("")
        };
        let facts = e.facts();
        let agent = crate::event::agent::Agent::of(s(&e.context.user_agent), e.bot);
        Self {
            store_id: &e.store_id,
            id: &e.id,
            event_type: e.event_type.as_str(),
            timestamp: e.timestamp,
            received_at: e.received_at,
            client_timestamp: e.client_timestamp,
            session_id: s(&e.session_id),
            customer_id: s(&e.customer_id),
            anonymous_id: s(&e.anonymous_id),
            // Serializing a Map of Values cannot fail.
            properties: serde_json::to_string(&e.properties).unwrap_or_else(|_| "{}".into()),
            ip: s(&e.context.ip),
            user_agent: s(&e.context.user_agent),
            referrer: s(&e.context.referrer),
            country: s(&e.context.country),
            page_url: page.and_then(|p| p.url.as_deref()).unwrap_or(""),
            page_path: page.and_then(|p| p.path.as_deref()).unwrap_or(""),
            utm_source: c(|c| &c.source),
            utm_medium: c(|c| &c.medium),
            utm_campaign: c(|c| &c.name),
            utm_term: c(|c| &c.term),
            utm_content: c(|c| &c.content),
            order_id: facts.order_id,
            product_id: facts.product_id,
            amount: facts.amount,
            currency: facts.currency,
            quantity: facts.quantity,
            is_bot: e.bot,
            device: agent.device,
            browser: agent.browser,
            os: agent.os,
        }
    }
}

/// Row layout of `commerce_events_rejects`.
#[derive(Debug, Row, Serialize)]
pub struct RejectRow<'a> {
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    pub received_at: OffsetDateTime,
    pub source: &'a str,
    pub request_id: &'a str,
    pub record_index: u32,
    pub store_id: &'a str,
    pub event_id: &'a str,
    pub reason: &'a str,
    pub raw: &'a str,
}

impl<'a> RejectRow<'a> {
    pub fn from_reject(r: &'a crate::store::Reject) -> Self {
        Self {
            received_at: r.received_at,
            source: r.source,
            request_id: &r.request_id,
            record_index: r.record_index,
            store_id: &r.store_id,
            event_id: &r.event_id,
            reason: &r.reason,
            raw: &r.raw,
        }
    }
}
