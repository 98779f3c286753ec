//! Time-series metrics: one source row per order, session, visitor or event (`ts` plus what the measures
//! read), aggregated per bucket and over the range into the facts of the metric's family.
//!
//! `visitors` and `product_views` read the hourly rollups (`commerce_visitors`, `commerce_hourly_counts`)
//! when the range allows it (see [`rollup_source`]), `sessions` and `conversion_rate` the session rollup
//! (`commerce_sessions`, see [`session_rollup_source`]); every other metric reads the raw events.

use serde::Deserialize;

use super::sessions::{Edges, PerSession, first_pairs, only_sessions, per_session, whole_hours};
use super::{
    Binds, IN_CURRENCY, Sql, base_filter, customers_with_first_order, each_order,
    session_rollup_edges, session_rollup_rows,
};
use crate::error::StoreError;
use crate::query::breakdown::{Dimension, GroupFacts, GroupKey, Groups};
use crate::query::metrics::{BucketFacts, Metric, MetricFacts, MetricQuery};
use crate::query::params::Granularity;
use crate::store::clickhouse::ClickHouseStore;
use crate::store::clickhouse::migrations::{
    FIRST_CAMPAIGN, FIRST_PAGE, FIRST_REFERRER, NO_VIEW, SessionFirst,
};

/// The SQL aggregates that measure each fact of a metric's family, over the source's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Measures {
    Count {
        count: &'static str,
    },
    Amount {
        amount: &'static str,
    },
    Money {
        amount: &'static str,
        orders: &'static str,
    },
    Rate {
        numerator: &'static str,
        denominator: &'static str,
    },
    PerCustomer {
        amount: &'static str,
        customers: &'static str,
    },
}

/// A result row: the bucket (or the range's total when `t` is 1) and the family's facts as columns `x`
/// and `y` (see [`Measures::columns`], read back by `Family::facts`).
#[derive(Debug, Deserialize, clickhouse::Row)]
struct FactsRow {
    b: i64,
    t: u8,
    x: i64,
    y: i64,
}

impl Measures {
    /// `x` and `y` select clauses; [`Measures::facts`] reads them back by the same names.
    fn columns(self) -> String {
        let (x, y) = match self {
            Self::Count { count } => (count, "0"),
            Self::Amount { amount } => (amount, "0"),
            Self::Money { amount, orders } => (amount, orders),
            Self::Rate {
                numerator,
                denominator,
            } => (numerator, denominator),
            Self::PerCustomer { amount, customers } => (amount, customers),
        };
        format!("toInt64({x}) AS x, toInt64({y}) AS y")
    }
}

/// A metric's per-row source (columns `ts` plus what the measures read) and its measures.
#[derive(Debug, Clone, PartialEq)]
struct MetricSource {
    source: String,
    measures: Measures,
    /// Set when the source reads the hourly rollup: the whole UTC hours it covers.
    rollup_hours: Option<(i64, i64)>,
    /// Set when the metric is the number of distinct values of this expression of the source's rows
    /// (`visitors`), which [`sql`] may then count by grouping each value once ([`BucketBits`]).
    distinct: Option<&'static str>,
}

/// A metric's query, with its binds: one row per bucket and one for the whole range (`t` = 1), from one
/// pass over the source (`GROUPING SETS`; the total merges the same aggregate states, so distinct counts
/// stay distinct over the range). One query instead of a bucketed and a total one halves the reads of a
/// source that groups sessions or orders.
pub(super) fn sql(q: &MetricQuery) -> (Sql, Measures) {
    let MetricSource {
        source,
        measures,
        rollup_hours,
        distinct,
    } = rollup_source(q)
        .or_else(|| session_rollup_source(q, &[]))
        .unwrap_or_else(|| raw_source(q, None));
    let columns = measures.columns();
    let binds = Binds {
        currency: q.currency.clone(),
        product: q.product_id.clone(),
        rollup_hours,
        ..Binds::of_read(&q.store_id, &q.range, q.include_bots, &q.filters)
    };
    let text = match (distinct, BucketBits::of(&q.range)) {
        (Some(key), Some(bits)) => bits.sql(&source, key),
        _ => format!(
            "SELECT {} AS b, toUInt8(grouping(b)) AS t, {columns} FROM ({source}) \
             GROUP BY GROUPING SETS ((b), ()) ORDER BY t, b",
            bucket_expr(q.range.granularity)
        ),
    };
    (Sql { text, binds }, measures)
}

