//! Ranked metrics: one query per metric, each returning `key` plus the measures `a`, `b`, `c`, `d` that
//! [`RankedRow::from_measures`] names (`d` is 0 but for landing pages and referrers: their bounces).

use serde::Deserialize;

use super::sessions::{Edges, PerSession, first_raw, per_session, rollup_hours};
use super::{
    Binds, IN_CURRENCY, ITEM_QTY, STORE_AND_BOTS, Sql, base_filter, customer_orders, each_order,
    with_first_orders,
};
use crate::error::StoreError;
use crate::query::ranked::{Ranked, RankedQuery, RankedRow};
use crate::store::clickhouse::ClickHouseStore;
use crate::store::clickhouse::migrations::{
    FIRST_CAMPAIGN, FIRST_PAGE, FIRST_REFERRER, FIRST_SOURCE, SessionFirst,
};

/// What every ranked query selects: a key and four measures, named per metric by
/// [`RankedRow::from_measures`].
#[derive(Debug, Deserialize, clickhouse::Row)]
struct KeyedRow {
    key: String,
    a: i64,
    b: i64,
    c: i64,
    d: i64,
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &RankedQuery,
) -> Result<Vec<RankedRow>, StoreError> {
    let rows = sql(q).fetch_all::<KeyedRow>(store, q.metric.name()).await?;
    Ok(rows
        .into_iter()
        .map(|KeyedRow { key, a, b, c, d }| RankedRow::from_measures(q.metric, key, a, b, c, d))
        .collect())
}

/// A session's source (over the rows of one session): its first `utm_source`, else the name of its first
/// referrer's site ([`crate::query::sources`]), else `direct`. Product performance and the `source`
/// filter use it; `traffic_sources` and the `source` breakdown read the same from [`SOURCE_FIRSTS`].
pub(super) fn session_source() -> String {
    source_named(&first_raw(FIRST_SOURCE), &first_raw(FIRST_REFERRER))
}

/// The source of a session whose first `utm_source` is `source` and first referrer's site is `site`
/// (two expressions).
fn source_named(source: &str, site: &str) -> String {
    format!(
        "if({source} != '', {source}, if({site} != '', {}, 'direct'))",
        site_name(site)
    )
}

/// The site's name of a referrer's domain (`domain`, an expression): [`crate::query::sources::KNOWN`] as
/// one `multiIf` of RE2 matches, else the domain.
fn site_name(domain: &str) -> String {
    let mut named = String::from("multiIf(");
    for (name, pattern) in crate::query::sources::KNOWN {
        // Patterns and names are this crate's constants; backslashes doubled for the string literal.
        named.push_str(&format!(
            "match(lower({domain}), '{}'), '{name}', ",
            pattern.replace('\\', "\\\\")
        ));
    }
    named.push_str(&format!("{domain})"));
    named
}

/// A session's source before its referrer is named: the pair `(kind, pv)` of [`SOURCE_FIRSTS`] in
/// precedence ([`PerSession::precedence`]): `(0, utm_source)`, `(1, referrer site)` or `(2, '')`, so
/// `traffic_sources` names each distinct site once (after grouping the sessions by it) instead of once
/// per session, and builds no string per session: the same names as [`session_source`]. Over 30 days of
/// the 100M-event store, 0.85–0.86× the time of the prefixed strings (`u:…`, `r:…`, `d:direct`) it
/// replaces, alternating, the same rows (0.91× on the 10M store).
const SOURCE_UNNAMED: &str = "(kind, pv)";

/// The name of a session's source from its [`SOURCE_UNNAMED`] pair (`pair`, an expression).
fn source_of_unnamed(pair: &str) -> String {
    format!(
        "if({pair}.1 = 1, {}, if({pair}.1 = 0, {pair}.2, 'direct'))",
        site_name(&format!("{pair}.2"))
    )
}

/// A session's source over its first source `f0` and first referrer site `f1` ([`SOURCE_FIRSTS`]): what
/// [`session_source`] computes from its events.
pub(super) fn source_of_firsts() -> String {
    source_named("f0", "f1")
}

/// What a session's source is made of: its first `utm_source`, then its first referrer's site.
pub(super) const SOURCE_FIRSTS: [SessionFirst; 2] = [FIRST_SOURCE, FIRST_REFERRER];

/// The first value of `column` in the session that is not empty.
pub(super) fn first_in_session(column: &str) -> String {
    format!("argMinIf({column}, timestamp, {column} != '')")
}

