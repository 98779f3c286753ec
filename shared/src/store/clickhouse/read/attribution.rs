//! Attribution's facts ([`crate::query::attribution`]) in three reads: the period's orders in the
//! currency (filtered as every money metric), the carts they name, and the candidate sessions.
//!
//! Candidate sessions are found on the server, never by sending id lists (a year's orders would not fit
//! in a URL): the *linked keys* are the session, anonymous and customer ids of the order rows and of the
//! cart and checkout rows naming their carts; a candidate is a session of `[touches' start, period's end)`
//! with an event carrying one of those keys (its anonymous id among the linked anonymous ids, and so on),
//! read whole (all its events in the window) in a second pass. That is exactly what the query side looks
//! up, so no touch is missed. Each kind of key is its own set of plain ids, every subquery a `GLOBAL IN`,
//! computed once over the `Distributed` table on a cluster. On the 10M-event store, 30 days: 0.41–0.49 s,
//! where joining every event's three keys (`arrayJoin`) and the linked sessions' own events took 0.76 s.
//! On the 100M store (30 days, 30 days' lookback: 20 million events in the window) finding the candidates
//! takes 1.85–1.95 s with three typed sets, against 2.36–2.58 s with one set of prefixed keys (`concat` on
//! every row of the window), side by side; the whole statement 3.24–3.44 s against 3.55–3.71 s (same
//! 85,173 sessions): reading the candidates whole, 60 days of events filtered by session, is the rest.
//!
//! That rest comes from the session rollup when it can answer (humans, a report not by medium, which the
//! rollup does not keep): the candidates are grouped with their visitor ids as they are found, and their
//! start, source, campaign and referrer site are the rollup's rows of the window's whole hours and the
//! raw events of its partial hours (as [`super::sessions`] reads them), joined to the candidates by
//! session hash before grouping. A candidate's ids are then those of its events that carry a linked key
//! (every event of a session found by its own id); an id only on its other events links it to no order
//! (it is not among the orders' and carts' ids), so the touches are the same. On the 100M store (30
//! days, 31,075 candidates, a release build beside it): 3.3–3.9 s against 5.1–5.4 s, the same sessions,
//! starts, campaigns and referrer sites.

use serde::Deserialize;

use super::sessions::{Edges, FirstPairs, first_pairs, whole_hours_of};
use super::{Binds, IN_CURRENCY, STORE_AND_BOTS, Sql, base_filter, ranked};
use crate::error::StoreError;
use crate::query::attribution::{
    AttributionFacts, AttributionQuery, CartFact, Channel, OrderFact, SessionFact,
};
use crate::store::clickhouse::ClickHouseStore;
use crate::store::clickhouse::migrations::{
    FIRST_CAMPAIGN, FIRST_REFERRER, FIRST_SOURCE, SessionFirst,
};

/// `timestamp` within `[touches' start, period's end)`.
const IN_TOUCHES: &str = "timestamp >= fromUnixTimestamp64Milli({tfrom:Int64}) \
                          AND timestamp < fromUnixTimestamp64Milli({to:Int64})";

/// The events that carry a `cartId` from the storefront.
const CART_EVENTS: &str = "type IN ('cart.item_added', 'cart.item_removed', 'checkout.started')";

const CART_ID: &str = "JSONExtractString(properties, 'cartId')";

