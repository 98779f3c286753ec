//! Ranked metrics: rows instead of a time series, served by `GET /analytics/metrics` too.
//!
//! Response: `{ "metric", "period", "timezone", "currency", "rows": [...] }`, at most `limit` rows
//! (default 10, at most 100). Row shapes and definitions (also in the README):
//!
//! | metric | row | order | definition |
//! |---|---|---|---|
//! | `best_sellers` | `{productId, units, revenue, orders}` | revenue, then units | from the `items` of completed orders in `currency` (each order once); `units` = Σ quantity (default 1), `revenue` = Σ quantity × price |
//! | `traffic_sources` | `{source, sessions, orders, revenue, conversionRate}` | sessions | a session's source: its first `utm_source`, else its first referrer's domain, else `direct`; `orders` = sessions with an order; `revenue` = their orders in `currency` |
//! | `campaign_performance` | `{campaign, sessions, orders, revenue, conversionRate}` | sessions | as above, by the session's first `utm_campaign`; sessions without one are left out |
//! | `stock_levels` | `{productId, quantity, updatedAt}` | quantity, lowest first | the latest `inventory.updated` quantity per product before the period's end |
//! | `new_vs_returning` | `{segment, customers, orders, revenue}` | `new`, `returning` | customers with orders in the period: `new` when their first order ever falls in the period; `revenue` in `currency` |
//! | `sell_through_rate` | `{productId, unitsSold, stockOnHand, sellThroughRate}` | rate, highest first | units sold in the period (order items, all currencies) / (units sold + stock on hand at the period's end) |

use serde_json::{Map, Value, json};

use super::params::Range;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ranked {
    BestSellers,
    TrafficSources,
    CampaignPerformance,
    StockLevels,
    SellThroughRate,
    NewVsReturning,
}

impl Ranked {
    pub const ALL: [Ranked; 6] = [
        Ranked::BestSellers,
        Ranked::TrafficSources,
        Ranked::CampaignPerformance,
        Ranked::StockLevels,
        Ranked::SellThroughRate,
        Ranked::NewVsReturning,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::BestSellers => "best_sellers",
            Self::TrafficSources => "traffic_sources",
            Self::CampaignPerformance => "campaign_performance",
            Self::StockLevels => "stock_levels",
            Self::SellThroughRate => "sell_through_rate",
            Self::NewVsReturning => "new_vs_returning",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    pub fn uses_currency(self) -> bool {
        matches!(
            self,
            Self::BestSellers
                | Self::TrafficSources
                | Self::CampaignPerformance
                | Self::NewVsReturning
        )
    }

    /// Names the adapter's `(key, a, b, c)` columns.
    pub fn row(self, key: String, a: i64, b: i64, c: i64) -> Value {
        let rate = |n: i64, d: i64| {
            if d == 0 {
                0.0
            } else {
                ((n as f64 / d as f64) * 10_000.0).round() / 10_000.0
            }
        };
        match self {
            Self::BestSellers => json!({"productId": key, "units": a, "revenue": b, "orders": c}),
            Self::TrafficSources => {
                json!({"source": key, "sessions": a, "orders": b, "revenue": c, "conversionRate": rate(b, a)})
            }
            Self::CampaignPerformance => {
                json!({"campaign": key, "sessions": a, "orders": b, "revenue": c, "conversionRate": rate(b, a)})
            }
            Self::StockLevels => {
                let updated = jiff::Timestamp::from_second(b)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                json!({"productId": key, "quantity": a, "updatedAt": updated})
            }
            Self::NewVsReturning => {
                json!({"segment": key, "customers": a, "orders": b, "revenue": c})
            }
            Self::SellThroughRate => {
                json!({"productId": key, "unitsSold": a, "stockOnHand": b, "sellThroughRate": rate(a, a + b)})
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct RankedQuery {
    pub store_id: String,
    pub metric: Ranked,
    pub range: Range,
    pub currency: Option<String>,
    pub country: Option<String>,
    pub limit: u32,
    /// Count events flagged as bots too (`includeBots=true`).
    pub include_bots: bool,
}

/// `(key, a, b, c)` rows from the store, already ordered and limited.
pub type RankedRows = Vec<(String, i64, i64, i64)>;

pub fn parse_limit(v: Option<&str>) -> Result<u32> {
    match v {
        None => Ok(10),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=100).contains(&n) => Ok(n),
            _ => Err(Error::invalid(
                "invalid_parameter",
                "limit",
                "limit must be a whole number from 1 to 100",
            )),
        },
    }
}

pub fn response(q: &RankedQuery, rows: RankedRows) -> Value {
    let mut out = Map::new();
    out.insert("metric".into(), json!(q.metric.name()));
    out.insert("period".into(), json!(q.range.label));
    out.insert("timezone".into(), json!(q.range.tz_name));
    out.insert("currency".into(), json!(q.currency));
    out.insert(
        "rows".into(),
        Value::Array(
            rows.into_iter()
                .map(|(k, a, b, c)| q.metric.row(k, a, b, c))
                .collect(),
        ),
    );
    Value::Object(out)
}