/// The latest stock per product before the period's end (`key`, `stock`, `at`); on a tie of times, the
/// greater quantity. Humans' updates come from the stock rollup (`commerce_stock`, migration v21) for the
/// whole UTC days before the day the period ends in, one row a product a day however often its stock is
/// reported, and from the events for that day up to the end; with bots, everything from the events.
///
/// Measured on the 10M-event store (the demo reports each product's stock once a day, 70,000 updates a
/// year), each query alone, alternating: 10–12 ms against 13–18 ms from the events alone. Reading only
/// the rollup's rows up to the last day (the day's row is the answer whenever its update came before the
/// end) took 7–10 ms, but a period that ended before a later update that day then needs a second read;
/// a conditional second read inside the same query (`GLOBAL IN` the products whose row is too late) cost
/// as much as the events alone.
fn stock(include_bots: bool) -> String {
    let before_the_end = "timestamp < fromUnixTimestamp64Milli({to:Int64})";
    if include_bots {
        return format!(
            "SELECT product_id AS key, max((timestamp, quantity)) AS l, l.2 AS stock, l.1 AS at \
             FROM commerce_events WHERE {STORE_AND_BOTS} AND type = 'inventory.updated' \
             AND {before_the_end} GROUP BY key"
        );
    }
    // On a cluster a product-day has a row on every shard that stored one of its updates, so two rows
    // may hold the same time: the latest is the greatest (time, quantity), compared as one Int128
    // (time in ms × 2^64 + quantity: lexicographic, as |quantity| < 2^63) because comparing the tuples
    // themselves took twice as long (10M store: 19 against 10-11 ms for the query alone).
    format!(
        "SELECT product_id AS key, \
           argMax(q, toInt128(toUnixTimestamp64Milli(t)) * toInt128('18446744073709551616') + q) AS stock, \
           max(t) AS at FROM ( \
           SELECT product_id, latest.1 AS t, latest.2 AS q FROM commerce_stock \
           WHERE store_id = {{store:String}} \
           AND day < toDate(fromUnixTimestamp64Milli({{to:Int64}}, 'UTC')) \
           UNION ALL \
           SELECT product_id, l.1, l.2 FROM ( \
             SELECT product_id, max((timestamp, quantity)) AS l FROM commerce_events \
             WHERE {STORE_AND_BOTS} AND type = 'inventory.updated' \
             AND timestamp >= toStartOfDay(fromUnixTimestamp64Milli({{to:Int64}}, 'UTC')) \
             AND {before_the_end} GROUP BY product_id)) \
         GROUP BY key"
    )
}

/// A ranked read's measures of its sessions joined to their orders ([`orders_by_session`] as `o`):
/// sessions, sessions with an order in the currency, and those orders' amount.
const SESSION_MEASURES: &str = "toInt64(count()) AS a, toInt64(countIf(o.orders > 0)) AS b, \
                                toInt64(sum(o.revenue)) AS c";

/// The range's orders in the currency per session hash: how many, and their amount (each order once).
fn orders_by_session(base: &str) -> String {
    format!(
        "SELECT cityHash64(session_id) AS sh, count() AS orders, \
           arraySum(arrayMap(x -> x.2, groupUniqArray((order_id, amount)))) AS revenue \
         FROM commerce_events WHERE {base} AND session_id != '' \
         AND type = 'order.completed'{IN_CURRENCY} GROUP BY sh"
    )
}

/// The session value a ranked metric ranks by, for the ones [`pages_at_once_sql`] reads together.
fn page_first(metric: Ranked) -> Option<SessionFirst> {
    match metric {
        Ranked::LandingPages => Some(FIRST_PAGE),
        Ranked::Referrers => Some(FIRST_REFERRER),
        _ => None,
    }
}

/// The longest range (days) whose ranked metrics are read at once ([`pages_at_once_sql`],
/// [`sources_at_once_sql`]): each session then holds the values of both in one grouping. Over 12 months
/// of the 100M-event store the landing pages' and referrers' grouping peaked at 1,065 MiB (landing pages
/// alone 818), past the 1 GiB a read may take, for 0.92× the dashboard's time; over 30 days it peaks at
/// 128 MiB (178 ms, against 134 and 123 ms apart) and the Audience dashboard takes 0.81–0.84× the time.
/// Traffic sources with campaigns over 12 months took 1.08× the time of the two apart (campaigns alone
/// read only the sessions' rows that hold a campaign).
const AT_ONCE_DAYS: i64 = 31;

