//! One row per session of a read's range: what a session entered with (its first source, campaign,
//! referrer site, landing page) and whether it saw a single page, for the reads that rank or group
//! sessions by it (traffic sources, campaigns, landing pages, referrers, and breakdowns of any metric by
//! them).
//!
//! Two sources give the same rows. The raw events, grouped by session (`argMinIf` by time for each first
//! value), answer every read. The session rollup (`commerce_sessions`, whose rows keep each first value
//! with its time, see [`SessionFirst`]) answers reads of humans without a filter on what sessions are
//! (source, landing page, referrer: those filters are computed from these very rows) whose range holds a
//! whole UTC hour: the rollup's rows of the whole hours and the raw events of the partial hours at either
//! end are grouped again by session, and each first value is the value of its earliest pair. A session's
//! rows in the rollup hold exactly its events of those hours, so the result is the raw source's, for any
//! zone (no bucket is computed here) — at 100M events over 30 days, 1.1M rollup rows instead of 8.4M
//! events (see the README's performance section).

use super::{base_filter, session_rollup_edges, session_rollup_rows};
use crate::query::params::{Filters, Range};
use crate::store::clickhouse::migrations::{NO_VIEW, PAGE, SessionFirst};

/// What the rows carry: `key`, an expression over `f0`, `f1`, … (the session's values of `firsts`, in
/// that order); with `pages`, also `single_page` (it saw exactly one distinct page path: a bounce).
///
/// From the rollup, `single_page` compares hashes, not paths: each row's smallest and largest path
/// (`page_min`, `page_max`) become the least and greatest of their `cityHash64`, and a session saw one
/// page when the least over its rows equals the greatest. Grouping by session then keeps two numbers
/// instead of two strings (at 100M events over 30 days, landing pages 0.86× the time). Two different
/// paths of one session would have to share a 64-bit hash to be taken for one, as two sessions would
/// to be taken for one by `session_hash`.
///
/// `holders_only`: only the rows and events that hold one of `firsts` are read, so the sessions
/// without any are not grouped at all (at 100M events over 30 days, 38% of the session rows hold a
/// campaign, 52% a referrer). For a caller whose `key` is `''` for such a session and that treats it as
/// having no value (a ranked read drops it or counts it apart, a breakdown's left join gives `''`
/// anyway); never with `pages` (a session's pages are on rows without the value too).
#[derive(Debug, Clone, Copy)]
pub(super) struct PerSession<'a> {
    pub firsts: &'a [SessionFirst],
    pub key: &'a str,
    pub pages: bool,
    pub holders_only: bool,
    /// How many of `firsts`, from the first, `key` reads in precedence: each only when those before it
    /// are empty (a session's source: its first `utm_source`, else its first referrer's site); 0 for
    /// none. From the rollup, each session then keeps one pair for them, the earliest value of the first
    /// kind it holds ([`precedence_pairs`]), instead of one per kind: `f{i}` is that value for its kind
    /// and `''` for the others, which is all such a `key` reads. The rows (from either source) also
    /// carry that kind's position as `kind` (`precedence` when the session holds none) and its value as
    /// `pv` (`''` then), so that `key` can be the pair `(kind, pv)`: no string is built per session (see
    /// [`super::ranked`]'s traffic sources). The firsts after them are read each on its own, as `f{i}`.
    pub precedence: usize,
    /// A subquery whose `sh` column names the only sessions to read: the rows and events of the
    /// others are not grouped at all. For a read that joins the values to the rows of a few sessions
    /// (a breakdown of orders): the grouping and the join's table then hold those sessions alone.
    pub only: Option<&'a str>,
}

/// The whole UTC hours of `range` (Unix milliseconds) that the session rollup answers for a read of
/// humans (`include_bots` false) without a filter on what sessions are; `None` when it cannot answer.
pub(super) fn rollup_hours(
    range: &Range,
    include_bots: bool,
    filters: &Filters,
) -> Option<(i64, i64)> {
    if include_bots || filters.on_sessions() {
        return None;
    }
    let (from, to) = whole_hours(range);
    (from < to).then_some((from, to))
}

/// `[from, to)` of `range` shrunk to whole UTC hours, in milliseconds: what an hourly rollup can answer.
pub(super) fn whole_hours(range: &Range) -> (i64, i64) {
    whole_hours_of(range.from_ms(), range.to_ms())
}

/// Which of the partial hours at either end of a range hold time: the raw events read beside an hourly
/// rollup's rows of the whole hours (`{rfrom}`, `{rto}`: [`whole_hours_of`] the same range).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Edges {
    /// The range starts within an hour: `[from, rfrom)` holds time.
    pub first: bool,
    /// The range ends within an hour: `[rto, to)` holds time.
    pub last: bool,
}

