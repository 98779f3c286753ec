//! Ranked metrics on BigQuery: one query per metric, each returning `key` plus four measures `a`, `b`,
//! `c`, `d` that [`RankedRow::from_measures`] names, as on ClickHouse (`store/clickhouse/read/ranked.rs`).
//!
//! Translations worth knowing: an order's items are `JSON_QUERY_ARRAY(properties, '$.items')`
//! unnested; "the first non-empty value in the session" (ClickHouse `argMinIf`) is
//! `MIN_BY` over the non-empty values; a referrer's domain without `www.` is a regular
//! expression over the URL's host; a session's revenue sums each of its orders once (grouped by
//! session, order and amount, as ClickHouse's `groupUniqArray`).

use super::{CUSTOMER_ORDERS_WITH_FIRST, Sql, all_events, events_in_range};
use crate::error::StoreError;
use crate::query::ranked::{Ranked, RankedQuery, RankedRow};
use crate::store::bigquery::BigQueryStore;
use crate::store::bigquery::client::Param;

/// The first non-empty value of `column` in the session (by time): rows where it is empty have a NULL
/// ordering key, which `MIN_BY` skips. (`ARRAY_AGG(… IGNORE NULLS ORDER BY … LIMIT 1)` would do too, but
/// the emulator cannot translate it.)
pub(super) fn first_in_session(column: &str) -> String {
    format!("MIN_BY(IF({column} != '', {column}, NULL), IF({column} != '', timestamp, NULL))")
}

/// An item's quantity (1 when it has none) and its product.
const ITEM_QTY: &str = "IFNULL(SAFE_CAST(JSON_VALUE(item, '$.quantity') AS INT64), 1)";
const ITEM_PRICE: &str = "IFNULL(SAFE_CAST(JSON_VALUE(item, '$.price') AS INT64), 0)";
const ITEM_PRODUCT: &str = "IFNULL(JSON_VALUE(item, '$.productId'), '')";

/// Each completed order once (in `@currency` when `in_currency`), one row per item.
fn order_items(in_currency: bool) -> String {
    let currency = if in_currency {
        " AND currency = @currency"
    } else {
        ""
    };
    format!(
        "SELECT order_id, item FROM (SELECT order_id, ANY_VALUE(properties) AS p FROM ev \
         WHERE type = 'order.completed'{currency} GROUP BY order_id), \
         UNNEST(JSON_QUERY_ARRAY(p, '$.items')) AS item"
    )
}

/// The latest stock per product before the period's end.
const STOCK: &str = "SELECT product_id AS key, \
     ARRAY_AGG(quantity ORDER BY timestamp DESC, quantity DESC LIMIT 1)[OFFSET(0)] AS stock, MAX(timestamp) AS at \
     FROM all_ev WHERE type = 'inventory.updated' AND timestamp < @to GROUP BY key";

/// Sessions by `key` (an expression over a session's first `utm`, `ref`, `campaign` and `landing`
/// page): sessions, sessions with an order, their orders' amount in the currency, sessions that saw a
/// single page (one distinct page path).
fn sessions(key: &str) -> String {
    format!(
        "SELECT s.key AS key, COUNT(*) AS a, COUNTIF(s.orders > 0) AS b, IFNULL(SUM(r.revenue), 0) AS c, \
           COUNTIF(s.pages = 1) AS d FROM ( \
           SELECT session_id, {key} AS key, orders, pages FROM ( \
             SELECT session_id, IFNULL({}, '') AS utm, IFNULL({}, '') AS ref, IFNULL({}, '') AS campaign, \
             IFNULL({}, '') AS landing, COUNT(DISTINCT IF({PAGE} != '', {PAGE}, NULL)) AS pages, \
             MAX(IF(type = 'order.completed' AND currency = @currency, 1, 0)) AS orders \
             FROM ev WHERE session_id != '' GROUP BY session_id)) AS s \
         LEFT JOIN ( \
           SELECT session_id, SUM(amount) AS revenue FROM ( \
             SELECT session_id, order_id, amount FROM ev WHERE session_id != '' \
             AND type = 'order.completed' AND currency = @currency GROUP BY session_id, order_id, amount) \
           GROUP BY session_id) AS r ON s.session_id = r.session_id \
         WHERE s.key != '' GROUP BY key ORDER BY a DESC, key LIMIT @limit",
        first_in_session("utm_source"),
        first_in_session("referrer"),
        first_in_session("utm_campaign"),
        first_in_session(PAGE),
    )
}

/// An event's page path: `context.page.path` when sent, else the path of `context.page.url` (ClickHouse's
/// `path()`: from the first `/` after the host, without query or fragment).
pub(super) const PAGE: &str = r"IF(page_path != '', page_path, IFNULL(REGEXP_EXTRACT(page_url, r'^[A-Za-z][A-Za-z0-9+.\-]*://[^/?#]*(/[^?#]*)'), ''))";

/// A session's first referrer's host without a leading `www.` (ClickHouse `domainWithoutWWW`).
pub(super) const REFERRER_DOMAIN: &str =
    r"IFNULL(REGEXP_EXTRACT(ref, r'^(?:[A-Za-z][A-Za-z0-9+.\-]*://)?(?:www\.)?([^/:?#]+)'), '')";