/// A range's buckets as the bits of one number, for a distinct count over more than a month: each
/// value (a visitor) is grouped once with the buckets it was seen in as bits (`groupBitOr`), and each
/// bucket counts the values with its bit, the range the values. Counting distinct values per bucket and
/// over the range (`uniqExact` in `GROUPING SETS`) inserts every row into two hash sets, the range's
/// one as large as the values: on the 100M-event store over 12 months by month (10.4M visitor rows, 7.5M
/// visitors) the query took 0.45-0.54x its time at 0.46x its memory, by week 0.61x; over 30 days by day
/// (most visitors seen on one day) it was 0.92x at 100M but 1.33x at 10M, so ranges of a month or less
/// keep the sets.
///
/// The values are then counted per set of bits before the bits are: most visitors share one of a few
/// thousand sets (seen in one month, in two consecutive ones, …), so the per-bucket counts expand those
/// sets instead of every visitor (at 100M events, through the API against expanding each visitor's bits:
/// 12 months by month 290 against 330 ms, 90 days by week 112 against 122, 12 months by week the same).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct BucketBits {
    /// ClickHouse's number of the bucket a time is in, counted from a fixed day in the past, in the
    /// range's zone (`toRelativeDayNum` and so on): a row's bit is its bucket's number less the first's.
    pub(super) number: &'static str,
    /// The buckets' starts, Unix seconds, the first holding the range's start.
    pub(super) starts: Vec<i64>,
}

impl BucketBits {
    /// Longest range whose distinct counts keep their hash sets.
    const SETS_UP_TO_DAYS: i64 = 31;

    /// `None` for a range of a month or less, hourly buckets (an hour's number in a zone with DST is
    /// not its bucket's) or more buckets than the bits of a `UInt64`.
    pub(super) fn of(range: &crate::query::params::Range) -> Option<Self> {
        if range.to_ms() - range.from_ms() <= Self::SETS_UP_TO_DAYS * 86_400_000 {
            return None;
        }
        let number = match range.granularity {
            Granularity::Hour => return None,
            Granularity::Day => "toRelativeDayNum",
            Granularity::Week => "toRelativeWeekNum",
            Granularity::Month => "toRelativeMonthNum",
        };
        let starts: Vec<i64> = range
            .buckets()
            .ok()?
            .iter()
            .map(|z| z.timestamp().as_second())
            .collect();
        (starts.len() <= 64).then_some(Self { number, starts })
    }

    /// The metric's rows (`b`, `t`, `x`, `y` as [`sql`] answers them) counting the distinct `key`s of
    /// `source`'s rows: bit 255 stands for the range.
    fn sql(&self, source: &str, key: &str) -> String {
        let number = self.number;
        let starts = self
            .starts
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "SELECT if(pos = 255, toInt64(0), [{starts}][pos + 1]) AS b, toUInt8(pos = 255) AS t, \
               toInt64(sum(n)) AS x, toInt64(0) AS y \
             FROM ( \
               SELECT m, count() AS n FROM ( \
                 SELECT {key} AS dk, groupBitOr(bitShiftLeft(toUInt64(1), \
                   {number}(ts, {{tz:String}}) - {number}(fromUnixTimestamp64Milli({{from:Int64}}), {{tz:String}}))) AS m \
                 FROM ({source}) GROUP BY dk) \
               GROUP BY m) \
             ARRAY JOIN arrayPushBack(bitPositionsToArray(m), 255) AS pos \
             GROUP BY pos ORDER BY t, b"
        )
    }
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &MetricQuery,
) -> Result<MetricFacts, StoreError> {
    let (sql, _) = sql(q);
    let family = q.metric.family();
    let rows = sql.fetch_all::<FactsRow>(store, q.metric.name()).await?;
    Ok(MetricFacts {
        buckets: rows
            .iter()
            .filter(|r| r.t == 0)
            .map(|r| BucketFacts {
                start: r.b,
                facts: family.facts(r.x, r.y),
            })
            .collect(),
        total: rows
            .iter()
            .find(|r| r.t == 1)
            .map_or_else(|| family.zero(), |r| family.facts(r.x, r.y)),
    })
}

/// A breakdown's result row: the group (`k`, or the rest when `o` is 1), the bucket (or the group's total
/// when `t` is 1) and the facts.
#[derive(Debug, Deserialize, clickhouse::Row)]
struct GroupRow {
    o: u8,
    k: String,
    b: i64,
    t: u8,
    x: i64,
    y: i64,
}

/// The session's value of `by` (every dimension but `product`), over the rows of one session.
fn session_value(by: Dimension) -> String {
    use super::ranked::{first_in_session, session_source};
    use super::sessions::first_raw;
    match by {
        Dimension::Country => first_in_session("country"),
        Dimension::Device => first_in_session("device"),
        Dimension::Browser => first_in_session("browser"),
        Dimension::Os => first_in_session("os"),
        Dimension::Source => session_source(),
        Dimension::Medium => first_in_session("utm_medium"),
        Dimension::Campaign => first_raw(FIRST_CAMPAIGN),
        Dimension::LandingPage => first_raw(FIRST_PAGE),
        Dimension::ReferrerDomain => first_raw(FIRST_REFERRER),
        Dimension::Product => "''".into(),
    }
}

