//! Product names beside product ids: every answer keyed by product (best sellers, stock levels,
//! sell-through, product performance) gains `productName`, so people read "Classic Sneakers", not
//! `prod_0001`.
//!
//! A product's name is the latest non-empty `productName` its `product.viewed` events carried (bots
//! included: a name is a catalog fact, not traffic) before the answer's period ends. Looked up in steps,
//! so the common case reads little: from the UTC midnight [`LATEST`] before the day the period ends in
//! up to its end first, then, only for the products still without a name, the [`RECENT`] days before
//! that, then the days before those back to [`OLDEST`] before the end's day. A name found in a step is
//! later than any in the steps after it, so the answer is the same as one read of the whole window. A
//! product never viewed with a name in that window (a year and the end's day) has `productName: null`
//! (the page shows its id alone).
//!
//! Every window starts on a UTC midnight and only the first ends inside a day, so a warehouse with a
//! daily names rollup answers the steps from it, reading raw events only when the period ended before a
//! later view of its last day (ClickHouse: `commerce_product_names`, see `store/clickhouse/read/names.rs`).

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::ReadStore;
use crate::error::StoreError;

/// How far before the UTC midnight of the period's end the first window starts (it ends at the end).
pub const LATEST: SignedDuration = SignedDuration::from_hours(24);
/// How far before the UTC midnight of the period's end the second window starts (it ends where the
/// first starts).
pub const RECENT: SignedDuration = SignedDuration::from_hours(30 * 24);
/// How far before the UTC midnight of the period's end the third and last window starts.
pub const OLDEST: SignedDuration = SignedDuration::from_hours(365 * 24);

/// A product's latest name in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductName {
    pub product_id: String,
    pub name: String,
}

/// What a names lookup reads: the store's `product.viewed` events of `[from, to)` for `ids`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamesQuery {
    pub store_id: String,
    pub ids: Vec<String>,
    pub from: Timestamp,
    pub to: Timestamp,
}

/// The names of `ids` as of `end` (see the module docs); ids without one are absent from the map.
pub async fn lookup(
    store: &dyn ReadStore,
    store_id: &str,
    ids: Vec<String>,
    end: Timestamp,
) -> Result<HashMap<String, String>, StoreError> {
    let mut names = HashMap::new();
    let mut missing = ids;
    missing.sort();
    missing.dedup();
    let day = utc_midnight(end);
    let steps = [
        (day - LATEST, end),
        (day - RECENT, day - LATEST),
        (day - OLDEST, day - RECENT),
    ];
    for (from, to) in steps {
        if missing.is_empty() {
            break;
        }
        let q = NamesQuery {
            store_id: store_id.to_owned(),
            ids: std::mem::take(&mut missing),
            from,
            to,
        };
        let found = store.product_names(&q).await?;
        for n in found {
            names.insert(n.product_id, n.name);
        }
        missing = q
            .ids
            .into_iter()
            .filter(|id| !names.contains_key(id))
            .collect();
    }
    Ok(names)
}

/// The UTC midnight at or before `t`.
fn utc_midnight(t: Timestamp) -> Timestamp {
    const DAY: i64 = 86_400;
    Timestamp::from_second(t.as_second().div_euclid(DAY) * DAY).unwrap_or(t)
}

/// Adds `productName` (a string, or `null`) after `productId` to every row that has one, looking the names
/// up once for all of them; `previous` rows of a comparison are left alone (the row's name is theirs).
pub async fn attach(
    store: &dyn ReadStore,
    store_id: &str,
    end: Timestamp,
    rows: &mut [Value],
) -> Result<(), StoreError> {
    let ids: Vec<String> = rows
        .iter()
        .filter_map(|r| r["productId"].as_str().map(str::to_owned))
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let names = lookup(store, store_id, ids, end).await?;
    for row in rows.iter_mut() {
        let Some(obj) = row.as_object_mut() else {
            continue;
        };
        let Some(id) = obj.get("productId").and_then(Value::as_str) else {
            continue;
        };
        let name = names
            .get(id)
            .map_or(Value::Null, |n| Value::from(n.as_str()));
        // Rebuilt so `productName` sits right after `productId` (JSON objects keep insertion order here,
        // and the CSV export takes its columns from the first row).
        let mut out = serde_json::Map::with_capacity(obj.len() + 1);
        for (k, v) in std::mem::take(obj) {
            let after_id = k == "productId";
            out.insert(k, v);
            if after_id {
                out.insert("productName".into(), name.clone());
            }
        }
        *obj = out;
    }
    Ok(())
}
