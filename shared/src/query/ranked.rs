//! Ranked metrics: rows instead of a time series, served by `GET /analytics/metrics` too.
//!
//! Response: `{ "metric", "period", "timezone", "currency", "rows": [...] }`, at most `limit` rows
//! (default 10, at most 100). Row shapes and definitions (also in the README):
//!
//! | metric | row | order | definition |
//! |---|---|---|---|
//! | `best_sellers` | `{productId, units, revenue, orders}` | revenue, then units | from the `items` of completed orders in `currency` (each order once); `units` = Σ quantity (default 1), `revenue` = Σ quantity × price |
//! | `traffic_sources` | `{source, sessions, orders, revenue, conversionRate}` | sessions | a session's source: its first `utm_source`, else its first referrer's domain, else `direct`; `orders` = sessions with an order in `currency`; `revenue` = those orders' amount |
//! | `campaign_performance` | `{campaign, sessions, orders, revenue, conversionRate}` | sessions | as above, by the session's first `utm_campaign`; sessions without one are left out |
//! | `stock_levels` | `{productId, quantity, updatedAt}` | quantity, lowest first | the latest `inventory.updated` quantity per product before the period's end (on a tie of times, the greater) |
//! | `new_vs_returning` | `{segment, customers, orders, revenue}` | `new`, `returning` | customers with orders in `currency` in the period, those orders and their revenue: `new` when the customer's first order ever (any currency) falls in the period |
//! | `landing_pages` | `{landingPage, sessions, bounces, bounceRate, orders, conversionRate, revenue}` | sessions | a session's entry page: the path of its first event with a page; `bounces` = sessions that saw a single page (one distinct path); `orders` = sessions with an order in `currency`; `revenue` = those orders' amount |
//! | `referrers` | `{referrer, sessions, bounces, bounceRate, orders, conversionRate, revenue}` | sessions | as above, by the domain (without `www.`) of the session's first referrer; sessions without one are left out |
//! | `sell_through_rate` | `{productId, unitsSold, stockOnHand, sellThroughRate}` | rate, highest first | units sold in the period (order items, every currency: units, not money) / (units sold + stock on hand at the period's end) |

use serde_json::{Map, Value, json};

use super::compare::{Compare, Comparison};
use super::metrics::rate;
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
    LandingPages,
    Referrers,
}

impl Ranked {
    pub const ALL: [Ranked; 8] = [
        Ranked::BestSellers,
        Ranked::TrafficSources,
        Ranked::CampaignPerformance,
        Ranked::StockLevels,
        Ranked::SellThroughRate,
        Ranked::NewVsReturning,
        Ranked::LandingPages,
        Ranked::Referrers,
    ];

    /// Rows keyed by `productId`, which gain `productName` ([`super::names`]).
    pub fn keyed_by_product(self) -> bool {
        matches!(
            self,
            Self::BestSellers | Self::StockLevels | Self::SellThroughRate
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::BestSellers => "best_sellers",
            Self::TrafficSources => "traffic_sources",
            Self::CampaignPerformance => "campaign_performance",
            Self::StockLevels => "stock_levels",
            Self::SellThroughRate => "sell_through_rate",
            Self::NewVsReturning => "new_vs_returning",
            Self::LandingPages => "landing_pages",
            Self::Referrers => "referrers",
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
                | Self::LandingPages
                | Self::Referrers
        )
    }
}

/// One row of a ranked metric, as the store reports it: counts and amounts only (rates are derived
/// here). Money is in minor units of the query's `currency`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RankedRow {
    /// `best_sellers`: one product's items in completed orders.
    Product {
        product_id: String,
        /// Σ quantity (1 when an item has none).
        units: i64,
        /// Σ quantity × price.
        revenue: i64,
        /// Distinct orders with the product.
        orders: i64,
    },
    /// `traffic_sources` (key = source) and `campaign_performance` (key = campaign): sessions by their
    /// first source or campaign.
    Channel {
        key: String,
        sessions: i64,
        /// Sessions with an order.
        orders: i64,
        /// Those sessions' orders in `currency`.
        revenue: i64,
    },
    /// `landing_pages` (key = entry page path) and `referrers` (key = referring domain): sessions by where
    /// they entered or came from.
    Entry {
        key: String,
        sessions: i64,
        /// Sessions that saw a single page.
        bounces: i64,
        /// Sessions with an order.
        orders: i64,
        /// Those sessions' orders in `currency`.
        revenue: i64,
    },
    /// `stock_levels`: the latest stock of a product before the period's end.
    Stock {
        product_id: String,
        quantity: i64,
        /// When that quantity was reported, Unix seconds.
        updated_at: i64,
    },
    /// `sell_through_rate`: units sold in the period and stock on hand at its end.
    SellThrough {
        product_id: String,
        units_sold: i64,
        stock_on_hand: i64,
    },
    /// `new_vs_returning`: customers with orders in the period (key = `new` or `returning`).
    Segment {
        segment: String,
        customers: i64,
        orders: i64,
        /// Their orders in `currency`.
        revenue: i64,
    },
}