impl Edges {
    /// The edges of `[from, to)` (Unix milliseconds).
    pub(super) fn of(from: i64, to: i64) -> Self {
        let (whole_from, whole_to) = whole_hours_of(from, to);
        Self {
            first: from < whole_from,
            last: whole_to < to,
        }
    }

    pub(super) fn of_range(range: &Range) -> Self {
        Self::of(range.from_ms(), range.to_ms())
    }

    /// The condition on `timestamp` that keeps the events of the edges that hold time (`0` when
    /// neither does), for a read already bounded by its range. An edge without time is left out of
    /// the text, not only empty: the sort key knows the day of a `timestamp`, not its hour, so
    /// `timestamp < {rfrom}` at a range starting at midnight read that whole first day's events to
    /// keep none (at 100M events, 442,000 rows and 11 ms of a read over 30 days; 0 rows and 3 ms
    /// without it).
    pub(super) fn condition(self) -> &'static str {
        match (self.first, self.last) {
            (true, true) => {
                "(timestamp < fromUnixTimestamp64Milli({rfrom:Int64}) \
                 OR timestamp >= fromUnixTimestamp64Milli({rto:Int64}))"
            }
            (true, false) => "timestamp < fromUnixTimestamp64Milli({rfrom:Int64})",
            (false, true) => "timestamp >= fromUnixTimestamp64Milli({rto:Int64})",
            (false, false) => "0",
        }
    }
}

/// `[from, to)` (Unix milliseconds) shrunk to whole UTC hours.
pub(super) fn whole_hours_of(from: i64, to: i64) -> (i64, i64) {
    const HOUR: i64 = 3_600_000;
    (
        from.div_euclid(HOUR) * HOUR + if from.rem_euclid(HOUR) == 0 { 0 } else { HOUR },
        to.div_euclid(HOUR) * HOUR,
    )
}

/// `first`'s value over the raw events of one session: the value of its earliest event that has one
/// (`argMinIf` by time), as the rollup's pair keeps it.
pub(super) fn first_raw(first: SessionFirst) -> String {
    format!("argMinIf({}, timestamp, {})", first.raw, first.present)
}

/// The rows (`sh`, `f0`…, `key`, and the pages' columns), sessions whose `key` is `''` left out when
/// `skip_empty`. From the rollup when `rollup` gives the range's [`Edges`] (the read binds
/// `{rfrom}`/`{rto}` to [`rollup_hours`]), else from the raw events; `filters` as [`base_filter`]
/// reads them.
pub(super) fn per_session(
    what: PerSession<'_>,
    filters: &Filters,
    rollup: Option<Edges>,
    skip_empty: bool,
) -> String {
    let key = what.key;
    let having = if skip_empty { " HAVING key != ''" } else { "" };
    debug_assert!(
        !(what.holders_only && what.pages),
        "pages are on rows without the values too"
    );
    // The conditions on the rollup's rows and on the raw events of which sessions are read.
    let (mut rows_kept, mut events_kept) = if what.holders_only {
        let any = |held: &dyn Fn(&SessionFirst) -> String| {
            let held: Vec<String> = what.firsts.iter().map(held).collect();
            format!(" AND ({})", held.join(" OR "))
        };
        (
            any(&|f| format!("{}.at < {NO_VIEW}", f.column)),
            any(&|f| f.present.to_owned()),
        )
    } else {
        (String::new(), String::new())
    };
    if let Some(only) = what.only {
        let (rows, events) = only_sessions(only);
        rows_kept.push_str(&rows);
        events_kept.push_str(&events);
    }
    let Some(edges) = rollup else {
        let firsts: String = what
            .firsts
            .iter()
            .enumerate()
            .map(|(i, f)| format!("{} AS f{i}, ", first_raw(*f)))
            .collect();
        let pages = if what.pages {
            format!(
                ", countIf({PAGE} != '') > 0 \
                   AND minIf({PAGE}, {PAGE} != '') = maxIf({PAGE}, {PAGE} != '') AS single_page"
            )
        } else {
            String::new()
        };
        let kind = if what.precedence > 0 {
            precedence_of_firsts(what.precedence)
        } else {
            String::new()
        };
        return format!(
            "SELECT cityHash64(session_id) AS sh, {firsts}{kind}{key} AS key{pages} \
             FROM commerce_events WHERE {} AND session_id != ''{events_kept} GROUP BY sh{having}",
            base_filter(filters)
        );
    };
    let FirstPairs {
        rollup: mut from_rollup,
        events: mut from_edges,
        firsts,
    } = if what.precedence > 0 {
        let (ordered, apart) = what.firsts.split_at(what.precedence);
        precedence_pairs(ordered).and(first_pairs_from(apart, what.precedence))
    } else {
        first_pairs(what.firsts)
    };
    let pages = if what.pages {
        // A row without a page has a NULL `page_min` and an empty `page_max`: NULL hashes, which
        // `min` and `max` skip.
        from_rollup.push_str(
            ", least(cityHash64(page_min), if(page_max != '', cityHash64(page_max), NULL)) AS plo, \
             greatest(cityHash64(page_min), if(page_max != '', cityHash64(page_max), NULL)) AS phi",
        );
        from_edges.push_str(&format!(
            ", if({PAGE} != '', cityHash64({PAGE}), NULL) AS plo, plo AS phi"
        ));
        ", max(phi) IS NOT NULL AND min(plo) = max(phi) AS single_page"
    } else {
        ""
    };
    format!(
        "SELECT sh, {firsts}, {key} AS key{pages} FROM ( \
           SELECT session_hash AS sh{from_rollup} FROM commerce_sessions WHERE {}{rows_kept} \
           UNION ALL \
           SELECT cityHash64(session_id) AS sh{from_edges} FROM commerce_events WHERE {}{events_kept}) \
         GROUP BY sh{having}",
        session_rollup_rows(filters),
        session_rollup_edges(filters, edges)
    )
}

