//! Period-over-period comparison: `compare=previous_period | previous_year` on metrics, ranked metrics,
//! funnels and dashboards.
//!
//! The comparison range is the requested range shifted back, in the requested zone's calendar:
//! - `previous_period`: by the range's own number of buckets of its granularity (30 daily buckets → 30
//!   days; 5 weekly buckets → 5 weeks; 25 hourly buckets → 25 hours of elapsed time). The comparison has
//!   the same length and its buckets line up one to one with the current ones: the same weekday for weeks,
//!   the same day of the month for months, the same wall-clock hour for hours. For day and hour
//!   granularities it ends exactly where the current range begins; for weeks and months it may end a
//!   little earlier (a range starting mid-week is shifted by whole weeks).
//! - `previous_year`: the same calendar dates one year earlier (months: 12 months; weeks: 52 weeks, so
//!   weeks still start on Mondays; days and hours: one calendar year, so 2028-02-29 pairs with
//!   2027-02-28). We chose calendar dates over weekday alignment because commerce teams compare Black
//!   Friday with Black Friday through `from`/`to` themselves, while "this March against last March" is
//!   what a year-over-year figure is read as; weekly granularity gives the weekday-aligned view.
//!
//! Each current bucket is paired with the comparison bucket holding its shifted start; across a DST
//! change the shift is calendar arithmetic (a day is a day, 23 or 25 hours), so local days pair with local
//! days. The change between two values: `absolute` (current − previous) and `relative`
//! ((current − previous) / previous, rounded to 4 decimals), `null` when the previous value is 0 or
//! either value is missing.
//!
//! Cost: the comparison is a second query over a range as long as the first, run concurrently with it.

use jiff::{ToSpan, ZonedDateTime as Zoned};
use serde::Serialize;
use serde_json::Value;

use super::params::{Granularity, Params, Range};
use crate::error::{Error, Result};

/// What to compare with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    PreviousPeriod,
    PreviousYear,
}

impl Compare {
    pub fn name(self) -> &'static str {
        match self {
            Self::PreviousPeriod => "previous_period",
            Self::PreviousYear => "previous_year",
        }
    }

    /// The `compare` parameter, when given.
    pub fn from_params(p: &Params) -> Result<Option<Self>> {
        match p.get("compare") {
            None => Ok(None),
            Some("previous_period") => Ok(Some(Self::PreviousPeriod)),
            Some("previous_year") => Ok(Some(Self::PreviousYear)),
            Some(other) => Err(Error::invalid(
                "invalid_parameter",
                "compare",
                format!("compare must be previous_period or previous_year, not {other:?}"),
            )),
        }
    }
}

/// The comparison of a range: its range, and how a current bucket start maps into it.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub compare: Compare,
    pub range: Range,
    /// Buckets of the current range (the `previous_period` shift).
    buckets: i64,
}

impl Comparison {
    pub fn of(range: &Range, compare: Compare) -> Result<Self> {
        let buckets = i64::try_from(range.buckets()?.len()).unwrap_or(i64::MAX);
        let mut c = Self {
            compare,
            range: range.clone(),
            buckets,
        };
        let from = c.shift(&range.from.to_zoned_datetime(range.tz.clone()))?;
        let to = c.shift(&range.to.to_zoned_datetime(range.tz.clone()))?;
        c.range.from = from.timestamp();
        c.range.to = to.timestamp();
        c.range.label = format!("{}..{}", c.range.from, c.range.to);
        Ok(c)
    }

    /// Where `z` (a time in the current range) falls in the comparison range.
    pub fn shift(&self, z: &Zoned) -> Result<Zoned> {
        let n = self.buckets;
        let r = match (self.compare, self.range.granularity) {
            (Compare::PreviousPeriod, Granularity::Hour) => z.checked_sub(n.hours()),
            (Compare::PreviousPeriod, Granularity::Day) => z.checked_sub(n.days()),
            (Compare::PreviousPeriod, Granularity::Week) => z.checked_sub(n.weeks()),
            (Compare::PreviousPeriod, Granularity::Month) => z.checked_sub(n.months()),
            (Compare::PreviousYear, Granularity::Week) => z.checked_sub(52.weeks()),
            (Compare::PreviousYear, _) => z.checked_sub(1.year()),
        };
        r.map_err(|e| Error::invalid("invalid_parameter", "compare", e.to_string()))
    }

