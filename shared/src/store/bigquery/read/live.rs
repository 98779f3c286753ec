//! The live panel on BigQuery, as on ClickHouse: distinct events per UTC minute since `from`, and the
//! newest events (each once), with a detail (product, else page path, else the URL's path).

use super::{Sql, micros};
use crate::error::StoreError;
use crate::query::live::{LiveData, LiveQuery, MinuteEvents, RECENT, RecentEvent};
use crate::store::bigquery::client::Param;
use crate::store::bigquery::{BigQueryStore, EVENTS_TABLE, ONE_ROW_PER_EVENT};

/// A URL's path without query or fragment (ClickHouse `path`); empty when it has none.
const URL_PATH: &str =
    r"IFNULL(REGEXP_EXTRACT(page_url, r'^(?:[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*)?(/[^?#]*)'), '')";

/// The per-minute and the recent-events queries.
pub fn sql(store: &BigQueryStore, q: &LiveQuery) -> (Sql, Sql) {
    let with = format!(
        "WITH ev AS (SELECT * FROM {} WHERE store_id = @store AND (@bots OR NOT is_bot) \
         AND timestamp >= @from {ONE_ROW_PER_EVENT})",
        store.table(EVENTS_TABLE)
    );
    let params = vec![
        ("store", Param::String(q.store_id.clone())),
        ("from", micros(q.from_ms)),
        ("bots", Param::Bool(q.include_bots)),
    ];
    let minutes = Sql {
        text: format!(
            "{with} SELECT UNIX_SECONDS(TIMESTAMP_TRUNC(timestamp, MINUTE)) AS m, COUNT(DISTINCT id) AS n \
             FROM ev GROUP BY m ORDER BY m"
        ),
        params: params.clone(),
    };
    let recent = Sql {
        text: format!(
            "{with} SELECT id, type AS event_type, UNIX_MILLIS(timestamp) AS ms, \
             CASE WHEN product_id != '' THEN product_id WHEN page_path != '' THEN page_path \
             ELSE {URL_PATH} END AS detail \
             FROM ev ORDER BY timestamp DESC, id LIMIT {RECENT}"
        ),
        params,
    };
    (minutes, recent)
}

pub async fn live(store: &BigQueryStore, q: &LiveQuery) -> Result<LiveData, StoreError> {
    let (minutes, recent) = sql(store, q);
    let (minutes, recent) = tokio::join!(
        store.client().read(&minutes.text, &minutes.params),
        store.client().read(&recent.text, &recent.params),
    );
    let (minutes, recent) = (minutes?, recent?);
    let (m, n) = (minutes.column("m")?, minutes.column("n")?);
    let per_minute = (0..minutes.rows.len())
        .map(|r| {
            Ok(MinuteEvents {
                minute: minutes.i64(r, m)?,
                events: minutes.i64(r, n)?.max(0) as u64,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    let (id, kind, ms, detail) = (
        recent.column("id")?,
        recent.column("event_type")?,
        recent.column("ms")?,
        recent.column("detail")?,
    );
    let recent = (0..recent.rows.len())
        .map(|r| {
            Ok(RecentEvent {
                id: recent.string(r, id),
                event_type: recent.string(r, kind),
                timestamp: jiff::Timestamp::from_millisecond(recent.i64(r, ms)?)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                detail: recent.string(r, detail),
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(LiveData { per_minute, recent })
}
