//! ## queries
//! Read-side latency through the local API over a demo store of `events` events (loaded once into the
//! database `bench_queries` and kept for later runs): p50 of 9 calls (`--calls`) after a warm-up, for
//! every metric, the dashboards, a 4-step funnel over 7 days and 12 months of cohorts. The funnel is
//! compared with the same funnel as a plain `windowFunnel` over the whole raw table (no store/type/time
//! pre-filtering). Each time
//! series, ranked metric, the funnel and the Overview dashboard are also timed with
//! `compare=previous_period`, side by side, as a ratio to the plain read (target: at most 2×); a few
//! metrics also with a `breakdown`, as a ratio to the same metric without; the metrics a rollup serves
//! also against the same read over the raw events. A read that fails (a large store's 12-month read past
//! the server's memory limit) is a figure too: its line says so and the bench goes on. Each metric and
//! dashboard line also says the server's CPU time per call and its multiple of the call's time (about
//! the cores the read kept busy; see [`super::cpu`]), when the server keeps a query log.

use std::time::Instant;

use commerce_analytics::config::Config;
use commerce_analytics::demo::DemoConfig;
use commerce_analytics::event::Validator;
use commerce_analytics::store::ClickHouseStore;

use super::cpu::ServerCpu;
use super::{BenchResult, p50};

