//! Metrics and funnels against the real ClickHouse, each number checked against a straightforward
//! computation in Rust over the same generated events (the definitions in `query::metrics` and
//! `query::funnel`, written a second time, independently of the SQL).

use std::collections::{BTreeMap, HashMap, HashSet};

use analytics_cli::demo_load;
use commerce_analytics::api::Api;
use commerce_analytics::demo::{DemoConfig, DemoGenerator};
use commerce_analytics::event::Validator;
use commerce_analytics::event::bots::is_bot_user_agent;
use integration_tests::{READ_KEY, TestDb, WRITE_KEY};
use jiff::ToSpan;
use jiff::tz::TimeZone;
use serde_json::Value;

/// One generated event, as the checks need it.
#[derive(Debug, Clone)]
struct Ev {
    t: jiff::Timestamp,
    kind: String,
    customer: String,

    session: String,
    visitor: String,
    amount: i64,
    currency: String,
    /// `(productId, quantity, price)` of order items.
    items: Vec<(String, i64, i64)>,
    order: String,
    product: String,
    quantity: i64,
    utm_source: String,
    utm_campaign: String,
    referrer: String,
    /// `context.page.path`, else the path of `context.page.url`.
    page: String,
    country: String,
    /// The device family and browser of `context.userAgent` (see `event::agent`).
    device: String,
    browser: String,
}

