//! `convert=true`: money metrics in one reporting currency (`currency`), every order and refund converted
//! from its own currency at the rate of its UTC day ([`crate::fx`]).
//!
//! Which metrics: `revenue`, `net_revenue`, `aov` and `orders` (whose count then covers the orders of
//! every currency that converted, so revenue ÷ orders is still the AOV beside them). The store returns a
//! metric's amounts per bucket, currency and UTC day ([`CurrencyDayFacts`], one row per group, not per
//! order); this side converts each group exactly, adds them up per bucket and over the range, and rounds
//! each figure once. Amounts without a rate are left out of every figure and listed in the answer's
//! `conversion.unconverted` (currency, orders, amount in their own minor units), never counted as 0.

use std::collections::BTreeMap;

use jiff::civil::Date;
use rust_decimal::Decimal;
use serde::Serialize;

use super::ReadStore;
use super::metrics::{BucketFacts, Metric, MetricFacts, MetricQuery};
use crate::error::{Error, Result};
use crate::fx::{self, Rates};

/// The metrics `convert` applies to.
pub const METRICS: [Metric; 4] = [
    Metric::Revenue,
    Metric::NetRevenue,
    Metric::Aov,
    Metric::Orders,
];

/// A metric's amounts of one currency on one UTC day within one bucket: the sum of the amounts (orders
/// positive, refunds negative) and the orders among them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyDayFacts {
    /// The bucket's start in the query's zone, as Unix seconds.
    pub bucket: i64,
    pub currency: String,
    pub day: Date,
    pub amount: i64,
    pub orders: i64,
}

/// What a converted answer says about its conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversion {
    /// The rates used.
    pub rates: &'static str,
    /// Amounts that had no rate, per currency (left out of every figure).
    pub unconverted: Vec<Unconverted>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unconverted {
    pub currency: String,
    /// Orders left out (refunds are not counted here, their amounts are).
    pub orders: i64,
    /// Their net amount, in the currency's own minor units.
    pub amount: i64,
    /// The UTC days without a rate, oldest first.
    pub days: Vec<String>,
}

/// Checks that `metric` can be converted (a 400 naming `convert` otherwise).
pub fn check(metric: Metric) -> Result<()> {
    if METRICS.contains(&metric) {
        return Ok(());
    }
    Err(Error::invalid(
        "invalid_parameter",
        "convert",
        "convert applies to revenue, net_revenue, aov and orders",
    ))
}

/// The facts of `q` (whose `currency` is the reporting currency) with every amount converted, and what
/// could not be.
pub async fn facts(store: &dyn ReadStore, q: &MetricQuery) -> Result<(MetricFacts, Conversion)> {
    let target = q.currency.clone().unwrap_or_else(|| "USD".into());
    let rows = store.money_by_currency(q).await?;
    let rates = match (
        rows.iter().map(|r| r.day).min(),
        rows.iter().map(|r| r.day).max(),
    ) {
        (Some(first), Some(last)) => {
            let from = first
                .checked_sub(jiff::Span::new().days(fx::STALE_AFTER_DAYS))
                .unwrap_or(first);
            Rates::new(store.exchange_rates(from, last).await?)
        }
        _ => Rates::default(),
    };
    Ok(convert(q.metric, &target, &rows, &rates))
}

/// The conversion itself (see the module docs), apart from the store.
pub fn convert(
    metric: Metric,
    target: &str,
    rows: &[CurrencyDayFacts],
    rates: &Rates,
) -> (MetricFacts, Conversion) {
    let family = metric.family();
    let figure = |amount: Decimal, orders: i64| match metric {
        Metric::Orders => family.facts(orders, 0),
        _ => family.facts(fx::round_minor(amount), orders),
    };
    let mut buckets: BTreeMap<i64, (Decimal, i64)> = BTreeMap::new();
    let mut total = (Decimal::ZERO, 0_i64);
    let mut missing: BTreeMap<&str, (i64, i64, Vec<Date>)> = BTreeMap::new();
    for r in rows {
        match rates.convert(r.amount, &r.currency, target, r.day) {
            Some(amount) => {
                let b = buckets.entry(r.bucket).or_insert((Decimal::ZERO, 0));
                b.0 += amount;
                b.1 += r.orders;
                total.0 += amount;
                total.1 += r.orders;
            }
            None => {
                let m = missing.entry(r.currency.as_str()).or_default();
                m.0 += r.orders;
                m.1 += r.amount;
                m.2.push(r.day);
            }
        }
    }
    let facts = MetricFacts {
        buckets: buckets
            .into_iter()
            .map(|(start, (amount, orders))| BucketFacts {
                start,
                facts: figure(amount, orders),
            })
            .collect(),
        total: figure(total.0, total.1),
    };
    let unconverted = missing
        .into_iter()
        .map(|(currency, (orders, amount, mut days))| {
            days.sort();
            days.dedup();
            Unconverted {
                currency: currency.to_owned(),
                orders,
                amount,
                days: days.iter().map(ToString::to_string).collect(),
            }
        })
        .collect();
    (
        facts,
        Conversion {
            rates: fx::ECB_SOURCE,
            unconverted,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fx::DailyRate;
    use crate::query::metrics::Facts;

    fn row(bucket: i64, currency: &str, day: &str, amount: i64, orders: i64) -> CurrencyDayFacts {
        CurrencyDayFacts {
            bucket,
            currency: currency.into(),
            day: day.parse().expect("day"),
            amount,
            orders,
        }
    }

    #[test]
    fn each_bucket_converts_its_currencies_exactly_and_rounds_once() {
        let rates = Rates::new([
            DailyRate {
                day: "2026-10-29".parse().expect("day"),
                currency: "USD".into(),
                per_eur: "1.2".parse().expect("rate"),
            },
            DailyRate {
                day: "2026-10-29".parse().expect("day"),
                currency: "JPY".into(),
                per_eur: "160".parse().expect("rate"),
            },
        ]);
        let rows = [
            // $1.00 = €0.8333…, twice: €1.6666… → 167 cents once rounded (not 83 + 83).
            row(0, "USD", "2026-10-29", 100, 1),
            row(0, "USD", "2026-10-30", 100, 1),
            row(0, "EUR", "2026-10-29", 1_000, 2),
            // ¥1,600 = €10.
            row(86_400, "JPY", "2026-10-30", 1_600, 1),
            // A refund in euros.
            row(86_400, "EUR", "2026-10-30", -500, 0),
            // No rate: left out and reported.
            row(86_400, "GBP", "2026-10-30", 700, 1),
        ];
        let (facts, conversion) = convert(Metric::Revenue, "EUR", &rows, &rates);
        assert_eq!(
            facts.buckets.iter().map(|b| b.facts).collect::<Vec<_>>(),
            [
                Facts::Money {
                    amount: 1_167,
                    orders: 4
                },
                Facts::Money {
                    amount: 500,
                    orders: 1
                }
            ]
        );
        assert_eq!(
            facts.total,
            Facts::Money {
                amount: 1_667,
                orders: 5
            }
        );
        assert_eq!(
            conversion.unconverted,
            [Unconverted {
                currency: "GBP".into(),
                orders: 1,
                amount: 700,
                days: vec!["2026-10-30".into()],
            }]
        );
        let (orders, _) = convert(Metric::Orders, "EUR", &rows, &rates);
        assert_eq!(orders.total, Facts::Count { count: 5 });
    }

    #[test]
    fn only_money_metrics_and_orders_convert() {
        for m in Metric::ALL {
            assert_eq!(check(m).is_ok(), METRICS.contains(&m), "{}", m.name());
        }
    }
}