impl RankedRow {
    /// The row of `metric` from an adapter's key and three measures, in the order each adapter's query
    /// selects them: best sellers (units, revenue, orders), channels (sessions, orders, revenue), stock
    /// (quantity, updated at, –), sell-through (units sold, stock on hand, –), segments (customers, orders,
    /// revenue), entries (sessions, orders, revenue, bounces). Only entries read the fourth measure `d`.
    pub fn from_measures(metric: Ranked, key: String, a: i64, b: i64, c: i64, d: i64) -> Self {
        match metric {
            Ranked::BestSellers => Self::Product {
                product_id: key,
                units: a,
                revenue: b,
                orders: c,
            },
            Ranked::TrafficSources | Ranked::CampaignPerformance => Self::Channel {
                key,
                sessions: a,
                orders: b,
                revenue: c,
            },
            Ranked::StockLevels => Self::Stock {
                product_id: key,
                quantity: a,
                updated_at: b,
            },
            Ranked::SellThroughRate => Self::SellThrough {
                product_id: key,
                units_sold: a,
                stock_on_hand: b,
            },
            Ranked::NewVsReturning => Self::Segment {
                segment: key,
                customers: a,
                orders: b,
                revenue: c,
            },
            Ranked::LandingPages | Ranked::Referrers => Self::Entry {
                key,
                sessions: a,
                orders: b,
                revenue: c,
                bounces: d,
            },
        }
    }

    /// The row's key: its product, source, campaign or segment.
    pub fn key(&self) -> &str {
        match self {
            Self::Product { product_id, .. }
            | Self::Stock { product_id, .. }
            | Self::SellThrough { product_id, .. } => product_id,
            Self::Channel { key, .. } | Self::Entry { key, .. } => key,
            Self::Segment { segment, .. } => segment,
        }
    }