/// The read `qs` share when they can be read at once: two or more, each metric once, over the same
/// store, range, currency, filters and bots, the range at most [`AT_ONCE_DAYS`] long.
fn one_read(qs: &[RankedQuery]) -> Option<&RankedQuery> {
    let first = qs.first()?;
    if first.range.to_ms() - first.range.from_ms() > AT_ONCE_DAYS * 86_400_000 {
        return None;
    }
    let same_read = |q: &RankedQuery| {
        q.store_id == first.store_id
            && q.range.from_ms() == first.range.from_ms()
            && q.range.to_ms() == first.range.to_ms()
            && q.currency == first.currency
            && q.filters == first.filters
            && q.include_bots == first.include_bots
    };
    let distinct = qs
        .iter()
        .enumerate()
        .all(|(i, q)| qs[..i].iter().all(|p| p.metric != q.metric));
    (qs.len() >= 2 && distinct && qs.iter().all(same_read)).then_some(first)
}

/// The binds of a read of several ranked metrics over `first`'s read ([`one_read`]), the rollup's
/// hours `rollup`, each keeping its top `limit`.
fn at_once_binds(first: &RankedQuery, limit: u32, rollup: Option<(i64, i64)>) -> Binds {
    Binds {
        currency: first.currency.clone(),
        limit: Some(limit),
        tz: None,
        rollup_hours: rollup,
        ..Binds::of_read(
            &first.store_id,
            &first.range,
            first.include_bots,
            &first.filters,
        )
    }
}

/// Landing pages and referrers over one query in one read: the sessions grouped once with both their
/// first page and first referrer site (and whether they saw a single page), joined to their orders once,
/// then ranked per metric (`w`, its position in `qs`; `LIMIT … BY w` keeps each one's top rows, each
/// read as [`sql`] reads it alone). What the Audience dashboard shows side by side. `None` unless every
/// one of `qs` is one of those two metrics and they are one read ([`one_read`]).
pub(super) fn pages_at_once_sql(qs: &[RankedQuery]) -> Option<Sql> {
    let first = one_read(qs)?;
    let firsts = qs
        .iter()
        .map(|q| page_first(q.metric))
        .collect::<Option<Vec<SessionFirst>>>()?;
    let rollup = rollup_hours(&first.range, first.include_bots, &first.filters);
    let per_session = per_session(
        PerSession {
            firsts: &firsts,
            key: "f0",
            pages: true,
            holders_only: false,
            precedence: 0,
            only: None,
        },
        &first.filters,
        rollup.map(|_| Edges::of_range(&first.range)),
        false,
    );
    let (w, k) = super::grouped_by("f", qs.len(), "w");
    let sets: Vec<String> = (0..qs.len()).map(|i| format!("(f{i})")).collect();
    let limit = qs.iter().map(|q| q.limit).max().unwrap_or(0);
    Some(Sql {
        text: format!(
            "SELECT toUInt8({w}) AS w, {k} AS key, {SESSION_MEASURES}, \
               toInt64(countIf(single_page)) AS d FROM ({per_session}) AS s \
             LEFT JOIN ( {}) AS o USING sh \
             GROUP BY GROUPING SETS ({}) HAVING key != '' \
             ORDER BY w, a DESC, key LIMIT {{limit:UInt32}} BY w",
            orders_by_session(&base_filter(&first.filters)),
            sets.join(", ")
        ),
        binds: at_once_binds(first, limit, rollup),
    })
}

