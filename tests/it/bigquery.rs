//! The BigQuery adapter against the real emulator (`scripts/bigquery`): the client's contract (errors
//! answered with 200, paging, int64 timestamps, parameters), the versioned schema, and event writes that
//! count a resent event once.

use commerce_analytics::event::{Event, RequestMeta, Validator};
use commerce_analytics::store::EventStore;
use commerce_analytics::store::Warehouse;
use commerce_analytics::store::bigquery::{EVENTS_TABLE, Param, migrations, read};
use integration_tests::test_bigquery;

/// Dry-runs `sql` (BigQuery validates it and reports the bytes it would scan; the emulator always reports
/// 0, see the README), failing the test when it is refused.
async fn dry_run(
    bq: &commerce_analytics::store::bigquery::BigQueryStore,
    sql: &read::Sql,
    what: &str,
) {
    bq.client()
        .dry_run(&sql.text, &sql.params)
        .await
        .unwrap_or_else(|e| panic!("dry run of {what}: {e}"));
}

/// `n` valid page views of store `shop-a` with ids `<prefix><i>`.
fn page_views(prefix: &str, n: usize) -> Vec<Event> {
    let v = Validator {
        limits: Default::default(),
        retention_days: 365,
        anonymize_ip: true,
    };
    let now = time::OffsetDateTime::now_utc();
    (0..n)
        .map(|i| {
            let wire = serde_json::json!({"id": format!("{prefix}{i}"), "type": "page.viewed"});
            v.validate(wire, "shop-a", &RequestMeta::default(), now)
                .expect("valid")
        })
        .collect()
}

