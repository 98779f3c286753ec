//! ## cluster
//! One server against a 2-shard cluster, in one run, both on this machine: the track API end to end (demo
//! events POSTed to a local server until all are counted), then the read latency of every metric, a few
//! dashboards and a funnel over the same demo store loaded on both, and the stored bytes per million
//! events on each node. Both sides share the same cores, so the figures are the cluster's overhead (the
//! fan-out and merge of every read, the split of every insert), not its speed-up.

use std::time::Duration;

use commerce_analytics::config::Config;
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::Validator;
use commerce_analytics::store::ClickHouseStore;

use super::{BenchResult, config, demo_bodies, get_ok, p50, through_api};

/// The same settings on the cluster.
fn on_cluster(url: &str, nodes: &[String], db: &str) -> BenchResult<Config> {
    let mut cfg = config(url, db)?;
    cfg.clickhouse.cluster = Some(commerce_analytics::config::ClusterConfig {
        name: "analytics".into(),
        replicated: false,
        nodes: nodes.to_vec(),
    });
    Ok(cfg)
}

/// Runs the benchmark: `events` tracked through the API, `stored` loaded for the reads.
pub async fn run(single: &str, nodes: &[String], events: usize, stored: usize) -> BenchResult {
    let cluster_url = nodes.first().ok_or("--nodes names the cluster's nodes")?;
    let pid = std::process::id();
    println!(
        "one server ({single}) vs a 2-shard cluster ({}), same machine",
        nodes.join(", ")
    );

    let (wire, bodies) = demo_bodies(events, 7, 90);
    let n = wire.len();
    let one = config(single, &format!("bench_cl_one_{pid}"))?;
    let two = on_cluster(cluster_url, nodes, &format!("bench_cl_two_{pid}"))?;
    // Interleaved halves, so machine noise falls on both sides alike.
    let half = bodies.len() / 2;
    let count = |b: &[String]| {
        b.iter()
            .map(|s| s.matches("\"type\"").count())
            .sum::<usize>()
    };
    let (first, second) = bodies.split_at(half);
    let one_a = through_api(&one, first, count(first)).await?;
    let two_a = through_api(&two, first, count(first)).await?;
    let two_b = through_api(&two, second, n).await?;
    let one_b = through_api(&one, second, n).await?;
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let (one_t, two_t) = (
        one_a.stored_at + one_b.stored_at,
        two_a.stored_at + two_b.stored_at,
    );
    println!(
        "track API until stored, {n} events: one server {:>8.0} events/s, cluster {:>8.0} events/s, ratio {:.2}",
        rate(one_t),
        rate(two_t),
        rate(two_t) / rate(one_t)
    );
    for cfg in [&one, &two] {
        ClickHouseStore::new(&cfg.clickhouse)
            .drop_database()
            .await?;
    }

    // Reads over the same demo store on both sides.
    let read_one = config(single, "bench_cl_reads")?;
    let read_two = on_cluster(cluster_url, nodes, "bench_cl_reads")?;
    let mut sides = Vec::new();
    for cfg in [&read_one, &read_two] {
        let store = ClickHouseStore::new(&cfg.clickhouse);
        store.migrate(cfg.retention_days).await?;
        if store.count_rows("bench").await? < stored as u64 {
            store.delete_store("bench").await?;
            eprintln!(
                "loading {stored} demo events ({:?}) ...",
                cfg.clickhouse.cluster.as_ref().map(|c| &c.name)
            );
            crate::demo_load::load(
                &store,
                &Validator::from_config(cfg),
                "bench",
                DemoConfig {
                    seed: 10,
                    events: stored,
                    days: 90,
                    end: time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
                },
            )
            .await?;
            store.optimize_final("commerce_events").await?;
        }
        let mut read_cfg = cfg.clone();
        read_cfg.keys = vec![commerce_analytics::config::ApiKeyConfig {
            key: commerce_analytics::config::Secret::new(READ),
            store: "bench".into(),
            kind: commerce_analytics::config::KeyKind::Read,
            origins: Vec::new(),
        }];
        let srv = super::server(&read_cfg).await?;
        sides.push((store, srv));
    }
    let bytes = storage(&sides[0].0, &sides[1].0, nodes).await?;
    println!("stored bytes per million events (commerce_events, compressed): {bytes}");
    let client = reqwest::Client::new();
    let mut paths: Vec<String> = [
        "revenue",
        "orders",
        "sessions",
        "conversion_rate",
        "visitors",
        "ltv",
        "best_sellers",
        "traffic_sources",
        "new_vs_returning",
    ]
    .iter()
    .map(|m| format!("/analytics/metrics?metric={m}&period=30d"))
    .collect();
    paths.push("/analytics/dashboards/overview?period=30d".into());
    paths.push("/analytics/dashboards/marketing?period=30d".into());
    paths.push(
        "/analytics/funnel?steps=page.viewed,product.viewed,cart.item_added,order.completed&period=7d"
            .into(),
    );
    paths.push("/analytics/cohorts?interval=month&period=12m".into());
    println!("read latency over {stored} demo events (p50 of 9 calls through the local API)");
    let (base_one, base_two) = (
        format!("http://{}", sides[0].1.addr),
        format!("http://{}", sides[1].1.addr),
    );
    for path in paths {
        let a = p50(9, || get_ok(&client, &base_one, &path, READ)).await?;
        let b = p50(9, || get_ok(&client, &base_two, &path, READ)).await?;
        println!(
            "  {path:<90} one {:>7.1} ms  cluster {:>7.1} ms  ratio {:.2}",
            a.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            b.as_secs_f64() / a.as_secs_f64()
        );
    }
    for (_, srv) in sides {
        srv.stop().await;
    }
    Ok(())
}

const READ: &str = "sk_bench_read_key_0000";

/// Compressed bytes of the events per million events: on the server, and on each node of the cluster.
async fn storage(
    one: &ClickHouseStore,
    two: &ClickHouseStore,
    nodes: &[String],
) -> BenchResult<String> {
    let per_million =
        |bytes: u64, rows: u64| bytes as f64 / rows.max(1) as f64 * 1e6 / 1024.0 / 1024.0;
    let query = "SELECT sum(data_compressed_bytes), sum(rows) FROM system.parts \
                 WHERE database = currentDatabase() AND table = ? AND active";
    let (b, r) = one
        .client()
        .query(query)
        .bind("commerce_events")
        .fetch_one::<(u64, u64)>()
        .await?;
    let mut out = format!("one server {:.1} MiB", per_million(b, r));
    for url in nodes {
        let (b, r) = clickhouse::Client::default()
            .with_url(url)
            .with_database(two.database())
            .query(query)
            .bind("commerce_events_local")
            .fetch_one::<(u64, u64)>()
            .await?;
        out.push_str(&format!(
            ", node {url}: {:.1} MiB ({r} events)",
            per_million(b, r)
        ));
    }
    Ok(out)
}