    /// The row as the API shows it, named for `metric` (a channel row is a `source` or a `campaign`).
    pub fn to_json(&self, metric: Ranked) -> Value {
        match self {
            Self::Product {
                product_id,
                units,
                revenue,
                orders,
            } => {
                json!({"productId": product_id, "units": units, "revenue": revenue, "orders": orders})
            }
            Self::Channel {
                key,
                sessions,
                orders,
                revenue,
            } => {
                let name = if metric == Ranked::CampaignPerformance {
                    "campaign"
                } else {
                    "source"
                };
                json!({name: key, "sessions": sessions, "orders": orders, "revenue": revenue,
                       "conversionRate": rate(*orders, *sessions)})
            }
            Self::Stock {
                product_id,
                quantity,
                updated_at,
            } => {
                let updated = jiff::Timestamp::from_second(*updated_at)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                json!({"productId": product_id, "quantity": quantity, "updatedAt": updated})
            }
            Self::SellThrough {
                product_id,
                units_sold,
                stock_on_hand,
            } => {
                json!({"productId": product_id, "unitsSold": units_sold, "stockOnHand": stock_on_hand,
                        "sellThroughRate": rate(*units_sold, units_sold + stock_on_hand)})
            }
            Self::Segment {
                segment,
                customers,
                orders,
                revenue,
            } => {
                json!({"segment": segment, "customers": customers, "orders": orders, "revenue": revenue})
            }
            Self::Entry {
                key,
                sessions,
                bounces,
                orders,
                revenue,
            } => {
                let name = if metric == Ranked::LandingPages {
                    "landingPage"
                } else {
                    "referrer"
                };
                json!({name: key, "sessions": sessions, "bounces": bounces,
                       "bounceRate": rate(*bounces, *sessions), "orders": orders,
                       "conversionRate": rate(*orders, *sessions), "revenue": revenue})
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
    /// `country`, `device`, `browser`, `source` ([`super::params::Filters`]).
    pub filters: super::params::Filters,
    pub limit: u32,
    /// Count events flagged as bots too (`includeBots=true`).
    pub include_bots: bool,
    /// Compare with an earlier range ([`super::compare`]); run by [`run`] as a second query.
    pub compare: Option<Compare>,
}

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

/// Runs a ranked query. With `compare`, each row gains `previous` (the same key's row in the comparison
/// range: all its keys, or zeros when the key had no activity there; `null` for stock levels without a
/// report) and `change` (per numeric column), and the answer gains `comparison` (the range). The
/// comparison query has no row limit, so a key outside the earlier top rows still finds its values.
pub async fn run(store: &dyn super::ReadStore, q: &RankedQuery) -> Result<Value> {
    let body = compared(store, q).await?;
    named(store, q, body).await
}

/// [`run`] for each of `qs` (a dashboard's ranked metrics over one query), in their order: the store
/// reads their rows at once when it can ([`super::ReadStore::ranked_at_once`]), and the rows they are
/// compared with at once too; else each runs as [`run`].
pub async fn run_each(store: &dyn super::ReadStore, qs: &[RankedQuery]) -> Result<Vec<Value>> {
    let one_by_one = || futures_util::future::try_join_all(qs.iter().map(|q| run(store, q)));
    let compare = qs.first().and_then(|q| q.compare);
    if qs.iter().any(|q| q.compare != compare) {
        return one_by_one().await;
    }
    let comparisons = match compare {
        None => Vec::new(),
        Some(c) => qs
            .iter()
            .map(|q| Comparison::of(&q.range, c))
            .collect::<Result<Vec<_>>>()?,
    };
    let previous: Vec<RankedQuery> = qs
        .iter()
        .zip(&comparisons)
        .map(|(q, c)| previous_of(q, c))
        .collect();
    let Some(current) = store.ranked_at_once(qs) else {
        return one_by_one().await;
    };
    let (current, earlier) = if previous.is_empty() {
        (current.await?, Vec::new())
    } else {
        let Some(earlier) = store.ranked_at_once(&previous) else {
            return one_by_one().await;
        };
        futures_util::future::try_join(current, earlier).await?
    };
    let mut out = Vec::with_capacity(qs.len());
    for (i, (q, rows)) in qs.iter().zip(&current).enumerate() {
        let body = match (comparisons.get(i), earlier.get(i)) {
            (Some(c), Some(previous)) => with_previous(q, rows, previous, c),
            _ => response(q, rows),
        };
        out.push(named(store, q, body).await?);
    }
    Ok(out)
}

/// `body` with its products' names, for the metrics keyed by product.
async fn named(store: &dyn super::ReadStore, q: &RankedQuery, mut body: Value) -> Result<Value> {
    if q.metric.keyed_by_product()
        && let Some(rows) = body["rows"].as_array_mut()
    {
        super::names::attach(store, &q.store_id, q.range.to, rows).await?;
    }
    Ok(body)
}

/// The query of the rows `q` is compared with: every row of the earlier range.
fn previous_of(q: &RankedQuery, comparison: &Comparison) -> RankedQuery {
    RankedQuery {
        range: comparison.range.clone(),
        limit: u32::MAX,
        compare: None,
        ..q.clone()
    }
}

/// The rows, with `previous` and `change` when the query compares.
async fn compared(store: &dyn super::ReadStore, q: &RankedQuery) -> Result<Value> {
    let Some(compare) = q.compare else {
        return Ok(response(q, &store.ranked(q).await?));
    };
    let comparison = Comparison::of(&q.range, compare)?;
    let previous_query = previous_of(q, &comparison);
    let (rows, previous) =
        futures_util::future::try_join(store.ranked(q), store.ranked(&previous_query)).await?;
    Ok(with_previous(q, &rows, &previous, &comparison))
}

/// The answer of `rows` compared with the earlier range's `previous` rows.
fn with_previous(
    q: &RankedQuery,
    rows: &[RankedRow],
    previous: &[RankedRow],
    comparison: &Comparison,
) -> Value {
    let previous: std::collections::HashMap<&str, &RankedRow> =
        previous.iter().map(|r| (r.key(), r)).collect();
    let mut body = response(q, rows);
    if let Some(out) = body["rows"].as_array_mut() {
        let key = rows
            .first()
            .and_then(|r| r.to_json(q.metric).as_object()?.keys().next().cloned())
            .unwrap_or_default();
        super::compare::attach_previous(out, &key, |k| match previous.get(k) {
            Some(p) => p.to_json(q.metric),
            None if q.metric == Ranked::StockLevels => Value::Null,
            None => RankedRow::from_measures(q.metric, k.to_owned(), 0, 0, 0, 0).to_json(q.metric),
        });
    }
    body["comparison"] = comparison.range_json();
    body
}

pub fn response(q: &RankedQuery, rows: &[RankedRow]) -> Value {
    let mut out = Map::new();
    out.insert("metric".into(), json!(q.metric.name()));
    out.insert("period".into(), json!(q.range.label));
    out.insert("timezone".into(), json!(q.range.tz_name));
    out.insert("currency".into(), json!(q.currency));
    out.insert(
        "rows".into(),
        Value::Array(rows.iter().map(|r| r.to_json(q.metric)).collect()),
    );
    Value::Object(out)
}
