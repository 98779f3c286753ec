//! Conversion funnels: `GET /analytics/funnel`.
//!
//! Parameters: `steps` (2–10 event types, comma-separated), the period parameters, `window` (conversion
//! window: `30m`, `2h`, `1d`, `7d` or seconds; default `1d`, at most 90 days), `by` (`session`, default,
//! or `customer`), `mode` (`ordered`, default: steps in order, other events may come between; `strict`:
//! no other *step* event may come between consecutive steps).
//!
//! Semantics (ClickHouse `windowFunnel`, on the step events only): a key reaches step k when steps 1..k
//! occur in order within `window` of its step-1 event; timestamps are compared at whole seconds. Per step:
//! `count` (keys reaching it), `conversionRate` (count / step-1 count), `stepConversionRate` (count /
//! previous count), `dropOff` (previous count − count) and `medianSecondsToConvert`: among keys reaching the
//! step, the median of (first occurrence of the step − first occurrence of the previous step), `null` for
//! step 1 or when no key reached it.
//!
//! The period bounds the entry step only: a key enters with a step-1 event inside the period, and its
//! later steps count while within `window` of that entry even when they happen after the period's end (a
//! session entering at 23:58 on the last day and buying at 00:05 the next day converts). These are the
//! semantics of Mixpanel, Amplitude and PostHog; a period ending now is unaffected. A step-1 event after
//! the period's end starts nothing (and in `strict` mode breaks nothing); it still counts as a later step
//! when the funnel repeats step 1's event type.

use serde::Serialize;

use super::ReadStore;
use super::compare::{Change, Compare, Comparison, ComparisonSummary};
use super::params::{Params, Range};
use crate::error::{Error, Result};
use crate::event::EventType;

pub const PARAMS: &[&str] = &[
    "steps",
    "period",
    "from",
    "to",
    "timezone",
    "window",
    "by",
    "mode",
    "includeBots",
    "compare",
];
const MAX_WINDOW_SECS: u64 = 90 * 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunnelKey {
    Session,
    Customer,
}

#[derive(Debug, Clone)]
pub struct FunnelQuery {
    pub store_id: String,
    pub steps: Vec<String>,
    pub range: Range,
    pub window_secs: u64,
    pub by: FunnelKey,
    pub strict: bool,
    /// Count events flagged as bots too (`includeBots=true`).
    pub include_bots: bool,
    /// Compare with an earlier range ([`super::compare`]); run by [`run`] as a second query.
    pub compare: Option<Compare>,
}

impl FunnelQuery {
    /// Until when the store reads events, Unix milliseconds: the period's end plus the window and one
    /// second (steps are compared at whole seconds, so an entry at `to − 1 ms` may reach a step at
    /// `⌊to⌋ + window`).
    pub fn entries_until_ms(&self) -> i64 {
        let window_ms = i64::try_from(self.window_secs.saturating_add(1))
            .unwrap_or(i64::MAX / 1000)
            .saturating_mul(1000);
        self.range.to_ms().saturating_add(window_ms)
    }
}

/// From the store: keys reaching each step (index 0 = step 1), and the median seconds from the previous
/// step for steps 2.. (index 0 unused).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunnelCounts {
    pub reached: Vec<u64>,
    pub median_secs: Vec<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunnelStep {
    pub step: String,
    pub count: u64,
    pub conversion_rate: f64,
    pub step_conversion_rate: f64,
    pub drop_off: u64,
    pub median_seconds_to_convert: Option<f64>,
    /// With `compare`: the step in the comparison range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousStep>,
    /// With `compare`: how `count` and `conversionRate` changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<StepChange>,
}

/// A step's figures in the comparison range.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousStep {
    pub count: u64,
    pub conversion_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepChange {
    pub count: Option<Change>,
    pub conversion_rate: Option<Change>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunnelResponse {
    pub period: String,
    pub timezone: String,
    pub window_seconds: u64,
    pub by: &'static str,
    pub mode: &'static str,
    pub steps: Vec<FunnelStep>,
    pub overall_conversion_rate: f64,
    /// With `compare`: the comparison range, its overall conversion rate (`total`) and the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<ComparisonSummary>,
}

fn parse_window(s: &str) -> Result<u64> {
    let bad = || {
        Error::invalid(
            "invalid_parameter",
            "window",
            format!("window must be like 30m, 2h, 1d, 7d or seconds, not {s:?}"),
        )
    };
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        's' => n,
        'm' => n.saturating_mul(60),
        'h' => n.saturating_mul(3600),
        'd' => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    if secs == 0 || secs > MAX_WINDOW_SECS {
        return Err(Error::invalid(
            "invalid_parameter",
            "window",
            "window must be between 1 second and 90 days",
        ));
    }
    Ok(secs)
}

pub fn parse(store_id: &str, query: &str, now: jiff::Timestamp) -> Result<FunnelQuery> {
    let p = Params::parse(query, PARAMS)?;
    let steps: Vec<String> = p
        .require("steps")?
        .split(',')
        .map(|s| s.trim().to_owned())
        .collect();
    if !(2..=10).contains(&steps.len()) {
        return Err(Error::invalid(
            "invalid_parameter",
            "steps",
            "a funnel has 2 to 10 steps",
        ));
    }
    if let Some(bad) = steps.iter().find(|s| EventType::parse(s).is_none()) {
        return Err(Error::invalid(
            "invalid_parameter",
            "steps",
            format!("{bad:?} is not an event type name"),
        ));
    }
    let window_secs = parse_window(p.get("window").unwrap_or("1d"))?;
    let by = match p.get("by").unwrap_or("session") {
        "session" => FunnelKey::Session,
        "customer" => FunnelKey::Customer,
        other => {
            return Err(Error::invalid(
                "invalid_parameter",
                "by",
                format!("by must be session or customer, not {other:?}"),
            ));
        }
    };
    let strict = match p.get("mode").unwrap_or("ordered") {
        "ordered" => false,
        "strict" => true,
        other => {
            return Err(Error::invalid(
                "invalid_parameter",
                "mode",
                format!("mode must be ordered or strict, not {other:?}"),
            ));
        }
    };
    Ok(FunnelQuery {
        store_id: store_id.to_owned(),
        steps,
        range: p.range(now)?,
        window_secs,
        by,
        strict,
        include_bots: p.include_bots()?,
        compare: Compare::from_params(&p)?,
    })
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        ((n as f64 / d as f64) * 10_000.0).round() / 10_000.0
    }
}

