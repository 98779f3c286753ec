//! Query-string parameters shared by the read endpoints: period, granularity, timezone, currency,
//! filters. Every parameter is validated; unknown ones are rejected by name (a typo such as
//! `granulatiry` must not silently change the answer).
//!
//! Periods, in the request's `timezone` (IANA name, default `UTC`):
//! - `24h`: the last 24 hours up to now (default granularity `hour`);
//! - `7d`, `30d`, `90d`: the last N calendar days including today (default `day`);
//! - `12m`: the last 12 calendar months including this one (default `month`);
//! - `from`/`to` (`YYYY-MM-DD`, both inclusive) instead of `period` (default `day`).
//!
//! Buckets are calendar units in that zone (a DST day is 23 or 25 hours; weeks start on Monday), every
//! bucket is present, at most [`MAX_BUCKETS`].

use std::collections::HashMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, ZonedDateTime as Zoned};

use crate::error::{Error, Result};

pub const MAX_BUCKETS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
    Week,
    Month,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "hour" => Self::Hour,
            "day" => Self::Day,
            "week" => Self::Week,
            "month" => Self::Month,
            _ => {
                return Err(Error::invalid(
                    "invalid_parameter",
                    "granularity",
                    format!("granularity must be hour, day, week or month, not {s:?}"),
                ));
            }
        })
    }
}

/// A resolved time range: `[from, to)` as instants, plus its label and zone.
#[derive(Debug, Clone)]
pub struct Range {
    /// `30d`, `24h`, … or `2025-01-01..2025-01-31`.
    pub label: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub tz: TimeZone,
    pub tz_name: String,
    pub granularity: Granularity,
    /// When the range was resolved: buckets starting later are in the future (no data can exist yet).
    pub now: Timestamp,
}

impl Range {
    pub fn from_ms(&self) -> i64 {
        self.from.as_millisecond()
    }
    pub fn to_ms(&self) -> i64 {
        self.to.as_millisecond()
    }

    /// Whether every bucket boundary of the range falls on a whole UTC hour, so hourly rollups can serve
    /// it exactly: the zone's offset is a whole number of hours at both ends and every 7 days between
    /// (zones with 30- or 45-minute offsets, such as Asia/Kolkata, read the raw events instead).
    pub fn hour_aligned(&self) -> bool {
        let whole = |t: Timestamp| self.tz.to_offset(t).seconds() % 3600 == 0;
        let week = jiff::SignedDuration::from_hours(24 * 7);
        let mut t = self.from;
        while t < self.to {
            if !whole(t) {
                return false;
            }
            t = match t.checked_add(week) {
                Ok(next) => next,
                Err(_) => break,
            };
        }
        whole(self.to)
    }

    /// Start of the bucket holding `t`, in the range's zone.
    pub fn bucket_start(&self, t: Timestamp) -> Result<Zoned> {
        let z = t.to_zoned_datetime(self.tz.clone());
        let r = match self.granularity {
            Granularity::Hour => z.with().minute(0).second(0).subsec_nanosecond(0).build(),
            Granularity::Day => z.start_of_day(),
            Granularity::Week => {
                let back = i64::from(z.weekday().to_monday_zero_offset());
                z.start_of_day().and_then(|d| d.checked_sub(back.days()))
            }
            Granularity::Month => z.first_of_month().and_then(|d| d.start_of_day()),
        };
        r.map_err(|e| Error::Internal(format!("bucket arithmetic: {e}")))
    }

    /// Where the bucket starting at `z` ends (the next one's start).
    pub fn bucket_end(&self, z: &Zoned) -> Result<Zoned> {
        self.step(z)
    }

    fn step(&self, z: &Zoned) -> Result<Zoned> {
        let r = match self.granularity {
            Granularity::Hour => z.checked_add(1.hour()),
            Granularity::Day => z.checked_add(1.day()),
            Granularity::Week => z.checked_add(1.week()),
            Granularity::Month => z.checked_add(1.month()),
        };
        r.map_err(|e| Error::Internal(format!("bucket arithmetic: {e}")))
    }