#[derive(Debug, Deserialize, clickhouse::Row)]
struct OrderRow {
    order_id: String,
    at: i64,
    amount: i64,
    sid: String,
    cart: String,
    aid: String,
    cid: String,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct CartRow {
    cart: String,
    sid: String,
    aid: String,
    cid: String,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct SessionRow {
    session_id: String,
    start: i64,
    source: String,
    medium: String,
    campaign: String,
    ref_domain: String,
    aid: String,
    cid: String,
}

/// A non-empty value of `column` among the group's rows, as `alias` (never the column's own name: the
/// filters below name the columns).
fn some(column: &str, alias: &str) -> String {
    format!("anyIf({column}, {column} != '') AS {alias}")
}

/// The period's order rows in the currency, under the read's filters.
fn order_rows(q: &AttributionQuery) -> String {
    format!(
        "{}{IN_CURRENCY} AND type = 'order.completed'",
        base_filter(&q.filters)
    )
}

/// The cart and checkout rows naming a cart one of the orders names.
fn cart_rows(q: &AttributionQuery) -> String {
    format!(
        "{STORE_AND_BOTS} AND {IN_TOUCHES} AND {CART_EVENTS} AND {CART_ID} != '' \
         AND {CART_ID} GLOBAL IN (SELECT {CART_ID} FROM commerce_events WHERE {})",
        order_rows(q)
    )
}

fn binds(q: &AttributionQuery) -> Binds {
    Binds {
        currency: Some(q.currency.clone()),
        touches_from_ms: Some(q.touches_from_ms()),
        ..Binds::of_read(&q.store_id, &q.range, q.include_bots, &q.filters)
    }
}

pub(super) fn orders_sql(q: &AttributionQuery) -> Sql {
    Sql {
        text: format!(
            "SELECT order_id, toInt64(toUnixTimestamp64Milli(min(timestamp))) AS at, \
               any(amount) AS amount, {}, anyIf({CART_ID}, {CART_ID} != '') AS cart, {}, {} \
             FROM commerce_events WHERE {} GROUP BY order_id",
            some("session_id", "sid"),
            some("anonymous_id", "aid"),
            some("customer_id", "cid"),
            order_rows(q)
        ),
        binds: binds(q),
    }
}

pub(super) fn carts_sql(q: &AttributionQuery) -> Sql {
    Sql {
        text: format!(
            "SELECT {CART_ID} AS cart, {}, {}, {} FROM commerce_events WHERE {} GROUP BY cart",
            some("session_id", "sid"),
            some("anonymous_id", "aid"),
            some("customer_id", "cid"),
            cart_rows(q)
        ),
        binds: binds(q),
    }
}

/// The window's events with a session that carry a linked key: one typed set per id kind (non-empty
/// values of that column on the order and cart rows), a row matching when its own id of that kind is
/// in the set.
fn linked_rows(q: &AttributionQuery) -> String {
    let (orders, carts) = (order_rows(q), cart_rows(q));
    let linked = |column: &str| {
        format!(
            "({column} != '' AND {column} GLOBAL IN (SELECT {column} FROM commerce_events \
             WHERE ({orders}) OR ({carts})))"
        )
    };
    format!(
        "{STORE_AND_BOTS} AND {IN_TOUCHES} AND session_id != '' AND ({} OR {} OR {})",
        linked("anonymous_id"),
        linked("customer_id"),
        linked("session_id")
    )
}

/// The whole UTC hours of the touches' window the session rollup answers for `q`, if it can: humans
/// only, and not by medium (the rollup keeps no medium).
fn rollup_hours(q: &AttributionQuery) -> Option<(i64, i64)> {
    if q.include_bots || q.by == Channel::Medium {
        return None;
    }
    let (from, to) = whole_hours_of(q.touches_from_ms(), q.range.to_ms());
    (from < to).then_some((from, to))
}

/// The candidate sessions from the session rollup (see the module docs); `medium` is empty (the
/// report is not by medium).
pub(super) fn sessions_from_rollup_sql(q: &AttributionQuery, hours: (i64, i64)) -> Sql {
    const FIRSTS: [SessionFirst; 3] = [FIRST_SOURCE, FIRST_REFERRER, FIRST_CAMPAIGN];
    let FirstPairs {
        rollup: pairs,
        events: raw_pairs,
        firsts,
    } = first_pairs(&FIRSTS);
    let edges = Edges::of(q.touches_from_ms(), q.range.to_ms()).condition();
    Sql {
        text: format!(
            "SELECT session_id, start, {} AS source, '' AS medium, f2 AS campaign, f1 AS ref_domain, \
               aid, cid \
             FROM ( \
               SELECT any(p.session_id) AS session_id, \
                 toInt64(toUnixTimestamp64Milli(min(r.at))) AS start, {firsts}, \
                 any(p.aid) AS aid, any(p.cid) AS cid \
               FROM ( \
                 SELECT session_hash AS sh, start AS at{pairs} FROM commerce_sessions \
                 WHERE store_id = {{store:String}} AND hour >= fromUnixTimestamp64Milli({{rfrom:Int64}}) \
                   AND hour < fromUnixTimestamp64Milli({{rto:Int64}}) \
                 UNION ALL \
                 SELECT cityHash64(session_id) AS sh, timestamp AS at{raw_pairs} FROM commerce_events \
                 WHERE {STORE_AND_BOTS} AND {IN_TOUCHES} AND session_id != '' AND {edges}) AS r \
               INNER JOIN ( \
                 SELECT cityHash64(session_id) AS sh, session_id, {}, {} \
                 FROM commerce_events WHERE {} GROUP BY session_id) AS p USING sh \
               GROUP BY sh)",
            ranked::source_of_firsts(),
            some("anonymous_id", "aid"),
            some("customer_id", "cid"),
            linked_rows(q),
        ),
        binds: Binds {
            rollup_hours: Some(hours),
            ..binds(q)
        },
    }
}

pub(super) fn sessions_sql(q: &AttributionQuery) -> Sql {
    Sql {
        text: format!(
            "SELECT session_id, toInt64(toUnixTimestamp64Milli(min(timestamp))) AS start, \
               {} AS source, {} AS medium, {} AS campaign, domainWithoutWWW({}) AS ref_domain, \
               {}, {} \
             FROM commerce_events \
             WHERE {STORE_AND_BOTS} AND {IN_TOUCHES} AND session_id != '' AND session_id GLOBAL IN ( \
               SELECT session_id FROM commerce_events WHERE {}) \
             GROUP BY session_id",
            ranked::session_source(),
            ranked::first_in_session("utm_medium"),
            ranked::first_in_session("utm_campaign"),
            ranked::first_in_session("referrer"),
            some("anonymous_id", "aid"),
            some("customer_id", "cid"),
            linked_rows(q),
        ),
        binds: binds(q),
    }
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &AttributionQuery,
) -> Result<AttributionFacts, StoreError> {
    let sessions = match rollup_hours(q) {
        Some(hours) => sessions_from_rollup_sql(q, hours),
        None => sessions_sql(q),
    };
    let (orders, carts) = (orders_sql(q), carts_sql(q));
    let (orders, carts, sessions) = tokio::try_join!(
        orders.fetch_all::<OrderRow>(store, "attribution orders"),
        carts.fetch_all::<CartRow>(store, "attribution carts"),
        sessions.fetch_all::<SessionRow>(store, "attribution sessions"),
    )?;
    Ok(AttributionFacts {
        orders: orders
            .into_iter()
            .map(|r| OrderFact {
                order_id: r.order_id,
                at_ms: r.at,
                amount: r.amount,
                session_id: r.sid,
                cart_id: r.cart,
                anonymous_id: r.aid,
                customer_id: r.cid,
            })
            .collect(),
        carts: carts
            .into_iter()
            .map(|r| CartFact {
                cart_id: r.cart,
                session_id: r.sid,
                anonymous_id: r.aid,
                customer_id: r.cid,
            })
            .collect(),
        sessions: sessions
            .into_iter()
            .map(|r| SessionFact {
                session_id: r.session_id,
                start_ms: r.start,
                source: r.source,
                medium: r.medium,
                campaign: r.campaign,
                referrer_domain: r.ref_domain,
                anonymous_id: r.aid,
                customer_id: r.cid,
            })
            .collect(),
    })
}