/// Runs the benchmark over a store of `events` demo events, every read over `period` (`30d` or `12m`:
/// the funnel then spans 7 or 90 days, as the scale issue's targets do). Each size keeps its own database
/// (`bench_queries` for the default 10,000,000, `bench_queries_<events>` otherwise), so a growth table
/// reads every size from one server. Every figure is the p50 of `calls` calls after a warm-up.
pub async fn run(url: &str, events: usize, period: &str, calls: usize) -> BenchResult {
    let calls = calls.max(1);
    const READ: &str = "sk_bench_read_key_0000";
    let db = if events == 10_000_000 {
        "bench_queries".to_owned()
    } else {
        format!("bench_queries_{events}")
    };
    let db = db.as_str();
    let funnel_period = if period == "30d" { "7d" } else { "90d" };
    let env = [
        ("CLICKHOUSE_URL", url.to_owned()),
        ("CLICKHOUSE_DATABASE", db.to_owned()),
        ("ANALYTICS_API_KEYS", format!("{READ}:bench:read")),
    ];
    let cfg = Config::from_sources(None, &|k: &str| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })?;
    let store = ClickHouseStore::new(&cfg.clickhouse);
    store.migrate(cfg.retention_days).await?;
    let have = store.count_rows("bench").await?;
    if have < events as u64 {
        store.delete_store("bench").await?;
        eprintln!("loading {events} demo events into {db} (once; kept for later runs) ...");
        let end = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);
        let started = Instant::now();
        let loaded = crate::demo_load::load(
            &store,
            &Validator::from_config(&cfg),
            "bench",
            DemoConfig {
                seed: 10,
                events,
                days: 360,
                end,
            },
        )
        .await?;
        eprintln!("loaded {loaded}; with the final merge of the table:");
        let merging = Instant::now();
        store.optimize_final("commerce_events").await?;
        eprintln!(
            "  merged in {:.1?} ({:.1?} in all)",
            merging.elapsed(),
            started.elapsed()
        );
    }
    let rows = store.count_rows("bench").await?;
    print_storage(&store, rows).await?;
    let srv = super::server(&cfg).await?;
    let client = reqwest::Client::new();
    let base = format!("http://{}", srv.addr);
    let get = |path: String| {
        let (client, base) = (&client, &base);
        async move { super::get_ok(client, base, &path, READ).await }
    };
    let cpu = ServerCpu::probe(store.client(), db).await;
    println!(
        "read latency over {rows} events (p50 of {calls} calls through the local API; CPU: the server's \
         per call, {})",
        if cpu.is_some() {
            "from its query log"
        } else {
            "n/a, the server keeps no query log"
        }
    );
    for m in [
        "revenue",
        "net_revenue",
        "orders",
        "aov",
        "sessions",
        "conversion_rate",
        "visitors",
        "product_views",
        "add_to_cart_rate",
        "best_sellers",
        "traffic_sources",
        "campaign_performance",
        "stock_levels",
        "sell_through_rate",
        "ltv",
        "new_vs_returning",
    ] {
        let path = format!("/analytics/metrics?metric={m}&period={period}");
        let Some(r) = reported(
            &format!("metric {m}"),
            with_comparison(&get, &path, calls, cpu.as_ref()).await,
        ) else {
            continue;
        };
        println!(
            "  metric {m:<22} {period:<4} {:>8.1} ms   peak {:>6.1} MiB   compared {:>8.1} ms ({:.2}×)   {}",
            r.plain.as_secs_f64() * 1e3,
            r.plain_peak_mib,
            r.with.as_secs_f64() * 1e3,
            r.with.as_secs_f64() / r.plain.as_secs_f64(),
            r.cpu_column()
        );
    }
    // The metrics a rollup serves, against the same read over the raw events: `includeBots=true` makes
    // the adapter read the raw events (the rollups hold humans only), a read of the same shape and
    // ~4% more rows.
    for m in [
        "sessions",
        "conversion_rate",
        "visitors",
        "product_views",
        "traffic_sources",
        "campaign_performance",
        "landing_pages",
        "referrers",
    ] {
        let path = format!("/analytics/metrics?metric={m}&period={period}");
        let Some(r) = reported(
            &format!("metric {m} from raw"),
            side_by_side(&get, &path, "&includeBots=true", calls, None).await,
        ) else {
            continue;
        };
        println!(
            "  metric {m:<22} {period:<4} {:>8.1} ms   from raw  {:>8.1} ms (rollup {:.2}× of raw)",
            r.plain.as_secs_f64() * 1e3,
            r.with.as_secs_f64() * 1e3,
            r.plain.as_secs_f64() / r.with.as_secs_f64()
        );
    }
    for (m, by) in [
        ("revenue", "source"),
        ("sessions", "device"),
        ("conversion_rate", "country"),
        ("visitors", "browser"),
        ("product_views", "product"),
    ] {
        let path = format!("/analytics/metrics?metric={m}&period={period}");
        let Some(r) = reported(
            &format!("metric {m} by {by}"),
            side_by_side(&get, &path, &format!("&breakdown={by}"), calls, None).await,
        ) else {
            continue;
        };
        println!(
            "  metric {:<22} {period:<4} {:>8.1} ms   by {by:<8} {:>8.1} ms ({:.2}×)",
            m,
            r.plain.as_secs_f64() * 1e3,
            r.with.as_secs_f64() * 1e3,
            r.with.as_secs_f64() / r.plain.as_secs_f64()
        );
    }
    for id in commerce_analytics::query::dashboards::BUILT_IN {
        let path = format!("/analytics/dashboards/{id}?period={period}");
        let Some(r) = reported(
            &format!("dashboard {id}"),
            with_comparison(&get, &path, calls, cpu.as_ref()).await,
        ) else {
            continue;
        };
        println!(
            "  dashboard {id:<19} {period:<4} {:>8.1} ms   peak {:>6.1} MiB   compared {:>8.1} ms ({:.2}×)   {}",
            r.plain.as_secs_f64() * 1e3,
            r.plain_peak_mib,
            r.with.as_secs_f64() * 1e3,
            r.with.as_secs_f64() / r.plain.as_secs_f64(),
            r.cpu_column()
        );
    }
    let steps = "page.viewed,product.viewed,cart.item_added,order.completed";
    super::peak::take();
    let ours = p50(calls, || {
        get(format!(
            "/analytics/funnel?steps={steps}&period={funnel_period}"
        ))
    })
    .await;
    let funnel_peak = super::peak::take_mib();
    let baseline_sql = format!(
        "SELECT level, count() FROM (SELECT session_id, windowFunnel(86400)(toDateTime(timestamp), \
         type = 'page.viewed', type = 'product.viewed', type = 'cart.item_added', type = 'order.completed') AS level \
         FROM {db}.commerce_events GROUP BY session_id) GROUP BY level"
    );
    let ch = store.client().clone();
    let baseline = p50(calls, || {
        let q = ch.query(&baseline_sql);
        async move {
            q.fetch_all::<(u8, u64)>().await?;
            Ok::<(), Box<dyn std::error::Error>>(())
        }
    })
    .await;
    // The baseline groups every session of the table at once: on a large store it can exceed the server's
    // memory, which is a figure too, not a reason to stop.
    match (ours, baseline) {
        (Err(e), _) => println!("  funnel 4 steps {funnel_period:<4}         failed: {e}"),
        (Ok(ours), Ok(baseline)) => println!(
            "  funnel 4 steps {funnel_period:<4}         {:>8.1} ms   peak {funnel_peak:>6.1} MiB   (plain windowFunnel over the whole table: {:.1} ms; ratio {:.2})",
            ours.as_secs_f64() * 1e3,
            baseline.as_secs_f64() * 1e3,
            ours.as_secs_f64() / baseline.as_secs_f64()
        ),
        (Ok(ours), Err(e)) => println!(
            "  funnel 4 steps {funnel_period:<4}         {:>8.1} ms   peak {funnel_peak:>6.1} MiB   (plain windowFunnel over the whole table failed: {e})",
            ours.as_secs_f64() * 1e3,
        ),
    }
    if let Some(r) = reported(
        &format!("funnel 4 steps {funnel_period}, compared"),
        with_comparison(
            &get,
            &format!("/analytics/funnel?steps={steps}&period={funnel_period}"),
            calls,
            None,
        )
        .await,
    ) {
        println!(
            "  funnel 4 steps {funnel_period}, compared  {:>8.1} ms   vs {:.1} ms plain ({:.2}×)",
            r.with.as_secs_f64() * 1e3,
            r.plain.as_secs_f64() * 1e3,
            r.with.as_secs_f64() / r.plain.as_secs_f64()
        );
    }
    super::peak::take();
    let d = p50(calls, || {
        get("/analytics/cohorts?interval=month&period=12m".to_owned())
    })
    .await;
    if let Some(d) = reported("cohorts monthly 12m", d) {
        println!(
            "  cohorts monthly 12m          {:>8.1} ms   peak {:>6.1} MiB",
            d.as_secs_f64() * 1e3,
            super::peak::take_mib()
        );
    }
    srv.stop().await;
    Ok(())
}