    /// Every bucket start in `[from, to)`, in order.
    pub fn buckets(&self) -> Result<Vec<Zoned>> {
        let mut out = Vec::new();
        let mut cur = self.bucket_start(self.from)?;
        while cur.timestamp() < self.to {
            out.push(cur.clone());
            if out.len() > MAX_BUCKETS {
                return Err(Error::invalid(
                    "too_many_buckets",
                    "granularity",
                    format!(
                        "more than {MAX_BUCKETS} buckets; choose a coarser granularity or a shorter period"
                    ),
                ));
            }
            cur = self.step(&cur)?;
        }
        Ok(out)
    }

    /// Label of a bucket: `YYYY-MM-DD` (local date), or `YYYY-MM-DDTHH:00` for hours.
    pub fn label_of(&self, z: &Zoned) -> String {
        match self.granularity {
            Granularity::Hour => z.strftime("%Y-%m-%dT%H:00").to_string(),
            _ => z.strftime("%Y-%m-%d").to_string(),
        }
    }
}

/// The parameters a dashboard request takes and hands to each of its widgets: the period (`period`, or
/// `from` and `to`), the zone, the currency and `includeBots`.
pub const SHARED: [&str; 6] = [
    "period",
    "from",
    "to",
    "timezone",
    "currency",
    "includeBots",
];

/// `first` followed by `rest`, at compile time (parameter lists built from [`SHARED`]).
pub const fn concat<const A: usize, const B: usize, const N: usize>(
    first: [&'static str; A],
    rest: [&'static str; B],
) -> [&'static str; N] {
    assert!(A + B == N, "N must be A + B");
    let mut out = [""; N];
    let mut i = 0;
    while i < A {
        out[i] = first[i];
        i += 1;
    }
    while i < N {
        out[i] = rest[i - A];
        i += 1;
    }
    out
}

/// The devices [`crate::event::agent`] tells apart (the `device` filter's values).
pub const DEVICES: [&str; 5] = ["desktop", "mobile", "tablet", "bot", "other"];

/// The filters a read takes, each an equality every event it counts must meet (absent: no filter):
/// - `country`: the event's `context.country`;
/// - `device`, `browser`: parsed from the event's user agent at ingest ([`crate::event::agent`]);
/// - `source`: the source of the event's session, named as `traffic_sources` names it (its first
///   `utm_source`, else its first referrer's site, else `direct`, over the session's events in the
///   range); events without a session (backend orders) drop out under it;
/// - `landingPage`, `referrer`: likewise, the events of sessions whose entry page (the path of its first
///   event with a page) or first referrer's domain (without `www.`) is the value, as `landing_pages` and
///   `referrers` name them.
///
/// The same filters, by the same names, on the metrics and dashboards endpoints; funnels, cohorts, `ltv`
/// and the inventory metrics take none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pub country: Option<String>,
    pub device: Option<String>,
    pub browser: Option<String>,
    pub source: Option<String>,
    pub landing_page: Option<String>,
    pub referrer: Option<String>,
}

impl Filters {
    /// The parameters' names, in the order they are checked and shown.
    pub const NAMES: [&'static str; 6] = [
        "country",
        "device",
        "browser",
        "source",
        "landingPage",
        "referrer",
    ];

    /// A country filter alone.
    pub fn country(code: &str) -> Self {
        Self {
            country: Some(code.to_owned()),
            ..Self::default()
        }
    }

    /// The name of the first filter given, if any (for "X has no filters" errors).
    pub fn first_given(&self) -> Option<&'static str> {
        [
            &self.country,
            &self.device,
            &self.browser,
            &self.source,
            &self.landing_page,
            &self.referrer,
        ]
        .into_iter()
        .zip(Self::NAMES)
        .find_map(|(v, name)| v.is_some().then_some(name))
    }

    /// Whether only filters the hourly rollup carries (the country) are given.
    pub fn rollup_can_answer(&self) -> bool {
        self.device.is_none() && self.browser.is_none() && !self.on_sessions()
    }

    /// Whether a filter keeps whole sessions by what they are (`source`, `landingPage`, `referrer`).
    pub fn on_sessions(&self) -> bool {
        self.source.is_some() || self.landing_page.is_some() || self.referrer.is_some()
    }
}

/// The years `from` and `to` may name.
const FIRST_YEAR: i16 = 1970;
const LAST_YEAR: i16 = 2199;