/// The first values a session's value of `by` is made of, and the expression over them (`f0`, `f1`, see
/// [`PerSession`]), for the dimensions the session rollup keeps.
fn session_firsts(by: Dimension) -> Option<(&'static [SessionFirst], String)> {
    use super::ranked::{SOURCE_FIRSTS, source_of_firsts};
    match by {
        Dimension::Source => Some((&SOURCE_FIRSTS, source_of_firsts())),
        Dimension::Campaign => Some((&[FIRST_CAMPAIGN], "f0".into())),
        Dimension::LandingPage => Some((&[FIRST_PAGE], "f0".into())),
        Dimension::ReferrerDomain => Some((&[FIRST_REFERRER], "f0".into())),
        _ => None,
    }
}

/// The session rollup's own column for `by`: the dimensions whose session values it keeps on every row.
fn rollup_column(by: Dimension) -> Option<&'static str> {
    match by {
        Dimension::Country => Some("country"),
        Dimension::Device => Some("device"),
        Dimension::Browser => Some("browser"),
        _ => None,
    }
}

/// A broken-down metric's query: per group (`t` = 1) and, but for [`Groups::AllTotals`], per group and
/// bucket (`t` = 0), in one pass (`GROUPING SETS`). The source's rows get their group `g`: their own
/// product, or their session's value (a left join on the session's hash: rows without a session get
/// `''`). [`Groups::Top`] keeps its values apart (`{keep:Array(String)}`) and folds the rest into `o = 1`.
pub(super) fn group_sql(q: &MetricQuery, by: Dimension, groups: Groups<'_>) -> Sql {
    let MetricSource {
        source,
        measures,
        rollup_hours,
        ..
    } = session_rollup_source(q, &[by]).unwrap_or_else(|| raw_source(q, Some(by)));
    // The sessions' values from the session rollup when it keeps them and can answer, else from the
    // raw events.
    let values_rollup = (session_firsts(by).is_some() || rollup_column(by).is_some())
        .then(|| super::sessions::rollup_hours(&q.range, q.include_bots, &q.filters))
        .flatten()
        .filter(|_| !carries_group(q.metric, by));
    let rows = if carries_group(q.metric, by) {
        source
    } else {
        // Orders are the rows of a few sessions (at 100M events over 30 days, 14k of the range's 1.0M):
        // only theirs are grouped for their values. Grouping every session and joining the orders to
        // them built a table of every session for the join (175 MiB; over 12 months 1.45 GiB), and as
        // the end of a period moves with every request, ClickHouse never had that join's size cached
        // (`collect_hash_table_stats_during_joins`): revenue by source 181 ms against 60 with the
        // same end twice, 75 ms restricted. The other sources (every session with a product view,
        // visitors, product views) are rows of most sessions, so restricting them gains nothing.
        let only = order_rows(q.metric).then_some(source.as_str());
        let (only_rows, only_events) = only.map(only_sessions).unwrap_or_default();
        let values = match session_firsts(by) {
            Some((firsts, key)) => format!(
                "SELECT sh, key AS g FROM ({})",
                per_session(
                    PerSession {
                        firsts,
                        key: &key,
                        pages: false,
                        // A session without the value joins as `''` either way; not for the source,
                        // whose sessions without one are `direct`.
                        holders_only: by != Dimension::Source,
                        // Not for the source: one pair per session (what traffic sources read) made
                        // this join's side slower over 30 days (100M: 66–67 against 60–64 ms; 10M: 30–32
                        // against 26–27), as fast over 12 months.
                        precedence: 0,
                        only,
                    },
                    &q.filters,
                    values_rollup.map(|_| Edges::of_range(&q.range)),
                    false,
                )
            ),
            // A country, device or browser: a session's first non-empty one over the rollup's rows of
            // the whole hours (all the events of a row share the row's value, and its `start` is the
            // earliest of them) and the edges' events, as `session_rollup_source` computes it.
            None => match rollup_column(by).filter(|_| values_rollup.is_some()) {
                Some(column) => format!(
                    "SELECT sh, argMinIf(gv, at, gv != '') AS g FROM ( \
                       SELECT session_hash AS sh, start AS at, CAST({column}, 'String') AS gv \
                       FROM commerce_sessions WHERE {}{only_rows} \
                       UNION ALL \
                       SELECT cityHash64(session_id) AS sh, timestamp AS at, CAST({column}, 'String') AS gv \
                       FROM commerce_events WHERE {}{only_events}) \
                     GROUP BY sh",
                    session_rollup_rows(&q.filters),
                    session_rollup_edges(&q.filters, Edges::of_range(&q.range))
                ),
                None => format!(
                    "SELECT cityHash64(session_id) AS sh, {} AS g FROM commerce_events \
                     WHERE {} AND session_id != ''{only_events} GROUP BY sh",
                    session_value(by),
                    base_filter(&q.filters)
                ),
            },
        };
        format!("SELECT * FROM ({source}) AS src LEFT JOIN ({values}) AS sd USING sh")
    };
    let key = match groups {
        Groups::All | Groups::AllTotals => "toUInt8(0) AS o, g AS k",
        Groups::Top(_) => "toUInt8(NOT has({keep:Array(String)}, g)) AS o, if(o = 1, '', g) AS k",
    };
    let columns = measures.columns();
    let binds = Binds {
        currency: q.currency.clone(),
        product: q.product_id.clone(),
        keep: match groups {
            Groups::All | Groups::AllTotals => None,
            Groups::Top(keep) => Some(keep.to_vec()),
        },
        // Both are the range's whole hours when both are set.
        rollup_hours: rollup_hours.or(values_rollup),
        ..Binds::of_read(&q.store_id, &q.range, q.include_bots, &q.filters)
    };
    let text = match groups {
        Groups::AllTotals => format!(
            "SELECT {key}, toInt64(0) AS b, toUInt8(1) AS t, {columns} FROM ({rows}) \
             GROUP BY o, k ORDER BY o, k"
        ),
        Groups::All | Groups::Top(_) => format!(
            "SELECT {key}, {} AS b, toUInt8(grouping(b)) AS t, {columns} FROM ({rows}) \
             GROUP BY GROUPING SETS ((o, k, b), (o, k)) ORDER BY t, o, k, b",
            bucket_expr(q.range.granularity)
        ),
    };
    Sql { text, binds }
}

