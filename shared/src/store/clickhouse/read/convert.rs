//! A money metric's amounts per bucket, currency and UTC day ([`crate::query::convert`]): each order once
//! (at its first completion) and, for `net_revenue`, each refund event once, negative, in every currency.

use serde::Deserialize;

use super::{Binds, Sql, base_filter, each_order, metrics::bucket_expr};
use crate::error::StoreError;
use crate::query::convert::CurrencyDayFacts;
use crate::query::metrics::{Metric, MetricQuery};
use crate::store::clickhouse::ClickHouseStore;

#[derive(Debug, Deserialize, clickhouse::Row)]
struct Row {
    b: i64,
    cur: String,
    d: String,
    x: i64,
    y: i64,
}

pub(super) fn sql(q: &MetricQuery) -> Sql {
    let base = base_filter(&q.filters);
    let orders = each_order(
        "min(timestamp) AS ts, any(amount) AS v, any(currency) AS cur, toInt64(1) AS o",
        &base,
    );
    let source = if q.metric == Metric::NetRevenue {
        format!(
            "{orders} UNION ALL SELECT min(timestamp) AS ts, -any(amount) AS v, any(currency) AS cur, \
             toInt64(0) AS o FROM commerce_events WHERE {base} AND type = 'order.refunded' GROUP BY id"
        )
    } else {
        orders
    };
    Sql {
        text: format!(
            "SELECT {} AS b, cur, toString(toDate(ts, 'UTC')) AS d, toInt64(sum(v)) AS x, \
             toInt64(sum(o)) AS y FROM ({source}) GROUP BY b, cur, d ORDER BY b, cur, d",
            bucket_expr(q.range.granularity)
        ),
        binds: Binds::of_read(&q.store_id, &q.range, q.include_bots, &q.filters),
    }
}

pub(super) async fn fetch(
    store: &ClickHouseStore,
    q: &MetricQuery,
) -> Result<Vec<CurrencyDayFacts>, StoreError> {
    let rows = sql(q).fetch_all::<Row>(store, "conversion rates").await?;
    rows.into_iter()
        .map(|r| {
            Ok(CurrencyDayFacts {
                bucket: r.b,
                day: r
                    .d
                    .parse()
                    .map_err(|e| StoreError::Rejected(format!("day {}: {e}", r.d)))?,
                currency: r.cur,
                amount: r.x,
                orders: r.y,
            })
        })
        .collect()
}