/// A session's source from its first `utm` and `ref` (see [`sessions`]), named as
/// [`crate::query::sources`] says: `traffic_sources` ranks by it, product performance filters by it.
pub(super) fn source() -> String {
    let mut named = String::from("CASE");
    for (name, pattern) in crate::query::sources::KNOWN {
        // Raw string literals: the patterns are this crate's constants, without quotes.
        named.push_str(&format!(
            " WHEN REGEXP_CONTAINS(LOWER({REFERRER_DOMAIN}), r'{pattern}') THEN '{name}'"
        ));
    }
    named.push_str(&format!(" ELSE {REFERRER_DOMAIN} END"));
    format!("IF(utm != '', utm, IF({REFERRER_DOMAIN} != '', {named}, 'direct'))")
}

/// The sessions of `events` (a CTE's name) that meet the session filters of `f` (`@source`,
/// `@landing_page`, `@referrer`), each computed over the session's events as the ranked metrics name them.
pub(super) fn sessions_matching(events: &str, f: &crate::query::params::Filters) -> String {
    let mut conditions = Vec::new();
    if f.source.is_some() {
        conditions.push(format!("{} = @source", source()));
    }
    if f.landing_page.is_some() {
        conditions.push("landing = @landing_page".to_owned());
    }
    if f.referrer.is_some() {
        conditions.push(format!("{REFERRER_DOMAIN} = @referrer"));
    }
    format!(
        "SELECT session_id FROM (SELECT session_id, IFNULL({}, '') AS utm, IFNULL({}, '') AS ref, \
           IFNULL({}, '') AS landing FROM {events} WHERE session_id != '' GROUP BY session_id) \
         WHERE {}",
        first_in_session("utm_source"),
        first_in_session("referrer"),
        first_in_session(PAGE),
        conditions.join(" AND ")
    )
}

pub fn sql(store: &BigQueryStore, q: &RankedQuery) -> Sql {
    let mut with = events_in_range(store, &q.filters);
    let text = match q.metric {
        Ranked::BestSellers => format!(
            "SELECT {ITEM_PRODUCT} AS key, SUM({ITEM_QTY}) AS a, SUM({ITEM_QTY} * {ITEM_PRICE}) AS b, \
             COUNT(DISTINCT order_id) AS c, 0 AS d FROM ({}) \
             GROUP BY key ORDER BY b DESC, a DESC, key LIMIT @limit",
            order_items(true)
        ),
        Ranked::TrafficSources => sessions(&source()),
        Ranked::CampaignPerformance => sessions("campaign"),
        Ranked::LandingPages => sessions("landing"),
        Ranked::Referrers => sessions(REFERRER_DOMAIN),
        Ranked::NewVsReturning => {
            with = format!("{with}, {}", all_events(store));
            // The segment is named in a subquery and grouped by its column: grouping by the `IF` over a
            // parameter makes the emulator's DuckDB refuse the query once a filter adds parameters
            // before it ("first_ts must appear in the GROUP BY clause"); BigQuery takes either.
            format!(
                "SELECT key, COUNT(DISTINCT cust) AS a, COUNT(*) AS b, SUM(amt) AS c, \
                 0 AS d FROM (SELECT IF(f.first_ts >= @from, 'new', 'returning') AS key, o.cust AS cust, \
                 o.amt AS amt FROM {CUSTOMER_ORDERS_WITH_FIRST} WHERE o.cur = @currency) \
                 GROUP BY key ORDER BY key LIMIT @limit"
            )
        }
        Ranked::StockLevels => {
            with = format!("{with}, {}", all_events(store));
            format!(
                "SELECT key, stock AS a, UNIX_SECONDS(at) AS b, 0 AS c, 0 AS d FROM ({STOCK}) \
                 ORDER BY a, key LIMIT @limit"
            )
        }
        Ranked::SellThroughRate => {
            with = format!("{with}, {}", all_events(store));
            format!(
                "SELECT key, IFNULL(o.sold, 0) AS a, IFNULL(s.stock, 0) AS b, 0 AS c, 0 AS d FROM ({STOCK}) AS s \
                 FULL OUTER JOIN ( \
                   SELECT {ITEM_PRODUCT} AS key, SUM({ITEM_QTY}) AS sold FROM ({}) GROUP BY key) AS o \
                 USING (key) WHERE key != '' \
                 ORDER BY IF(a + b = 0, 0, a / (a + b)) DESC, key LIMIT @limit",
                order_items(false)
            )
        }
    };
    let mut params = super::range_params(&q.store_id, &q.range, q.include_bots, &q.filters);
    params.extend([
        ("limit", Param::Int64(i64::from(q.limit))),
        (
            "currency",
            Param::String(q.currency.clone().unwrap_or_default()),
        ),
    ]);
    Sql {
        text: format!("{with} {text}"),
        params,
    }
}

/// The rows of `q`, best first.
pub async fn ranked(store: &BigQueryStore, q: &RankedQuery) -> Result<Vec<RankedRow>, StoreError> {
    let sql = sql(store, q);
    let rows = store.client().read(&sql.text, &sql.params).await?;
    let (key, a, b, c, d) = (
        rows.column("key")?,
        rows.column("a")?,
        rows.column("b")?,
        rows.column("c")?,
        rows.column("d")?,
    );
    (0..rows.rows.len())
        .map(|r| {
            Ok(RankedRow::from_measures(
                q.metric,
                rows.string(r, key),
                rows.i64(r, a)?,
                rows.i64(r, b)?,
                rows.i64(r, c)?,
                rows.i64(r, d)?,
            ))
        })
        .collect()
}