pub(super) async fn fetch_groups(
    store: &ClickHouseStore,
    q: &MetricQuery,
    by: Dimension,
    groups: Groups<'_>,
) -> Result<Vec<GroupFacts>, StoreError> {
    let family = q.metric.family();
    let key = |r: &GroupRow| {
        if r.o == 1 {
            GroupKey::Other
        } else {
            GroupKey::Value(r.k.clone())
        }
    };
    let rows = group_sql(q, by, groups)
        .fetch_all::<GroupRow>(store, q.metric.name())
        .await?;
    let (totals, rows): (Vec<&GroupRow>, Vec<&GroupRow>) = rows.iter().partition(|r| r.t == 1);
    let mut out: Vec<GroupFacts> = totals
        .iter()
        .map(|t| GroupFacts {
            key: key(t),
            buckets: Vec::new(),
            total: family.facts(t.x, t.y),
        })
        .collect();
    for r in rows {
        let k = key(r);
        if let Some(g) = out.iter_mut().find(|g| g.key == k) {
            g.buckets.push(BucketFacts {
                start: r.b,
                facts: family.facts(r.x, r.y),
            });
        }
    }
    Ok(out)
}

/// Unix seconds of the bucket start of `ts` in the zone parameter `{tz:String}`.
pub(super) fn bucket_expr(g: Granularity) -> &'static str {
    match g {
        Granularity::Hour => "toInt64(toUnixTimestamp(toStartOfHour(ts, {tz:String})))",
        Granularity::Day => {
            "toInt64(toUnixTimestamp(toDateTime(toDate(ts, {tz:String}), {tz:String})))"
        }
        Granularity::Week => {
            "toInt64(toUnixTimestamp(toDateTime(toMonday(ts, {tz:String}), {tz:String})))"
        }
        Granularity::Month => {
            "toInt64(toUnixTimestamp(toDateTime(toStartOfMonth(ts, {tz:String}), {tz:String})))"
        }
    }
}

/// ` AND product_id = {product:String}` when the query filters one product.
fn product_filter(q: &MetricQuery) -> &'static str {
    if q.product_id.is_some() {
        " AND product_id = {product:String}"
    } else {
        ""
    }
}

/// What a broken-down source's rows carry besides their measures: the hash of their session (`sh`, joined
/// to the session's value of the dimension), or for `product` the row's own product (`g`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    /// One row per event.
    Event,
    /// One row per order (grouped by `order_id`).
    Order,
    /// One row per session (grouped by the session's hash).
    Session,
    /// One row per session over all its events in the range: its value is computed in place (`g`), no
    /// join needed.
    WholeSession,
}

fn by_column(by: Option<Dimension>, kind: RowKind) -> String {
    match (by, kind) {
        (None, _) => String::new(),
        (Some(Dimension::Product), _) => ", product_id AS g".into(),
        (Some(d), RowKind::WholeSession) => format!(", {} AS g", session_value(d)),
        (Some(_), RowKind::Order) => ", any(cityHash64(session_id)) AS sh".into(),
        (Some(_), RowKind::Event | RowKind::Session) => ", cityHash64(session_id) AS sh".into(),
    }
}

