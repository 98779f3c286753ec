//! The envelope of an event: its type, id, timestamps and the ids that link it to a session, a
//! customer and an anonymous visitor. One rule for every id-like string ([`check_id`]): non-empty, at
//! most `max_id_len` characters, no control characters; event ids are also restricted to
//! `[A-Za-z0-9][A-Za-z0-9_.:-]*` because they travel in URLs and dedup tokens.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::FieldError;

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