    /// The comparison bucket paired with the current bucket starting at `start`.
    pub fn paired_bucket(&self, start: &Zoned) -> Result<Zoned> {
        self.range.bucket_start(self.shift(start)?.timestamp())
    }

    /// What the response says about the comparison range.
    pub fn summary(&self, total: Value, current_total: &Value) -> ComparisonSummary {
        ComparisonSummary {
            compare: self.compare.name(),
            from: self.range.from.to_string(),
            to: self.range.to.to_string(),
            change: Change::between(current_total, &total),
            total,
        }
    }
}

/// Adds to each JSON row (keyed by its `key` column) `previous`, the row `previous_of(key)` gives for the
/// comparison range, and `change`, per numeric column.
pub fn attach_previous(rows: &mut [Value], key: &str, previous_of: impl Fn(&str) -> Value) {
    for row in rows {
        let before = previous_of(row[key].as_str().unwrap_or(""));
        let mut change = serde_json::Map::new();
        if let Some(fields) = row.as_object() {
            for (k, v) in fields.iter().filter(|(_, v)| v.is_number()) {
                let c = Change::between(v, &before[k.as_str()]);
                change.insert(k.clone(), serde_json::to_value(c).unwrap_or(Value::Null));
            }
        }
        row["previous"] = before;
        row["change"] = Value::Object(change);
    }
}

/// The comparison range as ranked answers show it: `{compare, from, to}`.
impl Comparison {
    pub fn range_json(&self) -> Value {
        serde_json::json!({
            "compare": self.compare.name(),
            "from": self.range.from.to_string(),
            "to": self.range.to.to_string(),
        })
    }
}

/// The comparison range and its total, beside the current one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparisonSummary {
    pub compare: &'static str,
    /// `[from, to)` of the comparison range, RFC 3339 UTC.
    pub from: String,
    pub to: String,
    pub total: Value,
    pub change: Option<Change>,
}

/// How a value changed against its comparison value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// current − previous (an integer for counts and money, a fraction's difference for rates).
    pub absolute: Value,
    /// (current − previous) / previous, rounded to 4 decimals; `null` when previous is 0.
    pub relative: Option<f64>,
}