/// Compressed bytes on disk per table of the database (active parts), and per million stored rows.
async fn print_storage(store: &ClickHouseStore, rows: u64) -> BenchResult {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct TableBytes {
        table: String,
        compressed: u64,
    }
    let tables = store
        .client()
        .query(
            "SELECT table, sum(data_compressed_bytes) AS compressed FROM system.parts \
             WHERE active AND database = currentDatabase() GROUP BY table ORDER BY compressed DESC",
        )
        .fetch_all::<TableBytes>()
        .await?;
    let raw = tables
        .iter()
        .find(|t| t.table == "commerce_events")
        .map_or(0, |t| t.compressed);
    let per_million = |b: u64| b as f64 / 1024.0 / 1024.0 / (rows.max(1) as f64 / 1e6);
    println!("storage over {rows} rows (compressed, active parts):");
    for t in tables.iter().filter(|t| t.compressed > 0) {
        println!(
            "  {:<28} {:>10.1} MiB  {:>7.2} MiB per million events  {:>6.1}% of the raw events",
            t.table,
            t.compressed as f64 / 1024.0 / 1024.0,
            per_million(t.compressed),
            100.0 * t.compressed as f64 / raw.max(1) as f64
        );
    }
    Ok(())
}

/// What [`side_by_side`] measured: p50 of each read, and the highest peak memory of any ClickHouse query
/// behind each (MiB, over all its calls; see [`super::peak`]).
struct Pair {
    plain: std::time::Duration,
    with: std::time::Duration,
    plain_peak_mib: f64,
    /// The server's CPU time per plain call, when it keeps a query log ([`ServerCpu`]).
    plain_cpu: Option<std::time::Duration>,
}

impl Pair {
    /// The plain read's server CPU time per call, and as a multiple of its p50 (about the cores it kept
    /// busy), for the benches' lines; `n/a` without a query log.
    fn cpu_column(&self) -> String {
        match self.plain_cpu {
            Some(cpu) => format!(
                "CPU {:>8.1} ms ({:.1}× its time)",
                cpu.as_secs_f64() * 1e3,
                cpu.as_secs_f64() / self.plain.as_secs_f64()
            ),
            None => "CPU n/a".to_owned(),
        }
    }
}

/// The figure of a line, or `None` after printing why the line has none (the read failed).
fn reported<T>(line: &str, result: Result<T, Box<dyn std::error::Error>>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            println!("  {line:<34} failed: {e}");
            None
        }
    }
}

/// p50 of `path` plain and with `compare=previous_period`, the two measured alternately (`calls` each).
async fn with_comparison<F, Fut>(
    get: &F,
    path: &str,
    calls: usize,
    cpu: Option<&ServerCpu>,
) -> Result<Pair, Box<dyn std::error::Error>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::error::Error>>>,
{
    side_by_side(get, path, "&compare=previous_period", calls, cpu).await
}

/// p50 of `path` plain and with `extra` parameters, the two measured alternately (`calls` each); with
/// `cpu`, also the server's CPU time per plain call (each bracketed by the server's clock, outside its
/// timing).
async fn side_by_side<F, Fut>(
    get: &F,
    path: &str,
    extra: &str,
    calls: usize,
    cpu: Option<&ServerCpu>,
) -> Result<Pair, Box<dyn std::error::Error>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), Box<dyn std::error::Error>>>,
{
    let compared = format!("{path}{extra}");
    super::peak::take();
    get(path.to_owned()).await?;
    let mut plain_peak = super::peak::take();
    get(compared.clone()).await?;
    let (mut plain, mut with, mut brackets) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..calls {
        super::peak::take();
        let timed = || async {
            let t = Instant::now();
            get(path.to_owned()).await?;
            Ok(t.elapsed())
        };
        match cpu {
            Some(cpu) => {
                let (took, bracket) = cpu.bracket(timed).await?;
                plain.push(took);
                brackets.push(bracket);
            }
            None => plain.push(timed().await?),
        }
        plain_peak = plain_peak.max(super::peak::take());
        let t = Instant::now();
        get(compared.clone()).await?;
        with.push(t.elapsed());
    }
    plain.sort();
    with.sort();
    let plain_cpu = match cpu {
        Some(cpu) => Some(cpu.per_call(&brackets).await?),
        None => None,
    };
    Ok(Pair {
        plain: plain[plain.len() / 2],
        with: with[with.len() / 2],
        plain_peak_mib: plain_peak as f64 / (1024.0 * 1024.0),
        plain_cpu,
    })
}