fn flatten(v: &Value) -> Ev {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let kind = s("/type");
    let amount = match kind.as_str() {
        "order.completed" => v.pointer("/properties/total"),
        "order.refunded" => v.pointer("/properties/amount"),
        _ => None,
    }
    .and_then(Value::as_i64)
    .unwrap_or(0);
    let visitor = [s("/customerId"), s("/anonymousId"), s("/sessionId")]
        .into_iter()
        .find(|x| !x.is_empty())
        .unwrap_or_default();
    Ev {
        t: s("/timestamp").parse().expect("timestamp"),
        customer: s("/customerId"),
        kind,

        session: s("/sessionId"),
        visitor,
        amount,
        currency: s("/properties/currency"),
        items: v
            .pointer("/properties/items")
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .map(|i| {
                        (
                            i["productId"].as_str().unwrap_or("").to_owned(),
                            i["quantity"].as_i64().unwrap_or(1),
                            i["price"].as_i64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        order: s("/properties/orderId"),
        product: s("/properties/productId"),
        quantity: v
            .pointer("/properties/quantity")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        utm_source: url_param(&s("/context/page/url"), "utm_source"),
        utm_campaign: url_param(&s("/context/page/url"), "utm_campaign"),
        referrer: s("/context/referrer"),
        page: match s("/context/page/path") {
            p if !p.is_empty() => p,
            _ => url_path(&s("/context/page/url")),
        },
        country: s("/context/country"),
        device: commerce_analytics::event::agent::Agent::of(&s("/context/userAgent"), false)
            .device
            .to_owned(),
        browser: commerce_analytics::event::agent::Agent::of(&s("/context/userAgent"), false)
            .browser,
    }
}

/// The path of a URL: from the first `/` after the host, without query or fragment.
fn url_path(url: &str) -> String {
    let Some((_, rest)) = url.split_once("://") else {
        return String::new();
    };
    match rest.find('/') {
        Some(i) => rest[i..].split(['?', '#']).next().unwrap_or("").to_owned(),
        None => String::new(),
    }
}

fn url_param(url: &str, name: &str) -> String {
    url.split_once('?')
        .and_then(|(_, q)| {
            q.split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
        })
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

struct Fixture {
    db: TestDb,
    api: Api,
    /// The human events the reads count (the demo's bot sessions are stored but left out of every read
    /// unless it asks for bots; `bots.rs` covers that).
    events: Vec<Ev>,
    now: jiff::Timestamp,
}

impl Fixture {
    /// The human events in `[from, to)`.
    fn between(&self, from: jiff::Timestamp, to: jiff::Timestamp) -> Vec<&Ev> {
        self.events
            .iter()
            .filter(|e| e.t >= from && e.t < to)
            .collect()
    }
}

async fn fixture() -> Fixture {
    let db = TestDb::new("queries").await;
    let now_time = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("ns");
    let now = jiff::Timestamp::from_second(now_time.unix_timestamp()).expect("ts");
    let cfg = DemoConfig {
        seed: 99,
        events: 80_000,
        days: 40,
        end: now_time - time::Duration::minutes(1),
    };
    let events: Vec<Ev> = DemoGenerator::new(cfg.clone())
        .filter(|v| {
            let agent = v.pointer("/context/userAgent").and_then(Value::as_str);
            !agent.is_some_and(is_bot_user_agent)
        })
        .map(|v| flatten(&v))
        .collect();
    let validator = Validator::from_config(&db.config);
    demo_load::load(&db.store, &validator, "shop-a", cfg)
        .await
        .expect("demo loads");
    // Another store with overlapping ids must never leak into shop-a's numbers.
    let other = DemoConfig {
        seed: 99,
        events: 5_000,
        days: 40,
        end: now_time - time::Duration::minutes(1),
    };
    demo_load::load(&db.store, &validator, "shop-b", other)
        .await
        .expect("demo loads");

    let api = db.api(now_time);
    Fixture {
        db,
        api,
        events,
        now,
    }
}

async fn get(api: &Api, path_and_query: &str, key: &str) -> (u16, Value) {
    integration_tests::call(api, "GET", path_and_query, key, None).await
}

/// A read with the read key that must answer 200; its body.
async fn get_ok(api: &Api, path_and_query: &str) -> Value {
    let (status, body) = get(api, path_and_query, READ_KEY).await;
    assert_eq!(status, 200, "{path_and_query}: {body}");
    body
}

/// `[from, to)` of `period=30d` in `tz`, and the local-day key of an instant.
fn thirty_days(now: jiff::Timestamp, tz: &TimeZone) -> (jiff::Timestamp, jiff::Timestamp) {
    let today = now
        .to_zoned_datetime(tz.clone())
        .start_of_day()
        .expect("day");
    (today.checked_sub(29.days()).expect("sub").timestamp(), now)
}

fn day(t: jiff::Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%d")
        .to_string()
}

fn series(body: &Value) -> BTreeMap<String, i64> {
    body["dataPoints"]
        .as_array()
        .expect("dataPoints")
        .iter()
        .map(|p| {
            (
                p["date"].as_str().expect("date").to_owned(),
                p["value"].as_i64().expect("integer"),
            )
        })
        .collect()
}

#[tokio::test]
async fn metrics_equal_an_independent_computation_in_utc_and_across_a_dst_change() {
    let f = fixture().await;
    // UTC and New York read visitors and product views from the hourly rollup; Kolkata's half-hour offset
    // makes them read the raw events. All must equal the computation here.
    for tz_name in ["UTC", "America/New_York", "Asia/Kolkata"] {
        let tz = TimeZone::get(tz_name).expect("tz");
        let (from, to) = thirty_days(f.now, &tz);
        let in_range: Vec<&Ev> = f
            .events
            .iter()
            .filter(|e| e.t >= from && e.t < to)
            .collect();

        // Expected revenue and orders (both in USD: counts beside money are in its currency) per local day.
        let mut revenue: BTreeMap<String, i64> = BTreeMap::new();
        let mut orders: BTreeMap<String, i64> = BTreeMap::new();
        let mut net = 0;
        for e in &in_range {
            match e.kind.as_str() {
                "order.completed" if e.currency == "USD" => {
                    *orders.entry(day(e.t, &tz)).or_default() += 1;
                    *revenue.entry(day(e.t, &tz)).or_default() += e.amount;
                    net += e.amount;
                }
                "order.refunded" if e.currency == "USD" => net -= e.amount,
                _ => {}
            }
        }
        // Sessions by their first event in range; conversion; visitors.
        let mut first: HashMap<&str, jiff::Timestamp> = HashMap::new();
        let mut converted: HashSet<&str> = HashSet::new();
        for e in in_range.iter().filter(|e| !e.session.is_empty()) {
            let t = first.entry(e.session.as_str()).or_insert(e.t);
            if e.t < *t {
                *t = e.t;
            }
            if e.kind == "order.completed" {
                converted.insert(e.session.as_str());
            }
        }
        let mut sessions: BTreeMap<String, i64> = BTreeMap::new();
        for t in first.values() {
            *sessions.entry(day(*t, &tz)).or_default() += 1;
        }
        let visitors: HashSet<&str> = in_range
            .iter()
            .map(|e| e.visitor.as_str())
            .filter(|v| !v.is_empty())
            .collect();

        let q = |m: &str| {
            format!("/analytics/metrics?metric={m}&period=30d&timezone={tz_name}&currency=USD")
        };
        let (status, body) = get(&f.api, &q("revenue"), READ_KEY).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["currency"], "USD");
        let got = series(&body);
        assert_eq!(got.len(), 30, "every day present, zero-filled ({tz_name})");
        for (d, v) in &got {
            assert_eq!(
                *v,
                revenue.get(d).copied().unwrap_or(0),
                "revenue on {d} ({tz_name})"
            );
        }
        assert_eq!(body["total"].as_i64(), Some(revenue.values().sum::<i64>()));

        let (_, body) = get(&f.api, &q("orders"), READ_KEY).await;
        for (d, v) in series(&body) {
            assert_eq!(
                v,
                orders.get(&d).copied().unwrap_or(0),
                "orders on {d} ({tz_name})"
            );
        }
        let (_, body) = get(&f.api, &q("sessions"), READ_KEY).await;
        for (d, v) in series(&body) {
            assert_eq!(
                v,
                sessions.get(&d).copied().unwrap_or(0),
                "sessions on {d} ({tz_name})"
            );
        }
        let (_, body) = get(&f.api, &q("net_revenue"), READ_KEY).await;
        assert_eq!(body["total"].as_i64(), Some(net), "net revenue ({tz_name})");
        let (_, body) = get(&f.api, &q("visitors"), READ_KEY).await;
        assert_eq!(
            body["total"].as_u64(),
            Some(visitors.len() as u64),
            "visitors ({tz_name})"
        );
        let mut daily_visitors: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
        let mut daily_views: BTreeMap<String, i64> = BTreeMap::new();
        for e in &in_range {
            if !e.visitor.is_empty() {
                daily_visitors
                    .entry(day(e.t, &tz))
                    .or_default()
                    .insert(e.visitor.as_str());
            }
            if e.kind == "product.viewed" {
                *daily_views.entry(day(e.t, &tz)).or_default() += 1;
            }
        }
        for (d, v) in series(&body) {
            let want = daily_visitors.get(&d).map_or(0, |s| s.len() as i64);
            assert_eq!(v, want, "visitors on {d} ({tz_name})");
        }
        let (_, body) = get(&f.api, &q("product_views"), READ_KEY).await;
        assert_eq!(
            body["total"].as_i64(),
            Some(daily_views.values().sum::<i64>()),
            "product views ({tz_name})"
        );
        for (d, v) in series(&body) {
            let want = daily_views.get(&d).copied().unwrap_or(0);
            assert_eq!(v, want, "product views on {d} ({tz_name})");
        }
        let (_, body) = get(&f.api, &q("conversion_rate"), READ_KEY).await;
        let want = ((converted.len() as f64 / first.len() as f64) * 10_000.0).round() / 10_000.0;
        assert_eq!(body["total"].as_f64(), Some(want), "conversion ({tz_name})");
        let mut viewed: HashSet<&str> = HashSet::new();
        let mut added: HashSet<&str> = HashSet::new();
        for e in in_range.iter().filter(|e| !e.session.is_empty()) {
            match e.kind.as_str() {
                "product.viewed" => {
                    viewed.insert(e.session.as_str());
                }
                "cart.item_added" => {
                    added.insert(e.session.as_str());
                }
                _ => {}
            }
        }
        let carted = viewed.iter().filter(|s| added.contains(*s)).count();
        let (_, body) = get(&f.api, &q("add_to_cart_rate"), READ_KEY).await;
        let want = ((carted as f64 / viewed.len() as f64) * 10_000.0).round() / 10_000.0;
        assert_eq!(
            body["total"].as_f64(),
            Some(want),
            "add to cart rate ({tz_name})"
        );
        let (_, body) = get(&f.api, &q("aov"), READ_KEY).await;
        let usd_orders = in_range
            .iter()
            .filter(|e| e.kind == "order.completed" && e.currency == "USD")
            .count() as i64;
        let sum: i64 = revenue.values().sum();
        assert_eq!(
            body["total"].as_i64(),
            Some((2 * sum + usd_orders) / (2 * usd_orders)),
            "aov ({tz_name})"
        );
        assert_eq!(
            usd_orders,
            orders.values().sum::<i64>(),
            "the orders metric counts the orders behind the AOV ({tz_name})"
        );
    }
    f.db.drop_database().await;
}

/// The label of the bucket an event's time falls in.
type BucketOf<'a> = dyn Fn(jiff::Timestamp) -> String + 'a;

/// Over more than a month, visitors are grouped once each with the buckets they were seen in as bits
/// (`BucketBits` in the ClickHouse adapter): per week and per month, in UTC, across New York's DST
/// change (rollup) and in Kolkata (raw events), every bucket and the total equal the visitors counted
/// here; 90 days by day (91 buckets, more than a number's bits) keeps the per-bucket sets.
#[tokio::test]
async fn visitors_over_months_equal_each_bucket_s_distinct_visitors_in_every_zone() {
    let f = fixture().await;
    for tz_name in ["UTC", "America/New_York", "Asia/Kolkata"] {
        let tz = TimeZone::get(tz_name).expect("tz");
        let week = |t: jiff::Timestamp| {
            let d = t.to_zoned_datetime(tz.clone()).date();
            let back = i64::from(d.weekday().to_monday_zero_offset());
            d.checked_sub(back.days()).expect("monday").to_string()
        };
        let month = |t: jiff::Timestamp| {
            let d = t.to_zoned_datetime(tz.clone()).date();
            d.first_of_month().to_string()
        };
        let by_day = |t: jiff::Timestamp| day(t, &tz);
        let shapes: [(&str, &str, &BucketOf); 3] = [
            ("90d", "week", &week),
            ("12m", "month", &month),
            ("90d", "day", &by_day),
        ];
        for (period, granularity, bucket) in shapes {
            // Every event of the fixture (40 days up to a minute ago) is inside these periods.
            let mut per_bucket: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
            for e in f
                .events
                .iter()
                .filter(|e| !e.visitor.is_empty() && e.t < f.now)
            {
                per_bucket
                    .entry(bucket(e.t))
                    .or_default()
                    .insert(e.visitor.as_str());
            }
            let all: HashSet<&str> = per_bucket.values().flatten().copied().collect();
            let path = format!(
                "/analytics/metrics?metric=visitors&period={period}&granularity={granularity}&timezone={tz_name}"
            );
            let (status, body) = get(&f.api, &path, READ_KEY).await;
            assert_eq!(status, 200, "{body}");
            let what = format!("{period} by {granularity} in {tz_name}");
            assert_eq!(body["total"].as_u64(), Some(all.len() as u64), "{what}");
            let got = series(&body);
            assert!(got.len() > 1, "{what}: several buckets");
            for (d, v) in &got {
                let want = per_bucket.get(d).map_or(0, |s| s.len() as i64);
                assert_eq!(*v, want, "visitors in the {granularity} of {d} ({what})");
            }
            assert!(
                per_bucket.keys().all(|d| got.contains_key(d)),
                "{what}: every bucket with visitors answered: {:?}",
                per_bucket.keys().collect::<Vec<_>>()
            );
        }
    }
    f.db.drop_database().await;
}

/// A `24h` period starts mid-hour and ends "now": the rollups answer the whole hours, the raw events the
/// partial hours at both ends; per hour and in total the counts (visitors, product views, sessions) and
/// conversion equal the computation here.
#[tokio::test]
async fn hourly_visitors_and_views_over_24h_are_exact_at_the_partial_edges() {
    let f = fixture().await;
    for tz_name in ["UTC", "Asia/Kolkata"] {
        let tz = TimeZone::get(tz_name).expect("tz");
        let from = f.now.checked_sub(24.hours()).expect("24h");
        let hour = |t: jiff::Timestamp| {
            t.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%dT%H:00")
                .to_string()
        };
        let mut visitors: BTreeMap<String, HashSet<&str>> = BTreeMap::new();
        let mut views: BTreeMap<String, i64> = BTreeMap::new();
        let mut all: HashSet<&str> = HashSet::new();
        for e in f.events.iter().filter(|e| e.t >= from && e.t < f.now) {
            if !e.visitor.is_empty() {
                visitors.entry(hour(e.t)).or_default().insert(&e.visitor);
                all.insert(&e.visitor);
            }
            if e.kind == "product.viewed" {
                *views.entry(hour(e.t)).or_default() += 1;
            }
        }
        assert!(!all.is_empty(), "the last 24 hours have traffic");
        let path = |m: &str| {
            format!("/analytics/metrics?metric={m}&period=24h&granularity=hour&timezone={tz_name}")
        };
        let (status, body) = get(&f.api, &path("visitors"), READ_KEY).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["total"].as_u64(), Some(all.len() as u64), "{tz_name}");
        let got = series(&body);
        assert!(got.len() >= 24, "{tz_name}: every hour present");
        for (h, v) in got {
            let want = visitors.get(&h).map_or(0, |s| s.len() as i64);
            assert_eq!(v, want, "visitors in {h} ({tz_name})");
        }
        let (_, body) = get(&f.api, &path("product_views"), READ_KEY).await;
        assert_eq!(
            body["total"].as_i64(),
            Some(views.values().sum::<i64>()),
            "{tz_name}"
        );
        for (h, v) in series(&body) {
            assert_eq!(
                v,
                views.get(&h).copied().unwrap_or(0),
                "views in {h} ({tz_name})"
            );
        }
        // Sessions by the hour of their first event in the range (in UTC read from the session rollup's
        // first hours, in Kolkata from its starts), and conversion over the period.
        let in_range = f.between(from, f.now);
        let mut first: HashMap<&str, jiff::Timestamp> = HashMap::new();
        let mut converted: HashSet<&str> = HashSet::new();
        for e in in_range.iter().filter(|e| !e.session.is_empty()) {
            let t = first.entry(e.session.as_str()).or_insert(e.t);
            *t = (*t).min(e.t);
            if e.kind == "order.completed" {
                converted.insert(e.session.as_str());
            }
        }
        let mut sessions: BTreeMap<String, i64> = BTreeMap::new();
        for t in first.values() {
            *sessions.entry(hour(*t)).or_default() += 1;
        }
        assert!(
            sessions.len() > 12 && !converted.is_empty(),
            "sessions in most hours and some orders ({tz_name})"
        );
        let (_, body) = get(&f.api, &path("sessions"), READ_KEY).await;
        assert_eq!(
            body["total"].as_i64(),
            Some(first.len() as i64),
            "{tz_name}"
        );
        for (h, v) in series(&body) {
            assert_eq!(
                v,
                sessions.get(&h).copied().unwrap_or(0),
                "sessions in {h} ({tz_name})"
            );
        }
        let (_, body) = get(&f.api, &path("conversion_rate"), READ_KEY).await;
        let want = ((converted.len() as f64 / first.len() as f64) * 10_000.0).round() / 10_000.0;
        assert_eq!(body["total"].as_f64(), Some(want), "conversion ({tz_name})");
    }
    f.db.drop_database().await;
}

#[tokio::test]
async fn the_funnel_equals_a_window_funnel_computed_in_rust() {
    let f = fixture().await;
    let (from, to) = thirty_days(f.now, &TimeZone::UTC);
    check_funnel(&f, "period=30d", from, to).await;
    // A period ending mid-data: sessions entering before its end convert after it, within the window.
    let end_day = f.now.checked_sub((15 * 24).hours()).expect("sub");
    let (from, _) = thirty_days(end_day, &TimeZone::UTC);
    let to = end_day
        .to_zoned_datetime(TimeZone::UTC)
        .start_of_day()
        .expect("day")
        .checked_add(1.day())
        .expect("add")
        .timestamp();
    let custom = format!(
        "from={}&to={}",
        day(from, &TimeZone::UTC),
        day(end_day, &TimeZone::UTC)
    );
    check_funnel(&f, &custom, from, to).await;
    f.db.drop_database().await;
}

/// The 4-step session funnel of `period` (the range `[from, to)`) equals `windowFunnel` computed here:
/// a session enters with a page view inside the range; later steps count within a day of the entry, even
/// after `to`.
async fn check_funnel(f: &Fixture, period: &str, from: jiff::Timestamp, to: jiff::Timestamp) {
    let steps = [
        "page.viewed",
        "product.viewed",
        "cart.item_added",
        "order.completed",
    ];
    let window = 86_400_i64;
    let until = to.checked_add((window + 1).seconds()).expect("until");
    // Step 1 only inside the period; the others until its end plus the window.
    let counts = |e: &Ev| match steps.iter().position(|s| *s == e.kind) {
        Some(0) => e.t < to,
        Some(_) => true,
        None => false,
    };

    let mut by_session: HashMap<&str, Vec<&Ev>> = HashMap::new();
    for e in f
        .events
        .iter()
        .filter(|e| e.t >= from && e.t < until && !e.session.is_empty() && counts(e))
    {
        by_session.entry(e.session.as_str()).or_default().push(e);
    }
    let mut reached = [0u64; 4];
    let mut deltas: Vec<Vec<f64>> = vec![Vec::new(); 4];
    for evs in by_session.values_mut() {
        evs.sort_by_key(|e| e.t);
        // windowFunnel: per level, the start time of the chain that reached it.
        let mut starts: [Option<i64>; 4] = [None; 4];
        for e in evs.iter() {
            let secs = e.t.as_second();
            let Some(i) = steps.iter().position(|s| *s == e.kind) else {
                continue;
            };
            if i == 0 {
                starts[0] = Some(secs);
            } else if let Some(start) = starts[i - 1]
                && secs <= start + window
            {
                starts[i] = Some(start);
            }
        }
        let level = starts
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |i| i + 1);
        let first_of = |k: usize| evs.iter().find(|e| e.kind == steps[k]).map(|e| e.t);
        for k in 0..level {
            reached[k] += 1;
            if k > 0
                && let (Some(a), Some(b)) = (first_of(k - 1), first_of(k))
            {
                deltas[k].push((b - a).as_millis() as f64 / 1000.0);
            }
        }
    }
    let path = format!("/analytics/funnel?steps={}&{period}", steps.join(","));
    let (status, body) = get(&f.api, &path, READ_KEY).await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<u64> = body["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["count"].as_u64().expect("count"))
        .collect();
    assert_eq!(got, reached.to_vec(), "{period}");
    assert!(
        reached[3] > 0 && reached[3] < reached[0],
        "a real funnel: {reached:?}"
    );
    for k in 1..4 {
        let mut d = deltas[k].clone();
        d.sort_by(f64::total_cmp);
        let want = d[d.len() / 2];
        assert_eq!(
            body["steps"][k]["medianSecondsToConvert"].as_f64(),
            Some(want),
            "median at step {k} ({period})"
        );
        let prev = reached[k - 1];
        assert_eq!(
            body["steps"][k]["dropOff"].as_u64(),
            Some(prev - reached[k])
        );
    }
    assert!(body["steps"][0]["medianSecondsToConvert"].is_null());
    let overall = ((reached[3] as f64 / reached[0] as f64) * 10_000.0).round() / 10_000.0;
    assert_eq!(body["overallConversionRate"].as_f64(), Some(overall));
}

/// Validates `batch` as the API would on `now` (every event must be valid) and stores it in `shop-a` as one
/// insert deduplicated by `token`.
async fn store_valid(db: &TestDb, batch: Vec<Value>, now: time::OffsetDateTime, token: &str) {
    let validator = Validator::from_config(&db.config);
    let stored: Vec<commerce_analytics::event::Event> = batch
        .into_iter()
        .map(|v| {
            validator
                .validate(v, "shop-a", &Default::default(), now)
                .expect("valid")
        })
        .collect();
    commerce_analytics::store::EventStore::insert(&db.store, &stored, token)
        .await
        .expect("insert");
}

#[tokio::test]
async fn a_session_entering_before_the_period_ends_converts_after_it_within_the_window() {
    let db = TestDb::new("funnel_edge").await;
    // The period is 2026-03-10 (UTC, one day); the window an hour.
    let events = [
        // Enters at 23:58 on the last day, orders at 00:05 the next day: converts.
        ("e1", "page.viewed", "2026-03-10T23:58:00Z", "s-late"),
        ("e2", "order.completed", "2026-03-11T00:05:00Z", "s-late"),
        // Enters after the period: not in this funnel at all.
        ("e3", "page.viewed", "2026-03-11T00:01:00Z", "s-after"),
        ("e4", "order.completed", "2026-03-11T00:03:00Z", "s-after"),
        // Enters inside, orders after the window: reaches step 1 only.
        ("e5", "page.viewed", "2026-03-10T22:00:00Z", "s-slow"),
        ("e6", "order.completed", "2026-03-10T23:30:00Z", "s-slow"),
        // Enters inside; a second page view after the period's end neither starts nor breaks anything.
        ("e7", "page.viewed", "2026-03-10T23:50:00Z", "s-strict"),
        ("e8", "page.viewed", "2026-03-11T00:02:00Z", "s-strict"),
        ("e9", "order.completed", "2026-03-11T00:04:00Z", "s-strict"),
    ];
    let batch: Vec<Value> = events
        .iter()
        .map(|(id, kind, t, session)| {
            let mut props = serde_json::json!({"path": "/"});
            if *kind == "order.completed" {
                props = serde_json::json!({"orderId": format!("o-{id}"), "total": 1000, "currency": "USD"});
            }
            serde_json::json!({"id": id, "type": kind, "timestamp": t, "sessionId": session,
                               "properties": props})
        })
        .collect();
    let now = time::macros::datetime!(2026-03-20 00:00 UTC);
    store_valid(&db, batch, now, "edge").await;
    let api = db.api(now);
    for mode in ["ordered", "strict"] {
        let (status, body) = get(
            &api,
            &format!(
                "/analytics/funnel?steps=page.viewed,order.completed&window=1h&mode={mode}\
                 &from=2026-03-10&to=2026-03-10&timezone=UTC"
            ),
            READ_KEY,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let counts: Vec<u64> = body["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .map(|s| s["count"].as_u64().expect("count"))
            .collect();
        assert_eq!(
            counts,
            vec![3, 2],
            "{mode}: s-late, s-slow and s-strict enter; s-late and s-strict convert after midnight"
        );
    }
    db.drop_database().await;
}

/// The store's funnel (`windowFunnel` over each key's events gathered into one array) answers exactly what
/// `windowFunnel` and `minIf` grouped over the rows answer, on events made to be hard: many in one
/// second (where `windowFunnel` orders by step), steps that repeat a type (one event meets two
/// conditions), sessions that outlast a short window, entries after the period's end, both modes, by
/// session and by customer.
#[tokio::test]
async fn the_funnel_answers_what_window_funnel_over_the_rows_answers() {
    use commerce_analytics::query::ReadStore;
    use commerce_analytics::query::funnel::{FunnelKey, FunnelQuery};
    use commerce_analytics::query::params::Params;

    let db = TestDb::new("funnel_rows").await;
    let kinds = [
        "page.viewed",
        "product.viewed",
        "cart.item_added",
        "checkout.started",
        "order.completed",
    ];
    // A fixed xorshift sequence: the same events on every run.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let day = jiff::Timestamp::from_second(1_773_100_800).expect("2026-03-10");
    let mut batch = Vec::new();
    for s in 0..400 {
        // Sessions start through the period's day and up to an hour after it; their events fall in
        // the next 40 seconds, or (one session in four) spread over two hours.
        let start = day.as_millisecond() + (next(25 * 3_600) * 1000) as i64;
        let spread = if s % 4 == 0 { 7_200_000 } else { 40_000 };
        for e in 0..1 + next(12) {
            let kind = kinds[next(kinds.len() as u64) as usize];
            let at = jiff::Timestamp::from_millisecond(start + next(spread) as i64).expect("time");
            let mut props = serde_json::json!({"productId": format!("p{}", next(3))});
            if kind == "order.completed" {
                props = serde_json::json!({"orderId": format!("o-{s}-{e}"), "total": 1000, "currency": "USD"});
            }
            let mut event = serde_json::json!({"id": format!("ev-{s}-{e}"), "type": kind,
                "timestamp": at.to_string(), "sessionId": format!("s-{s}"), "properties": props});
            if s % 3 == 0 {
                event["customerId"] = serde_json::json!(format!("c-{}", s % 40));
            }
            batch.push(event);
        }
    }
    let now = time::macros::datetime!(2026-03-20 00:00 UTC);
    store_valid(&db, batch, now, "funnel_rows").await;

    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Answer {
        reached: Vec<u64>,
        medians: Vec<f64>,
    }
    let shapes = [
        (
            "page.viewed,product.viewed,cart.item_added,order.completed",
            86_400,
        ),
        (
            "product.viewed,cart.item_added,checkout.started,order.completed",
            20,
        ),
        ("page.viewed,page.viewed,order.completed", 3_600),
        ("cart.item_added,product.viewed,cart.item_added", 600),
    ];
    let range = Params::parse(
        "from=2026-03-10&to=2026-03-10&timezone=UTC",
        &["from", "to", "timezone"],
    )
    .and_then(|p| p.range(jiff::Timestamp::from_second(now.unix_timestamp()).expect("now")))
    .expect("range");
    let mut answers = HashMap::new();
    for (steps, window_secs) in shapes {
        for by in [FunnelKey::Session, FunnelKey::Customer] {
            for strict in [false, true] {
                let q = FunnelQuery {
                    store_id: "shop-a".into(),
                    steps: steps.split(',').map(str::to_owned).collect(),
                    range: range.clone(),
                    window_secs,
                    by,
                    strict,
                    include_bots: false,
                    compare: None,
                };
                let got = db.store.funnel(&q).await.expect("funnel");
                let key = match by {
                    FunnelKey::Session => "session_id",
                    FunnelKey::Customer => "customer_id",
                };
                let to = format!("fromUnixTimestamp64Milli({})", q.range.to_ms());
                let condition = |i: usize| {
                    let kind = &q.steps[i];
                    if i == 0 {
                        format!("type = '{kind}' AND timestamp < {to}")
                    } else {
                        format!("type = '{kind}'")
                    }
                };
                let n = q.steps.len();
                let join = |f: &dyn Fn(usize) -> String, r: std::ops::Range<usize>| {
                    r.map(f).collect::<Vec<_>>().join(", ")
                };
                let types = join(&|i| format!("'{}'", q.steps[i]), 0..n);
                let later = join(&|i| format!("'{}'", q.steps[i]), 1..n);
                let oracle = format!(
                    "SELECT [{reached}] AS reached, [nan, {medians}] AS medians FROM ( \
                       SELECT {key}, windowFunnel({window_secs}{mode})(toDateTime(timestamp), {conditions}) AS level, {firsts} \
                       FROM commerce_events WHERE store_id = 'shop-a' AND type IN ({types}) \
                         AND timestamp >= fromUnixTimestamp64Milli({from}) AND timestamp < fromUnixTimestamp64Milli({until}) \
                         AND (timestamp < {to} OR type IN ({later})) AND {key} != '' GROUP BY {key})",
                    reached = join(&|k| format!("countIf(level >= {k})"), 1..n + 1),
                    medians = join(
                        &|i| format!(
                            "quantileExactIf(0.5)(toFloat64(dateDiff('millisecond', t{}, t{i})) / 1000, level >= {})",
                            i - 1,
                            i + 1
                        ),
                        1..n
                    ),
                    mode = if strict { ", 'strict_order'" } else { "" },
                    conditions = join(&condition, 0..n),
                    firsts = join(
                        &|i| format!("minIf(timestamp, {}) AS t{i}", condition(i)),
                        0..n
                    ),
                    from = q.range.from_ms(),
                    until = q.entries_until_ms(),
                );
                let want = db.scalar::<Answer>(&oracle).await;
                let what = format!("{steps} within {window_secs} s, {by:?}, strict {strict}");
                assert!(
                    want.reached[0] > 0 && (strict || want.reached[1] > 0),
                    "{what}: keys enter (and convert, in order): {want:?}"
                );
                assert_eq!(got.reached, want.reached, "{what}");
                for (i, (g, w)) in got
                    .median_secs
                    .iter()
                    .zip(&want.medians)
                    .enumerate()
                    .skip(1)
                {
                    match g {
                        Some(g) => assert_eq!(*g, *w, "{what}: median at step {}", i + 1),
                        None => assert!(w.is_nan(), "{what}: no median at step {} but {w}", i + 1),
                    }
                }
                answers.insert((steps, by == FunnelKey::Session, strict), want.reached);
            }
        }
    }
    assert_eq!(answers.len(), 16);
    assert!(
        answers
            .iter()
            .any(|((steps, by_session, strict), reached)| *strict
                && reached[1] > 0
                && answers[&(*steps, *by_session, false)] != *reached),
        "strict order converts some keys and changes some answer: {answers:?}"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn read_endpoints_check_keys_and_parameters() {
    let f = fixture().await;
    let cases = [
        (
            "/analytics/metrics?metric=revenue",
            WRITE_KEY,
            403,
            "forbidden",
            None,
        ),
        (
            "/analytics/metrics?metric=revenue",
            "sk_nope_nope_nope",
            401,
            "unauthorized",
            None,
        ),
        (
            "/analytics/metrics?metric=profit",
            READ_KEY,
            400,
            "unknown_metric",
            Some("metric"),
        ),
        (
            "/analytics/metrics?metric=revenue&granulatiry=day",
            READ_KEY,
            400,
            "unknown_parameter",
            Some("granulatiry"),
        ),
        (
            "/analytics/metrics?metric=revenue&timezone=Nowhere/City",
            READ_KEY,
            400,
            "invalid_parameter",
            Some("timezone"),
        ),
        (
            "/analytics/metrics?metric=revenue&currency=usd",
            READ_KEY,
            400,
            "invalid_parameter",
            Some("currency"),
        ),
        (
            "/analytics/metrics?metric=revenue&country=%27%20OR%201%3D1",
            READ_KEY,
            400,
            "invalid_parameter",
            Some("country"),
        ),
        (
            "/analytics/funnel?steps=page.viewed",
            READ_KEY,
            400,
            "invalid_parameter",
            Some("steps"),
        ),
    ];
    for (path, key, status, code, field) in cases {
        let (got, body) = get(&f.api, path, key).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], code, "{path}");
        assert_eq!(body["error"]["field"].as_str(), field, "{path}");
    }
    let (_, body) = get(
        &f.api,
        "/analytics/metrics?metric=unknown_metric_x",
        READ_KEY,
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("revenue, net_revenue"),
        "lists the valid metrics"
    );
    // Request values are parameters, never SQL: a product id full of SQL is just a product with no views.
    let (status, body) = get(&f.api, "/analytics/metrics?metric=product_views&productId=x%27%3B%20DROP%20TABLE%20commerce_events%3B--", READ_KEY).await;
    assert_eq!((status, body["total"].as_i64()), (200, Some(0)));
    let rows: u64 = f.db.scalar("SELECT count() FROM commerce_events").await;
    assert!(rows > 0);
    // Default currency: the store's main one (the demo's USD).
    let (_, body) = get(
        &f.api,
        "/analytics/metrics?metric=revenue&period=7d",
        READ_KEY,
    )
    .await;
    assert_eq!(body["currency"], "USD");
    f.db.drop_database().await;
}

/// Each customer's first order time.
fn first_orders<'a>(orders: &[&'a Ev]) -> HashMap<&'a str, jiff::Timestamp> {
    let mut first: HashMap<&str, jiff::Timestamp> = HashMap::new();
    for o in orders {
        let t = first.entry(o.customer.as_str()).or_insert(o.t);
        if o.t < *t {
            *t = o.t;
        }
    }
    first
}

/// The events of `events` that belong to a session, by session, each session's in time order.
fn sessions_of<'a>(events: impl IntoIterator<Item = &'a Ev>) -> HashMap<&'a str, Vec<&'a Ev>> {
    let mut sessions: HashMap<&str, Vec<&Ev>> = HashMap::new();
    for e in events.into_iter().filter(|e| !e.session.is_empty()) {
        sessions.entry(e.session.as_str()).or_default().push(e);
    }
    for evs in sessions.values_mut() {
        evs.sort_by_key(|e| e.t);
    }
    sessions
}