/// The conditions that keep the session rollup's rows and the raw events of the sessions `only` names
/// (a subquery with an `sh` column), each with its leading ` AND `. `GLOBAL IN`: on a cluster the
/// subquery runs once, on the node that received the read, and its result goes to every shard; on one
/// server it is an ordinary `IN`.
pub(super) fn only_sessions(only: &str) -> (String, String) {
    (
        format!(" AND session_hash GLOBAL IN (SELECT sh FROM ({only}))"),
        format!(" AND cityHash64(session_id) GLOBAL IN (SELECT sh FROM ({only}))"),
    )
}

/// The columns that carry each of some [`SessionFirst`]s through a union of the session rollup's rows and
/// the raw events, and the session's value of each after grouping.
pub(super) struct FirstPairs {
    /// `, t{i}, v{i}` for each (leading comma): the rollup row's earliest pair (time and value).
    pub rollup: String,
    /// The same columns from one raw event: its time and value when it holds the value, else
    /// `NO_VIEW` and `''`, which no held value's pair precedes.
    pub events: String,
    /// `f{i}` = the value of the earliest pair, for each, joined by `, ` (aggregates over the union).
    pub firsts: String,
}

impl FirstPairs {
    /// These columns and then `more`'s (numbered after these).
    fn and(self, more: FirstPairs) -> FirstPairs {
        let firsts = match (self.firsts.is_empty(), more.firsts.is_empty()) {
            (_, true) => self.firsts,
            (true, false) => more.firsts,
            (false, false) => format!("{}, {}", self.firsts, more.firsts),
        };
        FirstPairs {
            rollup: self.rollup + &more.rollup,
            events: self.events + &more.events,
            firsts,
        }
    }
}

/// [`FirstPairs`] for `firsts`, numbered in their order.
pub(super) fn first_pairs(firsts: &[SessionFirst]) -> FirstPairs {
    first_pairs_from(firsts, 0)
}

/// [`FirstPairs`] for `firsts`, numbered in their order from `start`.
fn first_pairs_from(firsts: &[SessionFirst], start: usize) -> FirstPairs {
    let mut pairs = FirstPairs {
        rollup: String::new(),
        events: String::new(),
        firsts: String::new(),
    };
    for (i, f) in (start..).zip(firsts) {
        pairs
            .rollup
            .push_str(&format!(", {0}.at AS t{i}, {0}.value AS v{i}", f.column));
        pairs.events.push_str(&format!(
            ", if({p}, timestamp, {NO_VIEW}) AS t{i}, if({p}, {raw}, '') AS v{i}",
            p = f.present,
            raw = f.raw
        ));
        if i > start {
            pairs.firsts.push_str(", ");
        }
        pairs
            .firsts
            .push_str(&format!("argMin(v{i}, t{i}) AS f{i}"));
    }
    pairs
}

/// The kinds of [`precedence_pairs`] are this far apart in its order, which is `kind × KIND + the time
/// in Unix milliseconds`: every stored time (1970 to `NO_VIEW`, 2299, 10.4e12 ms) is less than it.
const KIND: i64 = 1 << 50;