/// Whether the metric's rows are orders (one row per order, with its session's hash when broken down).
fn order_rows(metric: Metric) -> bool {
    matches!(metric, Metric::Revenue | Metric::Aov | Metric::Orders)
}

/// Whether a broken-down source carries its group `g` itself (a product, or a session's value computed
/// over the session's rows), rather than joining its session's.
fn carries_group(metric: Metric, by: Dimension) -> bool {
    by == Dimension::Product || matches!(metric, Metric::Sessions | Metric::ConversionRate)
}

/// The metric's source from the raw events; broken down by `by`, each row also carries [`by_column`].
fn raw_source(q: &MetricQuery, by: Option<Dimension>) -> MetricSource {
    let base = base_filter(&q.filters);
    let order_by = by_column(by, RowKind::Order);
    let orders_in_currency = || {
        each_order(
            &format!("min(timestamp) AS ts, any(amount) AS v{order_by}"),
            &format!("{base}{IN_CURRENCY}"),
        )
    };
    // One row per session: its start and whether it has an order.
    let sessions = format!(
        "SELECT min(timestamp) AS ts, max(type = 'order.completed') AS v{} FROM commerce_events \
         WHERE {base} AND session_id != '' GROUP BY cityHash64(session_id)",
        by_column(by, RowKind::WholeSession)
    );
    let event_by = by_column(by, RowKind::Event);
    let (source, measures) = match q.metric {
        Metric::Revenue | Metric::Aov => (
            orders_in_currency(),
            Measures::Money {
                amount: "sum(v)",
                orders: "count()",
            },
        ),
        Metric::Orders => (
            each_order(
                &format!("min(timestamp) AS ts{order_by}"),
                &format!("{base}{IN_CURRENCY}"),
            ),
            Measures::Count { count: "count()" },
        ),
        Metric::NetRevenue => (
            // Orders in the currency, and each refund event once, negative.
            format!(
                "{} UNION ALL SELECT min(timestamp) AS ts, -any(amount) AS v FROM commerce_events \
                 WHERE {base} AND type = 'order.refunded'{IN_CURRENCY} GROUP BY id",
                orders_in_currency()
            ),
            Measures::Amount { amount: "sum(v)" },
        ),
        Metric::Sessions => (sessions, Measures::Count { count: "count()" }),
        Metric::ConversionRate => (
            sessions,
            Measures::Rate {
                numerator: "sum(v)",
                denominator: "count()",
            },
        ),
        // Broken down, each visitor once per session and quarter hour (every zone's bucket boundaries fall
        // on whole quarter hours, so the quarter's start is in the same bucket as its events): about a
        // quarter of the rows to join to their sessions.
        Metric::Visitors if by.is_some() => (
            format!(
                "SELECT toStartOfFifteenMinutes(timestamp) AS ts, cityHash64({VISITOR}) AS vh{event_by} \
                 FROM commerce_events WHERE {base} AND {VISITOR} != '' GROUP BY ts, vh, sh"
            ),
            Measures::Count {
                count: "uniqExact(vh)",
            },
        ),
        Metric::Visitors => (
            format!(
                "SELECT timestamp AS ts, {VISITOR} AS visitor{event_by} FROM commerce_events \
                 WHERE {base} AND visitor != ''"
            ),
            Measures::Count {
                count: "uniqExact(cityHash64(visitor))",
            },
        ),
        Metric::Ltv => (
            // One row per customer acquired in the range; `ts` is the acquisition time, `v` what they
            // spent in the range in the currency (the customers who spent in another currency only are
            // not counted).
            format!(
                "SELECT first_ts AS ts, amt AS v, n > 0 AS in_cur FROM ({}) \
                 WHERE first_ts >= fromUnixTimestamp64Milli({{from:Int64}}) \
                 AND first_ts < fromUnixTimestamp64Milli({{to:Int64}})",
                customers_with_first_order(&base_filter(&Default::default()), q.include_bots)
            ),
            Measures::PerCustomer {
                amount: "sum(v)",
                customers: "countIf(in_cur)",
            },
        ),
        Metric::AddToCartRate => (
            // One row per session with a product view: its first view and whether it added to cart.
            format!(
                "SELECT minIf(timestamp, type = 'product.viewed') AS ts, max(type = 'cart.item_added') AS v{} \
                 FROM commerce_events WHERE {base} AND session_id != '' \
                 AND type IN ('product.viewed', 'cart.item_added'){} \
                 GROUP BY cityHash64(session_id) HAVING countIf(type = 'product.viewed') > 0",
                by_column(by, RowKind::Session),
                product_filter(q)
            ),
            Measures::Rate {
                numerator: "sum(v)",
                denominator: "count()",
            },
        ),
        Metric::ProductViews => (
            // Distinct events per quarter hour (and group), then added up: a stored copy of an event has
            // its timestamp, so the copies of one event share a quarter hour, and every zone's bucket
            // boundaries (offsets are whole quarter hours) fall on quarter hours. One distinct set over
            // the whole range cannot spill to disk: over 12 months of the 100M-event store (38M views,
            // bots included) it passed the 2 GiB read limit; per quarter hour the GROUP BY spills like
            // any other (1.7-1.9 s, 1.2 GiB; per minute 2.0-2.3 s, 1.4 GiB, and by product twice as
            // slow as per quarter hour). Distinct 64-bit id hashes, not id strings, as sessions and
            // visitors are counted.
            format!(
                "SELECT toStartOfFifteenMinutes(timestamp) AS ts, uniqExact(cityHash64(id)) AS n{event_by} \
                 FROM commerce_events WHERE {base} AND type = 'product.viewed'{} GROUP BY ts{}",
                product_filter(q),
                match by {
                    None => "",
                    Some(Dimension::Product) => ", g",
                    Some(_) => ", sh",
                }
            ),
            Measures::Count { count: "sum(n)" },
        ),
    };
    let distinct = (q.metric == Metric::Visitors && by.is_none()).then_some("cityHash64(visitor)");
    MetricSource {
        source,
        measures,
        rollup_hours: None,
        distinct,
    }
}

