//! Product performance on BigQuery ([`crate::query::products`]), as on ClickHouse
//! (`store/clickhouse/read/products.rs`): product-event facts and order facts per product, joined on the
//! product id; events read once each (`ev`), refunds from every event before the period's end.

use super::{Sql, all_events, events_in_range};
use crate::error::StoreError;
use crate::query::products::{ProductFacts, ProductQuery};
use crate::store::bigquery::BigQueryStore;
use crate::store::bigquery::client::Param;

pub fn sql(store: &BigQueryStore, q: &ProductQuery) -> Sql {
    let text = format!(
        "{}, {} \
         SELECT COALESCE(f.key, o.key, r.key) AS key, IFNULL(f.views, 0) AS views, \
           IFNULL(f.view_sessions, 0) AS view_sessions, IFNULL(f.adds, 0) AS adds, \
           IFNULL(f.cart_sessions, 0) AS cart_sessions, IFNULL(o.orders, 0) AS orders, \
           IFNULL(o.units, 0) AS units, IFNULL(o.revenue, 0) AS revenue, \
           IFNULL(o.purchase_sessions, 0) AS purchase_sessions, IFNULL(o.refunds, 0) AS refunds, \
           IFNULL(r.refunded, 0) AS refunded \
         FROM ( \
           SELECT product_id AS key, COUNT(DISTINCT IF(type = 'product.viewed', id, NULL)) AS views, \
             COUNT(DISTINCT IF(type = 'product.viewed' AND session_id != '', session_id, NULL)) AS view_sessions, \
             COUNT(DISTINCT IF(type = 'cart.item_added', id, NULL)) AS adds, \
             COUNT(DISTINCT IF(type = 'cart.item_added' AND session_id != '', session_id, NULL)) AS cart_sessions \
           FROM ev WHERE type IN ('product.viewed', 'cart.item_added') AND product_id != '' \
           GROUP BY key) AS f \
         FULL OUTER JOIN ( \
           SELECT IFNULL(JSON_VALUE(item, '$.productId'), '') AS key, COUNT(DISTINCT order_id) AS orders, \
             SUM(IFNULL(SAFE_CAST(JSON_VALUE(item, '$.quantity') AS INT64), 1)) AS units, \
             SUM(IFNULL(SAFE_CAST(JSON_VALUE(item, '$.quantity') AS INT64), 1) \
                 * IFNULL(SAFE_CAST(JSON_VALUE(item, '$.price') AS INT64), 0)) AS revenue, \
             COUNT(DISTINCT IF(session != '', session, NULL)) AS purchase_sessions, \
             COUNT(DISTINCT IF(order_id IN (SELECT order_id FROM all_ev WHERE type = 'order.refunded' \
               AND timestamp < @to), order_id, NULL)) AS refunds \
           FROM (SELECT order_id, ANY_VALUE(properties) AS p, ANY_VALUE(session_id) AS session FROM ev \
                 WHERE type = 'order.completed' AND currency = @currency GROUP BY order_id), \
             UNNEST(JSON_QUERY_ARRAY(p, '$.items')) AS item \
           GROUP BY key) AS o \
         ON f.key = o.key \
         FULL OUTER JOIN ( \
           SELECT IFNULL(JSON_VALUE(item, '$.productId'), '') AS key, \
             SUM(IFNULL(SAFE_CAST(JSON_VALUE(item, '$.quantity') AS INT64), 1) \
                 * IFNULL(SAFE_CAST(JSON_VALUE(item, '$.price') AS INT64), 0)) AS refunded \
           FROM (SELECT id, ANY_VALUE(properties) AS p FROM ev \
                 WHERE type = 'order.refunded' AND currency = @currency GROUP BY id), \
             UNNEST(JSON_QUERY_ARRAY(p, '$.items')) AS item \
           GROUP BY key) AS r \
         ON COALESCE(f.key, o.key) = r.key WHERE COALESCE(f.key, o.key, r.key) != ''",
        events_in_range(store, &q.filters),
        all_events(store)
    );
    let mut params = super::range_params(&q.store_id, &q.range, q.include_bots, &q.filters);
    params.extend([("currency", Param::String(q.currency.clone()))]);
    Sql { text, params }
}

/// Every product's facts.
pub async fn product_performance(
    store: &BigQueryStore,
    q: &ProductQuery,
) -> Result<Vec<ProductFacts>, StoreError> {
    let sql = sql(store, q);
    let rows = store.client().read(&sql.text, &sql.params).await?;
    let col = |name: &str| rows.column(name);
    let (key, views, view_sessions, adds, cart_sessions) = (
        col("key")?,
        col("views")?,
        col("view_sessions")?,
        col("adds")?,
        col("cart_sessions")?,
    );
    let (orders, units, revenue, purchase_sessions, refunds) = (
        col("orders")?,
        col("units")?,
        col("revenue")?,
        col("purchase_sessions")?,
        col("refunds")?,
    );
    let refunded = col("refunded")?;
    (0..rows.rows.len())
        .map(|r| {
            Ok(ProductFacts {
                product_id: rows.string(r, key),
                views: rows.i64(r, views)?,
                view_sessions: rows.i64(r, view_sessions)?,
                add_to_carts: rows.i64(r, adds)?,
                cart_sessions: rows.i64(r, cart_sessions)?,
                orders: rows.i64(r, orders)?,
                units: rows.i64(r, units)?,
                revenue: rows.i64(r, revenue)?,
                purchase_sessions: rows.i64(r, purchase_sessions)?,
                refunds: rows.i64(r, refunds)?,
                refunded_amount: rows.i64(r, refunded)?,
            })
        })
        .collect()
}
