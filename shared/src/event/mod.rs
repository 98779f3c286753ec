//! The commerce event: what storefronts and services send, and what we store.
//!
//! Wire shape (the spec's schema, camelCase):
//! `{ id?, type, timestamp?, sessionId?, customerId?, anonymousId?, properties?, context? }`.
//! [`validate::Validator`] turns a client's JSON into an [`Event`]: checked against the per-type contract
//! (see the README's event table), with server-side enrichment (id, receive time, request context, store).
//! An [`Event`] serializes to the canonical enriched form (`storeId`, `receivedAt`, …) used for Firehose
//! records and for the rows of [`crate::store`].
//!
//! Money is always an integer number of minor units (cents) with an ISO 4217 `currency`.

pub mod validate;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use time::OffsetDateTime;

pub mod agent;
pub mod bots;
mod recent;

pub use validate::{RequestMeta, TrustedEvent, Validator};

/// Event types with a contract, plus custom ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventType {
    PageViewed,
    ProductViewed,
    CartItemAdded,
    CartItemRemoved,
    CheckoutStarted,
    OrderCompleted,
    PaymentCaptured,
    OrderRefunded,
    /// Stock on hand for a product; the source of the inventory dashboard.
    InventoryUpdated,
    /// Any other name matching [`is_custom_type_name`]. Properties are free-form.
    Custom(String),
}

impl EventType {
    /// The built-in types, in funnel order.
    pub const BUILT_IN: [EventType; 9] = [
        EventType::PageViewed,
        EventType::ProductViewed,
        EventType::CartItemAdded,
        EventType::CartItemRemoved,
        EventType::CheckoutStarted,
        EventType::OrderCompleted,
        EventType::PaymentCaptured,
        EventType::OrderRefunded,
        EventType::InventoryUpdated,
    ];

    pub fn as_str(&self) -> &str {
        match self {
            Self::PageViewed => "page.viewed",
            Self::ProductViewed => "product.viewed",
            Self::CartItemAdded => "cart.item_added",
            Self::CartItemRemoved => "cart.item_removed",
            Self::CheckoutStarted => "checkout.started",
            Self::OrderCompleted => "order.completed",
            Self::PaymentCaptured => "payment.captured",
            Self::OrderRefunded => "order.refunded",
            Self::InventoryUpdated => "inventory.updated",
            Self::Custom(s) => s,
        }
    }

    /// Parses a type name: a built-in name, or a custom name that follows the pattern.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "page.viewed" => Self::PageViewed,
            "product.viewed" => Self::ProductViewed,
            "cart.item_added" => Self::CartItemAdded,
            "cart.item_removed" => Self::CartItemRemoved,
            "checkout.started" => Self::CheckoutStarted,
            "order.completed" => Self::OrderCompleted,
            "payment.captured" => Self::PaymentCaptured,
            "order.refunded" => Self::OrderRefunded,
            "inventory.updated" => Self::InventoryUpdated,
            other if is_custom_type_name(other) => Self::Custom(other.to_owned()),
            _ => return None,
        })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid event type {s:?}")))
    }
}

/// Custom event names: 2 to 4 lower-case dot-separated segments, each `[a-z][a-z0-9_]*`, 64 characters at
/// most, e.g. `product.impression`, `wishlist.item_added`, `newsletter.subscribed`.
pub fn is_custom_type_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 64 {
        return false;
    }
    let segments: Vec<&str> = s.split('.').collect();
    (2..=4).contains(&segments.len())
        && segments.iter().all(|seg| {
            let b = seg.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_lowercase()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        })
}

/// Where the event happened; filled from the request when the client leaves it out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    /// Client IP, anonymized unless `anonymize_ip: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    /// ISO 3166-1 alpha-2, upper case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<Page>,
    /// UTM campaign; taken from `page.url`'s `utm_*` parameters when not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<Campaign>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Campaign {
    pub fn is_empty(&self) -> bool {
        self == &Campaign::default()
    }
}

