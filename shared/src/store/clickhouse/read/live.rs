//! The live panel: distinct events per minute since `from`, and the newest events.

use serde::Deserialize;

use super::{Binds, STORE_AND_BOTS, Sql};
use crate::error::StoreError;
use crate::query::live::{LiveData, LiveQuery, MinuteEvents, RECENT, RecentEvent};
use crate::store::clickhouse::ClickHouseStore;

#[derive(Debug, Deserialize, clickhouse::Row)]
struct MinuteRow {
    m: i64,
    n: u64,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct RecentRow {
    id: String,
    event_type: String,
    ms: i64,
    detail: String,
}

/// The per-minute and the recent-events queries.
pub(super) fn sql(q: &LiveQuery) -> (Sql, Sql) {
    let filter =
        format!("{STORE_AND_BOTS} AND timestamp >= fromUnixTimestamp64Milli({{from:Int64}})");
    let binds = Binds {
        store: q.store_id.clone(),
        from_ms: q.from_ms,
        bots: u8::from(q.include_bots),
        ..Binds::default()
    };
    let minutes = Sql {
        text: format!(
            "SELECT toInt64(toUnixTimestamp(toStartOfMinute(timestamp))) AS m, uniqExact(id) AS n \
             FROM commerce_events WHERE {filter} GROUP BY m ORDER BY m"
        ),
        binds: binds.clone(),
    };
    let recent = Sql {
        text: format!(
            "SELECT id, toString(type) AS event_type, toInt64(toUnixTimestamp64Milli(timestamp)) AS ms, \
             multiIf(product_id != '', product_id, page_path != '', page_path, path(page_url)) AS detail \
             FROM commerce_events WHERE {filter} \
             ORDER BY timestamp DESC, id LIMIT 1 BY id LIMIT {RECENT}"
        ),
        binds,
    };
    (minutes, recent)
}

pub(super) async fn fetch(store: &ClickHouseStore, q: &LiveQuery) -> Result<LiveData, StoreError> {
    let (minutes, recent) = sql(q);
    let (minutes, recent) = tokio::join!(
        minutes.fetch_all::<MinuteRow>(store, "live minutes"),
        recent.fetch_all::<RecentRow>(store, "live recent"),
    );
    Ok(LiveData {
        per_minute: minutes?
            .into_iter()
            .map(|r| MinuteEvents {
                minute: r.m,
                events: r.n,
            })
            .collect(),
        recent: recent?
            .into_iter()
            .map(|r| RecentEvent {
                id: r.id,
                event_type: r.event_type,
                timestamp: jiff::Timestamp::from_millisecond(r.ms)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                detail: r.detail,
            })
            .collect(),
    })
}