/// [`FirstPairs`] for a `key` that reads `firsts` in precedence (see [`PerSession::precedence`]): each
/// rollup row and raw event carries one pair instead of one per kind, `po_` = `kind × KIND + time` of
/// its earliest value of the first kind it holds (`firsts.len() × KIND` when none) and `pv_` that value,
/// and each session keeps the value of its least `po_` (one `argMin` of a string per session instead of
/// one per kind, and half the columns through the union). `f{i}` is the value when its kind is `i`,
/// else `''`. Measured in the README (*Reading less per session*).
pub(super) fn precedence_pairs(firsts: &[SessionFirst]) -> FirstPairs {
    // Nested `if`s, innermost last: measured faster than one `multiIf` per row. The last kind's value
    // needs no test: a pair that is not held has `''`.
    let nested = |held: &dyn Fn(usize) -> String,
                  order: &dyn Fn(usize) -> String,
                  value: &dyn Fn(usize) -> String| {
        let last = firsts.len().saturating_sub(1);
        let mut o = format!("{}", firsts.len() as i64 * KIND);
        let mut v = value(last);
        for i in (0..firsts.len()).rev() {
            let at = match i {
                0 => order(i),
                _ => format!("{} + {}", i as i64 * KIND, order(i)),
            };
            o = format!("if({}, {at}, {o})", held(i));
            if i < last {
                v = format!("if({}, {}, {v})", held(i), value(i));
            }
        }
        format!(", {o} AS po_, {v} AS pv_")
    };
    let rollup = nested(
        &|i| format!("{}.at < {NO_VIEW}", firsts[i].column),
        &|i| format!("toUnixTimestamp64Milli({}.at)", firsts[i].column),
        &|i| format!("{}.value", firsts[i].column),
    );
    let events = nested(
        &|i| firsts[i].present.to_owned(),
        &|_| "toUnixTimestamp64Milli(timestamp)".to_owned(),
        &|i| {
            if i + 1 == firsts.len() {
                // Not held is `''` here too.
                format!("if({}, {}, '')", firsts[i].present, firsts[i].raw)
            } else {
                firsts[i].raw.to_owned()
            }
        },
    );
    let values: Vec<String> = (0..firsts.len())
        .map(|i| format!("if(kind = {i}, pv, '') AS f{i}"))
        .collect();
    FirstPairs {
        rollup,
        events,
        firsts: format!(
            "argMin(pv_, po_) AS pv, intDiv(min(po_), {KIND}) AS kind, {}",
            values.join(", ")
        ),
    }
}

/// `kind` and `pv` (see [`PerSession::precedence`]) over `f0` … `f{n-1}` computed apart, as select
/// items ending in `, `: the first non-empty one's position and value, else `n` and `''`.
fn precedence_of_firsts(n: usize) -> String {
    let arms = |value: &dyn Fn(usize) -> String| {
        (0..n)
            .map(|i| format!("f{i} != '', {}, ", value(i)))
            .collect::<String>()
    };
    format!(
        "multiIf({}{n}) AS kind, multiIf({}'') AS pv, ",
        arms(&|i| i.to_string()),
        arms(&|i| format!("f{i}"))
    )
}

#[cfg(test)]
mod tests {
    use super::Edges;
    use crate::store::clickhouse::migrations::{NO_FIRST, SESSION_FIRSTS, SESSIONS_ROLLUP};

    #[test]
    fn only_the_edges_that_hold_time_are_read_from_the_raw_events() {
        const H: i64 = 3_600_000;
        let day = 20_000 * 24 * H;
        for (from, to, first, last, condition) in [
            (
                day,
                day + 30 * 24 * H + 1_234,
                false,
                true,
                "timestamp >= fromUnixTimestamp64Milli({rto:Int64})",
            ),
            (
                day - H / 2,
                day + 24 * H,
                true,
                false,
                "timestamp < fromUnixTimestamp64Milli({rfrom:Int64})",
            ),
            (day + 1, day + 5 * H + 1, true, true, "OR"),
            (day, day + 24 * H, false, false, "0"),
        ] {
            let edges = Edges::of(from, to);
            assert_eq!((edges.first, edges.last), (first, last), "{from}..{to}");
            assert!(
                edges.condition().contains(condition),
                "{from}..{to}: {}",
                edges.condition()
            );
        }
    }

    #[test]
    fn every_first_value_is_written_by_the_rollup_as_the_raw_reads_compute_it() {
        for f in SESSION_FIRSTS {
            let written = format!(
                "min(if({}, (timestamp, {}), {})) AS {}",
                f.present, f.raw, NO_FIRST, f.column
            );
            assert!(
                SESSIONS_ROLLUP.contains(&written),
                "{written} is not in the rollup's view"
            );
        }
    }
}