/// A validated, enriched event. Construct it through [`Validator`]; the fields are public for reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// `evt_` + ULID when assigned by the server; the client's id otherwise (the idempotency key).
    pub id: String,
    /// The tenant, always taken from the API key.
    pub store_id: String,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When it happened (UTC, millisecond precision). Receive time if the client sent none or sent one
    /// more than 5 minutes in the future.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// When the API received it.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// The timestamp the client sent, verbatim, if any (kept even when clamped).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_timestamp: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anonymous_id: Option<String>,
    pub properties: Map<String, Value>,
    pub context: Context,
    /// Sent by a bot, crawler or headless browser (see [`bots`]): stored, left out of metrics by default.
    /// Set by the server only (a client sending `bot` gets `unknown_field`); carried through Firehose.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bot: bool,
}

/// Typed facts pulled out of `properties` for fast columns (see [`Event::facts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts<'a> {
    pub order_id: &'a str,
    pub product_id: &'a str,
    /// `productName` (product and cart events); empty when absent.
    pub product_name: &'a str,
    /// Minor units: `total` (orders, checkouts), `amount` (payments, refunds), `price` (product and cart
    /// events); 0 when absent.
    pub amount: i64,
    pub currency: &'a str,
    /// Units: cart quantity (default 1), stock on hand for inventory, items in an order (sum of
    /// `items[].quantity`, else `itemCount`); 0 otherwise.
    pub quantity: i64,
}

impl Event {
    /// Facts for the typed columns. Relies on the properties having passed validation.
    pub fn facts(&self) -> Facts<'_> {
        let p = &self.properties;
        let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
        let i = |k: &str| p.get(k).and_then(Value::as_i64);
        let amount = match self.event_type {
            EventType::OrderCompleted | EventType::CheckoutStarted => i("total"),
            EventType::PaymentCaptured | EventType::OrderRefunded => i("amount"),
            EventType::ProductViewed | EventType::CartItemAdded | EventType::CartItemRemoved => {
                i("price")
            }
            _ => None,
        }
        .unwrap_or(0);
        let quantity = match self.event_type {
            EventType::CartItemAdded | EventType::CartItemRemoved => i("quantity").unwrap_or(1),
            EventType::InventoryUpdated => i("quantity").unwrap_or(0),
            EventType::OrderCompleted => match p.get("items").and_then(Value::as_array) {
                Some(items) if !items.is_empty() => items
                    .iter()
                    .map(|it| it.get("quantity").and_then(Value::as_i64).unwrap_or(1))
                    .sum(),
                _ => i("itemCount").unwrap_or(0),
            },
            _ => 0,
        };
        Facts {
            order_id: s("orderId"),
            product_id: s("productId"),
            product_name: s("productName"),
            amount,
            currency: s("currency"),
            quantity,
        }
    }
}

/// `n` valid `page.viewed` events for store `s` with ids `<prefix>0`, `<prefix>1`, …; for unit tests.
#[cfg(test)]
pub(crate) fn test_page_views(prefix: &str, n: usize) -> Vec<Event> {
    let v = Validator {
        limits: Default::default(),
        retention_days: 365,
        anonymize_ip: true,
    };
    let now = time::OffsetDateTime::now_utc();
    (0..n)
        .map(|i| {
            v.validate(
                serde_json::json!({"id": format!("{prefix}{i}"), "type": "page.viewed"}),
                "s",
                &RequestMeta::default(),
                now,
            )
            .expect("valid")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_type_names_follow_the_documented_pattern() {
        for ok in [
            "product.impression",
            "wishlist.item_added",
            "a.b",
            "x.y.z.w",
            "app2.v1_x",
        ] {
            assert!(is_custom_type_name(ok), "{ok}");
        }
        for bad in [
            "",
            "single",
            "Upper.case",
            "a..b",
            ".a",
            "a.",
            "a.b.c.d.e",
            "a-b.c",
            "1a.b",
            "a.b c",
        ] {
            assert!(!is_custom_type_name(bad), "{bad}");
        }
    }

    #[test]
    fn built_in_type_names_round_trip() {
        for t in EventType::BUILT_IN {
            assert_eq!(EventType::parse(t.as_str()), Some(t.clone()));
        }
    }
}
