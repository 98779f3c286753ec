//! The sales report: `GET /analytics/metrics?metric=sales`, the figures of Shopify's sales report per
//! bucket and over the period, in one currency (`currency`, default the store's main one).
//!
//! Per completed order in `currency` (each once, in the bucket of its first completion) and per refund
//! event in `currency` (in the bucket where it happens):
//! - `grossSales`: what the items sold for before discounts: `subtotal + discount` when the order sent its
//!   `subtotal` (after discounts), else `total − shipping − tax + discount`;
//! - `discounts`: the order's `discount`; `returns`: refunded `amount`s;
//! - `netSales` = grossSales − discounts − returns; `shipping`, `taxes`: the orders' `shipping` and `tax`;
//! - `totalSales` = netSales + shipping + taxes (= what orders paid, less refunds); `orders`.
//!
//! An order without parts counts its whole `total` as gross sales. Answer: the ranked metrics' shape, one
//! row per bucket (`date` first, every bucket present), plus `total` (the same figures over the period)
//! and `granularity`; CSV as the ranked metrics. Filters as every metric; no `compare`, no `breakdown`.

use serde_json::{Value, json};

use super::params::{Filters, Range};
use crate::error::Result;

pub const NAME: &str = "sales";

#[derive(Debug, Clone)]
pub struct SalesQuery {
    pub store_id: String,
    pub range: Range,
    pub currency: String,
    pub filters: Filters,
    pub include_bots: bool,
}

/// What the store sums for the report (minor units of the query's currency).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SalesFacts {
    pub gross: i64,
    pub discounts: i64,
    pub returns: i64,
    pub shipping: i64,
    pub taxes: i64,
    pub orders: i64,
}

/// One bucket's facts; `start` is the bucket's start in the query's zone, as Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalesBucket {
    pub start: i64,
    pub facts: SalesFacts,
}

/// What the store returns: the buckets with data, in order, and the facts over the period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SalesRead {
    pub buckets: Vec<SalesBucket>,
    pub total: SalesFacts,
}

impl SalesFacts {
    /// The sums of two disjoint sets of orders and refunds together.
    pub fn plus(self, o: SalesFacts) -> SalesFacts {
        SalesFacts {
            gross: self.gross + o.gross,
            discounts: self.discounts + o.discounts,
            returns: self.returns + o.returns,
            shipping: self.shipping + o.shipping,
            taxes: self.taxes + o.taxes,
            orders: self.orders + o.orders,
        }
    }

    pub fn net_sales(&self) -> i64 {
        self.gross - self.discounts - self.returns
    }

    pub fn total_sales(&self) -> i64 {
        self.net_sales() + self.shipping + self.taxes
    }

    fn figures(&self) -> serde_json::Map<String, Value> {
        let v = json!({
            "orders": self.orders,
            "grossSales": self.gross,
            "discounts": self.discounts,
            "returns": self.returns,
            "netSales": self.net_sales(),
            "shipping": self.shipping,
            "taxes": self.taxes,
            "totalSales": self.total_sales(),
        });
        match v {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        }
    }
}

/// Runs the report: every bucket of the range (zero-filled), and the total.
pub async fn run(store: &dyn super::ReadStore, q: &SalesQuery) -> Result<Value> {
    let read = store.sales(q).await?;
    answer(q, &read)
}

/// The answer for facts read.
pub fn answer(q: &SalesQuery, read: &SalesRead) -> Result<Value> {
    let mut found = read.buckets.iter().peekable();
    let mut rows = Vec::new();
    for z in q.range.buckets()? {
        let start = z.timestamp().as_second();
        let facts = match found.peek() {
            Some(b) if b.start == start => found.next().map(|b| b.facts).unwrap_or_default(),
            _ => SalesFacts::default(),
        };
        let mut row = serde_json::Map::new();
        row.insert("date".into(), Value::from(q.range.label_of(&z)));
        row.extend(facts.figures());
        rows.push(Value::Object(row));
    }
    Ok(json!({
        "metric": NAME,
        "period": q.range.label,
        "granularity": q.range.granularity.as_str(),
        "timezone": q.range.tz_name,
        "currency": q.currency,
        "total": Value::Object(read.total.figures()),
        "rows": rows,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_and_total_sales_follow_shopifys_definitions() {
        let f = SalesFacts {
            gross: 10_000,
            discounts: 1_000,
            returns: 2_500,
            shipping: 500,
            taxes: 720,
            orders: 2,
        };
        assert_eq!(f.net_sales(), 6_500);
        assert_eq!(f.total_sales(), 7_720);
        let figures = f.figures();
        assert_eq!(
            figures.keys().collect::<Vec<_>>(),
            [
                "orders",
                "grossSales",
                "discounts",
                "returns",
                "netSales",
                "shipping",
                "taxes",
                "totalSales"
            ]
        );
    }
}