/// The one-row-per-session source of `sessions`, `conversion_rate` and (without a product filter or a
/// breakdown) `add_to_cart_rate` from the `commerce_sessions` rollup:
/// the whole UTC hours of the range from the rollup's rows, the partial hours at either end from the raw
/// events, and the two grouped again by session, so a session seen in both counts once, starts at its
/// first event in the range and has an order if any of its events in the range is one — exactly the raw
/// source's rows. Session starts are kept to the millisecond, so buckets in any zone (half- and
/// quarter-hour offsets, DST) are those of the raw events; in a zone whose bucket boundaries are all
/// whole UTC hours ([`Range::hour_aligned`](crate::query::params::Range::hour_aligned)) a session's
/// first hour is all its bucket needs, and that is what is read. Humans only; the country, device and browser
/// filters are the rollup's own columns. A filter on what the session is (source, landing page,
/// referrer), bots, or a range without a whole UTC hour read the raw events.
///
/// Broken down `by` country, device or browser (the rollup's own columns), each session also carries
/// `g`, its first non-empty value (`argMinIf` by time, as the raw source computes it): a rollup row's
/// `start` is its earliest event and all its events share the row's value, so the earliest row with a
/// value is the session's earliest event with one. Any other dimension reads the raw events.
///
/// Broken down by several of those at once ([`group_each_sql`]), each session carries one value per
/// dimension, `g0`, `g1`, …, computed the same way.
///
/// Broken down by one of what a session entered with (source, campaign, landing page, referrer site:
/// [`session_firsts`]), `g` is computed from the rollup's first-value pairs and the edges' events as
/// [`super::sessions::per_session`] computes it for the ranked reads (the earliest pair of each kind),
/// which is what the raw source computes over the session's events in the range. At 100M events,
/// through the API: sessions by source 173 against 460 ms over 30 days, 1.7 against 11.9 s over 12
/// months, against the raw events' read (see the README).
fn session_rollup_source(q: &MetricQuery, by: &[Dimension]) -> Option<MetricSource> {
    let firsts = match by {
        [one] => session_firsts(*one),
        _ => None,
    };
    let groups = if firsts.is_some() {
        Vec::new()
    } else {
        by.iter()
            .map(|d| rollup_column(*d))
            .collect::<Option<Vec<&str>>>()?
    };
    let measures = match q.metric {
        Metric::Sessions => Measures::Count { count: "count()" },
        Metric::ConversionRate => Measures::Rate {
            numerator: "sum(v)",
            denominator: "count()",
        },
        // The rollup has no product dimension: a product filter, or a breakdown, reads the raw events.
        Metric::AddToCartRate if by.is_empty() && q.product_id.is_none() => Measures::Rate {
            numerator: "sum(v)",
            denominator: "count()",
        },
        _ => return None,
    };
    if q.include_bots || q.filters.on_sessions() {
        return None;
    }
    let (inner_from, inner_to) = whole_hours(&q.range);
    if inner_from >= inner_to {
        return None;
    }
    let rollup = session_rollup_rows(&q.filters);
    let edges = session_rollup_edges(&q.filters, Edges::of_range(&q.range));
    // One aggregation over the rollup's rows and the edges' events together, not each grouped by session
    // first and the two regrouped: same sessions, and at 100M events over 30 days 143 ms and 92 MiB
    // against 241 ms and 172 MiB (the query alone, alternating, same server).
    let (mut g_out, mut g_in) = (String::new(), String::new());
    for (i, column) in groups.iter().enumerate() {
        let n = group_suffix(i, groups.len());
        g_out.push_str(&format!(", argMinIf(gv{n}, at, gv{n} != '') AS g{n}"));
        g_in.push_str(&format!(", CAST({column}, 'String') AS gv{n}"));
    }
    let mut g_edges = g_in.clone();
    if let Some((firsts, key)) = &firsts {
        let pairs = first_pairs(firsts);
        g_out.push_str(&format!(", {}, {key} AS g", pairs.firsts));
        g_in.push_str(&pairs.rollup);
        g_edges.push_str(&pairs.events);
    }
    let source = if matches!(q.metric, Metric::AddToCartRate) {
        // Sessions with a product view in the range: their first view, and whether any of their events
        // in the range added to a cart (the raw source's rows). A row with neither a view nor a cart
        // changes no session's answer (a session with only such rows has no view and is left out
        // anyway), so it is not grouped: at 100M events, the query alone, alternating, identical rows,
        // 30 days 47.9–50.3 against 57.4–59.1 ms, 12 months 274–284 against 340–347 ms.
        format!(
            "SELECT min(at) AS ts, max(v) AS v FROM ( \
               SELECT session_hash AS sh, first_view AS at, has_cart AS v FROM commerce_sessions \
               WHERE {rollup} AND (first_view < {NO_VIEW} OR has_cart = 1) \
               UNION ALL \
               SELECT cityHash64(session_id) AS sh, \
                 if(type = 'product.viewed', timestamp, {NO_VIEW}) AS at, \
                 toUInt8(type = 'cart.item_added') AS v \
               FROM commerce_events WHERE {edges} AND type IN ('product.viewed', 'cart.item_added')) \
             GROUP BY sh HAVING ts < {NO_VIEW}"
        )
    } else {
        // When every bucket boundary is a whole UTC hour, a session's bucket is its first hour's: the
        // rows' `hour` (read for the range anyway) and the edges' events' hour serve instead of `start`,
        // a DateTime64 column less to read and a smaller state per session. At 100M events, the query
        // alone, alternating, identical rows: sessions over 30 days 46.7 against 54.7 ms, over 12 months
        // 267 against 348 ms; conversion 50.8 against 59.5 and 288 against 354. A breakdown keeps
        // `start`: its first value is the earliest row's, and rows of one hour tie on `hour`.
        let (row_at, event_at) = if by.is_empty() && q.range.hour_aligned() {
            ("hour", "toStartOfHour(timestamp)")
        } else {
            ("start", "timestamp")
        };
        format!(
            "SELECT min(at) AS ts, max(v) AS v{g_out} FROM ( \
               SELECT session_hash AS sh, {row_at} AS at, has_order AS v{g_in} FROM commerce_sessions \
               WHERE {rollup} \
               UNION ALL \
               SELECT cityHash64(session_id) AS sh, {event_at} AS at, toUInt8(type = 'order.completed') AS v{g_edges} \
               FROM commerce_events WHERE {edges}) \
             GROUP BY sh"
        )
    };
    Some(MetricSource {
        source,
        measures,
        rollup_hours: Some((inner_from, inner_to)),
        distinct: None,
    })
}

