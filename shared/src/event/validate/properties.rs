//! `properties`: the per-type contract ([`rules`], one table) and the limits of every properties object.
//! Extra properties are always allowed and kept verbatim.

use serde_json::{Map, Value};

use super::envelope::check_id;
use super::{MAX_AMOUNT, MAX_TEXT_LEN};
use crate::config::Limits;
use crate::error::FieldError;
use crate::event::EventType;
use crate::ident::is_currency_code;

/// The limits every `properties` object obeys, whatever the type: key count and nesting depth.
pub(super) fn check_shape(
    properties: &Map<String, Value>,
    limits: &Limits,
) -> Result<(), FieldError> {
    if properties.len() > limits.max_property_keys {
        return Err(FieldError::new(
            "too_many_properties",
            "properties",
            format!(
                "properties has {} keys; the limit is {}",
                properties.len(),
                limits.max_property_keys
            ),
        ));
    }
    for (k, v) in properties {
        if depth(v) > limits.max_property_depth {
            return Err(FieldError::new(
                "too_deep",
                format!("properties.{k}"),
                format!("nesting deeper than {} levels", limits.max_property_depth),
            ));
        }
    }
    Ok(())
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A property requirement: (name, kind, required).
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Non-empty id-like string.
    Id,
    /// Integer minor units, 0..=MAX_AMOUNT.
    Money,
    /// Upper-case ISO 4217 code; required whenever a money field is present.
    Currency,
    /// Integer >= 1.
    PositiveInt,
    /// Integer >= 0.
    NonNegativeInt,
    /// Any string.
    Text,
    /// Array of `{ productId, quantity, price? }`.
    Items,
}

/// The per-type contract. Extra properties are always allowed and kept.
fn rules(t: &EventType) -> &'static [(&'static str, Kind, bool)] {
    use Kind::*;
    match t {
        EventType::PageViewed => &[
            ("url", Text, false),
            ("path", Text, false),
            ("title", Text, false),
        ],
        EventType::ProductViewed => &[
            ("productId", Id, true),
            ("productName", Text, false),
            ("price", Money, false),
            ("currency", Currency, false),
        ],
        EventType::CartItemAdded | EventType::CartItemRemoved => &[
            ("productId", Id, true),
            ("quantity", PositiveInt, false),
            ("price", Money, false),
            ("currency", Currency, false),
            ("cartId", Id, false),
        ],
        EventType::CheckoutStarted => &[
            ("cartId", Id, false),
            ("total", Money, false),
            ("currency", Currency, false),
            ("items", Items, false),
        ],
        EventType::OrderCompleted => &[
            ("orderId", Id, true),
            ("total", Money, true),
            ("currency", Currency, true),
            ("subtotal", Money, false),
            ("tax", Money, false),
            ("shipping", Money, false),
            ("discount", Money, false),
            ("coupon", Text, false),
            ("affiliation", Text, false),
            ("itemCount", NonNegativeInt, false),
            ("items", Items, false),
            ("paymentMethod", Text, false),
            // Ties a backend order to the storefront visit that filled the cart (attribution).
            ("cartId", Id, false),
        ],
        EventType::PaymentCaptured => &[
            ("orderId", Id, true),
            ("amount", Money, true),
            ("currency", Currency, true),
            ("paymentMethod", Text, false),
        ],
        EventType::OrderRefunded => &[
            ("orderId", Id, true),
            ("amount", Money, true),
            ("currency", Currency, true),
            ("reason", Text, false),
            ("items", Items, false),
        ],
        EventType::InventoryUpdated => {
            &[("productId", Id, true), ("quantity", NonNegativeInt, true)]
        }
        EventType::Custom(_) => &[],
    }
}

/// Checks `properties` against the type's contract.
pub fn check_properties(
    t: &EventType,
    p: &Map<String, Value>,
    max_id_len: usize,
) -> Result<(), FieldError> {
    let mut has_money = false;
    let mut has_currency = false;
    for (name, kind, required) in rules(t) {
        let field = format!("properties.{name}");
        let value = match p.get(*name) {
            None | Some(Value::Null) if *required => {
                return Err(FieldError::new(
                    "missing_field",
                    field,
                    format!("{} requires properties.{name}", t.as_str()),
                ));
            }
            None | Some(Value::Null) => continue,
            Some(v) => v,
        };
        check_value(*kind, value, &field, max_id_len)?;
        match kind {
            Kind::Money => has_money = true,
            Kind::Currency => has_currency = true,
            _ => {}
        }
    }
    if has_money && !has_currency {
        return Err(FieldError::new(
            "missing_field",
            "properties.currency",
            "an amount needs properties.currency (ISO 4217, e.g. USD)",
        ));
    }
    if *t == EventType::OrderCompleted {
        check_order_parts(p)?;
    }
    Ok(())
}

