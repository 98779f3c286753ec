//! Cohorts: `GET /analytics/cohorts`.
//!
//! Customers (by `customerId`) whose first `order.completed` ever falls inside the period (default `12m`
//! for months, `90d` for weeks) are grouped by the `interval` (`week`, Monday-based, or `month`; default
//! `month`) of that first order, in the request's timezone. The first cohort is partial when the period
//! does not start on an interval boundary. For each cohort and
//! each following period up to the end of the range (offset 0 = the first period): `customers` (distinct
//! cohort customers who ordered in that period), `retention` (customers / cohort size, 4 decimals) and
//! `revenue` (their orders in `currency`, minor units; offset 0 includes the first orders). Every offset
//! is present (zero-filled). Orders are counted once per `orderId`.

use serde::Serialize;

use super::ReadStore;
use super::params::{self, Granularity, Params, Range};
use crate::error::{Error, Result};

pub const PARAMS: &[&str] = &params::concat::<1, 6, 7>(["interval"], params::SHARED);

#[derive(Debug, Clone)]
pub struct CohortQuery {
    pub store_id: String,
    /// Granularity is the interval (week or month).
    pub range: Range,
    pub currency: String,
    /// Count events flagged as bots too (`includeBots=true`).
    pub include_bots: bool,
}

/// One cell from the store: the customers of a cohort who ordered in one period after its start, and
/// their orders' amount in the query's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CohortCell {
    /// Start of the cohort's interval in the query's zone, as Unix seconds.
    pub cohort_start: i64,
    /// Intervals after the cohort's (0 = the cohort's own).
    pub offset: i64,
    /// Distinct cohort customers with an order in that interval.
    pub customers: i64,
    /// Their orders in `currency`, minor units.
    pub revenue: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortPeriod {
    pub offset: i64,
    pub customers: i64,
    pub retention: f64,
    pub revenue: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cohort {
    pub cohort: String,
    pub size: i64,
    pub periods: Vec<CohortPeriod>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortResponse {
    pub interval: &'static str,
    pub period: String,
    pub timezone: String,
    pub currency: String,
    pub cohorts: Vec<Cohort>,
}

pub async fn parse(
    store: &dyn ReadStore,
    store_id: &str,
    query: &str,
    now: jiff::Timestamp,
) -> Result<CohortQuery> {
    let p = Params::parse(query, PARAMS)?;
    let interval = p.get("interval").unwrap_or("month");
    let granularity = match interval {
        "week" => "week",
        "month" => "month",
        other => {
            return Err(Error::invalid(
                "invalid_parameter",
                "interval",
                format!("interval must be week or month, not {other:?}"),
            ));
        }
    };
    // Reuse the period machinery with the interval as granularity, and a default period per interval.
    // (In a block: the serializer is not Send and must not live across an await.)
    let range_query = {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for k in ["period", "from", "to", "timezone"] {
            if let Some(v) = p.get(k) {
                q.append_pair(k, v);
            }
        }
        if p.get("period").is_none() && p.get("from").is_none() {
            q.append_pair("period", if granularity == "week" { "90d" } else { "12m" });
        }
        q.append_pair("granularity", granularity);
        q.finish()
    };
    let range = Params::parse(
        &range_query,
        &["period", "from", "to", "timezone", "granularity"],
    )?
    .range(now)?;
    let currency = super::metrics::currency_param(store, store_id, &p, true, now)
        .await?
        .unwrap_or_default();
    Ok(CohortQuery {
        store_id: store_id.to_owned(),
        range,
        currency,
        include_bots: p.include_bots()?,
    })
}

/// The store's main currency a cohorts request (`query`, as [`parse`] takes it) would look up: when it
/// names none (cohorts always read revenue). `None` when it names one or is not valid (then [`parse`]
/// says why).
pub fn main_currency_needed(store_id: &str, query: &str) -> Option<super::currency::Needed> {
    super::currency::Needed::unless_named(store_id, &Params::parse(query, PARAMS).ok()?)
}

pub async fn run(store: &dyn ReadStore, q: &CohortQuery) -> Result<CohortResponse> {
    let cells = store.cohorts(q).await?;
    let buckets = q.range.buckets()?;
    let mut cohorts = Vec::new();
    for (i, start) in buckets.iter().enumerate() {
        let s = start.timestamp().as_second();
        let of = |k: i64| {
            cells
                .iter()
                .find(|c| c.cohort_start == s && c.offset == k)
                .map(|c| (c.customers, c.revenue))
        };
        let size = of(0).map_or(0, |(n, _)| n);
        if size == 0 {
            continue;
        }
        let periods = (0..(buckets.len() - i) as i64)
            .map(|k| {
                let (customers, revenue) = of(k).unwrap_or((0, 0));
                let retention = ((customers as f64 / size as f64) * 10_000.0).round() / 10_000.0;
                CohortPeriod {
                    offset: k,
                    customers,
                    retention,
                    revenue,
                }
            })
            .collect();
        cohorts.push(Cohort {
            cohort: q.range.label_of(start),
            size,
            periods,
        });
    }
    Ok(CohortResponse {
        interval: if q.range.granularity == Granularity::Week {
            "week"
        } else {
            "month"
        },
        period: q.range.label.clone(),
        timezone: q.range.tz_name.clone(),
        currency: q.currency.clone(),
        cohorts,
    })
}
