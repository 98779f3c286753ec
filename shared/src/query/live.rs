//! `GET /analytics/live`: what is happening now, for the dashboard's live panel.
//!
//! Parameters: `minutes` (1–60, default 30) and `includeBots`. The answer: distinct events per minute
//! over the last `minutes` whole minutes plus the current one (zero-filled, oldest first, by event
//! timestamp in UTC), their sum, and the 20 most recent events (id, type, timestamp, and the product id or
//! page path when there is one). Polled by the page every few seconds; each poll is two small queries on
//! the store's newest partition.

use serde::Serialize;

use super::ReadStore;
use super::params::Params;
use crate::error::{Error, Result};

pub const PARAMS: &[&str] = &["minutes", "includeBots"];

/// Most recent events returned.
pub const RECENT: u32 = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveQuery {
    pub store_id: String,
    /// Start of the first minute shown, Unix milliseconds.
    pub from_ms: i64,
    pub minutes: u32,
    pub include_bots: bool,
}

/// One recent event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    /// Product id, else page path; empty when the event has neither.
    pub detail: String,
}

/// Distinct events whose timestamp falls in one UTC minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteEvents {
    /// The minute's start, Unix seconds.
    pub minute: i64,
    pub events: u64,
}

/// From the store: the minutes that have events, and the recent events, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveData {
    pub per_minute: Vec<MinuteEvents>,
    pub recent: Vec<RecentEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MinuteCount {
    pub minute: String,
    pub events: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveResponse {
    pub minutes: u32,
    pub total: u64,
    pub per_minute: Vec<MinuteCount>,
    pub recent: Vec<RecentEvent>,
}

pub fn parse(store_id: &str, query: &str, now: jiff::Timestamp) -> Result<LiveQuery> {
    let p = Params::parse(query, PARAMS)?;
    let minutes = match p.get("minutes") {
        None => 30,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|m| (1..=60).contains(m))
            .ok_or_else(|| {
                Error::invalid(
                    "invalid_parameter",
                    "minutes",
                    format!("minutes must be a whole number from 1 to 60, not {s:?}"),
                )
            })?,
    };
    let this_minute = now.as_second().div_euclid(60) * 60;
    Ok(LiveQuery {
        store_id: store_id.to_owned(),
        from_ms: (this_minute - i64::from(minutes) * 60) * 1000,
        minutes,
        include_bots: p.include_bots()?,
    })
}

pub async fn run(store: &dyn ReadStore, q: &LiveQuery) -> Result<LiveResponse> {
    let data = store.live(q).await?;
    let first = q.from_ms / 1000;
    let per_minute: Vec<MinuteCount> = (0..=i64::from(q.minutes))
        .map(|i| {
            let minute = first + i * 60;
            let events = data
                .per_minute
                .iter()
                .find(|m| m.minute == minute)
                .map_or(0, |m| m.events);
            let label = jiff::Timestamp::from_second(minute)
                .map(|t| t.to_string())
                .unwrap_or_default();
            MinuteCount {
                minute: label,
                events,
            }
        })
        .collect();
    Ok(LiveResponse {
        minutes: q.minutes,
        total: per_minute.iter().map(|m| m.events).sum(),
        per_minute,
        recent: data.recent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2026-11-26T10:15:42Z".parse().expect("ts")
    }

    #[test]
    fn the_window_starts_on_a_whole_minute_and_minutes_are_bounded() {
        let q = parse("s", "", now()).expect("default");
        assert_eq!(q.minutes, 30);
        let start: jiff::Timestamp = "2026-11-26T09:45:00Z".parse().expect("ts");
        assert_eq!(q.from_ms, start.as_millisecond());
        for (query, field) in [
            ("minutes=0", "minutes"),
            ("minutes=61", "minutes"),
            ("minutes=abc", "minutes"),
            ("minute=5", "minute"),
            ("includeBots=1", "includeBots"),
        ] {
            let err = parse("s", query, now()).expect_err(query);
            assert_eq!(err.field(), Some(field), "{query}");
        }
    }
}
