//! Parsing, validation and enrichment of incoming events.
//!
//! Contract (also in the README):
//! - Top level: `type` (required), `id`, `timestamp` (RFC 3339), `sessionId`, `customerId`,
//!   `anonymousId`, `properties` (object), `context` (object). Anything else is rejected by name, so typos
//!   such as `sessionID` do not silently lose data. `null` means "absent".
//! - `id`: `[A-Za-z0-9][A-Za-z0-9_.:-]*`, at most 128 characters. Absent: the server assigns
//!   `evt_<ULID>` (time-sortable). Present: it is the idempotency key (resending is harmless).
//! - `timestamp`: absent → receive time. More than 5 minutes in the future → clamped to receive time (the
//!   client value is kept in `client_timestamp`). Older than `retention_days` → rejected, since it would
//!   be deleted on arrival.
//! - Per-type required properties are checked by [`check_properties`]; extra properties are kept.
//! - `context` is completed from the request: IP (anonymized by default), `User-Agent`, `Referer`,
//!   `CloudFront-Viewer-Country`; `context.campaign` from the `utm_*` parameters of `context.page.url`.
//!
//! Every failure is a [`FieldError`] naming the field; nothing here panics on any input.
//!
//! In parts, by what they check: [`envelope`] (type, ids, timestamps), [`context`] (and enrichment from
//! the request), [`properties`] (the per-type contract and limits). Currency and country codes follow
//! [`crate::ident`], as the query parameters do.

mod aliases;
mod context;
mod envelope;
mod properties;

use std::net::IpAddr;

use serde_json::Value;
use time::OffsetDateTime;

use self::context::{enrich, parse_context};
use self::envelope::{
    checked_event_id, client_timestamp, event_time, event_type, is_valid_client_id, opt_id,
    opt_string, take_object, truncate_to_millis,
};
use self::properties::check_shape;
use super::{Context, Event, EventType, bots};
use crate::config::{Config, Limits};
use crate::error::FieldError;

pub use self::context::anonymize;
pub use self::envelope::new_event_id;
pub use self::properties::check_properties;

/// An event's fields as a client sends them, already typed and known to be well-formed: for a producer
/// inside this process that makes its events rather than parsing them (the demo loader, see
/// [`Validator::accept_trusted`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrustedEvent {
    pub id: String,
    pub event_type: EventType,
    /// The client's `timestamp`.
    pub timestamp: OffsetDateTime,
    pub session_id: Option<String>,
    pub customer_id: Option<String>,
    pub anonymous_id: Option<String>,
    pub properties: serde_json::Map<String, Value>,
    /// As sent, before [`Validator::validate`] completes it from the request.
    pub context: Context,
}

/// How far ahead of the receive time a client timestamp may be before it is clamped.
pub const FUTURE_TOLERANCE: time::Duration = time::Duration::minutes(5);
/// Largest accepted amount in minor units (10^15, i.e. ten trillion in a two-decimal currency).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;
const MAX_TEXT_LEN: usize = 2048;

/// What the transport knows about the request, used to fill `context`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub referrer: Option<String>,
    /// From `CloudFront-Viewer-Country`.
    pub country: Option<String>,
    /// The request carries `Origin`: a browser sent it, so its `User-Agent` is the visitor's.
    pub from_browser: bool,
}

#[derive(Debug, Clone)]
pub struct Validator {
    pub limits: Limits,
    pub retention_days: u32,
    pub anonymize_ip: bool,
}

impl Validator {
    pub fn from_config(config: &Config) -> Self {
        Self {
            limits: config.limits,
            retention_days: config.retention_days,
            anonymize_ip: config.anonymize_ip,
        }
    }

