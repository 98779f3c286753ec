//! Product names ([`crate::query::names`]): the latest non-empty `productName` per product among the
//! window's `product.viewed` events (bots included), the `max` of `(time, name)` pairs (on a tie of
//! times, the greater name, as the rollup keeps it).
//!
//! A window that starts on a UTC midnight (every step of the lookup does) is read from the names rollup
//! (`commerce_product_names`, migration v20: per store, product and UTC day the latest named view as a
//! `(time, name)` pair): the whole days before the day the window ends in, and that day's row apart. The
//! day's row is the window's answer for that day when its view came before the window's end — always,
//! for a period that ends now, as no view is stored from after now. Only for a product whose last day
//! holds a view from after the end (a period that ended earlier that day) are that day's views up to
//! the end read from the events, in a second read. Any other window is read from the events'
//! `product_name` column (migration v19).
//!
//! Measured on the 100M-event store before the rollup: the lookup's first step read 24 hours of views,
//! 17–20 ms, and the 29 days before it 122–133 ms (see the README's performance section for now).

use serde::Deserialize;

use super::{Binds, Sql};
use crate::error::StoreError;
use crate::query::names::{NamesQuery, ProductName};
use crate::store::clickhouse::ClickHouseStore;

const DAY_MS: i64 = 86_400_000;

/// A product's latest named view, from the events.
#[derive(Debug, Deserialize, clickhouse::Row)]
struct NameRow {
    product_id: String,
    name: String,
}

/// A product's latest named views from the rollup: over the whole days before the window's last day
/// (`before_*`), and on that day (`last_*`). No view: time 0 and an empty name (a stored name is never
/// empty).
#[derive(Debug, Deserialize, clickhouse::Row)]
struct RolledName {
    product_id: String,
    before_at: i64,
    before_name: String,
    last_at: i64,
    last_name: String,
}

/// How a window is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// From the events alone: the window does not start on a UTC midnight (or is empty).
    Events,
    /// From the rollup: the days `[from, last_day)` whole, and the day starting at `last_day` (Unix ms,
    /// the day of the window's last millisecond) as far as the window's end.
    Rollup { last_day: i64 },
}

fn plan(from: i64, to: i64) -> Plan {
    if from.rem_euclid(DAY_MS) != 0 || to <= from {
        return Plan::Events;
    }
    Plan::Rollup {
        last_day: (to - 1).div_euclid(DAY_MS) * DAY_MS,
    }
}

/// The latest named view per product of `ids` in `[from, to)` (`{from}`, `{to}`), from the events.
pub(super) fn events_sql(store_id: &str, ids: Vec<String>, from: i64, to: i64) -> Sql {
    Sql {
        text: "SELECT product_id, max((timestamp, CAST(product_name, 'String'))).2 AS name \
               FROM commerce_events \
               WHERE store_id = {store:String} AND type = 'product.viewed' \
                 AND timestamp >= fromUnixTimestamp64Milli({from:Int64}) \
                 AND timestamp < fromUnixTimestamp64Milli({to:Int64}) \
                 AND product_id IN {products:Array(String)} AND product_name != '' \
               GROUP BY product_id"
            .to_owned(),
        binds: Binds {
            store: store_id.to_owned(),
            from_ms: from,
            to_ms: Some(to),
            products: Some(ids),
            ..Binds::default()
        },
    }
}

/// The rollup's rows of the days `[from, last_day]` (`{from}`, `{to}` = `last_day`, Unix ms) per
/// product of `ids`: the latest view before the last day and on it.
pub(super) fn rollup_sql(store_id: &str, ids: Vec<String>, from: i64, last_day: i64) -> Sql {
    Sql {
        text: "WITH toDate(fromUnixTimestamp64Milli({to:Int64})) AS d \
               SELECT product_id, \
                 toUnixTimestamp64Milli(maxIf(latest, day < d).1) AS before_at, \
                 maxIf(latest, day < d).2 AS before_name, \
                 toUnixTimestamp64Milli(maxIf(latest, day = d).1) AS last_at, \
                 maxIf(latest, day = d).2 AS last_name \
               FROM commerce_product_names \
               WHERE store_id = {store:String} AND product_id IN {products:Array(String)} \
                 AND day >= toDate(fromUnixTimestamp64Milli({from:Int64})) \
                 AND day <= d \
               GROUP BY product_id"
            .to_owned(),
        binds: Binds {
            store: store_id.to_owned(),
            from_ms: from,
            to_ms: Some(last_day),
            products: Some(ids),
            ..Binds::default()
        },
    }
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &NamesQuery,
) -> Result<Vec<ProductName>, StoreError> {
    let (from, to) = (q.from.as_millisecond(), q.to.as_millisecond());
    let named = |rows: Vec<NameRow>| {
        rows.into_iter()
            .map(|r| ProductName {
                product_id: r.product_id,
                name: r.name,
            })
            .collect()
    };
    let last_day = match plan(from, to) {
        Plan::Events => {
            let rows = events_sql(&q.store_id, q.ids.clone(), from, to)
                .fetch_all::<NameRow>(store, "product names")
                .await?;
            return Ok(named(rows));
        }
        Plan::Rollup { last_day } => last_day,
    };
    let rolled = rollup_sql(&q.store_id, q.ids.clone(), from, last_day)
        .fetch_all::<RolledName>(store, "product names")
        .await?;
    let mut names = Vec::with_capacity(rolled.len());
    let mut past_the_end = Vec::new();
    for r in rolled {
        let before = (!r.before_name.is_empty()).then_some((r.before_at, r.before_name));
        let last = (!r.last_name.is_empty()).then_some((r.last_at, r.last_name));
        match last {
            // The last day's latest view is after the end: its views up to the end are read below.
            Some((at, _)) if at >= to => past_the_end.push((r.product_id, before)),
            last => {
                if let Some((_, name)) = before.max(last) {
                    names.push(ProductName {
                        product_id: r.product_id,
                        name,
                    });
                }
            }
        }
    }
    if past_the_end.is_empty() {
        return Ok(names);
    }
    let ids = past_the_end.iter().map(|(id, _)| id.clone()).collect();
    let on_the_day: std::collections::HashMap<String, String> =
        events_sql(&q.store_id, ids, last_day, to)
            .fetch_all::<NameRow>(store, "product names")
            .await?
            .into_iter()
            .map(|r| (r.product_id, r.name))
            .collect();
    for (product_id, before) in past_the_end {
        // A view of the last day is later than any of the days before it.
        let name = on_the_day
            .get(&product_id)
            .cloned()
            .or(before.map(|(_, name)| name));
        if let Some(name) = name {
            names.push(ProductName { product_id, name });
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_that_start_on_a_midnight_are_read_from_the_rollup_up_to_their_last_day() {
        let day = DAY_MS;
        let midnight = 20_000 * day;
        for (from, to, want) in [
            // The lookup's first step: the day before whole, the period's last day up to its end.
            (
                midnight - day,
                midnight + 37_000,
                Plan::Rollup { last_day: midnight },
            ),
            // Its later steps end on a midnight: their last day is whole.
            (
                midnight - 30 * day,
                midnight - day,
                Plan::Rollup {
                    last_day: midnight - 2 * day,
                },
            ),
            (
                midnight - day,
                midnight,
                Plan::Rollup {
                    last_day: midnight - day,
                },
            ),
            (
                midnight,
                midnight + 37_000,
                Plan::Rollup { last_day: midnight },
            ),
            (midnight + 1, midnight + 2 * day, Plan::Events),
            (midnight, midnight, Plan::Events),
        ] {
            assert_eq!(plan(from, to), want, "[{from}, {to})");
        }
    }
}