impl Change {
    /// The change from `previous` to `current`; `None` when either is not a number.
    pub fn between(current: &Value, previous: &Value) -> Option<Self> {
        let (c, p) = (current.as_f64()?, previous.as_f64()?);
        let absolute = match (current.as_i64(), previous.as_i64()) {
            (Some(c), Some(p)) => Value::from(c - p),
            _ => Value::from(round4(c - p)),
        };
        let relative = (p != 0.0).then(|| round4((c - p) / p));
        Some(Self { absolute, relative })
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(query: &str, now: &str) -> Range {
        let p = Params::parse(query, &["period", "from", "to", "timezone", "granularity"])
            .expect("params");
        let mut r = p.range(now.parse().expect("now")).expect("range");
        if let Some(g) = p.get("granularity") {
            r.granularity = match g {
                "hour" => Granularity::Hour,
                "week" => Granularity::Week,
                "month" => Granularity::Month,
                _ => Granularity::Day,
            };
        }
        r
    }

    fn labels(r: &Range) -> Vec<String> {
        r.buckets()
            .expect("buckets")
            .iter()
            .map(|b| r.label_of(b))
            .collect()
    }

    fn paired(c: &Comparison, current: &Range) -> Vec<String> {
        current
            .buckets()
            .expect("buckets")
            .iter()
            .map(|b| c.range.label_of(&c.paired_bucket(b).expect("pair")))
            .collect()
    }

    #[test]
    fn the_previous_period_is_as_long_and_ends_where_the_current_begins() {
        let cur = range("period=30d&timezone=UTC", "2026-03-15T10:00:00Z");
        let c = Comparison::of(&cur, Compare::PreviousPeriod).expect("comparison");
        assert_eq!(c.range.to.to_string(), "2026-02-13T10:00:00Z");
        assert_eq!(c.range.from.to_string(), "2026-01-15T00:00:00Z");
        assert_eq!(labels(&c.range), paired(&c, &cur));
        assert_eq!(labels(&c.range).len(), 30);
    }

    #[test]
    fn local_days_pair_with_local_days_across_a_dst_change() {
        // Berlin moves to summer time on 2026-03-29: the current range holds a 23-hour day.
        let cur = range(
            "from=2026-03-20&to=2026-04-05&timezone=Europe/Berlin",
            "2026-05-01T00:00:00Z",
        );
        let c = Comparison::of(&cur, Compare::PreviousPeriod).expect("comparison");
        let want: Vec<String> = (3..=19).map(|d| format!("2026-03-{d:02}")).collect();
        assert_eq!(paired(&c, &cur), want);
        assert_eq!(labels(&c.range), want, "17 whole local days before");
        assert_eq!(
            c.range.to, cur.from,
            "it ends where the current range begins"
        );
        // Hours: 24 hourly buckets over the change pair with the 24 elapsed hours before.
        let hours = range(
            "from=2026-03-29&to=2026-03-29&timezone=Europe/Berlin&granularity=hour",
            "2026-05-01T00:00:00Z",
        );
        let c = Comparison::of(&hours, Compare::PreviousPeriod).expect("comparison");
        assert_eq!(labels(&hours).len(), 23, "a 23-hour local day");
        assert_eq!(labels(&c.range).len(), 23);
        assert_eq!(c.range.to, hours.from);
    }

    #[test]
    fn a_year_earlier_pairs_calendar_dates_and_the_leap_day_with_february_28() {
        let cur = range(
            "from=2028-02-27&to=2028-03-01&timezone=UTC",
            "2028-06-01T00:00:00Z",
        );
        let c = Comparison::of(&cur, Compare::PreviousYear).expect("comparison");
        assert_eq!(
            paired(&c, &cur),
            ["2027-02-27", "2027-02-28", "2027-02-28", "2027-03-01"]
        );
        assert_eq!(labels(&c.range), ["2027-02-27", "2027-02-28", "2027-03-01"]);
        // Weeks a year earlier still start on Mondays.
        let weeks = range(
            "from=2026-06-01&to=2026-06-28&timezone=UTC&granularity=week",
            "2026-07-01T00:00:00Z",
        );
        let c = Comparison::of(&weeks, Compare::PreviousYear).expect("comparison");
        assert_eq!(
            paired(&c, &weeks),
            ["2025-06-02", "2025-06-09", "2025-06-16", "2025-06-23"]
        );
    }

    #[test]
    fn changes_are_absolute_and_relative_and_null_against_zero() {
        let cases = [
            (
                Value::from(150),
                Value::from(100),
                Some((Value::from(50), Some(0.5))),
            ),
            (
                Value::from(0.03),
                Value::from(0.04),
                Some((Value::from(-0.01), Some(-0.25))),
            ),
            (Value::from(5), Value::from(0), Some((Value::from(5), None))),
            (Value::Null, Value::from(3), None),
        ];
        for (cur, prev, want) in cases {
            let got = Change::between(&cur, &prev).map(|c| (c.absolute, c.relative));
            assert_eq!(got, want, "{cur} vs {prev}");
        }
    }

    #[test]
    fn an_unknown_comparison_is_refused_naming_the_parameter() {
        let p = Params::parse("compare=last_week", &["compare"]).expect("params");
        let err = Compare::from_params(&p).expect_err("refused");
        assert_eq!(err.field(), Some("compare"));
    }
}
