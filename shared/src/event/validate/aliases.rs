//! Aliases at ingest: the ecommerce events storefronts already emit for Segment (Ecommerce spec v2) and
//! Google Analytics 4 are accepted as sent and stored as the canonical event, so a store can point its
//! existing tracking at the module. One table (also in the README):
//!
//! | sent `type` | stored `type` | properties mapped (others kept as sent) |
//! |---|---|---|
//! | Segment `Product Viewed` | `product.viewed` | `product_id`→`productId`, `name`→`productName`, `price`* |
//! | Segment `Product Added` / `Product Removed` | `cart.item_added` / `cart.item_removed` | `product_id`→`productId`, `quantity`, `price`*, `cart_id`→`cartId` |
//! | Segment `Checkout Started` | `checkout.started` | `cart_id`→`cartId`, `value` (else `revenue`)→`total`*, `products`→`items` |
//! | Segment `Order Completed` | `order.completed` | `order_id`→`orderId`, `total` (else `revenue`)*, `subtotal`*, `tax`*, `shipping`*, `discount`*, `coupon`, `affiliation`, `cart_id`→`cartId`, `products`→`items` |
//! | Segment `Order Refunded` | `order.refunded` | `order_id`→`orderId`, `total` (else `revenue`)→`amount`*, `products`→`items` |
//! | GA4 `view_item` | `product.viewed` | `items[0].item_id`→`productId`, `items[0].item_name`→`productName`, `items[0].price`* |
//! | GA4 `add_to_cart` / `remove_from_cart` | `cart.item_added` / `cart.item_removed` | `items[0].item_id`→`productId`, `items[0].quantity`, `items[0].price`* |
//! | GA4 `begin_checkout` | `checkout.started` | `value`→`total`*, `items` |
//! | GA4 `purchase` | `order.completed` | `transaction_id`→`orderId`, `value`→`total`*, `tax`*, `shipping`*, `coupon`, `affiliation`, `items` |
//! | GA4 `refund` | `order.refunded` | `transaction_id`→`orderId`, `value`→`amount`*, `items` |
//!
//! Items: Segment `product_id`, GA4 `item_id` → `productId`; `sku`; `name` / `item_name` → `name`; `brand` /
//! `item_brand` → `brand`; `category` / `item_category`…`item_category5` (joined with `/`) → `category`;
//! `variant` / `item_variant` → `variant`; `quantity`; `price`*; `discount`*; `coupon`.
//!
//! \* Both send money as decimal amounts in major units (`67.91`); each is converted exactly to the
//! currency's minor units by its ISO 4217 exponent (`6791` cents, `6791` yen for `6791`, `67910` fils for
//! `67.91` KWD), and refused (a 400 naming the field) when it has more decimals than the currency has or
//! the event has no `currency`. The stored event is the canonical one, checked by the same contract.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value};

use crate::error::FieldError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Segment,
    Ga4,
}

/// The canonical type of an alias, and whose it is.
fn alias(name: &str) -> Option<(Source, &'static str)> {
    use Source::{Ga4, Segment};
    Some(match name {
        "Product Viewed" => (Segment, "product.viewed"),
        "Product Added" => (Segment, "cart.item_added"),
        "Product Removed" => (Segment, "cart.item_removed"),
        "Checkout Started" => (Segment, "checkout.started"),
        "Order Completed" => (Segment, "order.completed"),
        "Order Refunded" => (Segment, "order.refunded"),
        "view_item" => (Ga4, "product.viewed"),
        "add_to_cart" => (Ga4, "cart.item_added"),
        "remove_from_cart" => (Ga4, "cart.item_removed"),
        "begin_checkout" => (Ga4, "checkout.started"),
        "purchase" => (Ga4, "order.completed"),
        "refund" => (Ga4, "order.refunded"),
        _ => return None,
    })
}