/// Traffic sources and campaigns over one query in one read: the sessions grouped once with their
/// source's pair ([`SOURCE_UNNAMED`], as `key`) and their first campaign (`f2`), joined to their orders
/// once, then grouped per metric (`GROUPING SETS`), the sources named and added up by name (as [`sql`]
/// reads them alone), the sessions without a campaign left out of the campaigns, and each ranked (`w`,
/// its position in `qs`, `LIMIT … BY w`). What the Marketing dashboard shows side by side. `None` unless
/// `qs` are those two metrics and one read ([`one_read`]).
///
/// Measured on the 100M-event store over 30 days, the query alone against the two apart one after the
/// other, alternating: 0.86× the time (172 against 200 ms; 10M store: 0.74×, 53 against 71 ms), the
/// same rows.
pub(super) fn sources_at_once_sql(qs: &[RankedQuery]) -> Option<Sql> {
    let first = one_read(qs)?;
    let at = |metric: Ranked| qs.iter().position(|q| q.metric == metric);
    let (sources, campaigns) = (
        at(Ranked::TrafficSources)?,
        at(Ranked::CampaignPerformance)?,
    );
    if qs.len() != 2 {
        return None;
    }
    let rollup = rollup_hours(&first.range, first.include_bots, &first.filters);
    let per_session = per_session(
        PerSession {
            firsts: &[FIRST_SOURCE, FIRST_REFERRER, FIRST_CAMPAIGN],
            key: SOURCE_UNNAMED,
            pages: false,
            holders_only: false,
            precedence: SOURCE_FIRSTS.len(),
            only: None,
        },
        &first.filters,
        rollup.map(|_| Edges::of_range(&first.range)),
        false,
    );
    let limit = qs.iter().map(|q| q.limit).max().unwrap_or(0);
    Some(Sql {
        text: format!(
            "SELECT w, name AS key, toInt64(sum(a)) AS a, toInt64(sum(b)) AS b, toInt64(sum(c)) AS c, \
               toInt64(0) AS d \
             FROM ( \
               SELECT toUInt8(if(grouping(key) = 0, {sources}, {campaigns})) AS w, \
                 if(grouping(key) = 0, {}, f2) AS name, {SESSION_MEASURES} \
               FROM ({per_session}) AS s LEFT JOIN ( {}) AS o USING sh \
               GROUP BY GROUPING SETS ((key), (f2)) HAVING grouping(key) = 0 OR f2 != '') \
             GROUP BY w, key ORDER BY w, a DESC, key LIMIT {{limit:UInt32}} BY w",
            source_of_unnamed("key"),
            orders_by_session(&base_filter(&first.filters)),
        ),
        binds: at_once_binds(first, limit, rollup),
    })
}

/// A row of a read of several at once: a [`KeyedRow`] of the `w`-th query.
#[derive(Debug, Deserialize, clickhouse::Row)]
struct EachRow {
    w: u8,
    key: String,
    a: i64,
    b: i64,
    c: i64,
    d: i64,
}

/// The rows of each of `qs`, read by `sql` ([`pages_at_once_sql`], [`sources_at_once_sql`]) as the
/// read named `what`.
pub(super) async fn fetch_at_once(
    store: &ClickHouseStore,
    qs: &[RankedQuery],
    sql: Sql,
    what: &'static str,
) -> Result<Vec<Vec<RankedRow>>, StoreError> {
    let rows = sql.fetch_all::<EachRow>(store, what).await?;
    let mut out: Vec<Vec<RankedRow>> = vec![Vec::new(); qs.len()];
    for EachRow { w, key, a, b, c, d } in rows {
        let (i, q) = (usize::from(w), &qs[usize::from(w)]);
        if out[i].len() < q.limit as usize {
            out[i].push(RankedRow::from_measures(q.metric, key, a, b, c, d));
        }
    }
    Ok(out)
}

