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

use serde::Deserialize;

use super::{Binds, IN_CURRENCY, STORE_AND_BOTS, Sql, base_filter, ranked};
use crate::error::StoreError;
use crate::query::attribution::{
    AttributionFacts, AttributionQuery, CartFact, OrderFact, SessionFact,
};
use crate::store::clickhouse::ClickHouseStore;

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

pub(super) fn sessions_sql(q: &AttributionQuery) -> Sql {
    let (orders, carts) = (order_rows(q), cart_rows(q));
    // The linked keys, one typed set per id kind (non-empty values of `column` on the order and cart
    // rows): a row matches when its own id of that kind is in the set.
    let linked = |column: &str| {
        format!(
            "({column} != '' AND {column} GLOBAL IN (SELECT {column} FROM commerce_events \
             WHERE ({orders}) OR ({carts})))"
        )
    };
    Sql {
        text: format!(
            "SELECT session_id, toInt64(toUnixTimestamp64Milli(min(timestamp))) AS start, \
               {} AS source, {} AS medium, {} AS campaign, domainWithoutWWW({}) AS ref_domain, \
               {}, {} \
             FROM commerce_events \
             WHERE {STORE_AND_BOTS} AND {IN_TOUCHES} AND session_id != '' AND session_id GLOBAL IN ( \
               SELECT session_id FROM commerce_events \
               WHERE {STORE_AND_BOTS} AND {IN_TOUCHES} AND session_id != '' \
                 AND ({} OR {} OR {})) \
             GROUP BY session_id",
            ranked::session_source(),
            ranked::first_in_session("utm_medium"),
            ranked::first_in_session("utm_campaign"),
            ranked::first_in_session("referrer"),
            some("anonymous_id", "aid"),
            some("customer_id", "cid"),
            linked("anonymous_id"),
            linked("customer_id"),
            linked("session_id"),
        ),
        binds: binds(q),
    }
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &AttributionQuery,
) -> Result<AttributionFacts, StoreError> {
    let (orders, carts, sessions) = (orders_sql(q), carts_sql(q), sessions_sql(q));
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
