//! Attribution's facts ([`crate::query::attribution`]) on BigQuery: the ClickHouse adapter's three reads
//! (orders, the carts they name, candidate sessions found through the session, anonymous and customer
//! ids of the orders and their cart events) in BigQuery's SQL, over two event sets: `ev` (the period,
//! filtered as every money metric) and `tev` (the store's events from the touches' start, `@tfrom`, to
//! the period's end).

use super::ranked::{REFERRER_DOMAIN, first_in_session, source};
use super::{Sql, events_in_range, micros};
use crate::error::StoreError;
use crate::query::attribution::{
    AttributionFacts, AttributionQuery, CartFact, OrderFact, SessionFact,
};
use crate::store::bigquery::client::Param;
use crate::store::bigquery::{BigQueryStore, EVENTS_TABLE, ONE_ROW_PER_EVENT};

const CART_ID: &str = "IFNULL(JSON_VALUE(properties, '$.cartId'), '')";

/// A non-empty value of `column` among the group's rows, else `''`.
fn some(column: &str) -> String {
    format!("IFNULL(MAX(NULLIF({column}, '')), '')")
}

/// `ev`, `tev`, the order rows `o`, the rows `c` of cart and checkout events naming the orders' carts.
fn with(store: &BigQueryStore, q: &AttributionQuery) -> String {
    format!(
        "{}, tev AS (SELECT * FROM {} WHERE store_id = @store AND (@bots OR NOT is_bot) \
           AND timestamp >= @tfrom AND timestamp < @to {ONE_ROW_PER_EVENT}), \
         o AS (SELECT * FROM ev WHERE type = 'order.completed' AND currency = @currency), \
         c AS (SELECT * FROM tev WHERE type IN ('cart.item_added', 'cart.item_removed', 'checkout.started') \
           AND {CART_ID} != '' AND {CART_ID} IN (SELECT {CART_ID} FROM o))",
        events_in_range(store, &q.filters),
        store.table(EVENTS_TABLE)
    )
}

fn params(q: &AttributionQuery) -> Vec<(&'static str, Param)> {
    let mut p = super::range_params(&q.store_id, &q.range, q.include_bots, &q.filters);
    p.extend([
        ("currency", Param::String(q.currency.clone())),
        ("tfrom", micros(q.touches_from_ms())),
    ]);
    p
}

pub fn orders_sql(store: &BigQueryStore, q: &AttributionQuery) -> Sql {
    Sql {
        text: format!(
            "{} SELECT order_id, UNIX_MILLIS(MIN(timestamp)) AS at, ANY_VALUE(amount) AS amount, \
               {} AS sid, {} AS cart, {} AS aid, {} AS cid FROM o GROUP BY order_id",
            with(store, q),
            some("session_id"),
            some(CART_ID),
            some("anonymous_id"),
            some("customer_id"),
        ),
        params: params(q),
    }
}

pub fn carts_sql(store: &BigQueryStore, q: &AttributionQuery) -> Sql {
    Sql {
        text: format!(
            "{} SELECT {CART_ID} AS cart, {} AS sid, {} AS aid, {} AS cid FROM c GROUP BY cart",
            with(store, q),
            some("session_id"),
            some("anonymous_id"),
            some("customer_id"),
        ),
        params: params(q),
    }
}

pub fn sessions_sql(store: &BigQueryStore, q: &AttributionQuery) -> Sql {
    let keys = "UNNEST([CONCAT('s', session_id), CONCAT('a', anonymous_id), CONCAT('c', customer_id)]) AS k";
    Sql {
        text: format!(
            "{}, linked AS (SELECT session_id, anonymous_id, customer_id FROM o \
               UNION ALL SELECT session_id, anonymous_id, customer_id FROM c), \
             keys AS (SELECT k FROM linked, {keys} WHERE LENGTH(k) > 1), \
             cand AS (SELECT DISTINCT session_id FROM tev, {keys} \
               WHERE session_id != '' AND k IN (SELECT k FROM keys)) \
             SELECT session_id, start, {} AS source, medium, campaign, {REFERRER_DOMAIN} AS ref_domain, \
               aid, cid FROM ( \
               SELECT session_id, UNIX_MILLIS(MIN(timestamp)) AS start, IFNULL({}, '') AS utm, \
                 IFNULL({}, '') AS ref, IFNULL({}, '') AS medium, IFNULL({}, '') AS campaign, \
                 {} AS aid, {} AS cid \
               FROM tev WHERE session_id IN (SELECT session_id FROM cand) GROUP BY session_id)",
            with(store, q),
            source(),
            first_in_session("utm_source"),
            first_in_session("referrer"),
            first_in_session("utm_medium"),
            first_in_session("utm_campaign"),
            some("anonymous_id"),
            some("customer_id"),
        ),
        params: params(q),
    }
}

pub async fn attribution(
    store: &BigQueryStore,
    q: &AttributionQuery,
) -> Result<AttributionFacts, StoreError> {
    let run = |sql: Sql| async move { store.client().read(&sql.text, &sql.params).await };
    let (orders, carts, sessions) = tokio::try_join!(
        run(orders_sql(store, q)),
        run(carts_sql(store, q)),
        run(sessions_sql(store, q)),
    )?;
    let mut facts = AttributionFacts::default();
    for i in 0..orders.rows.len() {
        facts.orders.push(OrderFact {
            order_id: orders.string(i, 0),
            at_ms: orders.i64(i, 1)?,
            amount: orders.i64(i, 2)?,
            session_id: orders.string(i, 3),
            cart_id: orders.string(i, 4),
            anonymous_id: orders.string(i, 5),
            customer_id: orders.string(i, 6),
        });
    }
    for i in 0..carts.rows.len() {
        facts.carts.push(CartFact {
            cart_id: carts.string(i, 0),
            session_id: carts.string(i, 1),
            anonymous_id: carts.string(i, 2),
            customer_id: carts.string(i, 3),
        });
    }
    for i in 0..sessions.rows.len() {
        facts.sessions.push(SessionFact {
            session_id: sessions.string(i, 0),
            start_ms: sessions.i64(i, 1)?,
            source: sessions.string(i, 2),
            medium: sessions.string(i, 3),
            campaign: sessions.string(i, 4),
            referrer_domain: sessions.string(i, 5),
            anonymous_id: sessions.string(i, 6),
            customer_id: sessions.string(i, 7),
        });
    }
    Ok(facts)
}