/// Rewrites an aliased event (its `type` and `properties`) into the canonical one, in place; any other
/// event is left as it is.
pub(super) fn canonicalize(obj: &mut Map<String, Value>) -> Result<(), FieldError> {
    let Some((source, canonical)) = obj.get("type").and_then(Value::as_str).and_then(alias) else {
        return Ok(());
    };
    let mut sent = match obj.remove("properties") {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => Map::new(),
        Some(_) => {
            return Err(FieldError::new(
                "invalid_type",
                "properties",
                "properties must be an object",
            ));
        }
    };
    let currency = sent
        .get("currency")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut out = Map::new();
    let money = Money {
        currency: currency.as_deref(),
    };
    match (source, canonical) {
        (Source::Segment, "product.viewed" | "cart.item_added" | "cart.item_removed") => {
            rename(&mut sent, &mut out, "product_id", "productId");
            rename(&mut sent, &mut out, "name", "productName");
            rename(&mut sent, &mut out, "cart_id", "cartId");
            money.convert(&mut sent, &mut out, "price", "price", "properties.price")?;
        }
        (Source::Ga4, "product.viewed" | "cart.item_added" | "cart.item_removed") => {
            let first = match sent.remove("items") {
                Some(Value::Array(items)) => items.into_iter().next(),
                _ => None,
            };
            let Some(Value::Object(mut item)) = first else {
                return Err(FieldError::new(
                    "missing_field",
                    "properties.items",
                    format!("{} needs items[0] with its item_id", obj_type(obj)),
                ));
            };
            rename(&mut item, &mut out, "item_id", "productId");
            rename(&mut item, &mut out, "item_name", "productName");
            rename(&mut item, &mut out, "quantity", "quantity");
            money.convert(
                &mut item,
                &mut out,
                "price",
                "price",
                "properties.items[0].price",
            )?;
            sent.remove("value");
        }
        (_, "checkout.started") => {
            rename(&mut sent, &mut out, "cart_id", "cartId");
            let value = if sent.contains_key("value") {
                "value"
            } else {
                "revenue"
            };
            money.convert(
                &mut sent,
                &mut out,
                value,
                "total",
                &format!("properties.{value}"),
            )?;
            items(source, &mut sent, &mut out, &money)?;
        }
        (_, "order.completed") => {
            order(&mut sent, &mut out, &money, "total")?;
            rename(&mut sent, &mut out, "cart_id", "cartId");
            for part in ["subtotal", "tax", "shipping", "discount"] {
                money.convert(
                    &mut sent,
                    &mut out,
                    part,
                    part,
                    &format!("properties.{part}"),
                )?;
            }
            items(source, &mut sent, &mut out, &money)?;
        }
        (_, "order.refunded") => {
            order(&mut sent, &mut out, &money, "amount")?;
            items(source, &mut sent, &mut out, &money)?;
        }
        _ => {}
    }
    // What the mapping did not name is kept as sent (extra properties are always allowed).
    for (k, v) in sent {
        out.entry(k).or_insert(v);
    }
    obj.insert("type".into(), Value::from(canonical));
    obj.insert("properties".into(), Value::Object(out));
    Ok(())
}

/// An order's id (Segment `order_id`, GA4 `transaction_id`) and its amount as `to`: Segment's `total`
/// (else `revenue`), GA4's `value`.
fn order(
    sent: &mut Map<String, Value>,
    out: &mut Map<String, Value>,
    money: &Money<'_>,
    to: &str,
) -> Result<(), FieldError> {
    rename(sent, out, "order_id", "orderId");
    rename(sent, out, "transaction_id", "orderId");
    let amount = ["total", "value", "revenue"]
        .into_iter()
        .find(|k| sent.contains_key(*k))
        .unwrap_or("total");
    money.convert(sent, out, amount, to, &format!("properties.{amount}"))
}