/// The query string as a map, checked against the parameters an endpoint takes.
#[derive(Debug, Clone, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    /// Parses `a=1&b=2` (percent-decoded); a repeated parameter is an error.
    pub fn parse(query: &str, allowed: &[&str]) -> Result<Self> {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if !allowed.contains(&k.as_ref()) {
                return Err(Error::invalid(
                    "unknown_parameter",
                    k.to_string(),
                    format!(
                        "unknown parameter {k:?}; this endpoint takes {}",
                        allowed.join(", ")
                    ),
                ));
            }
            if map.insert(k.to_string(), v.to_string()).is_some() {
                return Err(Error::invalid(
                    "repeated_parameter",
                    k.to_string(),
                    format!("{k} is given twice"),
                ));
            }
        }
        Ok(Self(map))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// `includeBots`: `true` counts events flagged as bots (see [`crate::event::bots`]); default `false`.
    pub fn include_bots(&self) -> Result<bool> {
        match self.get("includeBots") {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(Error::invalid(
                "invalid_parameter",
                "includeBots",
                format!("includeBots must be true or false, not {other:?}"),
            )),
        }
    }

    /// `currency`: an ISO 4217 code when given (see [`crate::ident::is_currency_code`]).
    pub fn currency(&self) -> Result<Option<&str>> {
        match self.get("currency") {
            Some(c) if !crate::ident::is_currency_code(c) => Err(Error::invalid(
                "invalid_parameter",
                "currency",
                "currency must be an ISO 4217 code, e.g. USD",
            )),
            c => Ok(c),
        }
    }

    /// `country`: an ISO 3166-1 alpha-2 code when given (see [`crate::ident::is_country_code`]).
    pub fn country(&self) -> Result<Option<String>> {
        match self.get("country") {
            Some(c) if !crate::ident::is_country_code(c) => Err(Error::invalid(
                "invalid_parameter",
                "country",
                "country must be an ISO 3166-1 alpha-2 code, e.g. US",
            )),
            c => Ok(c.map(str::to_owned)),
        }
    }

    /// The dashboard-wide filters ([`Filters`]), each checked: `country` an ISO 3166-1 alpha-2 code,
    /// `device` one of [`DEVICES`], `browser` and `source` non-empty text of at most 100 characters.
    pub fn filters(&self) -> Result<Filters> {
        let text = |k: &'static str, max: usize| -> Result<Option<String>> {
            match self.get(k) {
                Some(v) if v.chars().count() > max || v.chars().any(char::is_control) => {
                    Err(Error::invalid(
                        "invalid_parameter",
                        k,
                        format!("{k} must be at most {max} characters, without control characters"),
                    ))
                }
                v => Ok(v.map(str::to_owned)),
            }
        };
        let device = match self.get("device") {
            Some(d) if !DEVICES.contains(&d) => {
                return Err(Error::invalid(
                    "invalid_parameter",
                    "device",
                    format!("device must be one of {}", DEVICES.join(", ")),
                ));
            }
            d => d.map(str::to_owned),
        };
        Ok(Filters {
            country: self.country()?,
            device,
            browser: text("browser", 100)?,
            source: text("source", 100)?,
            landing_page: text("landingPage", 2048)?,
            referrer: text("referrer", 255)?,
        })
    }

    pub fn require(&self, k: &str) -> Result<&str> {
        self.get(k)
            .ok_or_else(|| Error::invalid("missing_parameter", k, format!("{k} is required")))
    }

    /// Resolves `period` / `from`+`to`, `timezone` and `granularity` at `now`.
    pub fn range(&self, now: Timestamp) -> Result<Range> {
        let tz_name = self.get("timezone").unwrap_or("UTC").to_owned();
        let tz = TimeZone::get(&tz_name).map_err(|_| {
            Error::invalid(
                "invalid_parameter",
                "timezone",
                format!("{tz_name:?} is not an IANA time zone name"),
            )
        })?;
        let today = now.to_zoned_datetime(tz.clone());
        let internal = |e: jiff::Error| Error::Internal(format!("date arithmetic: {e}"));
        let (label, from, to, default_gran) = match (
            self.get("period"),
            self.get("from"),
            self.get("to"),
        ) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(Error::invalid(
                    "invalid_parameter",
                    "period",
                    "give either period or from/to, not both",
                ));
            }
            (None, Some(f), Some(t)) => {
                let parse = |s: &str, field: &str| {
                    let date = s.parse::<Date>().map_err(|_| {
                        Error::invalid(
                            "invalid_parameter",
                            field,
                            format!("{field} must be a date YYYY-MM-DD, not {s:?}"),
                        )
                    })?;
                    // What the warehouse's DateTime64 holds, and what the calendar arithmetic below can
                    // step past (a day after `to`) in any zone.
                    if !(FIRST_YEAR..=LAST_YEAR).contains(&date.year()) {
                        return Err(Error::invalid(
                            "invalid_parameter",
                            field,
                            format!(
                                "{field} must be a date from {FIRST_YEAR}-01-01 to {LAST_YEAR}-12-31, not {s:?}"
                            ),
                        ));
                    }
                    Ok(date)
                };
                let (fd, td) = (parse(f, "from")?, parse(t, "to")?);
                if td < fd {
                    return Err(Error::invalid(
                        "invalid_parameter",
                        "to",
                        "to is before from",
                    ));
                }
                let from = fd
                    .to_zoned_datetime(tz.clone())
                    .map_err(internal)?
                    .timestamp();
                let to = td
                    .checked_add(1.day())
                    .map_err(internal)?
                    .to_zoned_datetime(tz.clone())
                    .map_err(internal)?
                    .timestamp();
                (format!("{fd}..{td}"), from, to, Granularity::Day)
            }
            (None, Some(_), None) => {
                return Err(Error::invalid("missing_parameter", "to", "from needs to"));
            }
            (None, None, Some(_)) => {
                return Err(Error::invalid("missing_parameter", "from", "to needs from"));
            }
            (p, None, None) => {
                let p = p.unwrap_or("30d");
                let start_today = today.start_of_day().map_err(internal)?;
                let (from, gran) = match p {
                    "24h" => (now - 24.hours(), Granularity::Hour),
                    "7d" => (
                        start_today
                            .checked_sub(6.days())
                            .map_err(internal)?
                            .timestamp(),
                        Granularity::Day,
                    ),
                    "30d" => (
                        start_today
                            .checked_sub(29.days())
                            .map_err(internal)?
                            .timestamp(),
                        Granularity::Day,
                    ),
                    "90d" => (
                        start_today
                            .checked_sub(89.days())
                            .map_err(internal)?
                            .timestamp(),
                        Granularity::Day,
                    ),
                    "12m" => {
                        let first = today
                            .first_of_month()
                            .and_then(|d| d.start_of_day())
                            .map_err(internal)?;
                        (
                            first
                                .checked_sub(11.months())
                                .map_err(internal)?
                                .timestamp(),
                            Granularity::Month,
                        )
                    }
                    other => {
                        return Err(Error::invalid(
                            "invalid_parameter",
                            "period",
                            format!(
                                "period must be 24h, 7d, 30d, 90d or 12m (or use from/to), not {other:?}"
                            ),
                        ));
                    }
                };
                (p.to_owned(), from, now, gran)
            }
        };
        let granularity = match self.get("granularity") {
            Some(g) => Granularity::parse(g)?,
            None => default_gran,
        };
        let range = Range {
            label,
            from,
            to,
            tz,
            tz_name,
            granularity,
            now,
        };
        range.buckets()?; // validates the bucket count
        Ok(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_of(r: &Range) -> Vec<String> {
        r.buckets()
            .expect("ok")
            .iter()
            .map(|z| r.label_of(z))
            .collect()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn params(q: &str) -> Params {
        Params::parse(
            q,
            &["period", "from", "to", "granularity", "timezone", "metric"],
        )
        .expect("known")
    }

    #[test]
    fn unknown_and_repeated_parameters_are_rejected_by_name() {
        let err = Params::parse("metric=revenue&granulatiry=day", &["metric", "granularity"])
            .expect_err("typo");
        assert_eq!((err.status(), err.field()), (400, Some("granulatiry")));
        let err = Params::parse("metric=a&metric=b", &["metric"]).expect_err("twice");
        assert_eq!(err.field(), Some("metric"));
    }

    #[test]
    fn ranges_are_hour_aligned_only_in_zones_with_whole_hour_offsets() {
        let now = ts("2026-11-26T10:17:00Z");
        for (tz, aligned) in [
            ("UTC", true),
            ("America/New_York", true),
            ("Europe/Paris", true),
            ("Asia/Kolkata", false),
            ("Asia/Kathmandu", false),
            ("Australia/Adelaide", false),
        ] {
            let r = params(&format!("period=12m&timezone={tz}"))
                .range(now)
                .expect("valid");
            assert_eq!(r.hour_aligned(), aligned, "{tz}");
        }
    }

    #[test]
    fn day_periods_count_calendar_days_in_the_zone_including_today() {
        let now = ts("2025-03-10T03:30:00Z"); // 2025-03-09 23:30 in New York
        let r = params("period=7d&timezone=America/New_York")
            .range(now)
            .expect("valid");
        let labels: Vec<String> = labels_of(&r);
        assert_eq!(labels.first().map(String::as_str), Some("2025-03-03"));
        assert_eq!(labels.last().map(String::as_str), Some("2025-03-09"));
        assert_eq!(labels.len(), 7);
    }

    #[test]
    fn a_dst_day_is_one_bucket_of_23_hours() {
        let r = params("from=2025-03-08&to=2025-03-10&timezone=America/New_York")
            .range(ts("2025-04-01T00:00:00Z"))
            .expect("valid");
        let b = r.buckets().expect("ok");
        assert_eq!(b.len(), 3);
        assert_eq!(
            (b[2].timestamp() - b[1].timestamp()).as_hours(),
            23,
            "2025-03-09 is 23 hours long"
        );
        let hours =
            params("from=2025-03-09&to=2025-03-09&timezone=America/New_York&granularity=hour")
                .range(ts("2025-04-01T00:00:00Z"))
                .expect("valid");
        assert_eq!(hours.buckets().expect("ok").len(), 23);
    }

    #[test]
    fn weeks_start_on_monday_and_months_on_the_first() {
        let r = params("from=2025-01-01&to=2025-01-31&granularity=week")
            .range(ts("2025-02-01T00:00:00Z"))
            .expect("ok");
        let labels: Vec<String> = labels_of(&r);
        assert_eq!(
            labels,
            [
                "2024-12-30",
                "2025-01-06",
                "2025-01-13",
                "2025-01-20",
                "2025-01-27"
            ]
        );
        let r = params("period=12m")
            .range(ts("2025-02-15T10:00:00Z"))
            .expect("ok");
        let labels: Vec<String> = labels_of(&r);
        assert_eq!(
            (labels.len(), labels[0].as_str(), labels[11].as_str()),
            (12, "2024-03-01", "2025-02-01")
        );
    }

    #[test]
    fn currency_and_country_filters_are_iso_codes() {
        for (q, ok) in [
            ("currency=USD", true),
            ("currency=JPY", true),
            ("currency=ZZZ", false),
            ("currency=usd", false),
            ("country=DE", true),
            ("country=de", false),
        ] {
            let p = Params::parse(q, &["currency", "country"]).expect(q);
            let checked = p.currency().map(|_| ()).and(p.country().map(|_| ()));
            assert_eq!(checked.is_ok(), ok, "{q}");
            if let Err(e) = checked {
                assert_eq!(e.field(), q.split('=').next(), "{q}");
            }
        }
    }

    #[test]
    fn bad_values_name_the_parameter() {
        let now = ts("2025-02-15T10:00:00Z");
        for (q, field) in [
            ("period=1y", "period"),
            ("timezone=Mars/Olympus", "timezone"),
            ("granularity=minute", "granularity"),
            ("from=2025-13-01&to=2025-01-02", "from"),
            ("from=2025-01-05&to=2025-01-02", "to"),
            ("from=2025-01-05", "to"),
            ("period=7d&from=2025-01-01&to=2025-01-02", "period"),
            ("period=90d&granularity=hour", "granularity"),
            // Dates the calendar arithmetic and the warehouse cannot hold are refused, not a 500.
            ("from=2025-01-01&to=9999-12-31&granularity=month", "to"),
            ("from=0001-01-01&to=2025-01-02&granularity=month", "from"),
        ] {
            let err = params(q).range(now).expect_err(q);
            assert_eq!(
                (err.status(), err.field()),
                (400, Some(field)),
                "{q}: {err}"
            );
        }
    }
}