/// A session's source (its events in time order): its first `utm_source`, else the name of its first
/// referrer's site (`query::sources`: every Google is `google`), else `direct`.
fn session_source(evs: &[&Ev]) -> String {
    evs.iter()
        .find(|e| !e.utm_source.is_empty())
        .map(|e| e.utm_source.clone())
        .or_else(|| {
            evs.iter()
                .find(|e| !e.referrer.is_empty())
                .map(|e| commerce_analytics::query::sources::name_of(&referrer_domain(&e.referrer)))
        })
        .unwrap_or_else(|| "direct".to_owned())
}

/// The site of a referrer URL as the API names it in `referrers` and `breakdown=referrer_domain`: its
/// host without `www.` (`''` for an empty referrer).
fn referrer_domain(referrer: &str) -> String {
    let host = referrer.split_once("://").map_or(referrer, |(_, r)| r);
    host.split(['/', ':', '?', '#'])
        .next()
        .unwrap_or("")
        .trim_start_matches("www.")
        .to_owned()
}

fn rows(body: &Value) -> Vec<Value> {
    body["rows"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn ranked_metrics_equal_an_independent_computation() {
    let f = fixture().await;
    let tz = TimeZone::UTC;
    let (from, to) = thirty_days(f.now, &tz);
    let in_range = f.between(from, to);

    // best_sellers: items of USD orders; sold units per product (all currencies) for sell-through.
    let mut best: HashMap<&str, (i64, i64, HashSet<&str>)> = HashMap::new();
    let mut sold: HashMap<&str, i64> = HashMap::new();
    for e in in_range.iter().filter(|e| e.kind == "order.completed") {
        for (p, q, price) in &e.items {
            *sold.entry(p.as_str()).or_default() += q;
            if e.currency == "USD" {
                let b = best.entry(p.as_str()).or_default();
                b.0 += q;
                b.1 += q * price;
                b.2.insert(e.order.as_str());
            }
        }
    }
    let mut want: Vec<(&str, i64, i64, usize)> = best
        .iter()
        .map(|(p, (u, r, o))| (*p, *u, *r, o.len()))
        .collect();
    want.sort_by(|a, b| b.2.cmp(&a.2).then(b.1.cmp(&a.1)).then(a.0.cmp(b.0)));
    let (status, body) = get(
        &f.api,
        "/analytics/metrics?metric=best_sellers&period=30d&currency=USD&limit=5",
        READ_KEY,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got: Vec<(String, i64, i64, u64)> = rows(&body)
        .iter()
        .map(|r| {
            (
                r["productId"].as_str().unwrap_or("").to_owned(),
                r["units"].as_i64().unwrap_or(-1),
                r["revenue"].as_i64().unwrap_or(-1),
                r["orders"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let want5: Vec<(String, i64, i64, u64)> = want
        .iter()
        .take(5)
        .map(|(p, u, r, o)| ((*p).to_owned(), *u, *r, *o as u64))
        .collect();
    assert_eq!(got, want5);

    // traffic_sources: first utm_source, else first referrer's site, else direct; per session.
    let mut sessions = sessions_of(in_range.iter().copied());
    // traffic_sources / campaign_performance: (sessions, orders, revenue in USD); sources also of the
    // sessions of each landing page (a landing page filter reads the raw events, not the rollup).
    let mut by_source: HashMap<String, (u64, u64, i64)> = HashMap::new();
    let mut by_campaign: HashMap<String, (u64, u64, i64)> = HashMap::new();
    let mut by_landing_source: HashMap<String, HashMap<String, (u64, u64, i64)>> = HashMap::new();
    // landing_pages / referrers: (sessions, orders, bounces, revenue in USD).
    let mut by_landing: HashMap<String, (u64, u64, u64, i64)> = HashMap::new();
    let mut by_referrer: HashMap<String, (u64, u64, u64, i64)> = HashMap::new();
    for evs in sessions.values_mut() {
        evs.sort_by_key(|e| e.t);
        let pages: HashSet<&str> = evs
            .iter()
            .map(|e| e.page.as_str())
            .filter(|p| !p.is_empty())
            .collect();
        let orders: HashMap<&str, i64> = evs
            .iter()
            .filter(|e| e.kind == "order.completed" && e.currency == "USD")
            .map(|e| (e.order.as_str(), e.amount))
            .collect();
        let entry = (
            1,
            !orders.is_empty() as u64,
            (pages.len() == 1) as u64,
            orders.values().sum::<i64>(),
        );
        let add = |m: &mut HashMap<String, (u64, u64, u64, i64)>, k: String| {
            let s = m.entry(k).or_default();
            *s = (s.0 + entry.0, s.1 + entry.1, s.2 + entry.2, s.3 + entry.3);
        };
        if let Some(first) = evs.iter().find(|e| !e.page.is_empty()) {
            add(&mut by_landing, first.page.clone());
        }
        if let Some(first) = evs.iter().find(|e| !e.referrer.is_empty()) {
            add(&mut by_referrer, referrer_domain(&first.referrer));
        }
        let source = session_source(evs);
        let (converted, revenue) = (entry.1, entry.3);
        let add = |m: &mut HashMap<String, (u64, u64, i64)>, k: String| {
            let s = m.entry(k).or_default();
            *s = (s.0 + 1, s.1 + converted, s.2 + revenue);
        };
        if let Some(first) = evs.iter().find(|e| !e.page.is_empty()) {
            add(
                by_landing_source.entry(first.page.clone()).or_default(),
                source.clone(),
            );
        }
        add(&mut by_source, source);
        if let Some(c) = evs.iter().find(|e| !e.utm_campaign.is_empty()) {
            add(&mut by_campaign, c.utm_campaign.clone());
        }
    }
    let (top_landing, by_top_landing_source) = by_landing_source
        .iter()
        .max_by_key(|(page, sources)| (sources.values().map(|s| s.0).sum::<u64>(), *page))
        .expect("sessions with a landing page");
    assert!(
        by_top_landing_source.contains_key("direct") && by_top_landing_source.len() > 2,
        "{top_landing}: {by_top_landing_source:?}"
    );
    let top_landing_filter = format!(
        "&landingPage={}",
        url::form_urlencoded::byte_serialize(top_landing.as_bytes()).collect::<String>()
    );
    for (metric, filter, key, want) in [
        ("traffic_sources", "", "source", &by_source),
        (
            "traffic_sources",
            top_landing_filter.as_str(),
            "source",
            by_top_landing_source,
        ),
        ("campaign_performance", "", "campaign", &by_campaign),
    ] {
        let body = get_ok(
            &f.api,
            &format!(
                "/analytics/metrics?metric={metric}&period=30d&limit=100&currency=USD{filter}"
            ),
        )
        .await;
        let got: HashMap<String, (u64, u64, i64)> = rows(&body)
            .iter()
            .map(|r| {
                (
                    r[key].as_str().unwrap_or("").to_owned(),
                    (
                        r["sessions"].as_u64().unwrap_or(0),
                        r["orders"].as_u64().unwrap_or(0),
                        r["revenue"].as_i64().unwrap_or(-1),
                    ),
                )
            })
            .collect();
        assert_eq!(&got, want, "{metric}{filter}");
    }
    assert!(
        by_landing.len() > 3 && by_referrer.len() > 1,
        "{by_landing:?}"
    );
    for (metric, key, want) in [
        ("landing_pages", "landingPage", &by_landing),
        ("referrers", "referrer", &by_referrer),
    ] {
        let body = get_ok(
            &f.api,
            &format!("/analytics/metrics?metric={metric}&period=30d&limit=100&currency=USD"),
        )
        .await;
        let got: HashMap<String, (u64, u64, u64, i64)> = rows(&body)
            .iter()
            .map(|r| {
                let (sessions, bounces) = (
                    r["sessions"].as_u64().unwrap_or(0),
                    r["bounces"].as_u64().unwrap_or(0),
                );
                let bounce_rate =
                    ((bounces as f64 / sessions as f64) * 10_000.0).round() / 10_000.0;
                assert_eq!(r["bounceRate"].as_f64(), Some(bounce_rate), "{metric}");
                (
                    r[key].as_str().unwrap_or("").to_owned(),
                    (
                        sessions,
                        r["orders"].as_u64().unwrap_or(0),
                        bounces,
                        r["revenue"].as_i64().unwrap_or(-1),
                    ),
                )
            })
            .collect();
        assert_eq!(&got, want, "{metric}");
    }

    // stock_levels: latest inventory quantity per product before the end of the period.
    let mut stock: HashMap<&str, (jiff::Timestamp, i64)> = HashMap::new();
    for e in f
        .events
        .iter()
        .filter(|e| e.kind == "inventory.updated" && e.t < to)
    {
        let s = stock.entry(e.product.as_str()).or_insert((e.t, e.quantity));
        if e.t >= s.0 {
            *s = (e.t, e.quantity);
        }
    }
    let (_, body) = get(
        &f.api,
        "/analytics/metrics?metric=stock_levels&period=30d&limit=100",
        READ_KEY,
    )
    .await;
    let got: HashMap<String, i64> = rows(&body)
        .iter()
        .map(|r| {
            (
                r["productId"].as_str().unwrap_or("").to_owned(),
                r["quantity"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    let want_stock: HashMap<String, i64> = stock
        .iter()
        .map(|(p, (_, q))| ((*p).to_owned(), *q))
        .collect();
    assert_eq!(got, want_stock);
    let lowest = rows(&body)[0]["quantity"].as_i64();
    assert_eq!(
        lowest,
        want_stock.values().min().copied(),
        "lowest stock first"
    );

    // sell_through_rate: sold / (sold + stock on hand at the end).
    let (_, body) = get(
        &f.api,
        "/analytics/metrics?metric=sell_through_rate&period=30d&limit=100",
        READ_KEY,
    )
    .await;
    for r in rows(&body) {
        let p = r["productId"].as_str().unwrap_or("");
        let s = sold.get(p).copied().unwrap_or(0);
        let h = want_stock.get(p).copied().unwrap_or(0);
        assert_eq!(
            (r["unitsSold"].as_i64(), r["stockOnHand"].as_i64()),
            (Some(s), Some(h)),
            "{p}"
        );
    }
    f.db.drop_database().await;
}

#[tokio::test]
async fn weekly_cohorts_equal_an_independent_computation() {
    let f = fixture().await;
    let tz = TimeZone::UTC;
    let (from, to) = thirty_days(f.now, &tz);
    let monday = |t: jiff::Timestamp| {
        let z = t.to_zoned_datetime(tz.clone()).start_of_day().expect("day");
        let back = i64::from(z.weekday().to_monday_zero_offset());
        z.checked_sub(back.days()).expect("monday")
    };
    let orders: Vec<&Ev> = f
        .events
        .iter()
        .filter(|e| e.kind == "order.completed" && !e.customer.is_empty() && e.t < to)
        .collect();
    let first = first_orders(&orders);
    // (cohort label, offset) -> (customers, USD revenue)
    let mut cells: BTreeMap<(String, i64), (HashSet<&str>, i64)> = BTreeMap::new();
    for o in &orders {
        let f0 = first[o.customer.as_str()];
        if f0 < from {
            continue;
        }
        let start = monday(f0);
        let offset = (monday(o.t).timestamp() - start.timestamp()).as_hours() / (24 * 7);
        let cell = cells
            .entry((start.strftime("%Y-%m-%d").to_string(), offset))
            .or_default();
        cell.0.insert(o.customer.as_str());
        if o.currency == "USD" {
            cell.1 += o.amount;
        }
    }
    let (status, body) = get(
        &f.api,
        "/analytics/cohorts?interval=week&period=30d&currency=USD",
        READ_KEY,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let cohorts = body["cohorts"].as_array().expect("cohorts");
    assert!(cohorts.len() >= 4, "{body}");
    let mut seen = 0;
    for c in cohorts {
        let label = c["cohort"].as_str().expect("label").to_owned();
        let size = c["size"].as_i64().expect("size");
        for p in c["periods"].as_array().expect("periods") {
            let k = p["offset"].as_i64().expect("offset");
            let (n, rev) = cells
                .get(&(label.clone(), k))
                .map(|(s, r)| (s.len() as i64, *r))
                .unwrap_or((0, 0));
            assert_eq!(
                (p["customers"].as_i64(), p["revenue"].as_i64()),
                (Some(n), Some(rev)),
                "{label} +{k}"
            );
            if k == 0 {
                assert_eq!(size, n);
            }
            seen += 1;
        }
    }
    assert_eq!(
        seen,
        cohorts
            .iter()
            .map(|c| c["periods"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    );
    assert_eq!(
        cells.keys().filter(|(_, k)| *k == 0).count(),
        cohorts.len(),
        "every cohort reported"
    );
    f.db.drop_database().await;
}

async fn send(api: &Api, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    integration_tests::call(api, method, path, READ_KEY, body).await
}

#[tokio::test]
async fn dashboards_render_every_widget_and_custom_ones_are_kept_per_store() {
    let f = fixture().await;
    let (status, body) = send(&f.api, "GET", "/analytics/dashboards", None).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["dashboards"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "overview",
            "products",
            "customers",
            "audience",
            "marketing",
            "inventory"
        ]
    );

    for id in [
        "overview",
        "products",
        "customers",
        "audience",
        "marketing",
        "inventory",
    ] {
        let (status, body) = send(
            &f.api,
            "GET",
            &format!("/analytics/dashboards/{id}?period=30d&currency=USD"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{id}: {body}");
        for w in body["widgets"].as_array().expect("widgets") {
            assert!(
                w.get("error").is_none() && w["data"].is_object(),
                "{id}: {w}"
            );
        }
    }
    // A widget shows exactly what its endpoint answers.
    let (_, overview) = send(
        &f.api,
        "GET",
        "/analytics/dashboards/overview?period=30d&currency=USD&timezone=Europe/Paris",
        None,
    )
    .await;
    let (_, direct) = get(
        &f.api,
        "/analytics/metrics?metric=revenue&period=30d&currency=USD&timezone=Europe/Paris",
        READ_KEY,
    )
    .await;
    assert_eq!(overview["widgets"][0]["data"], direct);
    // The dashboard's granularity replaces each series widget's own; funnels and cohorts take none.
    let (status, weekly) = send(
        &f.api,
        "GET",
        "/analytics/dashboards/overview?period=90d&currency=USD&granularity=week",
        None,
    )
    .await;
    assert_eq!(status, 200, "{weekly}");
    let (_, direct) = get(
        &f.api,
        "/analytics/metrics?metric=revenue&period=90d&currency=USD&granularity=week",
        READ_KEY,
    )
    .await;
    assert_eq!(weekly["widgets"][0]["data"], direct);
    for w in weekly["widgets"].as_array().expect("widgets") {
        assert!(w.get("error").is_none(), "{w}");
        if let Some(g) = w["data"].get("granularity") {
            assert_eq!(g, "week", "{}", w["title"]);
        }
    }
    // A comparison leaves breakdown widgets uncompared instead of failing them.
    let (status, compared) = send(
        &f.api,
        "GET",
        "/analytics/dashboards/audience?period=30d&compare=previous_period",
        None,
    )
    .await;
    assert_eq!(status, 200, "{compared}");
    for w in compared["widgets"].as_array().expect("widgets") {
        assert!(w.get("error").is_none(), "{w}");
        let compared_widget =
            w["data"].get("comparison").is_some() || w["data"]["rows"][0].get("previous").is_some();
        assert_eq!(
            compared_widget,
            w["params"].get("breakdown").is_none(),
            "{}",
            w["title"]
        );
    }
    // A country filter reaches every widget, in place of a widget's own; a funnel says it has none. The
    // sessions by country, device and browser are one read (`metric_groups_at_once`), and so are the
    // landing pages and referrers, and the traffic sources and campaigns (`ranked_at_once`), in UTC with
    // the filter, in a half-hour zone (the rollup's whole hours and the edges' events) and compared (the
    // earlier range read at once too), and with bots (from the raw events); each metrics widget equals
    // its own endpoint's answer (a breakdown's uncompared).
    let mut audience = Value::Null;
    for (dashboard, period) in ["audience", "marketing"].into_iter().flat_map(|d| {
        [
            "period=30d&currency=USD&country=US",
            "period=30d&currency=USD&timezone=Asia/Kolkata",
            "period=30d&currency=USD&compare=previous_period",
            // Bots included: the sessions from the raw events, not the rollup.
            "period=30d&currency=USD&includeBots=true",
        ]
        .map(|p| (d, p))
    }) {
        let (status, body) = send(
            &f.api,
            "GET",
            &format!("/analytics/dashboards/{dashboard}?{period}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let widgets = body["widgets"].as_array().expect("widgets");
        assert!(
            widgets
                .iter()
                .filter(|w| w["endpoint"] == "metrics")
                .count()
                >= 3,
            "{dashboard}: {body}"
        );
        for w in widgets.iter().filter(|w| w["endpoint"] == "metrics") {
            let mut query: Vec<String> = w["params"]
                .as_object()
                .expect("params")
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            // Breakdowns and attribution are shown uncompared.
            let uncompared =
                w["params"].get("breakdown").is_some() || w["params"]["metric"] == "attribution";
            query.push(if uncompared {
                period.replace("&compare=previous_period", "")
            } else {
                period.into()
            });
            let direct = get_ok(&f.api, &format!("/analytics/metrics?{}", query.join("&"))).await;
            assert!(
                direct["rows"]
                    .as_array()
                    .is_none_or(|rows| !rows.is_empty()),
                "{dashboard} {period}: {} has no rows to compare",
                w["title"]
            );
            assert_eq!(w["data"], direct, "{dashboard} {period}: {}", w["title"]);
        }
        if dashboard == "audience" && period.contains("country=US") {
            audience = body;
        }
    }
    assert_eq!(
        audience["widgets"][0]["data"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["key"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["US"],
        "sessions by country, filtered to one"
    );
    let (_, marketing) = send(
        &f.api,
        "GET",
        "/analytics/dashboards/marketing?period=30d&country=US",
        None,
    )
    .await;
    let funnel = marketing["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .find(|w| w["endpoint"] == "funnel")
        .expect("a funnel");
    assert_eq!(funnel["error"]["code"], "invalid_parameter", "{funnel}");
    let (status, body) = send(
        &f.api,
        "GET",
        "/analytics/dashboards/overview?period=12m&granularity=hour",
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["field"], "granularity", "{body}");

    let custom = serde_json::json!({"name": "Daily revenue", "widgets": [
        {"title": "Revenue", "endpoint": "metrics", "params": {"metric": "revenue", "granularity": "week"}},
        {"title": "Checkout funnel", "endpoint": "funnel", "params": {"steps": "checkout.started,order.completed", "window": "2h"}}
    ]});
    let (status, created) = send(&f.api, "POST", "/analytics/dashboards", Some(custom)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("dash_"));
    let (_, list) = send(&f.api, "GET", "/analytics/dashboards", None).await;
    assert!(
        list["dashboards"]
            .as_array()
            .expect("list")
            .iter()
            .any(|d| d["id"] == id.as_str())
    );
    let (status, body) = send(
        &f.api,
        "GET",
        &format!("/analytics/dashboards/{id}?period=90d"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["widgets"][0]["data"]["granularity"], "week");
    assert!(body["widgets"][1]["data"]["steps"].is_array());

    let renamed = serde_json::json!({"name": "Weekly revenue", "widgets": [
        {"title": "Revenue", "endpoint": "metrics", "params": {"metric": "revenue"}}]});
    let (status, body) = send(
        &f.api,
        "PUT",
        &format!("/analytics/dashboards/{id}"),
        Some(renamed),
    )
    .await;
    assert_eq!(
        (status, body["name"].as_str()),
        (200, Some("Weekly revenue"))
    );
    let (status, _) = send(
        &f.api,
        "DELETE",
        &format!("/analytics/dashboards/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(&f.api, "GET", &format!("/analytics/dashboards/{id}"), None).await;
    assert_eq!(status, 404);
    let (status, _) = send(
        &f.api,
        "DELETE",
        &format!("/analytics/dashboards/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404, "deleting twice finds nothing");

    let bad = [
        (
            serde_json::json!({"name": "x", "widgets": [{"title": "t", "endpoint": "metrics", "params": {"metric": "profit"}}]}),
            "widgets[0].params.metric",
        ),
        (
            serde_json::json!({"name": "x", "widgets": [{"title": "t", "endpoint": "metrics", "params": {"metric": "revenue", "period": "7d"}}]}),
            "widgets[0].params.period",
        ),
        (
            serde_json::json!({"name": "", "widgets": [{"title": "t", "endpoint": "metrics", "params": {"metric": "revenue"}}]}),
            "name",
        ),
        (
            serde_json::json!({"name": "a\u{0}b", "widgets": [{"title": "t", "endpoint": "metrics", "params": {"metric": "revenue"}}]}),
            "name",
        ),
        (
            serde_json::json!({"name": "x", "widgets": [{"title": "line\nbreak", "endpoint": "metrics", "params": {"metric": "revenue"}}]}),
            "widgets[0].title",
        ),
        (serde_json::json!({"name": "x", "widgets": []}), "widgets"),
        (
            serde_json::json!({"name": "x", "widgets": [{"title": "t", "endpoint": "sql", "params": {}}]}),
            "body",
        ),
    ];
    for (input, field) in bad {
        let (status, body) =
            send(&f.api, "POST", "/analytics/dashboards", Some(input.clone())).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{input}: {body}"
        );
    }
    let (status, body) = send(
        &f.api,
        "PUT",
        "/analytics/dashboards/overview",
        Some(serde_json::json!({"name": "x", "widgets": []})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("read_only_dashboard"))
    );
    let (status, body) = send(
        &f.api,
        "GET",
        "/analytics/dashboards/overview?limit=5",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("limit")),
        "a parameter dashboards do not take is refused by name"
    );
    // A bad shared parameter is one 400 naming it, not a 200 with an error in every widget.
    for (query, field) in [
        ("timezone=Mars/Olympus", "timezone"),
        ("period=1y", "period"),
        ("currency=usd", "currency"),
        ("from=2025-01-05&to=2025-01-02", "to"),
        ("from=2025-01-01&to=9999-12-31", "to"),
    ] {
        let (status, body) = send(
            &f.api,
            "GET",
            &format!("/analytics/dashboards/overview?{query}"),
            None,
        )
        .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{query}: {body}"
        );
    }
    let (status, _) = get(&f.api, "/analytics/dashboards", WRITE_KEY).await;
    assert_eq!(status, 403);
    f.db.drop_database().await;
}

#[tokio::test]
async fn customer_metrics_equal_an_independent_computation() {
    let f = fixture().await;
    let (from, to) = thirty_days(f.now, &TimeZone::UTC);
    // Two customers of our own beside the demo's, so that both segments of new vs returning occur
    // whatever the demo's randomness and the time of the run: one who first ordered 35 days ago and
    // again yesterday (returning over 30 and 7 days), one whose only order was yesterday (new).
    let ago = |days: i64| f.now - jiff::SignedDuration::from_hours(24 * days);
    let known: Vec<Value> = [
        ("returning", 35, 4_200),
        ("returning", 1, 3_100),
        ("new", 1, 2_500),
    ]
    .iter()
    .enumerate()
    .map(|(i, (who, days, total))| {
        serde_json::json!({
            "id": format!("evt_known_customer_{i}"),
            "type": "order.completed",
            "timestamp": ago(*days).to_string(),
            "customerId": format!("cust_known_{who}"),
            "properties": {"orderId": format!("ord_known_{i}"), "total": total, "currency": "USD"},
        })
    })
    .collect();
    let validator = Validator::from_config(&f.db.config);
    let stored: Vec<commerce_analytics::event::Event> = known
        .iter()
        .map(|v| {
            validator
                .validate(
                    v.clone(),
                    "shop-a",
                    &Default::default(),
                    time::OffsetDateTime::now_utc(),
                )
                .expect("valid")
        })
        .collect();
    commerce_analytics::store::EventStore::insert(&f.db.store, &stored, "known customers")
        .await
        .expect("insert");
    let known: Vec<Ev> = known.iter().map(flatten).collect();
    let orders: Vec<&Ev> = f
        .events
        .iter()
        .chain(&known)
        .filter(|e| e.kind == "order.completed" && !e.customer.is_empty() && e.t < to)
        .collect();
    let first = first_orders(&orders);
    // ltv (USD): customers acquired in the period who ordered in USD; their USD revenue to date.
    let acquired: HashSet<&str> = first
        .iter()
        .filter(|(_, t)| **t >= from)
        .map(|(c, _)| *c)
        .collect();
    let usd_customers: HashSet<&str> = orders
        .iter()
        .filter(|o| o.currency == "USD" && acquired.contains(o.customer.as_str()))
        .map(|o| o.customer.as_str())
        .collect();
    let usd_revenue: i64 = orders
        .iter()
        .filter(|o| o.currency == "USD" && acquired.contains(o.customer.as_str()))
        .map(|o| o.amount)
        .sum();
    let n = usd_customers.len() as i64;
    let (status, body) = get(
        &f.api,
        "/analytics/metrics?metric=ltv&period=30d&currency=USD",
        READ_KEY,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["total"].as_i64(),
        Some((2 * usd_revenue + n) / (2 * n)),
        "ltv"
    );

    // new_vs_returning over 30 and 7 days (both segments occur in both: the known customers above).
    let week_from = f
        .now
        .to_zoned_datetime(TimeZone::UTC)
        .start_of_day()
        .and_then(|d| d.checked_sub(6.days()))
        .expect("day")
        .timestamp();
    for (period, from) in [("30d", from), ("7d", week_from)] {
        let mut seg: BTreeMap<&str, (HashSet<&str>, u64, i64)> = BTreeMap::new();
        for o in orders.iter().filter(|o| o.t >= from && o.currency == "USD") {
            let s = seg
                .entry(if first[o.customer.as_str()] >= from {
                    "new"
                } else {
                    "returning"
                })
                .or_default();
            s.0.insert(o.customer.as_str());
            s.1 += 1;
            s.2 += o.amount;
        }
        let (status, body) = get(
            &f.api,
            &format!("/analytics/metrics?metric=new_vs_returning&period={period}&currency=USD"),
            READ_KEY,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let got: Vec<(String, u64, u64, i64)> = rows(&body)
            .iter()
            .map(|r| {
                (
                    r["segment"].as_str().unwrap_or("").to_owned(),
                    r["customers"].as_u64().unwrap_or(0),
                    r["orders"].as_u64().unwrap_or(0),
                    r["revenue"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        let want: Vec<(String, u64, u64, i64)> = seg
            .iter()
            .map(|(k, (c, o, r))| ((*k).to_owned(), c.len() as u64, *o, *r))
            .collect();
        assert_eq!(got, want, "new vs returning over {period}");
        assert_eq!(got.len(), 2, "both segments occur over {period}");
    }
    f.db.drop_database().await;
}

#[tokio::test]
async fn a_store_keeps_at_most_max_dashboards_custom_dashboards() {
    use commerce_analytics::query::dashboards::MAX_DASHBOARDS;
    let db = TestDb::new("dash_cap").await;
    let api = db.api(time::OffsetDateTime::now_utc());
    let body = |i: usize| serde_json::json!({"name": format!("d{i}"), "widgets": [{"title": "t", "endpoint": "metrics", "params": {"metric": "orders"}}]});
    for i in 0..MAX_DASHBOARDS {
        let (status, created) = send(&api, "POST", "/analytics/dashboards", Some(body(i))).await;
        assert_eq!(status, 201, "{created}");
    }
    let (status, refused) = send(&api, "POST", "/analytics/dashboards", Some(body(999))).await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("too_many_dashboards")),
        "{refused}"
    );
    db.drop_database().await;
}

/// A funnel holds every session's step events of its period, the largest aggregation a long read has:
/// it spills to disk past 0.425 of the read memory limit, every other read past three quarters (what
/// the server itself recorded for each query it ran).
#[tokio::test]
async fn a_funnel_spills_to_disk_earlier_than_every_other_read() {
    let db = TestDb::new("funnel_spill").await;
    let api = db.api(time::OffsetDateTime::now_utc());
    for path in [
        "/analytics/funnel?steps=page.viewed,order.completed&period=7d",
        "/analytics/metrics?metric=sessions&period=7d",
    ] {
        let (status, body) = get(&api, path, READ_KEY).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    db.store
        .client()
        .query("SYSTEM FLUSH LOGS")
        .execute()
        .await
        .expect("flush the query log");
    /// The spill points (`max_bytes_before_external_group_by`) of the funnel's queries or the others'.
    #[derive(Debug, PartialEq, clickhouse::Row, serde::Deserialize)]
    struct Spills {
        funnel: u8,
        at: Vec<String>,
    }
    let spills: Vec<Spills> = db
        .store
        .client()
        .query(
            "SELECT toUInt8(position(query, 'windowFunnel') > 0) AS funnel, \
               arraySort(groupUniqArray(Settings['max_bytes_before_external_group_by'])) AS at \
             FROM system.query_log \
             WHERE current_database = ? AND type = 'QueryFinish' AND Settings['max_memory_usage'] != '' \
             GROUP BY funnel ORDER BY funnel",
        )
        .bind(&db.name)
        .fetch_all()
        .await
        .expect("the query log");
    let two_gib = 2u64 << 30;
    assert_eq!(
        spills,
        vec![
            Spills {
                funnel: 0,
                at: vec![(two_gib * 3 / 4).to_string()]
            },
            Spills {
                funnel: 1,
                at: vec![((two_gib as f64 * 0.425) as u64).to_string()]
            },
        ],
        "each read's spill point as the server ran it (0: the other reads, 1: the funnel)"
    );
    db.drop_database().await;
}

#[tokio::test]
async fn every_read_runs_within_the_configured_time_and_memory() {
    let url = integration_tests::clickhouse_url();
    let db = TestDb::on(
        &url,
        "read_limits",
        &[("CLICKHOUSE_QUERY_MAX_MEMORY_BYTES", "1000")],
    )
    .await;
    let api = db.api(time::OffsetDateTime::now_utc());
    let (status, body) = get(
        &api,
        "/analytics/metrics?metric=sessions&period=7d",
        READ_KEY,
    )
    .await;
    // Over its own memory limit a read is not worth retrying as is: 422 naming the period, not a 503
    // that invites the same request again.
    integration_tests::assert_read_refused(status, &body, (422, "read_too_large"));
    // The same read within the default limits, over a few stored events, reports what it cost.
    let mut config = db.config.clone();
    config.clickhouse.query_max_memory_bytes = 2 << 30;
    let api = commerce_analytics::lambda::store_routes_api_for(&config).expect("api");
    let validator = Validator::from_config(&db.config);
    let now = time::OffsetDateTime::now_utc();
    let events: Vec<_> = (0..20)
        .map(|i| {
            let wire =
                serde_json::json!({"type": "page.viewed", "sessionId": format!("s{}", i % 4)});
            validator
                .validate(wire, "shop-a", &Default::default(), now)
                .expect("valid event")
        })
        .collect();
    commerce_analytics::store::EventStore::insert(&db.store, &events, "read-costs")
        .await
        .expect("insert");
    let (costs, (status, body)) = ReadCosts::capture(get(
        &api,
        "/analytics/metrics?metric=sessions&period=7d",
        READ_KEY,
    ))
    .await;
    assert_eq!((status, body["total"].as_i64()), (200, Some(4)), "{body}");
    let sessions: Vec<&ReadCost> = costs.iter().filter(|c| c.read == "sessions").collect();
    assert_eq!(sessions.len(), 1, "one read of sessions: {costs:?}");
    assert!(
        sessions[0].peak_memory_bytes > 0 && sessions[0].rows_read > 0,
        "the read's peak memory and rows read come from ClickHouse: {costs:?}"
    );
    db.drop_database().await;
}

/// 200 page views of shop-a at `now`: 40 sessions, 30 anonymous visitors.
async fn store_page_views(db: &TestDb, now: time::OffsetDateTime) {
    let validator = Validator::from_config(&db.config);
    let events: Vec<_> = (0..200)
        .map(|i| {
            let wire = serde_json::json!({"type": "page.viewed", "sessionId": format!("s{}", i % 40),
                                          "anonymousId": format!("a{}", i % 30)});
            validator
                .validate(wire, "shop-a", &Default::default(), now)
                .expect("valid event")
        })
        .collect();
    commerce_analytics::store::EventStore::insert(&db.store, &events, "page-views")
        .await
        .expect("insert");
}

#[tokio::test]
async fn a_read_past_its_time_limit_answers_504_naming_the_period() {
    let url = integration_tests::clickhouse_url();
    // One millisecond: every read takes longer (planning a join alone does), so ClickHouse stops each one
    // with TIMEOUT_EXCEEDED, as it stops a 12-month read of a busy store at the default 25 s.
    let db = TestDb::on(
        &url,
        "read_timeout",
        &[("CLICKHOUSE_QUERY_TIMEOUT_SECONDS", "0.001")],
    )
    .await;
    let now = time::OffsetDateTime::now_utc();
    store_page_views(&db, now).await;
    let api = db.api(now);
    let (status, body) = get(
        &api,
        "/analytics/metrics?metric=visitors&period=30d&breakdown=browser",
        READ_KEY,
    )
    .await;
    integration_tests::assert_read_refused(status, &body, (504, "read_timeout"));
    db.drop_database().await;
}

#[tokio::test]
async fn on_lambda_a_requests_reads_share_what_is_left_of_the_invocation() {
    let db = TestDb::new("lambda_deadline").await;
    let now = time::OffsetDateTime::now_utc();
    store_page_views(&db, now).await;
    let api = db.api(now + time::Duration::minutes(1));
    let unix_ms = |d: std::time::Duration| {
        let at = std::time::SystemTime::now() + d;
        at.duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64
    };
    const SESSIONS: &str = "/analytics/metrics?metric=sessions&period=7d";
    const OVERVIEW: &str = "/analytics/dashboards/overview?period=30d&currency=USD";
    // An invocation with its time ahead reads as any request: each read within its own limit.
    let ahead = unix_ms(std::time::Duration::from_secs(30));
    let (status, body) = integration_tests::get_on_lambda(&api, SESSIONS, READ_KEY, ahead).await;
    assert_eq!((status, body["total"].as_i64()), (200, Some(40)), "{body}");
    let (status, body) = integration_tests::get_on_lambda(&api, OVERVIEW, READ_KEY, ahead).await;
    assert_eq!(status, 200, "{body}");
    let widgets = body["widgets"].as_array().expect("widgets");
    assert!(!widgets.is_empty());
    for w in widgets {
        assert!(w.get("error").is_none() && w.get("data").is_some(), "{w}");
    }
    // Less than the second kept for answering left: no read is sent, and the answer says so in time,
    // as our 504 rather than the function's end and API Gateway's own error.
    let spent = unix_ms(std::time::Duration::from_millis(500));
    let (status, body) = integration_tests::get_on_lambda(&api, SESSIONS, READ_KEY, spent).await;
    integration_tests::assert_read_refused(status, &body, (504, "read_timeout"));
    // A dashboard answers with what it could read: here no widget, each with its error.
    let (status, body) = integration_tests::get_on_lambda(&api, OVERVIEW, READ_KEY, spent).await;
    assert_eq!(status, 200, "{body}");
    let widgets = body["widgets"].as_array().expect("widgets");
    assert!(!widgets.is_empty());
    for w in widgets {
        assert_eq!(w["error"]["code"], "read_timeout", "{w}");
        assert!(w.get("data").is_none(), "{w}");
    }
    db.drop_database().await;
}

/// One `analytics::reads` event.
#[derive(Debug, Clone, Default)]
struct ReadCost {
    read: String,
    peak_memory_bytes: u64,
    rows_read: u64,
}

/// The read-cost events emitted on this thread while [`ReadCosts::capture`] awaits its future.
///
/// Why one process-wide subscriber and not `tracing::subscriber::set_default` in the test: with a
/// scoped subscriber as the process's only dispatcher, tracing-core decides the interest of a callsite
/// that another test's thread registers for the first time from *that* thread's default (none), so
/// when another test was first to log a read cost while this one captured, the callsite stayed
/// disabled and the capture saw nothing (CI, stop 36). A global subscriber is every thread's default,
/// and it hands each event to the capture of the thread that emitted it (a `#[tokio::test]` runs its
/// future, and what it spawns, on the test's own thread).
#[derive(Debug, Clone, Copy)]
struct ReadCosts;

thread_local! {
    static CAPTURED: std::cell::RefCell<Option<Vec<ReadCost>>> = const { std::cell::RefCell::new(None) };
}

impl ReadCosts {
    async fn capture<T>(read: impl std::future::Future<Output = T>) -> (Vec<ReadCost>, T) {
        static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        INSTALLED.get_or_init(|| {
            use tracing_subscriber::layer::SubscriberExt;
            let only_costs = tracing_subscriber::filter::Targets::new().with_target(
                commerce_analytics::store::READ_COST,
                tracing::level_filters::LevelFilter::DEBUG,
            );
            let subscriber = tracing_subscriber::registry().with(
                tracing_subscriber::Layer::with_filter(ReadCosts, only_costs),
            );
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the integration tests");
        });
        CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
        let out = read.await;
        let costs = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
        (costs, out)
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ReadCosts {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields<'a>(&'a mut ReadCost);
        impl tracing::field::Visit for Fields<'_> {
            fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
                match field.name() {
                    "peak_memory_bytes" => self.0.peak_memory_bytes = value,
                    "rows_read" => self.0.rows_read = value,
                    _ => {}
                }
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                if field.name() == "read" {
                    self.0.read = value.to_owned();
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if event.metadata().target() == commerce_analytics::store::READ_COST {
            let mut cost = ReadCost::default();
            event.record(&mut Fields(&mut cost));
            CAPTURED.with(|c| {
                if let Some(costs) = c.borrow_mut().as_mut() {
                    costs.push(cost);
                }
            });
        }
    }
}

/// The CSV export's records: header, then rows.
fn parse_csv(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let header = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = r
        .records()
        .map(|rec| rec.expect("record").iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// A CSV field read back as the JSON value it was written from (numbers as numbers, empty as null).
fn json_of(field: &str, like: &Value) -> Value {
    match like {
        Value::Null => {
            assert_eq!(field, "", "null is an empty field");
            Value::Null
        }
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            Value::from(field.parse::<i64>().expect("integer field"))
        }
        Value::Number(_) => Value::from(field.parse::<f64>().expect("decimal field")),
        _ => Value::from(field),
    }
}

#[tokio::test]
async fn csv_exports_read_back_equal_to_the_json_answers() {
    let f = fixture().await;
    let csv_of = async |path: &str, headers: &[(&str, &str)]| {
        let (status, h, text) = integration_tests::get_raw(&f.api, path, READ_KEY, headers).await;
        assert_eq!(status, 200, "{path}: {text}");
        assert_eq!(h["content-type"], "text/csv; charset=utf-8", "{path}");
        let disposition = h["content-disposition"].to_str().expect("ascii");
        assert!(
            disposition.starts_with("attachment; filename=\"") && disposition.ends_with(".csv\""),
            "{disposition}"
        );
        parse_csv(&text)
    };
    let json_of_path = async |path: &str| {
        let (status, body) = get(&f.api, path, READ_KEY).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    };

    // Time series: money with its currency, a rate, a count; by parameter and by Accept header.
    for (metric, headers) in [
        ("revenue&currency=USD", &[][..]),
        ("conversion_rate", &[("accept", "text/csv")][..]),
        ("sessions&granularity=week&timezone=Europe/Berlin", &[][..]),
    ] {
        let path = format!("/analytics/metrics?metric={metric}&period=30d");
        let json = json_of_path(&path).await;
        let csv_path = if headers.is_empty() {
            format!("{path}&format=csv")
        } else {
            path.clone()
        };
        let (header, rows) = csv_of(&csv_path, headers).await;
        let name = json["metric"].as_str().expect("metric");
        let points = json["dataPoints"].as_array().expect("points");
        assert_eq!(rows.len(), points.len(), "{metric}");
        match json["currency"].as_str() {
            Some(_) => assert_eq!(header, ["date", name, "currency"]),
            None => assert_eq!(header, ["date", name]),
        }
        for (row, p) in rows.iter().zip(points) {
            assert_eq!(row[0], p["date"].as_str().expect("date"));
            assert_eq!(
                json_of(&row[1], &p["value"]),
                p["value"],
                "{metric} {}",
                row[0]
            );
            if let Some(cur) = json["currency"].as_str() {
                assert_eq!(row[2], cur);
            }
        }
    }

    // Ranked metrics: the JSON rows' columns, in order, plus the currency beside money.
    for metric in ["best_sellers", "traffic_sources", "stock_levels"] {
        let path = format!("/analytics/metrics?metric={metric}&period=30d");
        let json = json_of_path(&path).await;
        let (header, rows) = csv_of(&format!("{path}&format=csv"), &[]).await;
        let want = json["rows"].as_array().expect("rows");
        assert!(!want.is_empty(), "{metric} has rows");
        assert_eq!(rows.len(), want.len(), "{metric}");
        let columns: Vec<&String> = want[0].as_object().expect("row").keys().collect();
        for (i, c) in columns.iter().enumerate() {
            assert_eq!(&header[i], *c, "{metric}");
        }
        for (row, w) in rows.iter().zip(want) {
            for (i, c) in columns.iter().enumerate() {
                assert_eq!(
                    json_of(&row[i], &w[c.as_str()]),
                    w[c.as_str()],
                    "{metric}.{c}"
                );
            }
            if header.last().map(String::as_str) == Some("currency") {
                assert_eq!(
                    row.last(),
                    json["currency"].as_str().map(str::to_owned).as_ref()
                );
            }
        }
    }

    // A funnel: one row per step.
    let path = "/analytics/funnel?steps=page.viewed,product.viewed,order.completed&period=30d";
    let json = json_of_path(path).await;
    let (header, rows) = csv_of(&format!("{path}&format=csv"), &[]).await;
    assert_eq!(
        header,
        [
            "step",
            "count",
            "conversion_rate",
            "step_conversion_rate",
            "drop_off",
            "median_seconds_to_convert"
        ]
    );
    let steps = json["steps"].as_array().expect("steps");
    assert_eq!(rows.len(), steps.len());
    for (row, s) in rows.iter().zip(steps) {
        for (i, key) in [
            "step",
            "count",
            "conversionRate",
            "stepConversionRate",
            "dropOff",
            "medianSecondsToConvert",
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(json_of(&row[i], &s[key]), s[key], "funnel {key}");
        }
    }

    // Cohorts: one row per cohort and period.
    let path = "/analytics/cohorts?interval=week&period=30d&currency=USD";
    let json = json_of_path(path).await;
    let (header, rows) = csv_of(&format!("{path}&format=csv"), &[]).await;
    assert_eq!(
        header,
        [
            "cohort",
            "size",
            "period",
            "customers",
            "retention",
            "revenue",
            "currency"
        ]
    );
    let want: Vec<(Value, Value, Value)> = json["cohorts"]
        .as_array()
        .expect("cohorts")
        .iter()
        .flat_map(|c| {
            c["periods"]
                .as_array()
                .expect("periods")
                .iter()
                .map(move |p| (c["cohort"].clone(), c["size"].clone(), p.clone()))
        })
        .collect();
    assert!(!want.is_empty(), "cohorts have periods");
    assert_eq!(rows.len(), want.len());
    for (row, (cohort, size, p)) in rows.iter().zip(&want) {
        assert_eq!(json_of(&row[0], cohort), *cohort);
        assert_eq!(json_of(&row[1], size), *size);
        for (i, key) in ["offset", "customers", "retention", "revenue"]
            .into_iter()
            .enumerate()
        {
            assert_eq!(json_of(&row[2 + i], &p[key]), p[key], "cohort {key}");
        }
        assert_eq!(row[6], "USD");
    }

    // An unknown format is a JSON 400 naming the parameter.
    let (status, body) = get(
        &f.api,
        "/analytics/metrics?metric=orders&format=xml",
        READ_KEY,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "format");
    f.db.drop_database().await;
}

#[tokio::test]
async fn comparisons_equal_the_same_reads_over_the_comparison_range() {
    let f = fixture().await;
    let tz = TimeZone::UTC;
    let d = |days_back: i64| {
        day(
            f.now.checked_sub((days_back * 24).hours()).expect("sub"),
            &tz,
        )
    };
    // Ten whole days ending three days ago, and the ten days before them.
    let (from, to) = (d(12), d(3));
    let (prev_from, prev_to) = (d(22), d(13));

    for (metric, zone) in [
        ("revenue&currency=USD", "UTC"),
        ("sessions", "America/New_York"),
        ("conversion_rate", "Europe/Berlin"),
        ("aov&currency=EUR", "Asia/Kolkata"),
        ("visitors", "UTC"),
    ] {
        let base = format!("/analytics/metrics?metric={metric}&timezone={zone}");
        let (status, compared) = get(
            &f.api,
            &format!("{base}&from={from}&to={to}&compare=previous_period"),
            READ_KEY,
        )
        .await;
        assert_eq!(status, 200, "{compared}");
        let (_, current) = get(&f.api, &format!("{base}&from={from}&to={to}"), READ_KEY).await;
        let (_, previous) = get(
            &f.api,
            &format!("{base}&from={prev_from}&to={prev_to}"),
            READ_KEY,
        )
        .await;
        let points = compared["dataPoints"].as_array().expect("points");
        let want_prev = previous["dataPoints"].as_array().expect("points");
        assert_eq!(points.len(), 10);
        assert_eq!(want_prev.len(), 10);
        for (i, p) in points.iter().enumerate() {
            assert_eq!(
                p["value"], current["dataPoints"][i]["value"],
                "{metric} current"
            );
            assert_eq!(
                p["previous"]["date"], want_prev[i]["date"],
                "{metric} pairing"
            );
            assert_eq!(
                p["previous"]["value"], want_prev[i]["value"],
                "{metric} previous"
            );
            let (c, b) = (p["value"].as_f64(), want_prev[i]["value"].as_f64());
            match (c, b) {
                (Some(c), Some(b)) if b != 0.0 => {
                    let rel = ((c - b) / b * 10_000.0).round() / 10_000.0;
                    assert_eq!(p["change"]["relative"].as_f64(), Some(rel), "{metric}");
                }
                (Some(_), Some(_)) => assert!(p["change"]["relative"].is_null(), "{metric}"),
                _ => assert!(p["change"].is_null(), "{metric}"),
            }
        }
        assert_eq!(compared["total"], current["total"], "{metric}");
        assert_eq!(
            compared["comparison"]["total"], previous["total"],
            "{metric}"
        );
        assert_eq!(compared["comparison"]["compare"], "previous_period");
        assert!(
            points
                .iter()
                .any(|p| p["previous"]["value"].as_f64().unwrap_or(0.0) > 0.0),
            "{metric}: the comparison range has data"
        );
    }

    // Ranked: every row's previous figures are the same key's row over the comparison range.
    for metric in [
        "best_sellers&currency=USD",
        "traffic_sources",
        "new_vs_returning",
    ] {
        let base = format!("/analytics/metrics?metric={metric}");
        let (status, compared) = get(
            &f.api,
            &format!("{base}&from={from}&to={to}&compare=previous_period"),
            READ_KEY,
        )
        .await;
        assert_eq!(status, 200, "{compared}");
        let (_, previous) = get(
            &f.api,
            &format!("{base}&from={prev_from}&to={prev_to}&limit=100"),
            READ_KEY,
        )
        .await;
        let before = previous["rows"].as_array().expect("rows");
        let rows = compared["rows"].as_array().expect("rows");
        assert!(!rows.is_empty(), "{metric}");
        let mut matched = 0;
        for row in rows {
            let key_col = row
                .as_object()
                .expect("row")
                .keys()
                .next()
                .expect("key")
                .clone();
            let key = &row[key_col.as_str()];
            match before.iter().find(|b| b[key_col.as_str()] == *key) {
                Some(b) => {
                    matched += 1;
                    // `previous` holds the comparison range's figures; the product's name is the
                    // row's own (`productName` beside `productId`), not repeated there.
                    let mut b = b.clone();
                    if let Some(o) = b.as_object_mut() {
                        o.shift_remove("productName");
                    }
                    assert_eq!(row["previous"], b, "{metric} {key}");
                }
                None => {
                    for (k, v) in row["previous"].as_object().expect("zeros") {
                        if k != key_col.as_str() && v.is_number() {
                            assert_eq!(v.as_f64(), Some(0.0), "{metric} {key}.{k}");
                        }
                    }
                }
            }
        }
        assert!(matched > 0, "{metric}: some keys have earlier activity");
    }

    // A funnel's steps against the same funnel over the comparison range.
    let steps = "steps=page.viewed,product.viewed,cart.item_added,order.completed";
    let (_, compared) = get(
        &f.api,
        &format!("/analytics/funnel?{steps}&from={from}&to={to}&compare=previous_period"),
        READ_KEY,
    )
    .await;
    let (_, previous) = get(
        &f.api,
        &format!("/analytics/funnel?{steps}&from={prev_from}&to={prev_to}"),
        READ_KEY,
    )
    .await;
    for (i, s) in compared["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .enumerate()
    {
        assert_eq!(
            s["previous"]["count"], previous["steps"][i]["count"],
            "step {i}"
        );
        assert_eq!(
            s["previous"]["conversionRate"],
            previous["steps"][i]["conversionRate"]
        );
    }
    assert_eq!(
        compared["comparison"]["total"],
        previous["overallConversionRate"]
    );

    // A year earlier the store had no data: previous values are 0 and relative changes null.
    let (status, yoy) = get(
        &f.api,
        "/analytics/metrics?metric=orders&period=30d&compare=previous_year",
        READ_KEY,
    )
    .await;
    assert_eq!(status, 200, "{yoy}");
    assert_eq!(yoy["comparison"]["total"], 0);
    assert!(yoy["comparison"]["change"]["relative"].is_null());
    for p in yoy["dataPoints"].as_array().expect("points") {
        assert_eq!(p["previous"]["value"], 0);
        assert!(p["change"]["relative"].is_null());
    }

    // Dashboards compare their metric and funnel widgets; a bad value is a 400 naming it.
    let (status, dash) = get(
        &f.api,
        "/analytics/dashboards/overview?period=7d&compare=previous_period",
        READ_KEY,
    )
    .await;
    assert_eq!(status, 200, "{dash}");
    for w in dash["widgets"].as_array().expect("widgets") {
        assert!(w["error"].is_null(), "{w}");
        if w["endpoint"] != "cohorts" {
            assert_eq!(
                w["data"]["comparison"]["compare"], "previous_period",
                "{}",
                w["title"]
            );
        }
    }
    for path in [
        "/analytics/metrics?metric=orders&compare=yesterday",
        "/analytics/dashboards/overview?compare=lastyear",
    ] {
        let (status, body) = get(&f.api, path, READ_KEY).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some("compare")),
            "{path}"
        );
    }

    // CSV carries the comparison beside the current figures.
    let (status, _, text) = integration_tests::get_raw(
        &f.api,
        &format!(
            "/analytics/metrics?metric=orders&from={from}&to={to}&compare=previous_period&format=csv"
        ),
        READ_KEY,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (header, rows) = parse_csv(&text);
    assert_eq!(
        header,
        [
            "date",
            "orders",
            "currency",
            "previous_date",
            "previous_orders"
        ]
    );
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[0][3], prev_from);
    f.db.drop_database().await;
}

#[tokio::test]
async fn product_performance_equals_an_independent_computation() {
    let f = fixture().await;
    let (from, to) = thirty_days(f.now, &TimeZone::UTC);
    // A session's source, as traffic_sources names it.
    let source_of: HashMap<&str, String> =
        sessions_of(f.events.iter().filter(|e| e.t >= from && e.t < to))
            .iter()
            .map(|(s, evs)| (*s, session_source(evs)))
            .collect();
    let mut refunded: HashSet<&str> = f
        .events
        .iter()
        .filter(|e| e.kind == "order.refunded" && e.t < to)
        .map(|e| e.order.as_str())
        .collect();
    // Whatever the demo's refunds happen to be this time, one USD order of the period is refunded an
    // hour after it, so the refund column is always compared on a real refund.
    let order = f
        .events
        .iter()
        .find(|e| {
            e.kind == "order.completed"
                && e.currency == "USD"
                && e.t >= from
                && e.t < to.checked_sub(2.hours()).expect("time")
                && !e.items.is_empty()
        })
        .expect("a USD order in the period");
    let refund_at = order.t.checked_add(1.hour()).expect("time");
    // It returns one unit of the order's first item, and says so (the product's net revenue drops by it).
    let (returned, _, returned_price) = order.items[0].clone();
    let refund = Validator::from_config(&f.db.config)
        .validate(
            serde_json::json!({"id": format!("refund-{}", order.order), "type": "order.refunded",
                "timestamp": refund_at.to_string(), "customerId": order.customer,
                "properties": {"orderId": order.order, "amount": order.amount, "currency": "USD",
                               "items": [{"productId": returned, "quantity": 1, "price": returned_price}]}}),
            "shop-a",
            &Default::default(),
            time::OffsetDateTime::from_unix_timestamp(f.now.as_second()).expect("now"),
        )
        .expect("a valid refund");
    commerce_analytics::store::EventStore::insert(&f.db.store, &[refund], "refund")
        .await
        .expect("stored");
    refunded.insert(order.order.as_str());
    let compute = |source: Option<&str>| {
        let mut rows: BTreeMap<String, [i64; 10]> = BTreeMap::new();
        let mut sets: HashMap<(String, usize), HashSet<&str>> = HashMap::new();
        for e in f.events.iter().filter(|e| e.t >= from && e.t < to) {
            if let Some(s) = source
                && source_of.get(e.session.as_str()).map(String::as_str) != Some(s)
            {
                continue;
            }
            match e.kind.as_str() {
                "product.viewed" if !e.product.is_empty() => {
                    rows.entry(e.product.clone()).or_default()[0] += 1;
                    sets.entry((e.product.clone(), 1))
                        .or_default()
                        .insert(&e.session);
                }
                "cart.item_added" if !e.product.is_empty() => {
                    rows.entry(e.product.clone()).or_default()[2] += 1;
                    sets.entry((e.product.clone(), 3))
                        .or_default()
                        .insert(&e.session);
                }
                "order.completed" if e.currency == "USD" => {
                    for (p, q, price) in &e.items {
                        // Each order once per product, even when its items list the product twice.
                        let r = rows.entry(p.clone()).or_default();
                        r[5] += q;
                        r[6] += q * price;
                        sets.entry((p.clone(), 4)).or_default().insert(&e.order);
                        if refunded.contains(e.order.as_str()) {
                            sets.entry((p.clone(), 8)).or_default().insert(&e.order);
                        }
                        sets.entry((p.clone(), 7)).or_default().insert(&e.session);
                    }
                }
                // What refunds with items gave back, per product.
                "order.refunded" if e.currency == "USD" => {
                    for (p, q, price) in &e.items {
                        rows.entry(p.clone()).or_default()[9] += q * price;
                    }
                }
                _ => {}
            }
        }
        if source.is_none() {
            // The refund above has no session: it counts without a source filter only.
            rows.entry(returned.clone()).or_default()[9] += returned_price;
        }
        for ((p, col), set) in sets {
            rows.entry(p).or_default()[col] = set.iter().filter(|s| !s.is_empty()).count() as i64;
        }
        rows
    };
    let check = async |query: &str, want: BTreeMap<String, [i64; 10]>| {
        let (status, body) = get(
            &f.api,
            &format!("/analytics/metrics?metric=product_performance&period=30d&currency=USD&limit=100{query}"),
            READ_KEY,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let got: BTreeMap<String, [i64; 10]> = rows(&body)
            .iter()
            .map(|r| {
                let n = |k: &str| r[k].as_i64().expect(k);
                (
                    r["productId"].as_str().expect("id").to_owned(),
                    [
                        n("views"),
                        n("viewSessions"),
                        n("addToCarts"),
                        n("cartSessions"),
                        n("orders"),
                        n("units"),
                        n("revenue"),
                        n("purchaseSessions"),
                        n("refunds"),
                        {
                            assert_eq!(n("netRevenue"), n("revenue") - n("refundedAmount"), "{r}");
                            n("refundedAmount")
                        },
                    ],
                )
            })
            .collect();
        assert_eq!(got, want, "product_performance{query}");
        body
    };
    let all = compute(None);
    assert!(
        all.len() >= 10 && all.values().any(|r| r[8] > 0),
        "products with refunds: {} refunded orders; {all:?}",
        refunded.len()
    );
    let body = check("", all).await;
    let revenue: Vec<i64> = rows(&body)
        .iter()
        .map(|r| r["revenue"].as_i64().expect("rev"))
        .collect();
    assert!(
        revenue.windows(2).all(|w| w[0] >= w[1]),
        "sorted by revenue"
    );
    let google = compute(Some("google"));
    assert!(!google.is_empty());
    check("&source=google", google).await;
    // Sorted by any column, either way.
    let (_, body) = get(
        &f.api,
        "/analytics/metrics?metric=product_performance&period=30d&sort=views&order=asc&limit=100",
        READ_KEY,
    )
    .await;
    let views: Vec<i64> = rows(&body)
        .iter()
        .map(|r| r["views"].as_i64().expect("views"))
        .collect();
    assert!(views.windows(2).all(|w| w[0] <= w[1]), "{views:?}");
    for (path, field) in [
        ("metric=product_performance&sort=price", "sort"),
        ("metric=product_performance&order=up", "order"),
        ("metric=revenue&sort=views", "sort"),
        ("metric=revenue&device=phone", "device"),
        ("metric=ltv&browser=Chrome", "browser"),
        ("metric=stock_levels&source=google", "source"),
    ] {
        let (status, body) = get(&f.api, &format!("/analytics/metrics?{path}"), READ_KEY).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{path}"
        );
    }
    f.db.drop_database().await;
}

/// A broken-down answer as `key → (total, the sum of its data points)`, and its keys in order.
fn groups(body: &Value) -> (Vec<String>, HashMap<String, (i64, i64)>) {
    let groups = body["groups"].as_array().expect("groups");
    let keys = groups
        .iter()
        .map(|g| g["key"].as_str().expect("key").to_owned())
        .collect();
    let totals = groups
        .iter()
        .map(|g| {
            let points: i64 = g["dataPoints"]
                .as_array()
                .expect("dataPoints")
                .iter()
                .map(|p| p["value"].as_i64().expect("integer"))
                .sum();
            (
                g["key"].as_str().expect("key").to_owned(),
                (g["total"].as_i64().expect("integer total"), points),
            )
        })
        .collect();
    (keys, totals)
}

/// The top `limit` of `want` by value (ties by key), the rest summed as `(other)`.
fn top_and_other(want: &HashMap<String, i64>, limit: usize) -> HashMap<String, i64> {
    let mut ranked: Vec<(&String, i64)> = want
        .iter()
        .map(|(k, v)| (k, *v))
        .filter(|(_, v)| *v != 0)
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut out: HashMap<String, i64> = ranked
        .iter()
        .take(limit)
        .map(|(k, v)| ((*k).clone(), *v))
        .collect();
    let rest: i64 = ranked.iter().skip(limit).map(|(_, v)| v).sum();
    if ranked.len() > limit {
        out.insert("(other)".into(), rest);
    }
    out
}

#[tokio::test]
async fn breakdowns_equal_an_independent_computation_and_sum_to_the_metric() {
    let f = fixture().await;
    let tz = TimeZone::UTC;
    let (from, to) = thirty_days(f.now, &tz);
    let in_range = f.between(from, to);
    let sessions = sessions_of(in_range.iter().copied());
    let first = |evs: &[&Ev], field: fn(&Ev) -> &str| {
        evs.iter()
            .map(|e| field(e))
            .find(|v| !v.is_empty())
            .unwrap_or("")
            .to_owned()
    };
    let label = |v: String| if v.is_empty() { "(none)".to_owned() } else { v };
    // The session's value of each dimension checked here.
    let value_of = |session: &str, by: &str| -> String {
        let Some(evs) = sessions.get(session) else {
            return "(none)".into();
        };
        label(match by {
            "device" => first(evs, |e| &e.device),
            "country" => first(evs, |e| &e.country),
            "source" => session_source(evs),
            "campaign" => first(evs, |e| &e.utm_campaign),
            "referrer_domain" => referrer_domain(&first(evs, |e| &e.referrer)),
            _ => unreachable!("{by}"),
        })
    };

    // sessions by device, and conversion (sessions with an order) by country.
    let mut by_device: HashMap<String, i64> = HashMap::new();
    let mut by_country: HashMap<String, (i64, i64)> = HashMap::new();
    for (id, evs) in &sessions {
        *by_device.entry(value_of(id, "device")).or_default() += 1;
        let c = by_country.entry(value_of(id, "country")).or_default();
        c.0 += evs.iter().any(|e| e.kind == "order.completed") as i64;
        c.1 += 1;
    }
    assert!(
        by_device.len() >= 3,
        "the demo has several devices: {by_device:?}"
    );
    // sessions by what they entered with (the session rollup's first-value pairs).
    let (mut sessions_by_source, mut sessions_by_campaign): (
        HashMap<String, i64>,
        HashMap<String, i64>,
    ) = Default::default();
    for id in sessions.keys() {
        *sessions_by_source
            .entry(value_of(id, "source"))
            .or_default() += 1;
        *sessions_by_campaign
            .entry(value_of(id, "campaign"))
            .or_default() += 1;
    }
    assert!(
        sessions_by_source.len() >= 4 && sessions_by_campaign.len() >= 4,
        "{sessions_by_source:?} {sessions_by_campaign:?}"
    );
    // revenue (USD) by the order's session's source; each order once, at its first completion.
    let mut orders: HashMap<&str, &Ev> = HashMap::new();
    for e in in_range
        .iter()
        .filter(|e| e.kind == "order.completed" && e.currency == "USD")
    {
        orders
            .entry(e.order.as_str())
            .and_modify(|o| {
                if e.t < o.t {
                    *o = e
                }
            })
            .or_insert(e);
    }
    // ... and by its session's campaign and referrer site (values from the session rollup's rows that
    // hold one; orders of sessions without one are a group of their own).
    let (mut by_source, mut by_campaign, mut by_referrer): (
        HashMap<String, i64>,
        HashMap<String, i64>,
        HashMap<String, i64>,
    ) = Default::default();
    for o in orders.values() {
        *by_source.entry(value_of(&o.session, "source")).or_default() += o.amount;
        *by_campaign
            .entry(value_of(&o.session, "campaign"))
            .or_default() += o.amount;
        *by_referrer
            .entry(value_of(&o.session, "referrer_domain"))
            .or_default() += o.amount;
    }
    for (by, groups) in [("campaign", &by_campaign), ("referrer", &by_referrer)] {
        assert!(
            groups.len() >= 3 && groups.contains_key("(none)"),
            "the demo has orders from sessions with several {by}s and without one: {groups:?}"
        );
    }
    // product views by product.
    let mut by_product: HashMap<String, i64> = HashMap::new();
    for e in in_range.iter().filter(|e| e.kind == "product.viewed") {
        *by_product.entry(label(e.product.clone())).or_default() += 1;
    }

    for (query, want, limit) in [
        ("metric=sessions&breakdown=device", &by_device, 10),
        ("metric=sessions&breakdown=source", &sessions_by_source, 10),
        (
            "metric=sessions&breakdown=campaign&limit=4",
            &sessions_by_campaign,
            4,
        ),
        (
            "metric=revenue&currency=USD&breakdown=campaign&limit=4",
            &by_campaign,
            4,
        ),
        (
            "metric=revenue&currency=USD&breakdown=referrer_domain&limit=4",
            &by_referrer,
            4,
        ),
        (
            "metric=revenue&currency=USD&breakdown=source&limit=3",
            &by_source,
            3,
        ),
        (
            "metric=product_views&breakdown=product&limit=5",
            &by_product,
            5,
        ),
    ] {
        let body = get_ok(
            &f.api,
            &format!("/analytics/metrics?{query}&period=30d&timezone=UTC"),
        )
        .await;
        let (keys, got) = groups(&body);
        let want = top_and_other(want, limit);
        let totals: HashMap<String, i64> = got.iter().map(|(k, (t, _))| (k.clone(), *t)).collect();
        assert_eq!(totals, want, "{query}");
        for (k, (total, points)) in &got {
            assert_eq!(
                total, points,
                "{query}: {k}'s data points add up to its total"
            );
        }
        assert_eq!(
            totals.values().sum::<i64>(),
            body["total"].as_i64().expect("total"),
            "{query}: the groups sum to the metric's total"
        );
        // The metric beside its groups is the metric as read without a breakdown.
        let plain: Vec<&str> = query
            .split('&')
            .filter(|p| !p.starts_with("breakdown=") && !p.starts_with("limit="))
            .collect();
        let plain = get_ok(
            &f.api,
            &format!(
                "/analytics/metrics?{}&period=30d&timezone=UTC",
                plain.join("&")
            ),
        )
        .await;
        assert_eq!(body["total"], plain["total"], "{query}");
        assert_eq!(body["dataPoints"], plain["dataPoints"], "{query}");
        if keys.contains(&"(other)".to_owned()) {
            assert_eq!(
                keys.last().map(String::as_str),
                Some("(other)"),
                "{query}: (other) comes last"
            );
        }
        let weights: Vec<i64> = keys
            .iter()
            .filter(|k| *k != "(other)")
            .map(|k| totals[k])
            .collect();
        assert!(
            weights.windows(2).all(|w| w[0] >= w[1]),
            "{query}: heaviest first: {keys:?}"
        );
    }

    // Visitors by device, in a half-hour zone (Kolkata's days start at 18:30 UTC): a visitor counts once
    // under each device they had a session on.
    let body = get_ok(
        &f.api,
        "/analytics/metrics?metric=visitors&breakdown=device&period=30d&timezone=Asia/Kolkata",
    )
    .await;
    let (_, got) = groups(&body);
    let kolkata = TimeZone::get("Asia/Kolkata").expect("zone");
    let (kfrom, kto) = thirty_days(f.now, &kolkata);
    let mut visitors: HashMap<String, HashSet<&str>> = HashMap::new();
    let mut visitors_by_day: HashMap<String, BTreeMap<String, HashSet<&str>>> = HashMap::new();
    let k_sessions = sessions_of(f.events.iter().filter(|e| e.t >= kfrom && e.t < kto));
    let device_of = |e: &Ev| {
        k_sessions
            .get(e.session.as_str())
            .map(|evs| label(first(evs, |e| &e.device)))
            .unwrap_or_else(|| "(none)".into())
    };
    for e in f
        .events
        .iter()
        .filter(|e| e.t >= kfrom && e.t < kto && !e.visitor.is_empty())
    {
        let device = device_of(e);
        visitors
            .entry(device.clone())
            .or_default()
            .insert(e.visitor.as_str());
        visitors_by_day
            .entry(device)
            .or_default()
            .entry(day(e.t, &kolkata))
            .or_default()
            .insert(e.visitor.as_str());
    }
    let want_kolkata: HashMap<String, i64> = visitors
        .iter()
        .map(|(k, v)| (k.clone(), v.len() as i64))
        .collect();
    let totals: HashMap<String, i64> = got.iter().map(|(k, (t, _))| (k.clone(), *t)).collect();
    assert!(want_kolkata.len() >= 3, "several devices: {want_kolkata:?}");
    assert_eq!(totals, want_kolkata, "visitors by device in Kolkata");
    // Every device fits in the limit, so the first read's buckets are the answer: each day's distinct
    // visitors of each device.
    for g in body["groups"].as_array().expect("groups") {
        let key = g["key"].as_str().expect("key");
        let want: BTreeMap<String, i64> = visitors_by_day[key]
            .iter()
            .map(|(d, v)| (d.clone(), v.len() as i64))
            .collect();
        let got: BTreeMap<String, i64> = series(g).into_iter().filter(|(_, v)| *v != 0).collect();
        assert_eq!(got, want, "visitors of {key} per day in Kolkata");
    }
    // With a limit below the devices, the rest is `(other)`: its distinct visitors, read again.
    let body = get_ok(
        &f.api,
        "/analytics/metrics?metric=visitors&breakdown=device&limit=2&period=30d&timezone=Asia/Kolkata",
    )
    .await;
    let (keys, got) = groups(&body);
    let mut ranked: Vec<(&String, i64)> = want_kolkata.iter().map(|(k, v)| (k, *v)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let top2: Vec<String> = ranked.iter().take(2).map(|(k, _)| (*k).clone()).collect();
    let rest: HashSet<&str> = visitors
        .iter()
        .filter(|(k, _)| !top2.contains(k))
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    let mut want_top: HashMap<String, i64> =
        top2.iter().map(|k| (k.clone(), want_kolkata[k])).collect();
    want_top.insert("(other)".into(), rest.len() as i64);
    let totals: HashMap<String, i64> = got.iter().map(|(k, (t, _))| (k.clone(), *t)).collect();
    assert_eq!(
        totals, want_top,
        "the top two devices' visitors and (other)'s"
    );
    assert_eq!(keys[..2], top2[..], "heaviest first");

    // Sessions by browser in the same zone: the session rollup's whole UTC hours and the raw events of
    // the partial ones at either end (the period starts at 18:30 UTC); each session under its first browser.
    let body = get_ok(
        &f.api,
        "/analytics/metrics?metric=sessions&breakdown=browser&period=30d&timezone=Asia/Kolkata",
    )
    .await;
    let (_, got) = groups(&body);
    let mut want_browsers: HashMap<String, i64> = HashMap::new();
    for evs in k_sessions.values() {
        *want_browsers
            .entry(label(first(evs, |e| &e.browser)))
            .or_default() += 1;
    }
    let totals: HashMap<String, i64> = got.iter().map(|(k, (t, _))| (k.clone(), *t)).collect();
    assert!(
        want_browsers.len() >= 3,
        "several browsers: {want_browsers:?}"
    );
    assert_eq!(totals, want_browsers, "sessions by browser in Kolkata");

    // A rate ranks by its sessions and each group's rate is its own.
    let body = get_ok(&f.api, "/analytics/metrics?metric=conversion_rate&breakdown=country&limit=3&period=30d&timezone=UTC").await;
    let mut ranked: Vec<(&String, &(i64, i64))> = by_country.iter().collect();
    ranked.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(b.0)));
    let got = body["groups"].as_array().expect("groups");
    for (g, (country, (converted, all))) in got.iter().zip(ranked.iter().take(3)) {
        assert_eq!(g["key"], country.as_str());
        let want = ((*converted as f64 / *all as f64) * 10_000.0).round() / 10_000.0;
        assert_eq!(g["total"].as_f64(), Some(want), "conversion in {country}");
    }
    let (rest_converted, rest_all) = ranked
        .iter()
        .skip(3)
        .fold((0, 0), |acc, (_, (c, a))| (acc.0 + c, acc.1 + a));
    let other = got.last().expect("(other)");
    assert_eq!(other["key"], "(other)");
    assert_eq!(other["other"], true);
    let want = ((rest_converted as f64 / rest_all as f64) * 10_000.0).round() / 10_000.0;
    assert_eq!(
        other["total"].as_f64(),
        Some(want),
        "conversion of the other countries"
    );

    // CSV: one row per group and day.
    let (status, _, csv) = integration_tests::get_raw(
        &f.api,
        "/analytics/metrics?metric=sessions&breakdown=device&period=7d&timezone=UTC&format=csv",
        READ_KEY,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (header, lines) = parse_csv(&csv);
    assert_eq!(header, ["device", "date", "sessions"]);
    let json = get_ok(
        &f.api,
        "/analytics/metrics?metric=sessions&breakdown=device&period=7d&timezone=UTC",
    )
    .await;
    let want: Vec<Vec<String>> = json["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| {
            g["dataPoints"]
                .as_array()
                .expect("points")
                .iter()
                .map(move |p| {
                    vec![
                        g["key"].as_str().unwrap_or("").to_owned(),
                        p["date"].as_str().unwrap_or("").to_owned(),
                        p["value"].to_string(),
                    ]
                })
        })
        .collect();
    assert_eq!(lines, want);

    // What cannot be broken down says so, naming the parameter.
    for query in [
        "metric=net_revenue&breakdown=source",
        "metric=ltv&breakdown=country",
        "metric=orders&breakdown=product",
        "metric=sessions&breakdown=planet",
        "metric=sessions&breakdown=device&compare=previous_period",
        "metric=traffic_sources&breakdown=device",
    ] {
        let (status, body) = get(
            &f.api,
            &format!("/analytics/metrics?{query}&period=30d"),
            READ_KEY,
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        let field = body["error"]["field"].as_str().unwrap_or("");
        assert!(
            field == "breakdown" || field == "compare",
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn device_browser_and_source_filters_keep_exactly_their_events() {
    let f = fixture().await;
    let tz = TimeZone::UTC;
    let (from, to) = thirty_days(f.now, &tz);
    let in_range = f.between(from, to);
    let by_session = sessions_of(in_range.iter().copied());
    let sources: HashMap<&str, String> = by_session
        .iter()
        .map(|(id, evs)| (*id, session_source(evs)))
        .collect();
    // A session's entry page and first referrer's domain, as landing_pages and referrers name them.
    let landing: HashMap<&str, &str> = by_session
        .iter()
        .filter_map(|(id, evs)| Some((*id, evs.iter().find(|e| !e.page.is_empty())?.page.as_str())))
        .collect();
    let referrer: HashMap<&str, String> = by_session
        .iter()
        .filter_map(|(id, evs)| {
            let r = &evs.iter().find(|e| !e.referrer.is_empty())?.referrer;
            Some((*id, referrer_domain(r)))
        })
        .collect();
    let most_common = |values: Vec<&str>| -> String {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for v in values {
            *counts.entry(v).or_default() += 1;
        }
        let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        counts[0].0.to_owned()
    };
    let top_landing = most_common(landing.values().copied().collect());
    let top_referrer = most_common(referrer.values().map(String::as_str).collect());
    let encode = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    // Each query's filters, as an event must meet them to count.
    for query in [
        "device=mobile".to_owned(),
        "browser=Chrome".to_owned(),
        "source=google".to_owned(),
        "device=desktop&source=google&country=US".to_owned(),
        format!("landingPage={}", encode(&top_landing)),
        format!("referrer={}&device=mobile", encode(&top_referrer)),
    ] {
        let query = query.as_str();
        let given = |k: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
        };
        let (device, browser, source, country) = (
            given("device"),
            given("browser"),
            given("source"),
            given("country"),
        );
        let (landing_page, referrer_domain) = (
            given("landingPage").map(|_| top_landing.as_str()),
            given("referrer").map(|_| top_referrer.as_str()),
        );
        let kept: Vec<&Ev> = in_range
            .iter()
            .copied()
            .filter(|e| device.is_none_or(|d| e.device == d))
            .filter(|e| browser.is_none_or(|b| e.browser == b))
            .filter(|e| country.is_none_or(|c| e.country == c))
            .filter(|e| {
                source.is_none_or(|s| sources.get(e.session.as_str()).is_some_and(|x| x == s))
            })
            .filter(|e| {
                landing_page
                    .is_none_or(|l| landing.get(e.session.as_str()).is_some_and(|x| *x == l))
            })
            .filter(|e| {
                referrer_domain
                    .is_none_or(|r| referrer.get(e.session.as_str()).is_some_and(|x| x == r))
            })
            .collect();
        let sessions: HashSet<&str> = kept
            .iter()
            .filter(|e| !e.session.is_empty())
            .map(|e| e.session.as_str())
            .collect();
        let mut orders: HashMap<&str, i64> = HashMap::new();
        for e in kept
            .iter()
            .filter(|e| e.kind == "order.completed" && e.currency == "USD")
        {
            orders.entry(e.order.as_str()).or_insert(e.amount);
        }
        let views = kept.iter().filter(|e| e.kind == "product.viewed").count() as i64;
        assert!(
            !sessions.is_empty() && !orders.is_empty(),
            "{query}: the demo has such events"
        );
        for (metric, want) in [
            ("sessions", sessions.len() as i64),
            ("revenue&currency=USD", orders.values().sum::<i64>()),
            ("product_views", views),
        ] {
            let body = get_ok(
                &f.api,
                &format!("/analytics/metrics?metric={metric}&period=30d&timezone=UTC&{query}"),
            )
            .await;
            assert_eq!(body["total"].as_i64(), Some(want), "{metric} with {query}");
        }
        // A dashboard's filters reach its widgets: the overview's revenue is the filtered one.
        let overview = get_ok(
            &f.api,
            &format!("/analytics/dashboards/overview?period=30d&timezone=UTC&currency=USD&{query}"),
        )
        .await;
        let revenue = overview["widgets"]
            .as_array()
            .expect("widgets")
            .iter()
            .find(|w| w["data"]["metric"] == "revenue")
            .expect("revenue widget");
        assert_eq!(
            revenue["data"]["total"].as_i64(),
            Some(orders.values().sum::<i64>()),
            "overview revenue with {query}"
        );
    }
    f.db.drop_database().await;
}

/// Stores one order of shop-a completed at `at` (no session, no items); the same order as the
/// independent computations see it.
async fn place_order(
    f: &Fixture,
    order: &str,
    total: i64,
    currency: &str,
    at: jiff::Timestamp,
) -> Ev {
    let json = serde_json::json!({"id": format!("evt_{order}"), "type": "order.completed",
        "timestamp": at.to_string(),
        "properties": {"orderId": order, "total": total, "currency": currency}});
    let received = time::OffsetDateTime::from_unix_timestamp(f.now.as_second()).expect("time");
    let mut event = Validator::from_config(&f.db.config)
        .validate(json.clone(), "shop-a", &Default::default(), received)
        .expect("valid");
    event.timestamp = time::OffsetDateTime::from_unix_timestamp(at.as_second()).expect("time");
    commerce_analytics::store::EventStore::insert(&f.db.store, &[event], order)
        .await
        .expect("insert");
    flatten(&json)
}

#[tokio::test]
async fn money_converts_into_a_reporting_currency_at_each_days_rate() {
    use commerce_analytics::fx;
    use rust_decimal::Decimal;
    let f = fixture().await;
    let today = fx::utc_day(f.now);
    let loaded = demo_load::load_rates(&f.db.store, today)
        .await
        .expect("rates");
    assert!(loaded > 10_000, "the ECB history is loaded: {loaded}");
    // The same published rates, looked up here: the latest on or before the day, at most 7 days back.
    let mut published = fx::parse_ecb_csv(demo_load::ECB_HISTORY).expect("history");
    published.extend(fx::carry_forward(&published, today));
    let table: HashMap<(String, jiff::civil::Date), Decimal> = published
        .into_iter()
        .map(|r| ((r.currency, r.day), r.per_eur))
        .collect();
    let per_eur = |currency: &str, day: jiff::civil::Date| -> Option<Decimal> {
        if currency == "EUR" {
            return Some(Decimal::ONE);
        }
        (0..=7).find_map(|back| {
            table
                .get(&(currency.to_owned(), day - back.days()))
                .copied()
        })
    };
    let minor = |currency: &str| Decimal::from(10_i64.pow(fx::exponent(currency)));
    // Each amount in USD, converted alone (the store converts per currency and day, then adds up).
    let in_usd = |amount: i64, currency: &str, t: jiff::Timestamp| -> Decimal {
        let day = fx::utc_day(t);
        let (from, to) = (
            per_eur(currency, day).expect("rate"),
            per_eur("USD", day).expect("rate"),
        );
        Decimal::from(amount) / minor(currency) / from * to * minor("USD")
    };
    let round = |d: Decimal| {
        d.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
            .try_into()
            .unwrap_or(i64::MAX)
    };

    let tz = TimeZone::UTC;
    let (from, to) = thirty_days(f.now, &tz);
    // Each order once, at its first completion.
    let mut first: HashMap<&str, &Ev> = HashMap::new();
    for e in f.events.iter().filter(|e| e.kind == "order.completed") {
        let o = first.entry(e.order.as_str()).or_insert(e);
        if e.t < o.t {
            *o = e;
        }
    }
    // The demo's few non-USD orders may all fall outside the last 30 days at the hour a run starts;
    // these two are always in it (JPY has no minor unit, GBP two).
    let placed = [
        place_order(&f, "ord_fx_gbp", 4_321, "GBP", f.now - 75.hours()).await,
        place_order(&f, "ord_fx_jpy", 12_345, "JPY", f.now - 250.hours()).await,
    ];
    let orders: Vec<&Ev> = first
        .values()
        .copied()
        .chain(&placed)
        .filter(|o| o.t >= from && o.t < to)
        .collect();
    let currencies: HashSet<&str> = orders.iter().map(|o| o.currency.as_str()).collect();
    assert!(
        currencies.len() >= 3,
        "the demo sells in several currencies: {currencies:?}"
    );
    let mut by_day: BTreeMap<String, (Decimal, i64)> = BTreeMap::new();
    for o in &orders {
        let d = by_day.entry(day(o.t, &tz)).or_default();
        d.0 += in_usd(o.amount, &o.currency, o.t);
        d.1 += 1;
    }
    let exact_total: Decimal = by_day.values().map(|d| d.0).sum();
    let revenue_total: i64 = round(exact_total);
    let refunds: Decimal = f
        .between(from, to)
        .iter()
        .filter(|e| e.kind == "order.refunded")
        .map(|e| in_usd(e.amount, &e.currency, e.t))
        .sum();

    let read = |metric: &str| {
        format!(
            "/analytics/metrics?metric={metric}&period=30d&timezone=UTC&currency=USD&convert=true"
        )
    };
    let body = get_ok(&f.api, &read("revenue")).await;
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["conversion"]["unconverted"], serde_json::json!([]));
    assert!(
        body["conversion"]["rates"]
            .as_str()
            .unwrap_or("")
            .contains("ECB"),
        "{body}"
    );
    for (d, v) in series(&body) {
        let want = by_day.get(&d).map_or(0, |x| round(x.0));
        assert_eq!(v, want, "converted revenue on {d}");
    }
    assert_eq!(body["total"].as_i64(), Some(revenue_total), "revenue");
    // More than the USD orders alone: every currency counts.
    let usd_only = get_ok(
        &f.api,
        "/analytics/metrics?metric=revenue&period=30d&timezone=UTC&currency=USD",
    )
    .await;
    assert!(body["total"].as_i64() > usd_only["total"].as_i64());

    let n = orders.len() as i64;
    let body = get_ok(&f.api, &read("orders")).await;
    assert_eq!(body["total"].as_i64(), Some(n), "orders of every currency");
    for (d, v) in series(&body) {
        assert_eq!(v, by_day.get(&d).map_or(0, |x| x.1), "orders on {d}");
    }
    let body = get_ok(&f.api, &read("aov")).await;
    assert_eq!(
        body["total"].as_i64(),
        Some((2 * revenue_total + n) / (2 * n)),
        "aov: converted revenue ÷ orders"
    );
    let body = get_ok(&f.api, &read("net_revenue")).await;
    assert_eq!(
        body["total"].as_i64(),
        Some(round(exact_total - refunds)),
        "net revenue, each refund at its own day's rate"
    );
    // Compared, the earlier period converts too.
    let body = get_ok(
        &f.api,
        &format!("{}&compare=previous_period", read("revenue")),
    )
    .await;
    assert_eq!(body["total"].as_i64(), Some(revenue_total));
    assert!(
        body["comparison"]["total"].as_i64().unwrap_or(0) > 0,
        "{body}"
    );

    // An order in a currency without a published rate (the ECB publishes no AED) is left out and said.
    place_order(&f, "ord_aed_1", 5_000, "AED", f.now - 1.hour()).await;
    let body = get_ok(&f.api, &read("revenue")).await;
    assert_eq!(
        body["total"].as_i64(),
        Some(revenue_total),
        "not counted as 0, not counted at all"
    );
    assert_eq!(
        body["conversion"]["unconverted"],
        serde_json::json!([{"currency": "AED", "orders": 1, "amount": 5_000,
                            "days": [fx::utc_day(f.now - 1.hour()).to_string()]}])
    );
    // Only the money metrics and orders convert, and not broken down.
    for (q, field) in [
        ("metric=sessions&convert=true", "convert"),
        ("metric=revenue&convert=yes", "convert"),
        ("metric=revenue&convert=true&breakdown=device", "convert"),
    ] {
        let (status, body) = get(&f.api, &format!("/analytics/metrics?{q}"), READ_KEY).await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{q}"
        );
    }
    f.db.drop_database().await;
}

#[tokio::test]
async fn reads_that_name_no_currency_follow_the_stores_main_currency_when_it_changes() {
    // The API remembers the main currency a store's last read found and reads in it while the lookup
    // confirms it; when the store's orders move to another currency the next answer must be in that one,
    // on the metrics endpoint, a dashboard and the cohorts alike.
    use commerce_analytics::event::RequestMeta;
    use commerce_analytics::store::EventStore;
    let db = TestDb::new("main_currency").await;
    let now = time::OffsetDateTime::now_utc();
    let api = db.api(now);
    let validator = Validator::from_config(&db.config);
    let store = |orders: &[(&str, i64, &str)]| {
        let events: Vec<_> = orders
            .iter()
            .map(|(id, total, currency)| {
                validator
                    .validate(
                        serde_json::json!({"id": id, "type": "order.completed",
                            "properties": {"orderId": id, "total": total, "currency": currency}}),
                        "shop-a",
                        &RequestMeta::default(),
                        now - time::Duration::hours(1),
                    )
                    .expect("valid")
            })
            .collect();
        let token = commerce_analytics::store::dedup_token(&events);
        let db = &db;
        async move { db.store.insert(&events, &token).await.expect("insert") }
    };
    // (what the currency is read as, revenue, orders)
    let read = async |query: &str| {
        let revenue = get_ok(
            &api,
            &format!("/analytics/metrics?metric=revenue&period=7d{query}"),
        )
        .await;
        let orders = get_ok(
            &api,
            &format!("/analytics/metrics?metric=orders&period=7d{query}"),
        )
        .await;
        let overview = get_ok(
            &api,
            &format!("/analytics/dashboards/overview?period=7d{query}"),
        )
        .await;
        let widget_currency = overview["widgets"][0]["data"]["currency"].clone();
        assert_eq!(
            widget_currency, revenue["currency"],
            "the dashboard reads as the metric does"
        );
        let cohorts = get_ok(&api, &format!("/analytics/cohorts?interval=month{query}")).await;
        assert_eq!(
            cohorts["currency"], revenue["currency"],
            "cohorts read as the metric does"
        );
        (
            revenue["currency"].as_str().unwrap_or("none").to_owned(),
            revenue["total"].as_i64(),
            orders["total"].as_i64(),
        )
    };
    store(&[("o1", 1_000, "EUR"), ("o2", 2_000, "EUR")]).await;
    assert_eq!(read("").await, ("EUR".to_owned(), Some(3_000), Some(2)));
    assert_eq!(read("").await, ("EUR".to_owned(), Some(3_000), Some(2)));
    store(&[("o3", 500, "JPY"), ("o4", 500, "JPY"), ("o5", 500, "JPY")]).await;
    assert_eq!(read("").await, ("JPY".to_owned(), Some(1_500), Some(3)));
    assert_eq!(
        read("&currency=EUR").await,
        ("EUR".to_owned(), Some(3_000), Some(2))
    );
    assert_eq!(read("").await, ("JPY".to_owned(), Some(1_500), Some(3)));
    db.drop_database().await;
}

#[tokio::test]
async fn stock_is_the_latest_update_before_the_periods_end_even_when_it_ends_within_a_utc_day() {
    // Stock levels read the whole UTC days before the day a period ends in from the stock rollup and
    // that day from the events (with bots, everything from the events): a period that ends during a UTC
    // day (a day of Asia/Kolkata ends at 18:30 UTC) must leave out that day's later updates.
    use commerce_analytics::event::RequestMeta;
    use commerce_analytics::store::EventStore;
    let db = TestDb::new("stock_end").await;
    let now = time::OffsetDateTime::now_utc();
    let api = db.api(now);
    let validator = Validator::from_config(&db.config);
    let day = now.date() - time::Duration::days(3);
    let at = |d: time::Date, h: u8, m: u8| d.with_hms(h, m, 0).expect("a time of day").assume_utc();
    // (when, quantity): two days before, then three updates on `day`, the last two at the same time.
    let updates = [
        (at(day - time::Duration::days(2), 10, 0), 1),
        (at(day, 10, 0), 2),
        (at(day, 20, 0), 4),
        (at(day, 20, 0), 3),
    ];
    let events: Vec<_> = updates
        .iter()
        .map(|(t, quantity)| {
            validator
                .validate(
                    serde_json::json!({"type": "inventory.updated",
                        "timestamp": t.format(&time::format_description::well_known::Rfc3339).expect("rfc3339"),
                        "properties": {"productId": "p-1", "quantity": quantity}}),
                    "shop-a",
                    &RequestMeta::default(),
                    *t + time::Duration::seconds(1),
                )
                .expect("valid")
        })
        .collect();
    let token = commerce_analytics::store::dedup_token(&events);
    db.store.insert(&events, &token).await.expect("insert");
    let date = |d: time::Date| d.to_string();
    // (query, quantity, reported at)
    let cases = [
        // The day ends at 18:30 UTC in Kolkata: the 10:00 update is the last before it.
        (
            format!(
                "timezone=Asia/Kolkata&from={}&to={}",
                date(day - time::Duration::days(5)),
                date(day)
            ),
            2,
            updates[1].0,
        ),
        // The day before ends at 18:30 UTC of the day before `day`: the update of two days before.
        (
            format!(
                "timezone=Asia/Kolkata&from={}&to={}",
                date(day - time::Duration::days(5)),
                date(day - time::Duration::days(1))
            ),
            1,
            updates[0].0,
        ),
        // The whole UTC day: the two updates at 20:00, the greater quantity on a tie.
        (
            format!(
                "from={}&to={}",
                date(day - time::Duration::days(5)),
                date(day)
            ),
            4,
            updates[2].0,
        ),
        (String::from("period=30d"), 4, updates[2].0),
    ];
    for (query, quantity, reported) in cases {
        for bots in ["", "&includeBots=true"] {
            let body = get_ok(
                &api,
                &format!("/analytics/metrics?metric=stock_levels&{query}{bots}"),
            )
            .await;
            let stock = rows(&body);
            assert_eq!(stock.len(), 1, "{query}{bots}: {body}");
            assert_eq!(stock[0]["productId"], "p-1", "{query}{bots}");
            assert_eq!(stock[0]["quantity"], quantity, "{query}{bots}");
            assert_eq!(
                stock[0]["updatedAt"],
                reported
                    .format(&time::format_description::well_known::Rfc3339)
                    .expect("rfc3339"),
                "{query}{bots}"
            );
            let body = get_ok(
                &api,
                &format!("/analytics/metrics?metric=sell_through_rate&{query}{bots}"),
            )
            .await;
            assert_eq!(
                rows(&body)[0]["stockOnHand"],
                quantity,
                "{query}{bots}: {body}"
            );
        }
    }
    db.drop_database().await;
}
