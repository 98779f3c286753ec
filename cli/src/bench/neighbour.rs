//! ## neighbour
//! One store's read latency while another store hammers the same local server.
//!
//! Two stores of `events` demo events each (database `bench_neighbour`, loaded once and kept). The quiet
//! store asks for its revenue by day over 30 days, one call at a time: first alone (p50 and p99 of
//! `calls`), then while the noisy store renders a 20-widget custom dashboard (metrics, ranked metrics,
//! cohorts, funnels over 90 days) in a loop on 4 connections. Prints both, the ratio under load / alone,
//! and how the noisy store's requests were answered (200s, and 503s once it waits past its share).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use commerce_analytics::config::Config;
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::Validator;
use commerce_analytics::store::ClickHouseStore;
use serde_json::json;

use super::{BenchResult, percentile_ms};

const NOISY: &str = "sk_bench_noisy_read_0000";
const QUIET: &str = "sk_bench_quiet_read_0000";
const QUIET_QUERY: &str = "/analytics/metrics?metric=revenue&period=30d&granularity=day";

/// Runs the benchmark with `events` per store and `calls` quiet calls per phase.
pub async fn run(url: &str, events: usize, calls: usize) -> BenchResult {
    let db = "bench_neighbour";
    let env = [
        ("CLICKHOUSE_URL", url.to_owned()),
        ("CLICKHOUSE_DATABASE", db.to_owned()),
        (
            "ANALYTICS_API_KEYS",
            format!("{NOISY}:noisy:read,{QUIET}:quiet:read"),
        ),
        ("ANALYTICS_DURABLE_BUFFER", "false".to_owned()),
    ];
    let cfg = Config::from_sources(None, &|k: &str| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })?;
    let store = ClickHouseStore::new(&cfg.clickhouse);
    store.migrate(cfg.retention_days).await?;
    for (i, name) in ["noisy", "quiet"].into_iter().enumerate() {
        if store.count_rows(name).await? < events as u64 {
            store.delete_store(name).await?;
            eprintln!("loading {events} demo events into store {name} (once; kept) ...");
            let end = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
            crate::demo_load::load(
                &store,
                &Validator::from_config(&cfg),
                name,
                DemoConfig {
                    seed: 20 + i as u64,
                    events,
                    days: 90,
                    end,
                },
            )
            .await?;
        }
    }
    let srv = super::server(&cfg).await?;
    let base = format!("http://{}", srv.addr);
    let client = reqwest::Client::new();
    let dashboard = noisy_dashboard(&client, &base).await?;

    for _ in 0..3 {
        super::get_ok(&client, &base, QUIET_QUERY, QUIET).await?;
    }
    let alone = quiet_calls(&client, &base, calls).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let mut noisy = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, base, stop) = (reqwest::Client::new(), base.clone(), stop.clone());
        let path = format!("/analytics/dashboards/{dashboard}?period=90d");
        noisy.spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
            while !stop.load(Ordering::Relaxed) {
                let status = match client
                    .get(format!("{base}{path}"))
                    .bearer_auth(NOISY)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                *statuses.entry(status).or_default() += 1;
            }
            statuses
        });
    }
    // Let the noisy store's load build up before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = quiet_calls(&client, &base, calls).await?;
    stop.store(true, Ordering::Relaxed);
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    while let Some(done) = noisy.join_next().await {
        for (s, n) in done? {
            *statuses.entry(s).or_default() += n;
        }
    }
    srv.stop().await;

    let (a50, a99) = (percentile_ms(&alone, 50.0), percentile_ms(&alone, 99.0));
    let (l50, l99) = (percentile_ms(&loaded, 50.0), percentile_ms(&loaded, 99.0));
    println!(
        "quiet store's revenue by day over 30 days, {calls} calls each, {events} events per store"
    );
    println!("alone:                                      p50 {a50:>7.1} ms, p99 {a99:>7.1} ms");
    println!("while the noisy store renders 20 widgets x4: p50 {l50:>7.1} ms, p99 {l99:>7.1} ms");
    println!(
        "ratio under load / alone: p50 {:.2}, p99 {:.2}",
        l50 / a50,
        l99 / a99
    );
    println!("noisy store's dashboard answers (status: count): {statuses:?}");
    Ok(())
}

async fn quiet_calls(
    client: &reqwest::Client,
    base: &str,
    calls: usize,
) -> BenchResult<Vec<Duration>> {
    let mut took = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        super::get_ok(client, base, QUIET_QUERY, QUIET).await?;
        took.push(started.elapsed());
    }
    Ok(took)
}

/// Saves the noisy store's 20-widget dashboard; returns its id.
async fn noisy_dashboard(client: &reqwest::Client, base: &str) -> BenchResult<String> {
    let metrics = [
        "revenue",
        "net_revenue",
        "orders",
        "aov",
        "conversion_rate",
        "visitors",
        "sessions",
        "product_views",
        "add_to_cart_rate",
        "ltv",
    ];
    let mut widgets: Vec<serde_json::Value> = metrics
        .iter()
        .map(|m| json!({"title": m, "endpoint": "metrics", "params": {"metric": m, "granularity": "day"}}))
        .collect();
    for m in [
        "best_sellers",
        "traffic_sources",
        "campaign_performance",
        "stock_levels",
        "sell_through_rate",
        "new_vs_returning",
    ] {
        widgets.push(json!({"title": m, "endpoint": "metrics", "params": {"metric": m}}));
    }
    widgets
        .push(json!({"title": "cohorts", "endpoint": "cohorts", "params": {"interval": "month"}}));
    widgets.push(json!({"title": "funnel", "endpoint": "funnel",
        "params": {"steps": "page.viewed,product.viewed,cart.item_added,checkout.started,order.completed"}}));
    widgets.push(json!({"title": "funnel by customer", "endpoint": "funnel",
        "params": {"steps": "product.viewed,cart.item_added,order.completed", "by": "customer"}}));
    widgets.push(json!({"title": "weekly revenue", "endpoint": "metrics",
        "params": {"metric": "revenue", "granularity": "week"}}));
    let resp = client
        .post(format!("{base}/analytics/dashboards"))
        .bearer_auth(NOISY)
        .json(&json!({"name": "Everything", "widgets": widgets}))
        .send()
        .await?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await?;
    if !status.is_success() {
        return Err(format!("saving the noisy dashboard: {status} {body}").into());
    }
    body["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no id in {body}").into())
}
