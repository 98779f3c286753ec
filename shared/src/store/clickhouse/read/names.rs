//! Product names ([`crate::query::names`]): the latest non-empty `productName` per product among the
//! window's `product.viewed` events (bots included). The window's whole UTC days come from the names
//! rollup (`commerce_product_names`, migration v20: per store, product and day the latest named view as a
//! `(time, name)` pair), its partial days at either end from the events' `product_name` column (migration
//! v19); the answer is the `max` of the pairs, the name of the latest view (on a tie of times, the
//! greater name, as the rollup keeps it). The lookup's windows start on a UTC midnight and its first one
//! ends at the period's end, so a lookup reads the rollup and, at most, the events of the day the period
//! ends in. Before the rollup, the last day's step alone read 24 hours of views: 17–20 ms on the
//! 100M-event store, and the 29 days before it 122–133 ms.

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
    let (from, to) = (q.from.as_millisecond(), q.to.as_millisecond());
    let (rfrom, rto) = whole_days(from, to);
    let mut parts = Vec::new();
    if rfrom < rto {
        parts.push(
            "SELECT product_id, latest FROM commerce_product_names \
             WHERE store_id = {store:String} AND product_id IN {products:Array(String)} \
               AND day >= toDate(fromUnixTimestamp64Milli({rfrom:Int64})) \
               AND day < toDate(fromUnixTimestamp64Milli({rto:Int64}))",
        );
    }
    if from < rfrom || rto < to {
        parts.push(
            "SELECT product_id, (timestamp, CAST(product_name, 'String')) AS latest \
             FROM commerce_events \
             WHERE store_id = {store:String} AND type = 'product.viewed' \
               AND timestamp >= fromUnixTimestamp64Milli({from:Int64}) \
               AND timestamp < fromUnixTimestamp64Milli({to:Int64}) \
               AND (timestamp < fromUnixTimestamp64Milli({rfrom:Int64}) \
                    OR timestamp >= fromUnixTimestamp64Milli({rto:Int64})) \
               AND product_id IN {products:Array(String)} AND product_name != ''",
        );
    }
    Sql {
        text: format!(
            "SELECT product_id, max(latest).2 AS name FROM ({}) GROUP BY product_id",
            parts.join(" UNION ALL ")
        ),
        binds: Binds {
            store: q.store_id.clone(),
            from_ms: from,
            to_ms: Some(to),
            products: Some(q.ids.clone()),
            rollup_hours: Some((rfrom, rto)),
            ..Binds::default()
        },
    }
}

/// `[from, to)` (Unix milliseconds) shrunk to whole UTC days: what the names rollup answers. Empty
/// (`from >= to`) when the window holds no whole day.
fn whole_days(from: i64, to: i64) -> (i64, i64) {
    const DAY: i64 = 86_400_000;
    let start = from.div_euclid(DAY) * DAY + if from.rem_euclid(DAY) == 0 { 0 } else { DAY };
    (start, to.div_euclid(DAY) * DAY)
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
