//! Evaluating a rule or a guard for the window ending at `end`: the metric's value over each window it
//! needs (one metric read each, through the read port: the same numbers the dashboards show), then the
//! condition. [`Values`] remembers the windows it read, so evaluating many consecutive slots (the
//! false-alarm measurement replays 30 days hour by hour) reads each window once.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::tz::TimeZone;
use serde_json::Value;

use super::band::{Band, band};
use super::{Checked, Condition, Direction, Guard};
use crate::error::{Error, Result};
use crate::query::ReadStore;
use crate::query::metrics::{self, MetricQuery};
use crate::query::params::{Granularity, Range};

const HOUR_MS: i64 = 3_600_000;
const WEEK_MS: i64 = 7 * 24 * HOUR_MS;

/// A metric's totals over windows, read through the port and remembered.
#[derive(Debug)]
pub struct Values<'a> {
    reads: &'a dyn ReadStore,
    seen: Mutex<HashMap<(String, i64, i64), Option<f64>>>,
}

impl<'a> Values<'a> {
    pub fn new(reads: &'a dyn ReadStore) -> Self {
        Self {
            reads,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The metric's total over `[from, to)` (Unix milliseconds); `None` when it has none (a rate over
    /// nothing).
    pub async fn of(&self, q: &MetricQuery, from: i64, to: i64) -> Result<Option<f64>> {
        let key = (format!("{q:?}"), from, to);
        if let Some(v) = self.seen.lock().ok().and_then(|s| s.get(&key).copied()) {
            return Ok(v);
        }
        let at = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms).map_err(|e| Error::Internal(e.to_string()))
        };
        let (from_t, to_t) = (at(from)?, at(to)?);
        let window = MetricQuery {
            range: Range {
                label: "alert".into(),
                from: from_t,
                to: to_t,
                tz: TimeZone::UTC,
                tz_name: "UTC".into(),
                granularity: Granularity::Day,
                now: to_t,
            },
            compare: None,
            breakdown: None,
            ..q.clone()
        };
        let answer = metrics::run(self.reads, &window).await?;
        let v = answer.total.as_f64();
        if let Ok(mut s) = self.seen.lock() {
            s.insert(key, v);
        }
        Ok(v)
    }

    /// The totals of the same window 1..=`weeks` weeks earlier (those with a value).
    async fn history(&self, q: &MetricQuery, from: i64, to: i64, weeks: u32) -> Result<Vec<f64>> {
        let mut out = Vec::new();
        for w in 1..=i64::from(weeks) {
            if let Some(v) = self.of(q, from - w * WEEK_MS, to - w * WEEK_MS).await? {
                out.push(v);
            }
        }
        Ok(out)
    }

    pub fn reads(&self) -> &'a dyn ReadStore {
        self.reads
    }
}

/// What an evaluation found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub window_from: i64,
    pub window_to: i64,
    pub value: Option<f64>,
    pub expected: Option<Band>,
    pub firing: bool,
    pub detail: String,
}

/// At least this many history weeks with a value make a band.
const MIN_HISTORY: usize = 2;

/// A custom rule over the window ending at `end`.
pub async fn rule(
    values: &Values<'_>,
    checked: &Checked,
    condition: Condition,
    end: i64,
) -> Result<Outcome> {
    let from = end - checked.window_hours * HOUR_MS;
    let value = values.of(&checked.query, from, end).await?;
    let mut out = Outcome {
        window_from: from,
        window_to: end,
        value,
        expected: None,
        firing: false,
        detail: String::new(),
    };
    let Some(v) = value else {
        out.detail = "no value in the window".into();
        return Ok(out);
    };
    match condition {
        Condition::Above { threshold } => out.firing = v > threshold,
        Condition::Below { threshold } => out.firing = v < threshold,
        Condition::Change { percent } => {
            let before = values.of(&checked.query, from - (end - from), from).await?;
            match before {
                Some(b) if b != 0.0 => {
                    let change = (v - b) / b.abs() * 100.0;
                    out.firing = if percent < 0.0 {
                        change <= percent
                    } else {
                        change >= percent
                    };
                    out.detail = format!("{change:+.1}% against the window before ({b})");
                }
                _ => out.detail = "no value in the window before".into(),
            }
        }
        Condition::Anomaly {
            weeks,
            k,
            direction,
        } => {
            let history = values.history(&checked.query, from, end, weeks).await?;
            if history.len() < MIN_HISTORY {
                out.detail = format!("{} weeks of history, {MIN_HISTORY} needed", history.len());
                return Ok(out);
            }
            let b = band(&history, k);
            out.firing = b.is_some_and(|b| outside(v, &b, direction));
            out.expected = b;
        }
    }
    Ok(out)
}

fn outside(v: f64, b: &Band, direction: Direction) -> bool {
    match direction {
        Direction::Below => v < b.lower,
        Direction::Above => v > b.upper,
        Direction::Both => v < b.lower || v > b.upper,
    }
}

/// The metric queries a store's guards read: its orders (main currency) and sessions.
#[derive(Debug, Clone)]
pub struct GuardQueries {
    pub orders: MetricQuery,
    pub sessions: MetricQuery,
}