fn obj_type(obj: &Map<String, Value>) -> &str {
    obj.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Moves `from` of `sent` to `to` of `out` (when present and `to` is not set yet).
fn rename(sent: &mut Map<String, Value>, out: &mut Map<String, Value>, from: &str, to: &str) {
    if let Some(v) = sent.remove(from)
        && !out.contains_key(to)
    {
        out.insert(to.to_owned(), v);
    }
}

/// `products` (Segment) or `items` (GA4) as canonical items.
fn items(
    source: Source,
    sent: &mut Map<String, Value>,
    out: &mut Map<String, Value>,
    money: &Money<'_>,
) -> Result<(), FieldError> {
    let (key, list) = match source {
        Source::Segment => ("products", sent.remove("products")),
        Source::Ga4 => ("items", sent.remove("items")),
    };
    let Some(list) = list else {
        return Ok(());
    };
    let Value::Array(list) = list else {
        return Err(FieldError::new(
            "invalid_type",
            format!("properties.{key}"),
            format!("properties.{key} must be an array"),
        ));
    };
    let mut mapped = Vec::with_capacity(list.len());
    for (i, item) in list.into_iter().enumerate() {
        let field = format!("properties.{key}[{i}]");
        let Value::Object(mut item) = item else {
            return Err(FieldError::new(
                "invalid_type",
                field.clone(),
                format!("{field} must be an object"),
            ));
        };
        let mut canonical = Map::new();
        for (from, to) in [
            ("product_id", "productId"),
            ("item_id", "productId"),
            ("item_name", "name"),
            ("item_brand", "brand"),
            ("item_variant", "variant"),
        ] {
            rename(&mut item, &mut canonical, from, to);
        }
        // GA4's category levels as one path.
        let levels: Vec<String> = [
            "item_category",
            "item_category2",
            "item_category3",
            "item_category4",
            "item_category5",
        ]
        .into_iter()
        .filter_map(|k| item.remove(k))
        .filter_map(|v| v.as_str().map(str::to_owned))
        .filter(|s| !s.is_empty())
        .collect();
        if !levels.is_empty() {
            canonical.insert("category".into(), Value::from(levels.join("/")));
        }
        for part in ["price", "discount"] {
            money.convert(
                &mut item,
                &mut canonical,
                part,
                part,
                &format!("{field}.{part}"),
            )?;
        }
        for (k, v) in item {
            canonical.entry(k).or_insert(v);
        }
        mapped.push(Value::Object(canonical));
    }
    out.insert("items".into(), Value::Array(mapped));
    Ok(())
}

/// Converts decimal amounts in major units into the event currency's minor units.
struct Money<'a> {
    currency: Option<&'a str>,
}

