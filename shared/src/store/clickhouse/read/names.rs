//! Product names ([`crate::query::names`]): the latest non-empty `productName` per product among the
//! window's `product.viewed` events. The product filter (`IN`) reads the small `product_id` column first,
//! so `properties` is parsed only for the requested products' views.

use serde::Deserialize;

use super::{Binds, Sql};
use crate::error::StoreError;
use crate::query::names::{NamesQuery, ProductName};
use crate::store::clickhouse::ClickHouseStore;

#[derive(Debug, Deserialize, clickhouse::Row)]
struct NameRow {
    product_id: String,
    name: String,
}

pub(super) fn sql(q: &NamesQuery) -> Sql {
    Sql {
        text: "SELECT product_id, argMax(n, timestamp) AS name \
               FROM (SELECT product_id, timestamp, JSONExtractString(properties, 'productName') AS n \
                     FROM commerce_events \
                     WHERE store_id = {store:String} AND type = 'product.viewed' \
                       AND timestamp >= fromUnixTimestamp64Milli({from:Int64}) \
                       AND timestamp < fromUnixTimestamp64Milli({to:Int64}) \
                       AND product_id IN {products:Array(String)}) \
               WHERE n != '' GROUP BY product_id"
            .to_owned(),
        binds: Binds {
            store: q.store_id.clone(),
            from_ms: q.from.as_millisecond(),
            to_ms: Some(q.to.as_millisecond()),
            products: Some(q.ids.clone()),
            ..Binds::default()
        },
    }
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &NamesQuery,
) -> Result<Vec<ProductName>, StoreError> {
    let rows = sql(q).fetch_all::<NameRow>(store, "product names").await?;
    Ok(rows
        .into_iter()
        .map(|r| ProductName {
            product_id: r.product_id,
            name: r.name,
        })
        .collect())
}
