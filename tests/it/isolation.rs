//! Tenant isolation: another store's data never changes what a store reads.
//!
//! Two databases hold the same events of `shop-a`; the second also holds `shop-b`, generated from the same
//! seed (the same customer ids, order ids, session ids and products) plus more of its own. Every read
//! endpoint, across every combination of parameters below, must answer `shop-a`'s key byte for byte the
//! same in both databases: nothing of `shop-b` leaks into `shop-a`'s numbers, rows, funnels, cohorts or
//! dashboards.

use analytics_cli::demo_load;
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::Validator;
use commerce_analytics::query::metrics::Metric;
use commerce_analytics::query::ranked::Ranked;
use integration_tests::{READ_KEY, TestDb, call};

fn demo(seed: u64, events: usize, end: time::OffsetDateTime) -> DemoConfig {
    DemoConfig {
        seed,
        events,
        days: 60,
        end,
    }
}

/// Every request the comparison makes.
fn requests() -> Vec<String> {
    let mut out = Vec::new();
    let names: Vec<&str> = Metric::ALL
        .iter()
        .map(|m| m.name())
        .chain(Ranked::ALL.iter().map(|m| m.name()))
        .collect();
    for metric in &names {
        for (period, granularity) in [
            ("24h", "hour"),
            ("7d", "day"),
            ("30d", "week"),
            ("12m", "month"),
        ] {
            for tz in ["UTC", "Asia/Kolkata", "America/New_York"] {
                out.push(format!(
                    "/analytics/metrics?metric={metric}&period={period}&granularity={granularity}&timezone={tz}"
                ));
            }
        }
        let product = ["product_views", "add_to_cart_rate"].contains(metric);
        let ranked = Ranked::ALL.iter().any(|r| r.name() == *metric);
        let last = if product {
            "productId=prod_0001"
        } else if ranked {
            "limit=3"
        } else {
            "granularity=day"
        };
        for filter in [
            "currency=EUR",
            "country=DE",
            "currency=USD&country=US",
            "includeBots=true",
            last,
        ] {
            out.push(format!(
                "/analytics/metrics?metric={metric}&period=30d&{filter}"
            ));
        }
    }
    for steps in [
        "page.viewed,product.viewed,cart.item_added,order.completed",
        "product.viewed,order.completed",
        "checkout.started,order.completed,payment.captured",
    ] {
        for extra in [
            "",
            "&by=customer",
            "&mode=strict",
            "&window=3600",
            "&timezone=Asia/Kolkata",
            "&includeBots=true",
        ] {
            out.push(format!("/analytics/funnel?steps={steps}&period=30d{extra}"));
        }
    }
    for interval in ["week", "month"] {
        for currency in ["USD", "EUR"] {
            out.push(format!(
                "/analytics/cohorts?interval={interval}&period=12m&currency={currency}"
            ));
        }
    }
    out.push("/analytics/dashboards".into());
    for id in commerce_analytics::query::dashboards::BUILT_IN {
        for period in ["7d", "30d"] {
            out.push(format!("/analytics/dashboards/{id}?period={period}"));
        }
        out.push(format!(
            "/analytics/dashboards/{id}?period=30d&includeBots=true"
        ));
    }
    out
}

#[tokio::test]
async fn another_stores_data_never_changes_a_single_answer() {
    let alone = TestDb::new("iso_alone").await;
    let shared = TestDb::new("iso_shared").await;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("ns");
    let end = now - time::Duration::minutes(1);
    let v = Validator::from_config(&alone.config);
    for db in [&alone, &shared] {
        demo_load::load(&db.store, &v, "shop-a", demo(21, 12_000, end))
            .await
            .expect("shop-a");
    }
    // shop-b: the same ids as shop-a (same seed) and more of its own.
    demo_load::load(&shared.store, &v, "shop-b", demo(21, 12_000, end))
        .await
        .expect("shop-b, overlapping");
    demo_load::load(&shared.store, &v, "shop-b", demo(22, 8_000, end))
        .await
        .expect("shop-b, its own");
    let count = |db: &TestDb| format!("SELECT count() FROM {}.commerce_events", db.name);
    let (rows_alone, rows_shared) = (
        alone.scalar::<u64>(&count(&alone)).await,
        shared.scalar::<u64>(&count(&shared)).await,
    );
    assert!(rows_shared > rows_alone + 15_000, "shop-b is really there");

    let (api_alone, api_shared) = (alone.api(now), shared.api(now));
    // Invalid combinations (a filter a metric does not take) must be refused the same way in both.
    let (mut answered, mut refused) = (0, 0);
    for path in requests() {
        let a = call(&api_alone, "GET", &path, READ_KEY, None).await;
        let b = call(&api_shared, "GET", &path, READ_KEY, None).await;
        match a.0 {
            200 => answered += 1,
            400 => refused += 1,
            other => panic!("{path}: {other} {}", a.1),
        }
        assert_eq!(a, b, "{path}: shop-b changed shop-a's answer");
    }
    assert!(
        answered > 150,
        "{answered} answers compared ({refused} refusals)"
    );
    alone.drop_database().await;
    shared.drop_database().await;
}