/// An order's `total` is what the customer paid: `subtotal + shipping + tax`, where `subtotal` is the items
/// after discounts (as Segment and Shopify define it; `discount` is how much was taken off, for the sales
/// report). When the three parts are sent they must add up to `total` (a 400 naming `properties.total`
/// otherwise); with some missing, nothing can be checked.
fn check_order_parts(p: &Map<String, Value>) -> Result<(), FieldError> {
    let part = |k: &str| p.get(k).and_then(Value::as_i64);
    let (Some(total), Some(subtotal), Some(shipping), Some(tax)) = (
        part("total"),
        part("subtotal"),
        part("shipping"),
        part("tax"),
    ) else {
        return Ok(());
    };
    let sum = i128::from(subtotal) + i128::from(shipping) + i128::from(tax);
    if sum != i128::from(total) {
        return Err(FieldError::new(
            "invalid_value",
            "properties.total",
            format!(
                "properties.total is {total}, but subtotal + shipping + tax is {sum} \
                 ({subtotal} + {shipping} + {tax}; the subtotal is after discounts)"
            ),
        ));
    }
    Ok(())
}

fn check_value(kind: Kind, v: &Value, field: &str, max_id_len: usize) -> Result<(), FieldError> {
    match kind {
        Kind::Id => match v.as_str() {
            Some(s) => check_id(s, field, max_id_len),
            None => Err(FieldError::new(
                "invalid_type",
                field,
                format!("{field} must be a string"),
            )),
        },
        Kind::Text => match v {
            Value::String(s) if s.len() > MAX_TEXT_LEN => Err(FieldError::new(
                "too_long",
                field,
                format!("{field} is longer than {MAX_TEXT_LEN} bytes"),
            )),
            Value::String(_) => Ok(()),
            _ => Err(FieldError::new(
                "invalid_type",
                field,
                format!("{field} must be a string"),
            )),
        },
        Kind::Money => match v.as_i64() {
            Some(n) if (0..=MAX_AMOUNT).contains(&n) => Ok(()),
            Some(_) => Err(FieldError::new(
                "invalid_value",
                field,
                format!("{field} must be between 0 and {MAX_AMOUNT} minor units"),
            )),
            None if v.is_number() => Err(FieldError::new(
                "invalid_value",
                field,
                format!(
                    "{field} must be an integer amount in the currency's minor units (its ISO 4217 \
                     exponent): 6791 for 67.91 USD, 6791 for 6791 JPY, 67910 for 67.910 KWD"
                ),
            )),
            None => Err(FieldError::new(
                "invalid_type",
                field,
                format!("{field} must be an integer amount in minor units"),
            )),
        },
        Kind::Currency => match v.as_str() {
            Some(s) if is_currency_code(s) => Ok(()),
            _ => Err(FieldError::new(
                "invalid_value",
                field,
                format!("{field} must be an ISO 4217 code in upper case, e.g. USD"),
            )),
        },
        Kind::PositiveInt | Kind::NonNegativeInt => {
            let min = if matches!(kind, Kind::PositiveInt) {
                1
            } else {
                0
            };
            match v.as_i64() {
                Some(n) if n >= min && n <= 1_000_000_000 => Ok(()),
                _ => Err(FieldError::new(
                    "invalid_value",
                    field,
                    format!("{field} must be an integer from {min} to 1000000000"),
                )),
            }
        }
        Kind::Items => {
            let Some(items) = v.as_array() else {
                return Err(FieldError::new(
                    "invalid_type",
                    field,
                    format!("{field} must be an array"),
                ));
            };
            if items.len() > 1000 {
                return Err(FieldError::new(
                    "too_long",
                    field,
                    format!("{field} has more than 1000 items"),
                ));
            }
            for (i, item) in items.iter().enumerate() {
                let base = format!("{field}[{i}]");
                let Some(obj) = item.as_object() else {
                    return Err(FieldError::new(
                        "invalid_type",
                        base.clone(),
                        format!("{base} must be an object"),
                    ));
                };
                match obj.get("productId") {
                    Some(pid) => {
                        check_value(Kind::Id, pid, &format!("{base}.productId"), max_id_len)?
                    }
                    None => {
                        return Err(FieldError::new(
                            "missing_field",
                            format!("{base}.productId"),
                            "each item needs a productId",
                        ));
                    }
                }
                if let Some(q) = obj.get("quantity") {
                    check_value(
                        Kind::PositiveInt,
                        q,
                        &format!("{base}.quantity"),
                        max_id_len,
                    )?;
                }
                for money in ["price", "discount"] {
                    if let Some(v) = obj.get(money) {
                        check_value(Kind::Money, v, &format!("{base}.{money}"), max_id_len)?;
                    }
                }
                for text in ["sku", "name", "brand", "category", "variant", "coupon"] {
                    if let Some(v) = obj.get(text).filter(|v| !v.is_null()) {
                        check_value(Kind::Text, v, &format!("{base}.{text}"), max_id_len)?;
                    }
                }
            }
            Ok(())
        }
    }
}
