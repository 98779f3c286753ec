//! Product performance ([`crate::query::products`]): product-event facts and order facts per product,
//! joined on the product id.
//!
//! Views and adds are counted rows, and sessions distinct 64-bit session hashes: exactly-once is enforced
//! at the write seam (the hourly counts rely on it the same way) and the session rollup keys sessions by
//! the same hash. Measured on 100M events, 30 days (4.45 million product events): 0.32–0.37 s, against
//! 1.5–1.8 s for distinct event ids and session id strings, the same answer; the order items' JSON is
//! ~0.07 s of it.
//!
//! The two set filters (sessions from a source, refunded orders) are `GLOBAL IN`: on a cluster the
//! subquery runs once, on the node that received the query, over the `Distributed` table, and its result
//! goes to every shard (a plain `IN` there would be a double-distributed subquery, which ClickHouse
//! refuses); on one server it is an ordinary `IN`.

use serde::Deserialize;

use super::{Binds, ITEM_QTY, STORE_AND_BOTS, Sql, base_filter};
use crate::error::StoreError;
use crate::query::products::{ProductFacts, ProductQuery};
use crate::store::clickhouse::ClickHouseStore;

#[derive(Debug, Deserialize, clickhouse::Row)]
struct ProductRow {
    key: String,
    views: i64,
    view_sessions: i64,
    adds: i64,
    cart_sessions: i64,
    orders: i64,
    units: i64,
    revenue: i64,
    purchase_sessions: i64,
    refunds: i64,
    refunded: i64,
}

pub(super) fn sql(q: &ProductQuery) -> Sql {
    let base = base_filter(&q.filters);
    let text = format!(
        "SELECT key, toInt64(views) AS views, toInt64(view_sessions) AS view_sessions, toInt64(adds) AS adds, \
           toInt64(cart_sessions) AS cart_sessions, toInt64(orders) AS orders, toInt64(units) AS units, \
           toInt64(revenue) AS revenue, toInt64(purchase_sessions) AS purchase_sessions, \
           toInt64(refunds) AS refunds, toInt64(refunded) AS refunded \
         FROM ( \
           SELECT product_id AS key, countIf(type = 'product.viewed') AS views, \
             uniqExactIf(cityHash64(session_id), type = 'product.viewed' AND session_id != '') AS view_sessions, \
             countIf(type = 'cart.item_added') AS adds, \
             uniqExactIf(cityHash64(session_id), type = 'cart.item_added' AND session_id != '') AS cart_sessions \
           FROM commerce_events WHERE {base} AND type IN ('product.viewed', 'cart.item_added') \
             AND product_id != '' GROUP BY key) AS f \
         FULL OUTER JOIN ( \
           SELECT JSONExtractString(item, 'productId') AS key, uniqExact(order_id) AS orders, \
             sum({ITEM_QTY}) AS units, sum({ITEM_QTY} * JSONExtractInt(item, 'price')) AS revenue, \
             uniqExactIf(session, session != '') AS purchase_sessions, \
             uniqExactIf(order_id, order_id GLOBAL IN ( \
               SELECT order_id FROM commerce_events WHERE {STORE_AND_BOTS} AND type = 'order.refunded' \
               AND timestamp < fromUnixTimestamp64Milli({{to:Int64}}))) AS refunds \
           FROM (SELECT order_id, any(properties) AS p, any(session_id) AS session FROM commerce_events \
                 WHERE {base} AND type = 'order.completed' AND currency = {{currency:String}} GROUP BY order_id) \
           ARRAY JOIN JSONExtractArrayRaw(p, 'items') AS item GROUP BY key) AS o \
         USING key \
         FULL OUTER JOIN ( \
           SELECT JSONExtractString(item, 'productId') AS key, \
             sum({ITEM_QTY} * JSONExtractInt(item, 'price')) AS refunded \
           FROM (SELECT id, any(properties) AS p FROM commerce_events \
                 WHERE {base} AND type = 'order.refunded' AND currency = {{currency:String}} GROUP BY id) \
           ARRAY JOIN JSONExtractArrayRaw(p, 'items') AS item GROUP BY key) AS r \
         USING key WHERE key != ''"
    );
    Sql {
        text,
        binds: Binds {
            currency: Some(q.currency.clone()),
            tz: None,
            ..Binds::of_read(&q.store_id, &q.range, q.include_bots, &q.filters)
        },
    }
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &ProductQuery,
) -> Result<Vec<ProductFacts>, StoreError> {
    let rows = sql(q).fetch_all::<ProductRow>(store, "products").await?;
    Ok(rows
        .into_iter()
        .map(|r| ProductFacts {
            product_id: r.key,
            views: r.views,
            view_sessions: r.view_sessions,
            add_to_carts: r.adds,
            cart_sessions: r.cart_sessions,
            orders: r.orders,
            units: r.units,
            revenue: r.revenue,
            purchase_sessions: r.purchase_sessions,
            refunds: r.refunds,
            refunded_amount: r.refunded,
        })
        .collect())
}
