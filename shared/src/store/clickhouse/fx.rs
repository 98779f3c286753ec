//! Exchange rates on ClickHouse (`fx_rates`, migration v10): [`RateStore`] and the rates read of
//! [`crate::query::ReadStore::exchange_rates`].
//!
//! `ReplacingMergeTree(loaded_at)` ordered by currency and day: loading a day again replaces its rate (the
//! latest load wins, before merges too: reads take `argMax` by `loaded_at`). The rate is kept as the text
//! the ECB published, so it stays exact. Global, not per store: every store reads the same rates.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ClickHouseStore, classify};
use crate::fx::{DailyRate, RateStore};
use crate::store::StoreError;

pub const RATES_TABLE: &str = "fx_rates";

#[derive(Debug, Clone, clickhouse::Row, Serialize)]
struct RateRow {
    /// Days since 1970-01-01 (ClickHouse `Date`).
    day: u16,
    currency: String,
    rate: String,
    source: String,
}

#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
struct ReadRow {
    d: String,
    currency: String,
    rate: String,
}

fn days_since_epoch(d: jiff::civil::Date) -> Result<u16, StoreError> {
    let days = jiff::civil::date(1970, 1, 1)
        .until((jiff::Unit::Day, d))
        .map_err(|e| StoreError::Rejected(format!("date {d}: {e}")))?
        .get_days();
    u16::try_from(days)
        .map_err(|_| StoreError::Rejected(format!("date {d} is outside ClickHouse's Date")))
}

#[async_trait]
impl RateStore for ClickHouseStore {
    async fn put_rates(&self, rates: &[DailyRate], source: &str) -> Result<usize, StoreError> {
        let mut insert = self
            .client()
            .insert::<RateRow>(RATES_TABLE)
            .await
            .map_err(classify)?;
        for r in rates {
            let row = RateRow {
                day: days_since_epoch(r.day)?,
                currency: r.currency.clone(),
                rate: r.per_eur.to_string(),
                source: source.to_owned(),
            };
            insert.write(&row).await.map_err(classify)?;
        }
        insert.end().await.map_err(classify)?;
        Ok(rates.len())
    }
}

/// The rates from `from` to `to` (both included), each day's latest load.
pub(super) async fn exchange_rates(
    store: &ClickHouseStore,
    from: jiff::civil::Date,
    to: jiff::civil::Date,
) -> Result<Vec<DailyRate>, StoreError> {
    let rows = store
        .client()
        .query(&format!(
            "SELECT toString(day) AS d, currency, argMax(rate, loaded_at) AS rate FROM {RATES_TABLE} \
             WHERE day >= toDate({{from:String}}) AND day <= toDate({{to:String}}) \
             GROUP BY day, currency ORDER BY day, currency"
        ))
        .param("from", from.to_string())
        .param("to", to.to_string())
        .fetch_all::<ReadRow>()
        .await
        .map_err(classify)?;
    rows.into_iter()
        .map(|r| {
            Ok(DailyRate {
                day: r
                    .d
                    .parse()
                    .map_err(|e| StoreError::Rejected(format!("fx_rates day {}: {e}", r.d)))?,
                per_eur: r.rate.parse().map_err(|e| {
                    StoreError::Rejected(format!("fx_rates rate {:?}: {e}", r.rate))
                })?,
                currency: r.currency,
            })
        })
        .collect()
}
