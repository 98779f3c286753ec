//! The envelope of an event: its type, id, timestamps and the ids that link it to a session, a
//! customer and an anonymous visitor. One rule for every id-like string ([`check_id`]): non-empty, at
//! most `max_id_len` characters, no control characters; event ids are also restricted to
//! `[A-Za-z0-9][A-Za-z0-9_.:-]*` because they travel in URLs and dedup tokens.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::FUTURE_TOLERANCE;
use crate::error::FieldError;
use crate::event::EventType;

/// `evt_` + a ULID whose time part is `now`.
pub fn new_event_id(now: OffsetDateTime) -> String {
    let ms = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
    format!("evt_{}", ulid::Ulid::from_parts(ms, rand::random::<u128>()))
}

pub(super) fn truncate_to_millis(t: OffsetDateTime) -> OffsetDateTime {
    let ms = t.millisecond();
    t.replace_millisecond(ms).unwrap_or(t)
}

/// An event id: `[A-Za-z0-9][A-Za-z0-9_.:-]*`, at most `max` bytes.
pub(super) fn is_valid_client_id(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'))
}

/// The id rule: `s` (the value of `field`) is non-empty, at most `max` characters, without control
/// characters.
pub(super) fn check_id(s: &str, field: &str, max: usize) -> Result<(), FieldError> {
    if s.is_empty() {
        Err(FieldError::new(
            "invalid_value",
            field,
            format!("{field} must not be empty"),
        ))
    } else if s.chars().count() > max {
        Err(FieldError::new(
            "too_long",
            field,
            format!("{field} is longer than {max} characters"),
        ))
    } else if s.chars().any(char::is_control) {
        Err(FieldError::new(
            "invalid_value",
            field,
            format!("{field} must not contain control characters"),
        ))
    } else {
        Ok(())
    }
}

/// A string field of the envelope; `null` is absent.
pub(super) fn opt_string(
    obj: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<String>, FieldError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FieldError::new(
            "invalid_type",
            key,
            format!("{key} must be a string"),
        )),
    }
}

/// An optional id field of the envelope (`sessionId`, `customerId`, `anonymousId`).
pub(super) fn opt_id(
    obj: &mut Map<String, Value>,
    key: &'static str,
    max: usize,
) -> Result<Option<String>, FieldError> {
    let id = opt_string(obj, key)?;
    if let Some(s) = &id {
        check_id(s, key, max)?;
    }
    Ok(id)
}

/// An optional object field (`properties`, `context`); `null` is absent.
pub(super) fn take_object(
    obj: &mut Map<String, Value>,
    key: &'static str,
) -> Result<Option<Map<String, Value>>, FieldError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(FieldError::new(
            "invalid_type",
            key,
            format!("{key} must be an object"),
        )),
    }
}

/// `type`: required, a built-in type or a valid custom name.
pub(super) fn event_type(obj: &mut Map<String, Value>) -> Result<EventType, FieldError> {
    let name = match obj.remove("type") {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => {
            return Err(FieldError::new("missing_field", "type", "type is required"));
        }
        Some(_) => {
            return Err(FieldError::new(
                "invalid_type",
                "type",
                "type must be a string",
            ));
        }
    };
    EventType::parse(&name).ok_or_else(|| {
        FieldError::new(
            "invalid_event_type",
            "type",
            format!(
                "{name:?} is not a known event type nor a valid custom name \
                 (lower-case dot-separated segments, e.g. \"wishlist.item_added\")"
            ),
        )
    })
}

/// A client's event id, checked (see [`is_valid_client_id`]).
pub(super) fn checked_event_id(id: String, max: usize) -> Result<String, FieldError> {
    if is_valid_client_id(&id, max) {
        Ok(id)
    } else {
        Err(FieldError::new(
            "invalid_id",
            "id",
            format!("id must match [A-Za-z0-9][A-Za-z0-9_.:-]* and be at most {max} characters"),
        ))
    }
}

/// `timestamp` as the client sent it (RFC 3339), if it did.
pub(super) fn client_timestamp(
    obj: &mut Map<String, Value>,
) -> Result<Option<OffsetDateTime>, FieldError> {
    match opt_string(obj, "timestamp")? {
        Some(s) => OffsetDateTime::parse(&s, &Rfc3339).map(Some).map_err(|_| {
            FieldError::new(
                "invalid_timestamp",
                "timestamp",
                format!("timestamp {s:?} is not RFC 3339 (e.g. 2025-01-15T10:35:00Z)"),
            )
        }),
        None => Ok(None),
    }
}

/// The event's time: the client's in UTC at millisecond precision; receive time (`now`) when absent or
/// more than [`FUTURE_TOLERANCE`] ahead; refused when older than `retention_days`.
pub(super) fn event_time(
    client: Option<OffsetDateTime>,
    now: OffsetDateTime,
    retention_days: u32,
) -> Result<OffsetDateTime, FieldError> {
    match client {
        None => Ok(now),
        Some(ts) if ts > now + FUTURE_TOLERANCE => Ok(now),
        Some(ts) if ts < now - time::Duration::days(i64::from(retention_days)) => {
            Err(FieldError::new(
                "timestamp_out_of_range",
                "timestamp",
                format!("timestamp is more than retention_days ({retention_days}) in the past"),
            ))
        }
        Some(ts) => Ok(truncate_to_millis(ts.to_offset(time::UtcOffset::UTC))),
    }
}