impl GuardQueries {
    pub async fn of(reads: &dyn ReadStore, store_id: &str, now: jiff::Timestamp) -> Result<Self> {
        let series = async |q: &str| match metrics::parse(reads, store_id, q, now).await? {
            metrics::Request::Series(q) => Ok(q),
            _ => Err(Error::Internal(format!("{q} is a time series"))),
        };
        Ok(Self {
            orders: series("metric=orders&period=24h&timezone=UTC").await?,
            sessions: series("metric=sessions&period=24h&timezone=UTC").await?,
        })
    }
}

/// The guards' thresholds (see [`Guard::description`]). With k = 3 and a count's Poisson noise, a band's
/// lower edge is above 0 only from a median of 10: below it, even no order at all is within the noise.
const GUARD_WEEKS: u32 = 4;
const GUARD_K: f64 = 3.0;
const MIN_ORDERS: f64 = 10.0;
const MIN_SESSIONS: f64 = 20.0;
/// The checkout guard's windows: the shortest whose orders are expected to reach [`MIN_ORDERS`].
const ORDER_WINDOWS: [i64; 4] = [2, 3, 4, 6];

/// The checkout guard's window for the slot ending at `end`, from the store's average orders per hour
/// over the 4 weeks before `end`'s day: the shortest of [`ORDER_WINDOWS`] with ten orders expected on
/// average (a small store's outage takes longer to tell from a quiet spell).
async fn order_window(values: &Values<'_>, orders: &MetricQuery, end: i64) -> Result<i64> {
    let day = end - end.rem_euclid(24 * HOUR_MS);
    let per_hour = values
        .of(orders, day - 4 * WEEK_MS, day)
        .await?
        .unwrap_or(0.0)
        / (28.0 * 24.0);
    Ok(ORDER_WINDOWS
        .into_iter()
        .find(|h| per_hour * *h as f64 >= MIN_ORDERS)
        .unwrap_or(ORDER_WINDOWS[ORDER_WINDOWS.len() - 1]))
}

/// A guard over the windows ending at `end`.
pub async fn guard(
    values: &Values<'_>,
    store_id: &str,
    queries: &GuardQueries,
    g: Guard,
    end: i64,
) -> Result<Outcome> {
    match g {
        Guard::CheckoutBroken | Guard::TrafficCollapse => {
            let (metric, hours, minimum) = match g {
                Guard::CheckoutBroken => (
                    &queries.orders,
                    order_window(values, &queries.orders, end).await?,
                    MIN_ORDERS,
                ),
                _ => (&queries.sessions, 1, MIN_SESSIONS),
            };
            let from = end - hours * HOUR_MS;
            let value = values.of(metric, from, end).await?.unwrap_or(0.0);
            let history = values.history(metric, from, end, GUARD_WEEKS).await?;
            let mut out = Outcome {
                window_from: from,
                window_to: end,
                value: Some(value),
                expected: band(&history, GUARD_K),
                firing: false,
                detail: String::new(),
            };
            let Some(b) = out.expected.filter(|_| history.len() >= MIN_HISTORY) else {
                out.detail = "not enough history".into();
                return Ok(out);
            };
            if b.median < minimum {
                out.detail = format!(
                    "expected {:.0}, below the {minimum} this guard needs",
                    b.median
                );
                return Ok(out);
            }
            out.firing = value < b.lower;
            if out.firing && g == Guard::CheckoutBroken {
                // Orders stopped, but did the visitors? When sessions fell too, it is traffic, not checkout.
                let sessions = values
                    .of(&queries.sessions, from, end)
                    .await?
                    .unwrap_or(0.0);
                let usual = values
                    .history(&queries.sessions, from, end, GUARD_WEEKS)
                    .await?;
                if let Some(s) = band(&usual, GUARD_K)
                    && sessions < s.lower
                {
                    out.firing = false;
                    out.detail = format!(
                        "orders low, but sessions too ({sessions:.0}, expected {:.0}): see traffic_collapse",
                        s.median
                    );
                } else {
                    out.detail = format!("sessions normal ({sessions:.0})");
                }
            }
            Ok(out)
        }
        Guard::BestSellerStockout => {
            let now = jiff::Timestamp::from_millisecond(end)
                .map_err(|e| Error::Internal(e.to_string()))?;
            let ranked = async |q: &str| match metrics::parse(values.reads, store_id, q, now)
                .await?
            {
                metrics::Request::Ranked(r) => crate::query::ranked::run(values.reads, &r).await,
                _ => Err(Error::Internal(format!("{q} is ranked"))),
            };
            let best = ranked("metric=best_sellers&period=30d&timezone=UTC&limit=10").await?;
            let stock = ranked("metric=stock_levels&period=30d&timezone=UTC&limit=100").await?;
            let ids = |v: &Value, filter: &dyn Fn(&Value) -> bool| -> Vec<String> {
                v["rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| filter(r))
                    .filter_map(|r| r["productId"].as_str().map(str::to_owned))
                    .collect()
            };
            let out_of_stock = ids(&stock, &|r| r["quantity"].as_i64() == Some(0));
            let mut sold_out: Vec<String> = ids(&best, &|_| true)
                .into_iter()
                .filter(|p| out_of_stock.contains(p))
                .collect();
            sold_out.sort();
            Ok(Outcome {
                window_from: end - 30 * 24 * HOUR_MS,
                window_to: end,
                value: Some(sold_out.len() as f64),
                expected: None,
                firing: !sold_out.is_empty(),
                detail: if sold_out.is_empty() {
                    String::new()
                } else {
                    format!("out of stock: {}", sold_out.join(", "))
                },
            })
        }
    }
}
