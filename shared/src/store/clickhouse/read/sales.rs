//! The sales report ([`crate::query::sales`]): per bucket and over the period (one `GROUPING SETS` pass),
//! the sums of each completed order in the currency (once, at its first completion) and of each refund
//! event in the currency (once).

use serde::Deserialize;

use super::{Binds, IN_CURRENCY, Sql, base_filter, metrics::bucket_expr};
use crate::error::StoreError;
use crate::query::sales::{SalesBucket, SalesFacts, SalesQuery, SalesRead};
use crate::store::clickhouse::ClickHouseStore;

#[derive(Debug, Deserialize, clickhouse::Row)]
struct Row {
    b: i64,
    t: u8,
    gross: i64,
    discounts: i64,
    returns: i64,
    shipping: i64,
    taxes: i64,
    orders: i64,
}

pub(super) fn sql(q: &SalesQuery) -> Sql {
    let base = base_filter(&q.filters);
    Sql {
        text: format!(
            "SELECT {} AS b, toUInt8(grouping(b)) AS t, toInt64(sum(g)) AS gross, \
               toInt64(sum(d)) AS discounts, toInt64(sum(r)) AS returns, toInt64(sum(s)) AS shipping, \
               toInt64(sum(x)) AS taxes, toInt64(sum(o)) AS orders \
             FROM ( \
               SELECT ts, if(has_subtotal, subtotal + d, amt - s - x + d) AS g, d, toInt64(0) AS r, s, x, \
                 toInt64(1) AS o \
               FROM (SELECT min(timestamp) AS ts, any(amount) AS amt, any(properties) AS p, \
                       JSONHas(p, 'subtotal') AS has_subtotal, JSONExtractInt(p, 'subtotal') AS subtotal, \
                       JSONExtractInt(p, 'discount') AS d, JSONExtractInt(p, 'shipping') AS s, \
                       JSONExtractInt(p, 'tax') AS x \
                     FROM commerce_events WHERE {base}{IN_CURRENCY} AND type = 'order.completed' \
                     GROUP BY order_id) \
               UNION ALL \
               SELECT min(timestamp) AS ts, toInt64(0) AS g, toInt64(0) AS d, any(amount) AS r, \
                 toInt64(0) AS s, toInt64(0) AS x, toInt64(0) AS o \
               FROM commerce_events WHERE {base}{IN_CURRENCY} AND type = 'order.refunded' GROUP BY id) \
             GROUP BY GROUPING SETS ((b), ()) ORDER BY t, b",
            bucket_expr(q.range.granularity)
        ),
        binds: Binds {
            currency: Some(q.currency.clone()),
            ..Binds::of_read(&q.store_id, &q.range, q.include_bots, &q.filters)
        },
    }
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &SalesQuery,
) -> Result<SalesRead, StoreError> {
    let rows = sql(q).fetch_all::<Row>(store, "sales").await?;
    let facts = |r: &Row| SalesFacts {
        gross: r.gross,
        discounts: r.discounts,
        returns: r.returns,
        shipping: r.shipping,
        taxes: r.taxes,
        orders: r.orders,
    };
    Ok(SalesRead {
        buckets: rows
            .iter()
            .filter(|r| r.t == 0)
            .map(|r| SalesBucket {
                start: r.b,
                facts: facts(r),
            })
            .collect(),
        total: rows
            .iter()
            .find(|r| r.t == 1)
            .map(facts)
            .unwrap_or_default(),
    })
}
