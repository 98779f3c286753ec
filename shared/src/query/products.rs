//! Product performance: `GET /analytics/metrics?metric=product_performance`, a ranked metric with one row
//! per product and the columns a merchandiser reads first.
//!
//! Per product, over the period (humans only unless `includeBots`; `country` and `source` filters):
//! - `views`: `product.viewed` events; `viewSessions`: sessions with one;
//! - `addToCarts`: `cart.item_added` events; `cartSessions`: sessions with one;
//! - `orders`, `units`, `revenue`: completed orders in `currency` whose items hold the product (each order
//!   once; units = Σ quantity, 1 when absent; revenue = Σ quantity × price, minor units);
//!   `purchaseSessions`: the sessions of those orders;
//! - `refunds`: those orders with an `order.refunded` event before the period's end;
//! - `refundedAmount`: what the period's `order.refunded` events in `currency` gave back for the product,
//!   from their `items` (Σ quantity × price; each refund event once, in the period of the refund, as the
//!   sales report's `returns`); a refund without items names no product and subtracts from none;
//! - `netRevenue` = revenue − refundedAmount;
//! - `viewToCartRate` = cartSessions / viewSessions, `cartToPurchaseRate` = purchaseSessions /
//!   cartSessions (it can exceed 1 when orders come from sessions that added the product earlier or from
//!   the backend).
//!
//! Orders count in `currency` only, so a row's revenue and its orders always belong together (the same
//! rule as `best_sellers`). `source` keeps the sessions whose source (first `utm_source`, else the first
//! referrer's domain, else `direct`, as `traffic_sources`) is that value; orders without a session drop
//! out under it. Sorted by `sort` (any column; default `revenue`) in `order` (`desc` default, or `asc`),
//! then by product id; at most `limit` rows (default 10, at most 100).

use serde_json::{Value, json};

use super::compare::{Compare, Comparison};
use super::metrics::rate;
use super::params::{Params, Range};
use crate::error::{Error, Result};

pub const NAME: &str = "product_performance";

/// The columns rows can be sorted by, as the API names them.
pub const COLUMNS: [&str; 14] = [
    "productId",
    "views",
    "viewSessions",
    "addToCarts",
    "cartSessions",
    "orders",
    "units",
    "revenue",
    "purchaseSessions",
    "refunds",
    "refundedAmount",
    "netRevenue",
    "viewToCartRate",
    "cartToPurchaseRate",
];

#[derive(Debug, Clone)]
pub struct ProductQuery {
    pub store_id: String,
    pub range: Range,
    pub currency: String,
    /// `country`, `device`, `browser`, `source` ([`super::params::Filters`]).
    pub filters: super::params::Filters,
    pub sort: &'static str,
    pub descending: bool,
    pub limit: u32,
    pub include_bots: bool,
    pub compare: Option<Compare>,
}

/// One product's facts, as the store reports them (rates are derived here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductFacts {
    pub product_id: String,
    pub views: i64,
    pub view_sessions: i64,
    pub add_to_carts: i64,
    pub cart_sessions: i64,
    pub orders: i64,
    pub units: i64,
    pub revenue: i64,
    pub purchase_sessions: i64,
    pub refunds: i64,
    /// Minor units the period's refunds gave back for the product (from their items).
    pub refunded_amount: i64,
}

impl ProductFacts {
    pub fn to_json(&self) -> Value {
        json!({
            "productId": self.product_id,
            "views": self.views,
            "viewSessions": self.view_sessions,
            "addToCarts": self.add_to_carts,
            "cartSessions": self.cart_sessions,
            "orders": self.orders,
            "units": self.units,
            "revenue": self.revenue,
            "purchaseSessions": self.purchase_sessions,
            "refunds": self.refunds,
            "refundedAmount": self.refunded_amount,
            "netRevenue": self.revenue - self.refunded_amount,
            "viewToCartRate": rate(self.cart_sessions, self.view_sessions),
            "cartToPurchaseRate": rate(self.purchase_sessions, self.cart_sessions),
        })
    }
}

/// Parses the product-performance parameters (the metrics endpoint's, plus `source`, `sort`, `order`).
pub fn parse(
    p: &Params,
    store_id: &str,
    range: Range,
    currency: String,
    limit: u32,
) -> Result<ProductQuery> {
    let sort = match p.get("sort") {
        None => "revenue",
        Some(s) => COLUMNS.into_iter().find(|c| *c == s).ok_or_else(|| {
            Error::invalid(
                "invalid_parameter",
                "sort",
                format!("sort must be one of {}", COLUMNS.join(", ")),
            )
        })?,
    };
    let descending = match p.get("order").unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => {
            return Err(Error::invalid(
                "invalid_parameter",
                "order",
                format!("order must be asc or desc, not {other:?}"),
            ));
        }
    };
    Ok(ProductQuery {
        store_id: store_id.to_owned(),
        range,
        currency,
        filters: p.filters()?,
        sort,
        descending,
        limit,
        include_bots: p.include_bots()?,
        compare: Compare::from_params(p)?,
    })
}

/// Rows sorted by the query's column, then product id; at most `limit`.
fn rows(q: &ProductQuery, facts: &[ProductFacts]) -> Vec<Value> {
    let mut rows: Vec<Value> = facts.iter().map(ProductFacts::to_json).collect();
    let column = q.sort;
    rows.sort_by(|a, b| {
        let by_column = match (a[column].as_f64(), b[column].as_f64()) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => a[column].as_str().cmp(&b[column].as_str()),
        };
        let by_column = if q.descending {
            by_column.reverse()
        } else {
            by_column
        };
        by_column.then_with(|| a["productId"].as_str().cmp(&b["productId"].as_str()))
    });
    rows.truncate(q.limit as usize);
    rows
}

/// Runs the query (and, with `compare`, the same over the comparison range, concurrently).
pub async fn run(store: &dyn super::ReadStore, q: &ProductQuery) -> Result<Value> {
    let mut body = json!({
        "metric": NAME,
        "period": q.range.label,
        "timezone": q.range.tz_name,
        "currency": q.currency,
        "sort": q.sort,
        "order": if q.descending { "desc" } else { "asc" },
    });
    let Some(compare) = q.compare else {
        let mut current = rows(q, &store.product_performance(q).await?);
        super::names::attach(store, &q.store_id, q.range.to, &mut current).await?;
        body["rows"] = Value::Array(current);
        return Ok(body);
    };
    let comparison = Comparison::of(&q.range, compare)?;
    let previous_query = ProductQuery {
        range: comparison.range.clone(),
        compare: None,
        ..q.clone()
    };
    let (current, previous) = futures_util::future::try_join(
        store.product_performance(q),
        store.product_performance(&previous_query),
    )
    .await?;
    let mut current = rows(q, &current);
    super::compare::attach_previous(&mut current, "productId", |key| {
        previous
            .iter()
            .find(|p| p.product_id == key)
            .cloned()
            .unwrap_or_else(|| ProductFacts {
                product_id: key.to_owned(),
                ..ProductFacts::default()
            })
            .to_json()
    });
    super::names::attach(store, &q.store_id, q.range.to, &mut current).await?;
    body["rows"] = Value::Array(current);
    body["comparison"] = comparison.range_json();
    Ok(body)
}