pub(super) fn sql(q: &RankedQuery) -> Sql {
    let base = base_filter(&q.filters);
    // Each order once with its properties (for its items).
    let orders = |filter: String| each_order("order_id, any(properties) AS p", &filter);
    let items = "ARRAY JOIN JSONExtractArrayRaw(p, 'items') AS item";
    let product = "JSONExtractString(item, 'productId')";
    let stock = stock(q.include_bots);
    // Sessions by `key`: sessions, sessions with an order in the currency, those orders' amount, and (for
    // landing pages and referrers, 0 otherwise) the sessions that saw a single page: one distinct page
    // path, tested as "the smallest and the largest path are the same" (no set of paths per session).
    // The sessions come from the session rollup when it can answer ([`sessions`]), else from the raw
    // events. The orders come from their own read of the period's orders, joined to their sessions by
    // hash: a per-session set of (order, amount) pairs kept for every session (most have none) cost more
    // (at 100M events over 30 days, each query alone, alternating, medians of 3: traffic sources 0.91 s
    // against 1.11 s, campaigns 0.59 against 0.77, landing pages 1.33 against 1.49, referrers 1.49
    // against 1.89; peak memory 8-26% lower; identical rows).
    let by_session = matches!(
        q.metric,
        Ranked::TrafficSources
            | Ranked::CampaignPerformance
            | Ranked::LandingPages
            | Ranked::Referrers
    );
    let rollup = rollup_hours(&q.range, q.include_bots, &q.filters).filter(|_| by_session);
    // Each metric's arm says which sessions it groups: campaigns only those that hold one (the others are
    // left out anyway, `skip_empty`); traffic sources every one (those without source or referrer are
    // `direct`); landing pages and referrers every one of their rows, as their bounces need every page.
    let sessions = |read: PerSession<'_>| {
        let pages = read.pages;
        let per_session = per_session(
            read,
            &q.filters,
            rollup.map(|_| Edges::of_range(&q.range)),
            true,
        );
        let d = if pages {
            "toInt64(countIf(single_page))"
        } else {
            "toInt64(0)"
        };
        format!(
            "SELECT key, {SESSION_MEASURES}, {d} AS d FROM ({per_session}) AS s \
             LEFT JOIN ( {}) AS o USING sh \
             GROUP BY key ORDER BY a DESC, key LIMIT {{limit:UInt32}}",
            orders_by_session(&base)
        )
    };
    let text = match q.metric {
        Ranked::BestSellers => format!(
            "SELECT {product} AS key, toInt64(sum({ITEM_QTY})) AS a, \
             toInt64(sum({ITEM_QTY} * JSONExtractInt(item, 'price'))) AS b, toInt64(uniqExact(order_id)) AS c, \
             toInt64(0) AS d \
             FROM ({}) {items} \
             GROUP BY key ORDER BY b DESC, a DESC, key LIMIT {{limit:UInt32}}",
            orders(format!("{base}{IN_CURRENCY}"))
        ),
        Ranked::TrafficSources => {
            // Sessions by their unnamed source first (a few hundred distinct values), then named and
            // added up: the naming's regular expressions run per domain, not per session.
            let per_session = per_session(
                PerSession {
                    firsts: &SOURCE_FIRSTS,
                    key: SOURCE_UNNAMED,
                    pages: false,
                    holders_only: false,
                    precedence: SOURCE_FIRSTS.len(),
                    only: None,
                },
                &q.filters,
                rollup.map(|_| Edges::of_range(&q.range)),
                false,
            );
            format!(
                "SELECT {} AS key, \
                 toInt64(sum(a)) AS a, toInt64(sum(b)) AS b, toInt64(sum(c)) AS c, toInt64(0) AS d \
                 FROM (SELECT key AS raw, {SESSION_MEASURES} FROM ({per_session}) AS s \
                   LEFT JOIN ( {}) AS o USING sh GROUP BY key) \
                 GROUP BY key ORDER BY a DESC, key LIMIT {{limit:UInt32}}",
                source_of_unnamed("raw"),
                orders_by_session(&base)
            )
        }
        Ranked::CampaignPerformance => sessions(PerSession {
            firsts: &[FIRST_CAMPAIGN],
            key: "f0",
            pages: false,
            holders_only: true,
            precedence: 0,
            only: None,
        }),
        Ranked::LandingPages => sessions(PerSession {
            firsts: &[FIRST_PAGE],
            key: "f0",
            pages: true,
            holders_only: false,
            precedence: 0,
            only: None,
        }),
        Ranked::Referrers => sessions(PerSession {
            firsts: &[FIRST_REFERRER],
            key: "f0",
            pages: true,
            holders_only: false,
            precedence: 0,
            only: None,
        }),
        Ranked::NewVsReturning => format!(
            "SELECT if(f.first_ts >= fromUnixTimestamp64Milli({{from:Int64}}), 'new', 'returning') AS key, \
               toInt64(uniqExact(o.cust)) AS a, toInt64(count()) AS b, toInt64(sum(o.amt)) AS c, toInt64(0) AS d \
             FROM {} WHERE o.cur = {{currency:String}} GROUP BY key ORDER BY key LIMIT {{limit:UInt32}}",
            with_first_orders(&customer_orders(&q.filters), q.include_bots)
        ),
        Ranked::StockLevels => format!(
            "SELECT key, toInt64(stock) AS a, toInt64(toUnixTimestamp(at)) AS b, toInt64(0) AS c, toInt64(0) AS d \
             FROM ({stock}) \
             ORDER BY a, key LIMIT {{limit:UInt32}}"
        ),
        Ranked::SellThroughRate => format!(
            "SELECT key, toInt64(sold) AS a, toInt64(stock) AS b, toInt64(0) AS c, toInt64(0) AS d \
             FROM ({stock}) AS s \
             FULL OUTER JOIN ( \
               SELECT {product} AS key, sum({ITEM_QTY}) AS sold FROM ({}) {items} GROUP BY key) AS o \
             USING key WHERE key != '' ORDER BY if(a + b = 0, 0, a / (a + b)) DESC, key LIMIT {{limit:UInt32}}",
            orders(base.clone())
        ),
    };
    Sql {
        text,
        binds: Binds {
            currency: q.currency.clone(),
            limit: Some(q.limit),
            tz: None,
            rollup_hours: rollup,
            ..Binds::of_read(&q.store_id, &q.range, q.include_bots, &q.filters)
        },
    }
}