/// Runs a funnel; with `compare`, the same funnel over the comparison range runs concurrently and each
/// step gains its `previous` figures and their `change`.
pub async fn run(store: &dyn ReadStore, q: &FunnelQuery) -> Result<FunnelResponse> {
    let Some(compare) = q.compare else {
        return Ok(response(q, store.funnel(q).await?));
    };
    let comparison = Comparison::of(&q.range, compare)?;
    let previous_query = FunnelQuery {
        range: comparison.range.clone(),
        compare: None,
        ..q.clone()
    };
    let (counts, previous) =
        futures_util::future::try_join(store.funnel(q), store.funnel(&previous_query)).await?;
    let mut current = response(q, counts);
    let previous = response(&previous_query, previous);
    for (step, before) in current.steps.iter_mut().zip(&previous.steps) {
        step.change = Some(StepChange {
            count: Change::between(&step.count.into(), &before.count.into()),
            conversion_rate: Change::between(
                &step.conversion_rate.into(),
                &before.conversion_rate.into(),
            ),
        });
        step.previous = Some(PreviousStep {
            count: before.count,
            conversion_rate: before.conversion_rate,
        });
    }
    current.comparison = Some(comparison.summary(
        previous.overall_conversion_rate.into(),
        &current.overall_conversion_rate.into(),
    ));
    Ok(current)
}

fn response(q: &FunnelQuery, counts: FunnelCounts) -> FunnelResponse {
    let first = counts.reached.first().copied().unwrap_or(0);
    let steps: Vec<FunnelStep> = q
        .steps
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let count = counts.reached.get(i).copied().unwrap_or(0);
            let prev = if i == 0 {
                count
            } else {
                counts.reached.get(i - 1).copied().unwrap_or(0)
            };
            FunnelStep {
                step: name.clone(),
                count,
                conversion_rate: ratio(count, first),
                step_conversion_rate: ratio(count, prev),
                drop_off: prev.saturating_sub(count),
                median_seconds_to_convert: if i == 0 {
                    None
                } else {
                    counts.median_secs.get(i).copied().flatten()
                },
                previous: None,
                change: None,
            }
        })
        .collect();
    let last = steps.last().map_or(0, |s| s.count);
    FunnelResponse {
        period: q.range.label.clone(),
        timezone: q.range.tz_name.clone(),
        window_seconds: q.window_secs,
        by: match q.by {
            FunnelKey::Session => "session",
            FunnelKey::Customer => "customer",
        },
        mode: if q.strict { "strict" } else { "ordered" },
        overall_conversion_rate: ratio(last, first),
        steps,
        comparison: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_units_and_are_bounded() {
        for (s, secs) in [
            ("30m", 1800),
            ("2h", 7200),
            ("1d", 86_400),
            ("7d", 604_800),
            ("90", 90),
        ] {
            assert_eq!(parse_window(s).expect(s), secs);
        }
        for bad in ["", "0", "1y", "91d", "abc", "-1d"] {
            assert_eq!(
                parse_window(bad).expect_err(bad).field(),
                Some("window"),
                "{bad}"
            );
        }
    }

    #[test]
    fn funnel_parameters_are_validated_by_name() {
        let now: jiff::Timestamp = "2025-02-01T00:00:00Z".parse().expect("ts");
        for (q, field) in [
            ("steps=page.viewed", "steps"),
            ("steps=page.viewed,Nope", "steps"),
            ("steps=a.b,c.d&by=device", "by"),
            ("steps=a.b,c.d&mode=loose", "mode"),
            ("steps=a.b,c.d&windw=1d", "windw"),
            ("period=7d", "steps"),
        ] {
            let err = parse("s", q, now).expect_err(q);
            assert_eq!((err.status(), err.field()), (400, Some(field)), "{q}");
        }
        let eleven = (0..11)
            .map(|i| format!("a.s{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            parse("s", &format!("steps={eleven}"), now)
                .expect_err("11")
                .field(),
            Some("steps")
        );
    }
}