#[tokio::test]
async fn migrations_create_the_schema_once_and_a_second_run_applies_nothing() {
    let store = test_bigquery("bq_migrate").await;
    assert_eq!(
        migrations::version(&store).await.expect("version"),
        migrations::ALERTS
    );
    let again = store.migrate(365).await.expect("idempotent");
    assert!(again.applied.is_empty(), "{again:?}");
    let tables = store
        .client()
        .query(
            &format!(
                "SELECT table_name FROM `{}.INFORMATION_SCHEMA.TABLES` ORDER BY table_name",
                store.dataset()
            ),
            &[],
        )
        .await
        .expect("tables");
    let names: Vec<String> = (0..tables.rows.len())
        .map(|r| tables.string(r, 0))
        .collect();
    for want in [
        "alert_claims",
        "alert_deliveries",
        "alert_log",
        "alert_rules",
        "analytics_dashboards",
        "api_keys",
        "events",
        "events_rejects",
        "fx_rates",
        "schema_migrations",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn a_resent_event_is_stored_again_but_counted_once() {
    let store = test_bigquery("bq_resend").await;
    let first = page_views("resend_", 3);
    store.insert(&first, "t1").await.expect("insert");
    // A client resends two of them in a later batch (and one repeats inside the batch).
    let again = vec![first[0].clone(), first[1].clone(), first[1].clone()];
    store.insert(&again, "t2").await.expect("insert again");
    let raw = store
        .client()
        .query(
            &format!("SELECT COUNT(*) FROM {}", store.table(EVENTS_TABLE)),
            &[],
        )
        .await
        .expect("count");
    assert_eq!(
        raw.i64(0, 0).expect("n"),
        5,
        "insertAll kept the resend (no insertId dedup)"
    );
    assert_eq!(store.count_events("shop-a").await.expect("count"), 3);
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn timestamps_and_parameters_round_trip_exactly() {
    let store = test_bigquery("bq_types").await;
    let mut events = page_views("types_", 1);
    let at = time::macros::datetime!(2026-03-29 01:30:00.123 UTC);
    events[0].timestamp = at;
    store.insert(&events, "t").await.expect("insert");
    let rows = store
        .client()
        .query(
            &format!(
                "SELECT timestamp, id FROM {} WHERE store_id = @store AND id IN UNNEST(@ids) \
                 AND timestamp >= @from",
                store.table(EVENTS_TABLE)
            ),
            &[
                ("store", Param::String("shop-a".into())),
                (
                    "ids",
                    Param::Strings(vec![events[0].id.clone(), "other".into()]),
                ),
                (
                    "from",
                    Param::Timestamp((at.unix_timestamp_nanos() / 1000) as i64 - 1),
                ),
            ],
        )
        .await
        .expect("query");
    assert_eq!(rows.rows.len(), 1);
    assert_eq!(
        rows.i64(0, rows.column("timestamp").expect("column"))
            .expect("micros"),
        (at.unix_timestamp_nanos() / 1000) as i64,
        "int64 microseconds, exactly"
    );
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn a_failing_query_is_an_error_even_when_the_emulator_answers_200() {
    let store = test_bigquery("bq_errors").await;
    let err = store
        .client()
        .query(
            "SELECT no_such_column FROM `no_such_dataset.no_such_table`",
            &[],
        )
        .await
        .expect_err("a failing query fails");
    assert!(!err.is_retryable(), "{err}");
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn a_large_result_is_read_page_by_page_to_the_last_row() {
    let store = test_bigquery("bq_pages").await;
    let rows = store
        .client()
        .query(
            "SELECT x FROM UNNEST(GENERATE_ARRAY(1, 120000)) AS x ORDER BY x",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(rows.rows.len(), 120_000);
    assert_eq!(rows.i64(119_999, 0).expect("last"), 120_000);
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn a_read_past_its_time_limit_answers_504_naming_the_period() {
    // One millisecond: no read on the emulator answers that fast, so every read meets the deadline that a
    // slow read on BigQuery meets at the default 25 s.
    let (config, store) = integration_tests::test_bigquery_with(
        "bq_read_timeout",
        &[("BIGQUERY_QUERY_TIMEOUT_SECONDS", "0.001")],
    )
    .await;
    let err = store
        .client()
        .read("SELECT 1 AS x", &[])
        .await
        .expect_err("a read past its deadline fails");
    assert!(
        matches!(err, commerce_analytics::store::StoreError::ReadTimeout(_)),
        "{err}"
    );
    // Statements that are not reads (migrations above, writes, erasure) keep BigQuery's own pace.
    let rows = store
        .client()
        .query("SELECT 1 AS x", &[])
        .await
        .expect("query");
    assert_eq!(rows.i64(0, 0).expect("x"), 1);
    commerce_analytics::auth::keys::seed(&store, &config.keys, time::OffsetDateTime::now_utc())
        .await
        .expect("seed the test keys");
    let api = commerce_analytics::lambda::store_routes_api_for(&config).expect("api");
    let (status, body) = integration_tests::call(
        &api,
        "GET",
        "/analytics/metrics?metric=revenue&period=30d",
        integration_tests::READ_KEY,
        None,
    )
    .await;
    integration_tests::assert_read_refused(status, &body, (504, "read_timeout"));
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn a_read_runs_no_longer_than_what_is_left_of_its_request() {
    use commerce_analytics::query::deadline;
    use std::time::Duration;
    use tokio::time::Instant;
    // Each read's own limit is the default 25 s; the request's deadline decides.
    let (config, store) = integration_tests::test_bigquery_with("bq_deadline", &[]).await;
    let ahead = Some(Instant::now() + Duration::from_secs(30));
    let rows = deadline::within(ahead, store.client().read("SELECT 1 AS x", &[]))
        .await
        .expect("a read with time ahead");
    assert_eq!(rows.i64(0, 0).expect("x"), 1);
    // One millisecond left at most: no read on the emulator answers that fast (see above).
    let nearly_spent = Some(Instant::now() + Duration::from_millis(1));
    let err = deadline::within(nearly_spent, store.client().read("SELECT 1 AS x", &[]))
        .await
        .expect_err("a read past its request's deadline fails");
    assert!(
        matches!(err, commerce_analytics::store::StoreError::ReadTimeout(_)),
        "{err}"
    );
    // Through the API on Lambda: an invocation with less than its answering second left gets our 504.
    commerce_analytics::auth::keys::seed(&store, &config.keys, time::OffsetDateTime::now_utc())
        .await
        .expect("seed the test keys");
    let api = commerce_analytics::lambda::store_routes_api_for(&config).expect("api");
    let spent = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
        + 500;
    let (status, body) = integration_tests::get_on_lambda(
        &api,
        "/analytics/metrics?metric=revenue&period=30d",
        integration_tests::READ_KEY,
        spent,
    )
    .await;
    integration_tests::assert_read_refused(status, &body, (504, "read_timeout"));
    store.drop_dataset().await.expect("drop");
}

/// The same demo events in ClickHouse and in BigQuery (where some are stored twice, as a resend would),
/// and every metric asked of both: the facts must be equal, bucket by bucket, in several zones (DST
/// included), granularities and filters.
#[tokio::test]
async fn every_read_answers_the_same_on_bigquery_as_on_clickhouse() {
    use commerce_analytics::demo::{DemoConfig, DemoGenerator};
    use commerce_analytics::query::ReadStore;
    use commerce_analytics::query::cohorts::CohortQuery;
    use commerce_analytics::query::funnel::{FunnelKey, FunnelQuery};
    use commerce_analytics::query::live::LiveQuery;
    use commerce_analytics::query::metrics::{Metric, MetricQuery};
    use commerce_analytics::query::params::Params;
    use commerce_analytics::query::ranked::{Ranked, RankedQuery};

    let now: jiff::Timestamp = "2026-12-01T10:20:30Z".parse().expect("now");
    let end = time::OffsetDateTime::from_unix_timestamp(now.as_second()).expect("end");
    let v = Validator {
        limits: Default::default(),
        retention_days: 365,
        anonymize_ip: true,
    };
    let events: Vec<Event> = DemoGenerator::new(DemoConfig {
        seed: 31,
        events: 40_000,
        days: 100,
        end,
    })
    .map(|w| {
        v.validate(w, "shop-a", &RequestMeta::default(), end)
            .expect("valid")
    })
    .collect();
    let ch = integration_tests::TestDb::new("bq_same").await;
    ch.store
        .insert(&events, "all")
        .await
        .expect("clickhouse insert");
    let bq = test_bigquery("bq_same").await;
    bq.insert(&events, "all").await.expect("bigquery insert");
    // A resend of a tenth of them, in another batch: BigQuery stores them twice, and must count them once.
    let resent: Vec<Event> = events.iter().step_by(10).cloned().collect();
    bq.insert(&resent, "again").await.expect("resend");

    let cases = [
        "period=30d&timezone=UTC&granularity=day",
        "period=90d&timezone=Europe/Berlin&granularity=week",
        "period=90d&timezone=America/New_York&granularity=month",
        "period=24h&timezone=Asia/Kolkata&granularity=hour",
        "period=7d&timezone=America/New_York&granularity=day&country=US",
        "period=30d&timezone=Europe/Berlin&granularity=day&currency=EUR",
        "period=30d&timezone=UTC&granularity=day&device=mobile&browser=Safari",
        "period=30d&timezone=Europe/Berlin&granularity=week&source=google&device=desktop",
        "period=90d&timezone=UTC&granularity=week&landingPage=/collections/sale&referrer=google.com",
    ];
    let mut compared = 0;
    for case in cases {
        let params = Params::parse(
            case,
            &[
                "period",
                "timezone",
                "granularity",
                "country",
                "currency",
                "device",
                "browser",
                "source",
                "landingPage",
                "referrer",
            ],
        )
        .expect("params");
        let range = params.range(now).expect("range");
        let filters = params.filters().expect("filters");
        for metric in Metric::ALL {
            if metric == Metric::Ltv && filters.first_given().is_some() {
                // The API refuses `ltv` with a filter (400 "ltv has no country filter").
                continue;
            }
            let q = MetricQuery {
                store_id: "shop-a".into(),
                metric,
                range: range.clone(),
                currency: (metric.in_currency() || metric == Metric::Ltv).then(|| {
                    params
                        .currency()
                        .expect("currency")
                        .unwrap_or("USD")
                        .to_owned()
                }),
                filters: filters.clone(),
                product_id: None,
                include_bots: false,
                compare: None,
                breakdown: None,
                convert: false,
            };
            let want = ch.store.metric(&q).await.expect("clickhouse");
            let (bucketed, total) = read::metric_sql(&bq, &q).expect("sql");
            dry_run(&bq, &bucketed, metric.name()).await;
            dry_run(&bq, &total, metric.name()).await;
            let got = bq
                .metric(&q)
                .await
                .unwrap_or_else(|e| panic!("{} ({case}) on BigQuery: {e}", metric.name()));
            assert_eq!(got, want, "{} ({case})", metric.name());
            compared += 1;
        }
    }
    // `ltv` is left out of the four filtered cases.
    assert_eq!(compared, cases.len() * Metric::ALL.len() - 4);
    // One product's views and add-to-cart rate, and every metric with bots counted.
    let product = events
        .iter()
        .find_map(|e| {
            (e.event_type.as_str() == "product.viewed").then(|| e.facts().product_id.to_owned())
        })
        .expect("a product view");
    let range = Params::parse(
        "period=30d&timezone=Europe/Berlin&granularity=day",
        &["period", "timezone", "granularity"],
    )
    .and_then(|p| p.range(now))
    .expect("range");
    for (metric, product_id, include_bots) in Metric::ALL.iter().map(|m| (*m, None, true)).chain([
        (Metric::ProductViews, Some(product.clone()), false),
        (Metric::AddToCartRate, Some(product.clone()), false),
    ]) {
        let q = MetricQuery {
            store_id: "shop-a".into(),
            metric,
            range: range.clone(),
            currency: (metric.in_currency() || metric == Metric::Ltv).then(|| "USD".to_owned()),
            filters: Default::default(),
            product_id,
            include_bots,
            compare: None,
            breakdown: None,
            convert: false,
        };
        let want = ch.store.metric(&q).await.expect("clickhouse");
        let got = bq.metric(&q).await.expect("bigquery");
        assert_eq!(
            got,
            want,
            "{} (product {:?}, bots {include_bots})",
            metric.name(),
            q.product_id
        );
    }
    // Every ranked metric, over the whole range, in one country, on one device and from one source
    // (the inventory metrics take no filters).
    for case in [
        "period=90d&timezone=UTC",
        "period=30d&timezone=UTC&country=US",
        "period=90d&timezone=UTC&device=desktop",
        "period=90d&timezone=UTC&source=google",
    ] {
        let params = Params::parse(
            case,
            &[
                "period", "timezone", "country", "device", "browser", "source",
            ],
        )
        .expect("params");
        let range = params.range(now).expect("range");
        let filters = params.filters().expect("filters");
        for metric in Ranked::ALL {
            if (filters.device.is_some() || filters.source.is_some())
                && matches!(metric, Ranked::StockLevels | Ranked::SellThroughRate)
            {
                continue;
            }
            let q = RankedQuery {
                store_id: "shop-a".into(),
                metric,
                range: range.clone(),
                currency: Some("USD".into()),
                filters: filters.clone(),
                limit: 50,
                include_bots: false,
                compare: None,
            };
            let want = ch.store.ranked(&q).await.expect("clickhouse");
            dry_run(&bq, &read::ranked_sql(&bq, &q), &format!("{metric:?}")).await;
            let got = bq
                .ranked(&q)
                .await
                .unwrap_or_else(|e| panic!("{metric:?} ({case}) on BigQuery: {e}"));
            assert_eq!(got, want, "{metric:?} ({case})");
            assert!(!want.is_empty(), "{metric:?} ({case}) compares real rows");
        }
    }
    // Breakdowns: every group's total, then the top three apart with the rest as (other), per bucket.
    {
        use commerce_analytics::query::breakdown::{
            Dimension, GroupFacts, Groups, partitions, top,
        };
        let range = Params::parse(
            "period=30d&timezone=Europe/Berlin&granularity=day",
            &["period", "timezone", "granularity"],
        )
        .and_then(|p| p.range(now))
        .expect("range");
        let sorted = |mut g: Vec<GroupFacts>| {
            g.sort_by(|a, b| a.key.cmp(&b.key));
            g
        };
        let mut compared = 0;
        for metric in Metric::ALL {
            // Every dimension of sessions and revenue; device, source and product of the others.
            for by in Dimension::ALL.into_iter().filter(|d| {
                d.applies_to(metric)
                    && (matches!(metric, Metric::Sessions | Metric::Revenue)
                        || matches!(
                            d,
                            Dimension::Device | Dimension::Source | Dimension::Product
                        ))
            }) {
                let q = MetricQuery {
                    store_id: "shop-a".into(),
                    metric,
                    range: range.clone(),
                    currency: metric.in_currency().then(|| "USD".to_owned()),
                    filters: Default::default(),
                    product_id: None,
                    include_bots: false,
                    compare: None,
                    breakdown: None,
                    convert: false,
                };
                let what = format!("{} by {}", metric.name(), by.name());
                // The groups ClickHouse answers, checked equal on BigQuery.
                let same = async |groups: Groups<'_>| {
                    let want = ch
                        .store
                        .metric_groups(&q, by, groups)
                        .await
                        .expect("clickhouse");
                    let got = bq
                        .metric_groups(&q, by, groups)
                        .await
                        .unwrap_or_else(|e| panic!("{what} ({groups:?}) on BigQuery: {e}"));
                    assert_eq!(sorted(got), sorted(want.clone()), "{what} ({groups:?})");
                    want
                };
                let totals = same(Groups::AllTotals).await;
                assert!(!totals.is_empty(), "{what} compares real groups");
                if partitions(metric) {
                    same(Groups::All).await;
                }
                let keep = top(metric, &totals, 3);
                let (bucketed, total) =
                    read::metric_group_sql(&bq, &q, by, Groups::Top(&keep)).expect("sql");
                dry_run(&bq, bucketed.as_ref().expect("bucketed"), &what).await;
                dry_run(&bq, total.as_ref().expect("total"), &what).await;
                same(Groups::Top(&keep)).await;
                compared += 1;
            }
        }
        assert_eq!(compared, 2 * 9 + 6 * 2 + 1);
    }
    // Product performance, plain, by session source, by country, and by device and browser.
    for case in [
        "period=90d&timezone=UTC",
        "period=90d&timezone=UTC&source=google",
        "period=30d&timezone=UTC&country=US",
        "period=30d&timezone=UTC&device=mobile&browser=Safari",
    ] {
        let params = Params::parse(
            case,
            &[
                "period", "timezone", "country", "device", "browser", "source",
            ],
        )
        .expect("params");
        let q = commerce_analytics::query::products::ProductQuery {
            store_id: "shop-a".into(),
            range: params.range(now).expect("range"),
            currency: "USD".into(),
            filters: params.filters().expect("filters"),
            sort: "revenue",
            descending: true,
            limit: 100,
            include_bots: false,
            compare: None,
        };
        let mut want = ch.store.product_performance(&q).await.expect("clickhouse");
        dry_run(&bq, &read::products_sql(&bq, &q), "product_performance").await;
        let mut got = bq
            .product_performance(&q)
            .await
            .unwrap_or_else(|e| panic!("product_performance ({case}) on BigQuery: {e}"));
        want.sort_by(|a, b| a.product_id.cmp(&b.product_id));
        got.sort_by(|a, b| a.product_id.cmp(&b.product_id));
        assert!(
            want.iter().any(|p| p.views > 0 && p.cart_sessions > 0)
                && (q.filters.source.is_some() || want.iter().any(|p| p.orders > 0)),
            "product_performance ({case}) compares real rows"
        );
        assert_eq!(got, want, "product_performance ({case})");
    }
    // Money converted into a reporting currency: the same rates stored in both, read back equal, and the
    // per currency and day amounts equal (which the query side converts, once for both).
    {
        use commerce_analytics::fx::{self, RateStore};
        let day = fx::utc_day(now);
        let recent: Vec<fx::DailyRate> = fx::parse_ecb_csv(analytics_cli::demo_load::ECB_HISTORY)
            .expect("history")
            .into_iter()
            .filter(|r| r.day >= jiff::civil::date(2026, 7, 1))
            .collect();
        let mut rates = recent.clone();
        rates.extend(fx::carry_forward(&recent, day));
        ch.store
            .put_rates(&rates, "test")
            .await
            .expect("clickhouse rates");
        bq.put_rates(&rates, "test").await.expect("bigquery rates");
        let key = |r: &fx::DailyRate| (r.day, r.currency.clone());
        let (mut a, mut b) = (
            ch.store
                .exchange_rates(jiff::civil::date(2026, 8, 1), day)
                .await
                .expect("clickhouse"),
            bq.exchange_rates(jiff::civil::date(2026, 8, 1), day)
                .await
                .expect("bigquery"),
        );
        a.sort_by_key(key);
        b.sort_by_key(key);
        assert!(a.len() > 1_000, "{}", a.len());
        assert_eq!(a, b, "rates read back");
        for (metric, case) in [
            (
                Metric::Revenue,
                "period=90d&timezone=Europe/Berlin&granularity=week",
            ),
            (
                Metric::NetRevenue,
                "period=30d&timezone=UTC&granularity=day&device=mobile",
            ),
        ] {
            let params = Params::parse(case, &["period", "timezone", "granularity", "device"])
                .expect("params");
            let q = MetricQuery {
                store_id: "shop-a".into(),
                metric,
                range: params.range(now).expect("range"),
                currency: Some("EUR".into()),
                filters: params.filters().expect("filters"),
                product_id: None,
                include_bots: false,
                compare: None,
                breakdown: None,
                convert: true,
            };
            dry_run(
                &bq,
                &read::money_by_currency_sql(&bq, &q).expect("sql"),
                "money",
            )
            .await;
            let want = ch.store.money_by_currency(&q).await.expect("clickhouse");
            let got = bq.money_by_currency(&q).await.expect("bigquery");
            assert!(
                want.iter()
                    .map(|r| &r.currency)
                    .collect::<std::collections::HashSet<_>>()
                    .len()
                    > 1,
                "several currencies"
            );
            assert_eq!(got, want, "{} converted ({case})", metric.name());
            let (ch_facts, ch_conv) = commerce_analytics::query::convert::facts(&ch.store, &q)
                .await
                .expect("ch");
            let (bq_facts, bq_conv) = commerce_analytics::query::convert::facts(&bq, &q)
                .await
                .expect("bq");
            assert_eq!(
                (bq_facts, bq_conv),
                (ch_facts, ch_conv),
                "{}",
                metric.name()
            );
        }
    }
    // The sales report, by week in Berlin and by day in one country; a refund in both stores (the demo's
    // few USD orders here have none) so returns are compared too.
    let refund = event_at(
        "shop-a",
        serde_json::json!({"id": "evt_sales_refund", "type": "order.refunded",
            "context": {"country": "US"},
            "properties": {"orderId": "ord_sales", "amount": 1_234, "currency": "USD"}}),
        end - time::Duration::days(3),
    );
    ch.store
        .insert(std::slice::from_ref(&refund), "refund")
        .await
        .expect("clickhouse");
    bq.insert(std::slice::from_ref(&refund), "refund")
        .await
        .expect("bigquery");
    for case in [
        "period=90d&timezone=Europe/Berlin&granularity=week",
        "period=30d&timezone=UTC&granularity=day&country=US",
    ] {
        let params =
            Params::parse(case, &["period", "timezone", "granularity", "country"]).expect("params");
        let q = commerce_analytics::query::sales::SalesQuery {
            store_id: "shop-a".into(),
            range: params.range(now).expect("range"),
            currency: "USD".into(),
            filters: params.filters().expect("filters"),
            include_bots: false,
        };
        dry_run(&bq, &read::sales_sql(&bq, &q).expect("sql"), "sales").await;
        let want = ch.store.sales(&q).await.expect("clickhouse");
        assert!(
            want.total.orders > 0 && want.total.returns > 0,
            "{case}: {want:?}"
        );
        assert_eq!(
            bq.sales(&q).await.expect("bigquery"),
            want,
            "sales ({case})"
        );
    }
    // Cohorts by week and by month, in two zones.
    for case in [
        "period=90d&timezone=Europe/Berlin&granularity=week",
        "period=90d&timezone=America/New_York&granularity=month",
    ] {
        let params = Params::parse(case, &["period", "timezone", "granularity"]).expect("params");
        let q = CohortQuery {
            store_id: "shop-a".into(),
            range: params.range(now).expect("range"),
            currency: "USD".into(),
            include_bots: false,
        };
        let want = ch.store.cohorts(&q).await.expect("clickhouse");
        dry_run(&bq, &read::cohorts_sql(&bq, &q).expect("sql"), "cohorts").await;
        let got = bq
            .cohorts(&q)
            .await
            .unwrap_or_else(|e| panic!("cohorts ({case}) on BigQuery: {e}"));
        assert!(!want.is_empty(), "cohorts ({case}) compares real cells");
        assert_eq!(got, want, "cohorts ({case})");
    }
    // The live panel over the last day (bots too, and without).
    for include_bots in [false, true] {
        let q = LiveQuery {
            store_id: "shop-a".into(),
            from_ms: now.as_millisecond() - 86_400_000,
            minutes: 1440,
            include_bots,
        };
        let want = ch.store.live(&q).await.expect("clickhouse");
        let (minutes, recent) = read::live_sql(&bq, &q);
        dry_run(&bq, &minutes, "live minutes").await;
        dry_run(&bq, &recent, "live recent").await;
        let got = bq
            .live(&q)
            .await
            .unwrap_or_else(|e| panic!("live on BigQuery: {e}"));
        assert!(
            !want.per_minute.is_empty() && !want.recent.is_empty(),
            "live compares real rows"
        );
        assert_eq!(got, want, "live (bots {include_bots})");
    }
    // Funnels by session and by customer, short and long windows, in both orders.
    let funnels = [
        (
            "page.viewed,product.viewed,cart.item_added,checkout.started,order.completed",
            86_400,
            FunnelKey::Session,
        ),
        (
            "product.viewed,cart.item_added,order.completed",
            600,
            FunnelKey::Session,
        ),
        (
            "product.viewed,order.completed",
            30 * 86_400,
            FunnelKey::Customer,
        ),
        // Out of the shop's usual order: strict order stops at the first product view after a page.
        (
            "page.viewed,cart.item_added,product.viewed",
            86_400,
            FunnelKey::Session,
        ),
        // A repeated step: one event can count for both, as in windowFunnel.
        (
            "page.viewed,page.viewed,order.completed",
            3_600,
            FunnelKey::Session,
        ),
    ];
    let mut by_mode = std::collections::BTreeMap::new();
    // A period ending now, and one ending mid-data: later steps after its end still count within the
    // window (the entry must be inside the period).
    let ranges = [
        "period=90d&timezone=UTC",
        "from=2026-09-01&to=2026-10-15&timezone=UTC",
    ];
    let shapes = funnels.iter().flat_map(|f| [(*f, false), (*f, true)]);
    for (((steps, window_secs, by), strict), range) in
        shapes.flat_map(|shape| ranges.map(|r| (shape, r)))
    {
        let q = FunnelQuery {
            store_id: "shop-a".into(),
            steps: steps.split(',').map(str::to_owned).collect(),
            range: Params::parse(range, &["period", "from", "to", "timezone"])
                .and_then(|p| p.range(now))
                .expect("range"),
            window_secs,
            by,
            strict,
            include_bots: false,
            compare: None,
        };
        let want = ch.store.funnel(&q).await.expect("clickhouse");
        dry_run(&bq, &read::funnel_sql(&bq, &q).expect("sql"), steps).await;
        let got = bq
            .funnel(&q)
            .await
            .unwrap_or_else(|e| panic!("funnel {steps} on BigQuery: {e}"));
        assert!(want.reached[0] > 0, "the funnel compares real keys");
        by_mode.insert((steps, strict, range), want.reached.clone());
        assert_eq!(
            got.reached, want.reached,
            "funnel {steps} ({window_secs} s, {by:?}, {range})"
        );
        for (g, w) in got.median_secs.iter().zip(&want.median_secs) {
            match (g, w) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-6, "median {g} vs {w} ({steps})"),
                _ => assert_eq!(g, w, "median presence ({steps})"),
            }
        }
    }
    assert!(
        funnels
            .iter()
            .any(|(steps, ..)| by_mode[&(*steps, false, ranges[0])]
                != by_mode[&(*steps, true, ranges[0])]),
        "strict order changes some funnel, so both modes are really compared: {by_mode:?}"
    );
    assert_eq!(
        bq.main_currency("shop-a", now, false).await.expect("bq"),
        ch.store
            .main_currency("shop-a", now, false)
            .await
            .expect("ch"),
    );
    bq.drop_dataset().await.expect("drop");
    ch.drop_database().await;
}

#[tokio::test]
async fn custom_dashboards_are_saved_replaced_listed_and_deleted_per_store() {
    use commerce_analytics::query::dashboards::{Dashboard, DashboardStore, Endpoint, Widget};
    let bq = test_bigquery("bq_dash").await;
    let at = |s: i64| jiff::Timestamp::from_second(1_800_000_000 + s).expect("ts");
    let widget = |metric: &str| Widget {
        title: metric.into(),
        endpoint: Endpoint::Metrics,
        params: [("metric".to_owned(), metric.to_owned())].into(),
    };
    let dash = |id: &str, name: &str, metric: &str| Dashboard {
        id: id.into(),
        name: name.into(),
        built_in: false,
        widgets: vec![widget(metric)],
    };
    bq.save_dashboard("shop-a", &dash("d1", "Weekly", "revenue"), at(1))
        .await
        .expect("save");
    bq.save_dashboard("shop-a", &dash("d2", "Acquisition", "visitors"), at(2))
        .await
        .expect("save");
    bq.save_dashboard("shop-b", &dash("d9", "Other store", "orders"), at(3))
        .await
        .expect("save");
    // A later save of d1 replaces it.
    bq.save_dashboard(
        "shop-a",
        &dash("d1", "Weekly revenue", "net_revenue"),
        at(4),
    )
    .await
    .expect("replace");
    let listed = bq.dashboards("shop-a").await.expect("list");
    assert_eq!(
        listed,
        vec![
            dash("d2", "Acquisition", "visitors"),
            dash("d1", "Weekly revenue", "net_revenue")
        ]
    );
    assert!(
        bq.delete_dashboard("shop-a", "d2", at(5))
            .await
            .expect("delete")
    );
    assert!(
        !bq.delete_dashboard("shop-a", "d2", at(6))
            .await
            .expect("again"),
        "already gone"
    );
    assert!(
        !bq.delete_dashboard("shop-a", "d9", at(7))
            .await
            .expect("other store's"),
        "never another store's"
    );
    assert_eq!(
        bq.dashboards("shop-a").await.expect("list"),
        vec![dash("d1", "Weekly revenue", "net_revenue")]
    );
    assert_eq!(bq.dashboards("shop-b").await.expect("list").len(), 1);
    bq.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn api_keys_are_created_found_listed_and_revoked_as_digests() {
    use commerce_analytics::auth::keys::{self, KeyStore};
    use commerce_analytics::auth::{Scope, digest_hex};
    use commerce_analytics::config::KeyKind;
    let bq = test_bigquery("bq_keys").await;
    let now = time::macros::datetime!(2026-12-01 10:00:00.123 UTC);
    let (write, stored) = keys::create(
        &bq,
        "shop-a",
        KeyKind::Write,
        vec!["https://shop.example.com".into()],
        "storefront",
        now,
    )
    .await
    .expect("create");
    let (read, _) = keys::create_scoped(
        &bq,
        "shop-a",
        KeyKind::Read,
        vec![Scope::Read],
        vec![],
        "BI",
        now,
    )
    .await
    .expect("create scoped");
    keys::create(&bq, "shop-b", KeyKind::Read, vec![], "other", now)
        .await
        .expect("create");
    let found = bq
        .find_key(&digest_hex(&write))
        .await
        .expect("find")
        .expect("known");
    assert_eq!(found, stored, "every field round-trips");
    let read_key = bq
        .find_key(&digest_hex(&read))
        .await
        .expect("find")
        .expect("known");
    assert_eq!(read_key.scopes, vec![Scope::Read]);
    assert!(
        bq.find_key(&digest_hex("sk_unknown_key_000000"))
            .await
            .expect("find")
            .is_none()
    );
    let listed = bq.list_keys(Some("shop-a")).await.expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(bq.list_keys(None).await.expect("list").len(), 3);
    let table = bq
        .client()
        .query(
            &format!(
                "SELECT STRING_AGG(sha256 || prefix || name) AS t FROM {}",
                bq.table("api_keys")
            ),
            &[],
        )
        .await
        .expect("raw");
    assert!(
        !table.string(0, 0).contains(&write),
        "only digests are stored"
    );
    keys::revoke(&bq, &stored.prefix, now + time::Duration::minutes(1))
        .await
        .expect("revoke");
    let revoked = bq
        .find_key(&digest_hex(&write))
        .await
        .expect("find")
        .expect("known");
    assert!(revoked.revoked_at.is_some(), "the revoked version wins");
    assert_eq!(
        bq.list_keys(Some("shop-a")).await.expect("list").len(),
        2,
        "listed once, revoked"
    );
    bq.drop_dataset().await.expect("drop");
}

/// A validated event of `store`, moved to `at`.
fn event_at(store: &str, wire: serde_json::Value, at: time::OffsetDateTime) -> Event {
    let v = Validator {
        limits: Default::default(),
        retention_days: 365,
        anonymize_ip: true,
    };
    let mut e = v
        .validate(
            wire,
            store,
            &RequestMeta::default(),
            time::OffsetDateTime::now_utc(),
        )
        .expect("valid");
    e.timestamp = at;
    e
}

#[tokio::test]
async fn erasing_a_customer_removes_their_events_linked_activity_and_rejects_in_their_store_only() {
    use commerce_analytics::erasure::ErasureStore;
    use commerce_analytics::store::Reject;
    use serde_json::json;
    let bq = test_bigquery("bq_erase").await;
    let now = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let events = vec![
        // The customer, signed in, then the same browser (anonymous id) and session before sign-in.
        event_at(
            "shop-a",
            json!({"id": "e1", "type": "page.viewed", "customerId": "c1", "anonymousId": "a1", "sessionId": "s1"}),
            now,
        ),
        event_at(
            "shop-a",
            json!({"id": "e2", "type": "page.viewed", "anonymousId": "a1"}),
            now,
        ),
        event_at(
            "shop-a",
            json!({"id": "e3", "type": "page.viewed", "sessionId": "s1"}),
            now,
        ),
        // Someone else, and the same customer id in another store.
        event_at(
            "shop-a",
            json!({"id": "e4", "type": "page.viewed", "customerId": "c2", "sessionId": "s2"}),
            now,
        ),
        event_at(
            "shop-b",
            json!({"id": "e5", "type": "page.viewed", "customerId": "c1", "sessionId": "s9"}),
            now,
        ),
    ];
    bq.insert(&events, "t").await.expect("insert");
    bq.insert(&events[..1], "resent")
        .await
        .expect("a resend of e1");
    let reject = |store: &str, raw: &str| Reject {
        received_at: now,
        source: "firehose",
        request_id: "r1".into(),
        record_index: 0,
        store_id: store.into(),
        event_id: String::new(),
        reason: "bad".into(),
        raw: raw.into(),
    };
    bq.insert_rejects(
        &[
            reject("shop-a", r#"{"customerId": "c1", "type": "nope"}"#),
            reject("", r#"{"storeId": "shop-b", "customerId": "c1"}"#),
            reject("", "not json \"c1\""),
        ],
        "r",
    )
    .await
    .expect("rejects");
    let report = bq.erase_customer("shop-a", "c1").await.expect("erase");
    assert_eq!(
        (
            report.events_deleted,
            report.rejects_deleted,
            report.anonymous_ids,
            report.sessions
        ),
        (3, 2, 1, 1),
        "{report:?}"
    );
    let left = bq
        .client()
        .query(
            &format!(
                "SELECT STRING_AGG(id ORDER BY id) FROM {}",
                bq.table(EVENTS_TABLE)
            ),
            &[],
        )
        .await
        .expect("left");
    assert_eq!(
        left.string(0, 0),
        "e4,e5",
        "the other customer's and the other store's stay"
    );
    let again = bq.erase_customer("shop-a", "c1").await.expect("again");
    assert_eq!((again.events_deleted, again.rejects_deleted), (0, 0));
    bq.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn retention_removes_what_is_past_each_stores_cutoff_and_a_dry_run_changes_nothing() {
    use commerce_analytics::retention::{self, Policy};
    use serde_json::json;
    let bq = test_bigquery("bq_retention").await;
    let now = time::macros::datetime!(2026-12-01 15:00 UTC);
    let day = |d: i64| now - time::Duration::days(d);
    let mut events = Vec::new();
    for (i, (store, age)) in [
        ("shop-a", 200),
        ("shop-a", 95),
        ("shop-a", 40),
        ("shop-a", 5),
        ("shop-b", 95),
        ("shop-b", 40),
        ("shop-b", 5),
    ]
    .into_iter()
    .enumerate()
    {
        events.push(event_at(
            store,
            json!({"id": format!("r{i}"), "type": "page.viewed"}),
            day(age),
        ));
    }
    bq.insert(&events, "t").await.expect("insert");
    let policy = Policy {
        default_days: 90,
        store_days: [("shop-b".to_owned(), 30)].into(),
    };
    let planned = retention::run(&bq, &policy, now, true)
        .await
        .expect("dry run");
    let removed = |r: &retention::Report| {
        r.tables
            .iter()
            .find(|t| t.table == EVENTS_TABLE)
            .map(|t| t.rows_removed)
    };
    assert_eq!(removed(&planned), Some(4), "{planned:?}");
    assert_eq!(
        bq.count_events("shop-a").await.expect("a") + bq.count_events("shop-b").await.expect("b"),
        7
    );
    let done = retention::run(&bq, &policy, now, false).await.expect("run");
    assert_eq!(removed(&done), Some(4), "{done:?}");
    assert_eq!(
        bq.count_events("shop-a").await.expect("a"),
        2,
        "shop-a keeps 90 days"
    );
    assert_eq!(
        bq.count_events("shop-b").await.expect("b"),
        1,
        "shop-b keeps 30 days"
    );
    let rerun = retention::run(&bq, &policy, now, false)
        .await
        .expect("rerun");
    assert_eq!(removed(&rerun), Some(0), "nothing more");
    bq.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn the_local_server_runs_on_bigquery_from_tracking_to_dashboards_and_erasure() {
    use integration_tests::{
        READ_KEY, WRITE_KEY, bigquery_config, eventually, local_server_with, stop_local_server_with,
    };
    use serde_json::{Value, json};
    let config = bigquery_config("bq_server", &[("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.2")]);
    let name = format!("bq-server-{}", ulid::Ulid::new());
    let srv = local_server_with(&config, &name).await;
    let base = format!("http://{}", srv.addr);
    let client = reqwest::Client::new();
    let order = |i: usize| {
        json!({"id": format!("o{i}"), "type": "order.completed", "customerId": format!("c{i}"), "sessionId": format!("s{i}"),
               "properties": {"orderId": format!("ord{i}"), "total": 1000 * (i as i64 + 1), "currency": "USD",
                              "items": [{"productId": "p1", "quantity": 1, "price": 1000 * (i as i64 + 1)}]}})
    };
    let events: Vec<Value> = (0..3).map(order).collect();
    let resp = client
        .post(format!("{base}/analytics/events"))
        .bearer_auth(WRITE_KEY)
        .json(&json!({ "events": events }))
        .send()
        .await
        .expect("track");
    assert_eq!(resp.status(), 202);
    let stored = eventually(std::time::Duration::from_secs(20), || async {
        srv.warehouse.count_events("shop-a").await.unwrap_or(0) == 3
    })
    .await;
    assert!(stored, "the buffer wrote the events to BigQuery");
    let get = |path: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let resp = client
                .get(format!("{base}{path}"))
                .bearer_auth(READ_KEY)
                .send()
                .await
                .expect("read");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, revenue) = get("/analytics/metrics?metric=revenue&period=7d&currency=USD").await;
    assert_eq!(status, 200, "{revenue}");
    assert_eq!(revenue["total"], json!(6000), "{revenue}");
    let (status, overview) = get("/analytics/dashboards/overview?period=7d").await;
    assert_eq!(status, 200, "{overview}");
    let (status, strict) =
        get("/analytics/funnel?steps=order.completed,order.completed&mode=strict&period=7d").await;
    assert_eq!(status, 200, "{strict}");
    assert_eq!(strict["steps"][0]["count"], json!(3), "{strict}");
    let erased = client
        .delete(format!("{base}/analytics/customers/c1"))
        .bearer_auth(READ_KEY)
        .send()
        .await
        .expect("erase");
    assert_eq!(erased.status(), 200);
    assert_eq!(
        srv.warehouse.count_events("shop-a").await.expect("count"),
        2
    );
    stop_local_server_with(&name, srv).await;
    if let commerce_analytics::store::Warehouse::BigQuery(bq) =
        Warehouse::from_config(&config).expect("warehouse")
    {
        bq.drop_dataset().await.expect("drop");
    }
}

#[tokio::test]
async fn firehose_deliveries_land_in_bigquery_once_even_when_delivered_again() {
    use commerce_analytics::clock::FixedClock;
    use commerce_analytics::ingest::Ingest;
    use integration_tests::{bigquery_config, repo_root};
    let config = bigquery_config(
        "bq_ingest",
        &[("FIREHOSE_ACCESS_KEY", "dev_firehose_access_key_000000000")],
    );
    let Warehouse::BigQuery(bq) = Warehouse::from_config(&config).expect("warehouse") else {
        panic!("a BigQuery configuration");
    };
    bq.migrate(config.retention_days).await.expect("migrate");
    let ingest = Ingest::new(
        std::sync::Arc::new(bq.clone()),
        &config,
        std::sync::Arc::new(FixedClock::new(
            time::macros::datetime!(2025-01-15 10:36:00 UTC),
        )),
    );
    let delivery = |name: &str| {
        let text = std::fs::read_to_string(repo_root().join("events").join(name)).expect("fixture");
        lambda_http::request::from_str(&text).expect("request")
    };
    // The same delivery twice (Firehose retries after a lost answer), then one that repeats two of its
    // records among bad ones.
    for name in [
        "firehose-delivery.json",
        "firehose-delivery.json",
        "firehose-delivery-with-rejects.json",
    ] {
        let resp = ingest.handle(delivery(name)).await;
        assert_eq!(resp.status(), 200, "{name}: {:?}", resp.body());
    }
    assert_eq!(
        bq.count_events("demo").await.expect("count"),
        3,
        "each event once"
    );
    let rejects = bq
        .client()
        .query(
            &format!("SELECT COUNT(*) FROM {}", bq.table("events_rejects")),
            &[],
        )
        .await
        .expect("rejects");
    assert!(
        rejects.i64(0, 0).expect("n") > 0,
        "the bad records are kept with their reason"
    );
    bq.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn nothing_accepted_is_lost_or_counted_twice_across_a_bigquery_outage() {
    use integration_tests::{
        PrivateBigQuery, WRITE_KEY, eventually, local_server_with, stop_local_server_with,
    };
    use serde_json::json;
    let rest = integration_tests::free_ports(2);
    let emulator = PrivateBigQuery::new(rest, rest + 1);
    emulator.start();
    let mut config = integration_tests::bigquery_config(
        "bq_outage",
        &[
            ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.2"),
            ("ANALYTICS_BATCH_SIZE", "50"),
        ],
    );
    if let Some(bq) = config.bigquery.as_mut() {
        bq.endpoint = emulator.url();
    }
    let name = format!("bq-outage-{}", ulid::Ulid::new());
    let srv = local_server_with(&config, &name).await;
    let client = reqwest::Client::new();
    let send = |prefix: &'static str| {
        let (client, url) = (
            client.clone(),
            format!("http://{}/analytics/events", srv.addr),
        );
        async move {
            for chunk in 0..3 {
                let events: Vec<_> = (0..100)
                    .map(|i| json!({"id": format!("{prefix}_{chunk}_{i}"), "type": "page.viewed"}))
                    .collect();
                let resp = client
                    .post(&url)
                    .bearer_auth(WRITE_KEY)
                    .json(&json!({ "events": events }))
                    .send()
                    .await
                    .expect("track");
                assert_eq!(resp.status(), 202, "accepted ({prefix})");
            }
        }
    };
    let warehouse = srv.warehouse.clone();
    let count = || async { warehouse.count_events("shop-a").await.unwrap_or(0) };
    send("before").await;
    assert!(
        eventually(std::time::Duration::from_secs(20), || async {
            count().await == 300
        })
        .await
    );
    emulator.stop();
    // Accepted while BigQuery is down: in the durable buffer, retried.
    send("during").await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(
        srv.buffer_stats().expect("buffer").failed_attempts > 0,
        "writes failed meanwhile"
    );
    emulator.start();
    let all = eventually(std::time::Duration::from_secs(60), || async {
        count().await == 600
    })
    .await;
    assert!(
        all,
        "every accepted event stored after the outage ({} of 600)",
        count().await
    );
    stop_local_server_with(&name, srv).await;
    assert_eq!(count().await, 600, "none twice, none lost");
}

#[tokio::test]
async fn device_browser_and_os_are_stored_at_ingest_and_backfilled_for_older_rows() {
    use commerce_analytics::event::agent::Agent;
    let store = test_bigquery("bq_agents").await;
    let v = Validator {
        limits: Default::default(),
        retention_days: 365,
        anonymize_ip: true,
    };
    let now = time::OffsetDateTime::now_utc();
    let agents = [
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "",
    ];
    let events: Vec<Event> = agents
        .iter()
        .enumerate()
        .map(|(i, ua)| {
            let mut wire =
                serde_json::json!({"id": format!("evt_agent_{i}"), "type": "page.viewed"});
            if !ua.is_empty() {
                wire["context"] = serde_json::json!({ "userAgent": ua });
            }
            v.validate(wire, "shop-a", &RequestMeta::default(), now)
                .expect("valid")
        })
        .collect();
    let want: Vec<(String, String, String, String)> = events
        .iter()
        .zip(agents)
        .map(|(e, ua)| {
            let a = Agent::of(ua, e.bot);
            (e.id.clone(), a.device.to_owned(), a.browser, a.os)
        })
        .collect();
    store.insert(&events, "agents").await.expect("insert");
    let table = store.table(EVENTS_TABLE);
    let read = || async {
        let rows = store
            .client()
            .query(
                &format!(
                    "SELECT id, IFNULL(device, ''), IFNULL(browser, ''), IFNULL(os, '') FROM {table} ORDER BY id"
                ),
                &[],
            )
            .await
            .expect("read");
        (0..rows.rows.len())
            .map(|r| {
                (
                    rows.string(r, 0),
                    rows.string(r, 1),
                    rows.string(r, 2),
                    rows.string(r, 3),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(read().await, want, "as written at ingest");
    // Rows as stored before migration 2, ingested long enough ago to have left the streaming buffer.
    store
        .client()
        .query(
            &format!(
                "UPDATE {table} SET device = NULL, browser = NULL, os = NULL, \
                 ingested_at = TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 2 HOUR) WHERE TRUE"
            ),
            &[],
        )
        .await
        .expect("clear");
    let parsed = migrations::backfill_agent_columns(&store)
        .await
        .expect("backfill");
    assert_eq!(parsed, 3, "each stored user agent parsed once");
    assert_eq!(read().await, want, "the backfill writes what ingest writes");
    assert_eq!(
        migrations::backfill_agent_columns(&store)
            .await
            .expect("again"),
        0
    );
    store.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn products_are_named_by_their_latest_view_before_the_period_ends_on_both_warehouses() {
    use commerce_analytics::query::ReadStore;
    use commerce_analytics::query::names::NamesQuery;
    use commerce_analytics::query::params::Params;
    use commerce_analytics::query::ranked::{self, Ranked, RankedQuery};

    let now: jiff::Timestamp = "2026-12-01T10:00:00Z".parse().expect("now");
    let at_minutes = |minutes_before: i64| {
        time::OffsetDateTime::from_unix_timestamp(now.as_second() - minutes_before * 60)
            .expect("time")
    };
    let at = |hours_before: i64| at_minutes(hours_before * 60);
    let view_at = |store: &str, id: &str, product: &str, name: Option<&str>, minutes_before| {
        let mut properties = serde_json::json!({ "productId": product });
        if let Some(n) = name {
            properties["productName"] = n.into();
        }
        event_at(
            store,
            serde_json::json!({"id": id, "type": "product.viewed", "properties": properties}),
            at_minutes(minutes_before),
        )
    };
    let view = |store: &str, id: &str, product: &str, name: Option<&str>, hours_before: i64| {
        view_at(store, id, product, name, hours_before * 60)
    };
    let mut events = vec![
        // Renamed: the latest name before the end wins; one after the end does not count.
        view("shop-a", "v1", "p_renamed", Some("Old name"), 40 * 24),
        view("shop-a", "v2", "p_renamed", Some("New name"), 2 * 24),
        view("shop-a", "v3", "p_renamed", Some("Name after the end"), -1),
        // Only viewed long ago: found by the last step (30 days to a year before the end).
        view("shop-a", "v4", "p_old", Some("Only old"), 200 * 24),
        // Renamed within the last day: found by the first step, the later name.
        view("shop-a", "v8", "p_fresh", Some("Yesterday's name"), 30),
        view("shop-a", "v9", "p_fresh", Some("Today's name"), 3),
        // Renamed within the last hour: the later name; a later view without a name does not hide it.
        view("shop-a", "v10", "p_hourly", Some("This morning's name"), 2),
        view_at("shop-a", "v11", "p_hourly", Some("This hour's name"), 50),
        view_at("shop-a", "v12", "p_hourly", None, 5),
        // Viewed without a name, or with an empty one: no name.
        view("shop-a", "v5", "p_unnamed", None, 24),
        view("shop-a", "v6", "p_unnamed", Some(""), 12),
        // Another store's name for the same id stays there.
        view("shop-b", "v7", "p_unnamed", Some("Other store's name"), 24),
    ];
    for (i, p) in ["p_renamed", "p_old", "p_unnamed", "p_fresh", "p_hourly"]
        .iter()
        .enumerate()
    {
        events.push(event_at(
            "shop-a",
            serde_json::json!({"id": format!("s{i}"), "type": "inventory.updated",
                               "properties": {"productId": p, "quantity": 5}}),
            at(6),
        ));
    }
    let want: std::collections::BTreeMap<String, Option<String>> = [
        ("p_renamed", Some("New name")),
        ("p_old", Some("Only old")),
        ("p_unnamed", None),
        ("p_fresh", Some("Today's name")),
        ("p_hourly", Some("This hour's name")),
    ]
    .into_iter()
    .map(|(p, n)| (p.to_owned(), n.map(str::to_owned)))
    .collect();

    let ch = integration_tests::TestDb::new("bq_names").await;
    ch.store
        .insert(&events, "names")
        .await
        .expect("clickhouse insert");
    let bq = test_bigquery("bq_names").await;
    bq.insert(&events, "names").await.expect("bigquery insert");
    dry_run(
        &bq,
        &read::product_names_sql(
            &bq,
            &NamesQuery {
                store_id: "shop-a".into(),
                ids: vec!["p_renamed".into()],
                from: now - commerce_analytics::query::names::OLDEST,
                to: now,
            },
        ),
        "product names",
    )
    .await;

    let range = Params::parse("period=30d&timezone=UTC", &["period", "timezone"])
        .expect("params")
        .range(now)
        .expect("range");
    let q = RankedQuery {
        store_id: "shop-a".into(),
        metric: Ranked::StockLevels,
        range,
        currency: None,
        filters: Default::default(),
        limit: 100,
        include_bots: false,
        compare: None,
    };
    let stores: [(&str, &dyn ReadStore); 2] = [("clickhouse", &ch.store), ("bigquery", &bq)];
    for (name, store) in stores {
        let body = ranked::run(store, &q).await.expect("stock levels");
        let got: std::collections::BTreeMap<String, Option<String>> = body["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                let keys: Vec<&str> = r
                    .as_object()
                    .expect("row")
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(
                    &keys[..2],
                    ["productId", "productName"],
                    "{name}: the name follows the id"
                );
                (
                    r["productId"].as_str().expect("id").to_owned(),
                    r["productName"].as_str().map(str::to_owned),
                )
            })
            .collect();
        assert_eq!(got, want, "{name}");
    }
}