    /// Parses and validates one event given as JSON text.
    pub fn parse(
        &self,
        json: &str,
        store_id: &str,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> Result<Event, FieldError> {
        if json.len() > self.limits.max_event_bytes {
            return Err(FieldError::new(
                "event_too_large",
                "",
                format!(
                    "event is {} bytes; the limit is {} bytes",
                    json.len(),
                    self.limits.max_event_bytes
                ),
            ));
        }
        let value: Value = serde_json::from_str(json).map_err(|e| {
            FieldError::new(
                "invalid_json",
                "body",
                format!(
                    "body is not valid JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        self.validate(value, store_id, meta, now)
    }

    /// Validates one already-parsed event.
    pub fn validate(
        &self,
        value: Value,
        store_id: &str,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> Result<Event, FieldError> {
        let Value::Object(mut obj) = value else {
            return Err(FieldError::new(
                "invalid_type",
                "",
                "an event must be a JSON object",
            ));
        };
        if let Some(unknown) = obj.keys().find(|k| !TOP_LEVEL.contains(&k.as_str())) {
            return Err(FieldError::new(
                "unknown_field",
                unknown.clone(),
                format!(
                    "unknown field {unknown:?}; expected one of {}",
                    TOP_LEVEL.join(", ")
                ),
            ));
        }
        let now = truncate_to_millis(now);

        // Segment's and GA4's ecommerce events are stored as the canonical ones.
        aliases::canonicalize(&mut obj)?;
        let event_type = event_type(&mut obj)?;
        let id = match opt_string(&mut obj, "id")? {
            Some(id) => checked_event_id(id, self.limits.max_id_len)?,
            None => new_event_id(now),
        };
        let client_timestamp = client_timestamp(&mut obj)?;
        let timestamp = event_time(client_timestamp, now, self.retention_days)?;

        let session_id = opt_id(&mut obj, "sessionId", self.limits.max_id_len)?;
        let customer_id = opt_id(&mut obj, "customerId", self.limits.max_id_len)?;
        let anonymous_id = opt_id(&mut obj, "anonymousId", self.limits.max_id_len)?;

        let properties = take_object(&mut obj, "properties")?.unwrap_or_default();
        check_shape(&properties, &self.limits)?;
        check_properties(&event_type, &properties, self.limits.max_id_len)?;
        let context = match take_object(&mut obj, "context")? {
            Some(m) => parse_context(m)?,
            None => Context::default(),
        };
        let fields = TrustedEvent {
            id,
            event_type,
            timestamp,
            session_id,
            customer_id,
            anonymous_id,
            properties,
            context,
        };
        Ok(self.complete(fields, client_timestamp, store_id, meta, now))
    }

    /// The stored event of checked `fields` whose `timestamp` is already the event's time (see
    /// `event_time`): the bot flag from the visitor's user agent, the context completed from the request
    /// and its IP anonymized. The one tail of [`Validator::validate`] and [`Validator::accept_trusted`].
    fn complete(
        &self,
        fields: TrustedEvent,
        client_timestamp: Option<OffsetDateTime>,
        store_id: &str,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> Event {
        let bot = bots::visitor_user_agent(
            fields.context.user_agent.as_deref(),
            meta.user_agent.as_deref(),
            meta.from_browser,
        )
        .is_some_and(bots::is_bot_user_agent);
        Event {
            id: fields.id,
            store_id: store_id.to_owned(),
            event_type: fields.event_type,
            timestamp: fields.timestamp,
            received_at: now,
            client_timestamp: client_timestamp.map(|t| t.to_offset(time::UtcOffset::UTC)),
            session_id: fields.session_id,
            customer_id: fields.customer_id,
            anonymous_id: fields.anonymous_id,
            properties: fields.properties,
            context: enrich(fields.context, meta, self.anonymize_ip),
            bot,
        }
    }

    /// The event [`Validator::validate`] stores for the JSON of `e`, without the JSON: the same time
    /// rules (clamping, retention), bot flag, enrichment from the request and IP anonymization. What it
    /// skips is what a typed, well-formed event cannot fail: parsing, the envelope's and context's field
    /// checks, the property contract. For producers that make their events (the demo loader, whose
    /// generator a test checks against `validate` of its JSON event by event); never for input from
    /// outside the process.
    pub fn accept_trusted(
        &self,
        e: TrustedEvent,
        store_id: &str,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> Result<Event, FieldError> {
        let now = truncate_to_millis(now);
        let sent = e.timestamp;
        let timestamp = event_time(Some(sent), now, self.retention_days)?;
        Ok(self.complete(
            TrustedEvent { timestamp, ..e },
            Some(sent),
            store_id,
            meta,
            now,
        ))
    }

    /// Checks an already-enriched event arriving from Firehose (written by `track`, but the ingest endpoint
    /// trusts nothing it decodes) and applies track's rules again at `now`, so a record is stored exactly
    /// as track would have stored it, or refused as track would have refused it: store id, id, type
    /// contract, property shape and limits; a time more than [`FUTURE_TOLERANCE`] ahead of `now` is
    /// clamped to the receive time (the sent one kept in `client_timestamp`); a time older than
    /// `retention_days` is refused; the IP is anonymized when `anonymize_ip`. An event track accepted is
    /// left unchanged (every step is idempotent).
    pub fn revalidate(&self, e: &mut Event, now: OffsetDateTime) -> Result<(), FieldError> {
        if !crate::ident::is_valid_store_id(&e.store_id) {
            return Err(FieldError::new(
                "invalid_value",
                "storeId",
                "storeId is missing or malformed",
            ));
        }
        if !is_valid_client_id(&e.id, self.limits.max_id_len) {
            return Err(FieldError::new(
                "invalid_id",
                "id",
                "id is missing or malformed",
            ));
        }
        check_shape(&e.properties, &self.limits)?;
        check_properties(&e.event_type, &e.properties, self.limits.max_id_len)?;
        let now = truncate_to_millis(now);
        if e.received_at > now + FUTURE_TOLERANCE {
            e.received_at = now;
        }
        if e.timestamp > e.received_at + FUTURE_TOLERANCE {
            e.client_timestamp.get_or_insert(e.timestamp);
            e.timestamp = e.received_at;
        }
        e.timestamp = event_time(Some(e.timestamp), now, self.retention_days)?;
        if self.anonymize_ip {
            e.context.ip = e
                .context
                .ip
                .as_deref()
                .and_then(|s| s.parse::<IpAddr>().ok())
                .map(|ip| anonymize(ip).to_string());
        }
        Ok(())
    }
}

const TOP_LEVEL: [&str; 8] = [
    "id",
    "type",
    "timestamp",
    "sessionId",
    "customerId",
    "anonymousId",
    "properties",
    "context",
];

#[cfg(test)]
mod tests;
