//! Exchange rates on BigQuery (`fx_rates`, migration v3), as on ClickHouse: [`RateStore`] and the rates
//! read. Rows are versioned by `loaded_at` (the latest load of a day and currency wins in reads), since
//! BigQuery has no replacing engine; the rate is kept as published text, so it stays exact.

use async_trait::async_trait;

use super::BigQueryStore;
use super::client::Param;
use crate::fx::{DailyRate, RateStore};
use crate::store::StoreError;

pub const RATES_TABLE: &str = "fx_rates";

/// Rates per `INSERT` statement (each travels as one `day|currency|rate` array parameter).
const BATCH: usize = 5_000;

#[async_trait]
impl RateStore for BigQueryStore {
    async fn put_rates(&self, rates: &[DailyRate], source: &str) -> Result<usize, StoreError> {
        let sql = format!(
            "INSERT INTO {} (day, currency, rate, source, loaded_at) \
             SELECT DATE(SPLIT(x, '|')[OFFSET(0)]), SPLIT(x, '|')[OFFSET(1)], SPLIT(x, '|')[OFFSET(2)], \
               @source, CURRENT_TIMESTAMP() FROM UNNEST(@rows) AS x",
            self.table(RATES_TABLE)
        );
        for batch in rates.chunks(BATCH) {
            let rows = batch
                .iter()
                .map(|r| format!("{}|{}|{}", r.day, r.currency, r.per_eur))
                .collect();
            self.client()
                .query(
                    &sql,
                    &[
                        ("rows", Param::Strings(rows)),
                        ("source", Param::String(source.to_owned())),
                    ],
                )
                .await?;
        }
        Ok(rates.len())
    }
}

/// The rates from `from` to `to` (both included), each day's latest load.
pub async fn exchange_rates(
    store: &BigQueryStore,
    from: jiff::civil::Date,
    to: jiff::civil::Date,
) -> Result<Vec<DailyRate>, StoreError> {
    let sql = format!(
        "SELECT CAST(day AS STRING) AS d, currency, \
           ARRAY_AGG(rate ORDER BY loaded_at DESC LIMIT 1)[OFFSET(0)] AS rate \
         FROM {} WHERE day >= DATE(@from) AND day <= DATE(@to) GROUP BY day, currency ORDER BY d, currency",
        store.table(RATES_TABLE)
    );
    let rows = store
        .client()
        .query(
            &sql,
            &[
                ("from", Param::String(from.to_string())),
                ("to", Param::String(to.to_string())),
            ],
        )
        .await?;
    (0..rows.rows.len())
        .map(|i| {
            let (day, rate) = (rows.string(i, 0), rows.string(i, 2));
            Ok(DailyRate {
                day: day
                    .parse()
                    .map_err(|e| StoreError::Rejected(format!("fx_rates day {day}: {e}")))?,
                currency: rows.string(i, 1),
                per_eur: rate
                    .parse()
                    .map_err(|e| StoreError::Rejected(format!("fx_rates rate {rate:?}: {e}")))?,
            })
        })
        .collect()
}