/// What tells the `i`-th of `n` groups' columns apart: `g` alone, or `g0`, `g1`, ….
fn group_suffix(i: usize, n: usize) -> String {
    if n == 1 { String::new() } else { i.to_string() }
}

/// A metric broken down by several dimensions the session rollup keeps (country, device, browser) in
/// one pass, when the metric reads sessions from the rollup ([`session_rollup_source`]): every group of
/// each (`d`, the dimension's position in `by`), per bucket (`t` = 0) and over the range (`t` = 1).
/// What a dashboard showing sessions by country, by device and by browser reads: the sessions are
/// grouped once instead of once per dimension. `None` when the metric or a dimension cannot be read so.
pub(super) fn group_each_sql(q: &MetricQuery, by: &[Dimension]) -> Option<Sql> {
    let MetricSource {
        source,
        measures,
        rollup_hours,
        ..
    } = session_rollup_source(q, by).filter(|_| by.len() > 1)?;
    let (d, k) = super::grouped_by("g", by.len(), "d");
    let sets: Vec<String> = (0..by.len())
        .map(|i| format!("(g{i}, b), (g{i})"))
        .collect();
    Some(Sql {
        text: format!(
            "SELECT toUInt8({d}) AS d, {k} AS k, {} AS b, toUInt8(grouping(b)) AS t, {} \
             FROM ({source}) GROUP BY GROUPING SETS ({}) ORDER BY d, t, k, b",
            bucket_expr(q.range.granularity),
            measures.columns(),
            sets.join(", ")
        ),
        binds: Binds {
            rollup_hours,
            ..Binds::of_read(&q.store_id, &q.range, q.include_bots, &q.filters)
        },
    })
}