impl Money<'_> {
    /// Moves `from` of `sent`, converted, to `to` of `out` (`field` names it in errors).
    fn convert(
        &self,
        sent: &mut Map<String, Value>,
        out: &mut Map<String, Value>,
        from: &str,
        to: &str,
        field: &str,
    ) -> Result<(), FieldError> {
        let Some(v) = sent.remove(from) else {
            return Ok(());
        };
        if v.is_null() {
            return Ok(());
        }
        out.insert(to.to_owned(), Value::from(self.minor(&v, field)?));
        Ok(())
    }

    fn minor(&self, v: &Value, field: &str) -> Result<i64, FieldError> {
        let Some(currency) = self.currency.filter(|c| crate::ident::is_currency_code(c)) else {
            return Err(FieldError::new(
                "missing_field",
                "properties.currency",
                format!(
                    "{field} needs properties.currency (ISO 4217, e.g. USD) to be converted to minor units"
                ),
            ));
        };
        let text = match v {
            // The shortest text that reads back as the same number: `67.91`, not `67.909999…`.
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_owned(),
            _ => {
                return Err(FieldError::new(
                    "invalid_type",
                    field,
                    format!("{field} must be a number"),
                ));
            }
        };
        let amount: Decimal = text.parse().map_err(|_| {
            FieldError::new(
                "invalid_value",
                field,
                format!("{field} must be a decimal amount, e.g. 67.91"),
            )
        })?;
        let exponent = crate::fx::exponent(currency);
        let minor = amount * Decimal::from(10_i64.pow(exponent));
        if !minor.fract().is_zero() {
            return Err(FieldError::new(
                "invalid_value",
                field,
                format!("{field} is {text} {currency}, which has {exponent} decimal places"),
            ));
        }
        minor.to_i64().ok_or_else(|| {
            FieldError::new("invalid_value", field, format!("{field} is out of range"))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn canonical(v: Value) -> Result<Value, FieldError> {
        let Value::Object(mut obj) = v else {
            panic!("object")
        };
        canonicalize(&mut obj)?;
        Ok(Value::Object(obj))
    }

    #[test]
    fn each_alias_is_stored_as_its_canonical_event() {
        let cases = [
            (
                json!({"type": "Product Viewed", "properties": {"product_id": "p1", "sku": "S1", "name": "Cap", "price": 19.99, "currency": "USD"}}),
                json!({"type": "product.viewed", "properties": {"productId": "p1", "productName": "Cap", "price": 1999, "currency": "USD", "sku": "S1"}}),
            ),
            (
                json!({"type": "Product Added", "properties": {"cart_id": "c1", "product_id": "p1", "quantity": 2, "price": 5, "currency": "EUR"}}),
                json!({"type": "cart.item_added", "properties": {"productId": "p1", "cartId": "c1", "price": 500, "quantity": 2, "currency": "EUR"}}),
            ),
            (
                json!({"type": "Order Completed", "properties": {"order_id": "o1", "total": 27.5, "revenue": 25, "tax": 2.5, "shipping": 0, "discount": 0, "subtotal": 25, "coupon": "HELLO", "currency": "USD",
                    "products": [{"product_id": "p1", "sku": "S1", "name": "Cap", "brand": "Acme", "category": "Hats", "variant": "red", "price": 12.5, "quantity": 2}]}}),
                json!({"type": "order.completed", "properties": {"orderId": "o1", "total": 2750, "subtotal": 2500, "tax": 250, "shipping": 0, "discount": 0, "currency": "USD", "coupon": "HELLO", "revenue": 25,
                    "items": [{"productId": "p1", "price": 1250, "sku": "S1", "name": "Cap", "brand": "Acme", "category": "Hats", "variant": "red", "quantity": 2}]}}),
            ),
            (
                json!({"type": "Order Refunded", "properties": {"order_id": "o1", "total": 12.5, "currency": "USD"}}),
                json!({"type": "order.refunded", "properties": {"orderId": "o1", "amount": 1250, "currency": "USD"}}),
            ),
            (
                json!({"type": "view_item", "properties": {"currency": "JPY", "value": 1200, "items": [{"item_id": "p9", "item_name": "Tea", "price": 1200}]}}),
                json!({"type": "product.viewed", "properties": {"productId": "p9", "productName": "Tea", "price": 1200, "currency": "JPY"}}),
            ),
            (
                json!({"type": "purchase", "properties": {"transaction_id": "T1", "value": 67.91, "tax": 4.9, "shipping": 5.99, "currency": "USD", "coupon": "X",
                    "items": [{"item_id": "p1", "item_name": "Shirt", "item_brand": "Acme", "item_category": "Apparel", "item_category2": "Shirts", "item_variant": "blue", "price": 19.01, "quantity": 3, "discount": 1.5}]}}),
                json!({"type": "order.completed", "properties": {"orderId": "T1", "total": 6791, "tax": 490, "shipping": 599, "currency": "USD", "coupon": "X",
                    "items": [{"productId": "p1", "name": "Shirt", "brand": "Acme", "variant": "blue", "category": "Apparel/Shirts", "price": 1901, "discount": 150, "quantity": 3}]}}),
            ),
            (
                json!({"type": "refund", "properties": {"transaction_id": "T1", "value": "10.000", "currency": "KWD"}}),
                json!({"type": "order.refunded", "properties": {"orderId": "T1", "amount": 10000, "currency": "KWD"}}),
            ),
            // Not an alias: untouched.
            (
                json!({"type": "order.completed", "properties": {"orderId": "o", "total": 1, "currency": "USD"}}),
                json!({"type": "order.completed", "properties": {"orderId": "o", "total": 1, "currency": "USD"}}),
            ),
        ];
        for (sent, want) in cases {
            assert_eq!(canonical(sent.clone()).expect("canonical"), want, "{sent}");
        }
    }

    #[test]
    fn amounts_that_do_not_fit_the_currency_are_refused_naming_the_field() {
        for (sent, field) in [
            (
                json!({"type": "purchase", "properties": {"transaction_id": "T", "value": 67.915, "currency": "USD"}}),
                "properties.value",
            ),
            (
                json!({"type": "purchase", "properties": {"transaction_id": "T", "value": 10.5, "currency": "JPY"}}),
                "properties.value",
            ),
            (
                json!({"type": "purchase", "properties": {"transaction_id": "T", "value": 10}}),
                "properties.currency",
            ),
            (
                json!({"type": "Order Completed", "properties": {"order_id": "o", "total": "lots", "currency": "USD"}}),
                "properties.total",
            ),
            (
                json!({"type": "Order Completed", "properties": {"order_id": "o", "total": 1, "currency": "USD", "products": [{"product_id": "p", "price": 0.001}]}}),
                "properties.products[0].price",
            ),
            (
                json!({"type": "add_to_cart", "properties": {"currency": "USD"}}),
                "properties.items",
            ),
        ] {
            let err = canonical(sent.clone()).expect_err("refused");
            assert_eq!(err.field, field, "{sent}: {err:?}");
        }
    }
}