/// A result row of [`group_each_sql`]: a [`GroupRow`] of the `d`-th dimension.
#[derive(Debug, Deserialize, clickhouse::Row)]
struct EachRow {
    d: u8,
    k: String,
    b: i64,
    t: u8,
    x: i64,
    y: i64,
}

/// Every group of each of `by`, in their order, read by `sql` ([`group_each_sql`]).
pub(super) async fn fetch_groups_at_once(
    store: &ClickHouseStore,
    q: &MetricQuery,
    by: &[Dimension],
    sql: Sql,
) -> Result<Vec<Vec<GroupFacts>>, StoreError> {
    let family = q.metric.family();
    let rows = sql.fetch_all::<EachRow>(store, q.metric.name()).await?;
    let mut out: Vec<Vec<GroupFacts>> = vec![Vec::new(); by.len()];
    for r in rows.iter().filter(|r| r.t == 1) {
        out[usize::from(r.d)].push(GroupFacts {
            key: GroupKey::Value(r.k.clone()),
            buckets: Vec::new(),
            total: family.facts(r.x, r.y),
        });
    }
    for r in rows.iter().filter(|r| r.t == 0) {
        let groups = &mut out[usize::from(r.d)];
        if let Some(g) = groups
            .iter_mut()
            .find(|g| matches!(&g.key, GroupKey::Value(k) if *k == r.k))
        {
            g.buckets.push(BucketFacts {
                start: r.b,
                facts: family.facts(r.x, r.y),
            });
        }
    }
    Ok(out)
}

/// A visitor: `customerId`, else `anonymousId`, else `sessionId`.
const VISITOR: &str =
    "if(customer_id != '', customer_id, if(anonymous_id != '', anonymous_id, session_id))";

/// The metric's source from the hourly rollups, when they can answer exactly: `visitors` (the visitor
/// rows of `commerce_visitors`) and `product_views` (the counts of `commerce_hourly_counts`, without a
/// product filter), humans only, with bucket boundaries on whole UTC hours. The whole hours come from the
/// rollup; the partial hours at either end (a `24h` period starts mid-hour, `to` is usually "now") from
/// the raw events, as rows of the same kind (visitor hashes, or counts), so buckets and total stay
/// exact.
fn rollup_source(q: &MetricQuery) -> Option<MetricSource> {
    let servable = match q.metric {
        Metric::Visitors => true,
        // The rollup has no product dimension: a product filter reads the raw events.
        Metric::ProductViews => q.product_id.is_none(),
        _ => false,
    };
    // The rollup counts humans only, by country: any other filter reads the raw events.
    if !servable || q.include_bots || !q.range.hour_aligned() || !q.filters.rollup_can_answer() {
        return None;
    }
    let (inner_from, inner_to) = whole_hours(&q.range);
    if inner_from >= inner_to {
        return None;
    }
    let country = if q.filters.country.is_some() {
        " AND country = {country:String}"
    } else {
        ""
    };
    let rollup = format!(
        "store_id = {{store:String}} AND hour >= fromUnixTimestamp64Milli({{rfrom:Int64}}) \
         AND hour < fromUnixTimestamp64Milli({{rto:Int64}}){country}"
    );
    let edges = format!(
        "{} AND {}",
        base_filter(&q.filters),
        Edges::of_range(&q.range).condition()
    );
    let source = match q.metric {
        // Each row one visitor of an hour; the edges' events one row each, their own time as `ts`.
        Metric::Visitors => format!(
            "SELECT hour AS ts, visitor_hash AS vh FROM commerce_visitors WHERE {rollup} \
             UNION ALL \
             SELECT timestamp AS ts, cityHash64(visitor) AS vh FROM ( \
               SELECT timestamp, {VISITOR} AS visitor FROM commerce_events WHERE {edges}) \
             WHERE visitor != ''"
        ),
        _ => format!(
            "SELECT hour AS ts, events AS s FROM commerce_hourly_counts \
             WHERE {rollup} AND type = 'product.viewed' \
             UNION ALL \
             SELECT toStartOfHour(timestamp) AS ts, toInt64(uniqExact(cityHash64(id))) AS s \
             FROM commerce_events WHERE {edges} AND type = 'product.viewed' GROUP BY ts"
        ),
    };
    let count = match q.metric {
        Metric::Visitors => "uniqExact(vh)",
        _ => "sum(s)",
    };
    Some(MetricSource {
        source,
        measures: Measures::Count { count },
        rollup_hours: Some((inner_from, inner_to)),
        distinct: (q.metric == Metric::Visitors).then_some("vh"),
    })
}
