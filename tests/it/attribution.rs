//! Attribution (`metric=attribution`) against an independent computation, on ClickHouse, and BigQuery
//! answering the same: a seeded store of visitors with several sessions from several channels, logins
//! part-way, a second device, direct visits, a lookback edge, browser orders, backend orders tied only by a
//! cart id, an anonymous id or a customer id, one with nothing to tie it, a resent completion and another
//! currency.

use std::collections::{BTreeMap, HashSet};

use commerce_analytics::event::{Event, RequestMeta};
use commerce_analytics::query::attribution;
use commerce_analytics::query::metrics::{self, Request};
use commerce_analytics::store::EventStore;
use integration_tests::{READ_KEY, TestDb, call, test_bigquery};
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// (query of the landing URL, referrer, source, medium, campaign, referrer domain).
const CHANNELS: [(&str, &str, &str, &str, &str, &str); 6] = [
    ("", "", "direct", "", "", ""),
    (
        "",
        "https://www.google.com/",
        "google",
        "",
        "",
        "google.com",
    ),
    (
        "",
        "https://l.facebook.com/",
        "facebook",
        "",
        "",
        "l.facebook.com",
    ),
    (
        "?utm_source=newsletter&utm_medium=email&utm_campaign=black-friday",
        "",
        "newsletter",
        "email",
        "black-friday",
        "",
    ),
    (
        "?utm_source=google&utm_medium=cpc&utm_campaign=brand",
        "https://www.google.com/",
        "google",
        "cpc",
        "brand",
        "google.com",
    ),
    (
        "",
        "https://blog.example.org/post",
        "blog.example.org",
        "",
        "",
        "blog.example.org",
    ),
];

/// A deterministic generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone)]
struct Visit {
    session: String,
    anon: String,
    customer: String,
    start: i64,
    channel: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tie {
    Session(String),
    Cart(String),
    Anon,
    Customer,
    Nothing,
}

#[derive(Debug, Clone)]
struct Order {
    at: i64,
    amount: i64,
    currency: &'static str,
    tie: Tie,
    anon: String,
    customer: String,
}

#[derive(Default)]
struct Scenario {
    visits: Vec<Visit>,
    orders: Vec<Order>,
    /// Which visit each cart was filled in.
    carts: BTreeMap<String, usize>,
    wire: Vec<(Value, i64)>,
}

impl Scenario {
    fn visit(&mut self, v: Visit, cart: bool) -> usize {
        let (query, referrer, ..) = CHANNELS[v.channel];
        let ids = |e: &mut Value| {
            e["sessionId"] = json!(v.session);
            e["anonymousId"] = json!(v.anon);
            if !v.customer.is_empty() {
                e["customerId"] = json!(v.customer);
            }
        };
        let mut landing = json!({"type": "page.viewed",
            "context": {"page": {"url": format!("https://shop.example/{query}")}}});
        if !referrer.is_empty() {
            landing["context"]["referrer"] = json!(referrer);
        }
        ids(&mut landing);
        self.wire.push((landing, v.start));
        let mut next = json!({"type": "page.viewed",
            "context": {"page": {"url": "https://shop.example/products/p1"}}});
        ids(&mut next);
        self.wire.push((next, v.start + 2 * 60_000));
        let i = self.visits.len();
        if cart {
            let cart_id = format!("cart-{}", v.session);
            let mut added = json!({"type": "cart.item_added",
                "properties": {"productId": "p1", "quantity": 1, "cartId": cart_id}});
            ids(&mut added);
            self.wire.push((added, v.start + 3 * 60_000));
            self.carts.insert(cart_id, i);
        }
        self.visits.push(v);
        i
    }

    /// An order from visit `i`, tied as `tie` says: in the session 5 minutes in, or by the backend 65
    /// minutes in with only the tie's id.
    fn order(&mut self, i: usize, tie: Tie, amount: i64, currency: &'static str, resend: bool) {
        let v = self.visits[i].clone();
        let id = format!("ord-{}", self.orders.len());
        let mut e = json!({"type": "order.completed",
            "properties": {"orderId": id, "total": amount, "currency": currency}});
        let at = match &tie {
            Tie::Session(s) => {
                e["sessionId"] = json!(s);
                e["anonymousId"] = json!(v.anon);
                if !v.customer.is_empty() {
                    e["customerId"] = json!(v.customer);
                }
                e["properties"]["cartId"] = json!(format!("cart-{s}"));
                v.start + 5 * 60_000
            }
            Tie::Cart(c) => {
                e["properties"]["cartId"] = json!(c);
                v.start + 65 * 60_000
            }
            Tie::Anon => {
                e["anonymousId"] = json!(v.anon);
                v.start + 65 * 60_000
            }
            Tie::Customer => {
                e["customerId"] = json!(v.customer);
                v.start + 65 * 60_000
            }
            Tie::Nothing => v.start + 65 * 60_000,
        };
        self.wire.push((e.clone(), at));
        if resend {
            // The backend resends the completion ten minutes later: the first one counts, once.
            self.wire.push((e, at + 10 * 60_000));
        }
        self.orders.push(Order {
            at,
            amount,
            currency,
            anon: if matches!(tie, Tie::Session(_) | Tie::Anon) {
                v.anon.clone()
            } else {
                String::new()
            },
            customer: if matches!(tie, Tie::Session(_) | Tie::Customer) {
                v.customer.clone()
            } else {
                String::new()
            },
            tie,
        });
    }
}

/// Visitors and their orders over the 70 days before `now` (`now` is half past an hour; every visit starts
/// 7 minutes past one and lasts under 10, so none straddles a period's or a lookback's edge).
fn scenario(now: i64) -> Scenario {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut s = Scenario::default();
    let hour0 = now - 30 * 60_000 + 7 * 60_000;
    for person in 0..60 {
        let mut starts: Vec<i64> = (0..1 + rng.below(6))
            .map(|_| hour0 - (1 + rng.below(70 * 24) as i64) * HOUR)
            .collect();
        starts.sort();
        starts.dedup();
        let login = (rng.chance(60)).then(|| rng.below(starts.len() as u64) as usize);
        let customer = format!("cust-{person}");
        for (k, start) in starts.iter().enumerate() {
            let logged = login.is_some_and(|l| k >= l);
            let cart = rng.chance(60);
            let i = s.visit(
                Visit {
                    session: format!("s-{person}-{k}"),
                    anon: format!("anon-{person}"),
                    customer: if logged {
                        customer.clone()
                    } else {
                        String::new()
                    },
                    start: *start,
                    channel: rng.below(CHANNELS.len() as u64) as usize,
                },
                cart,
            );
            if cart && rng.chance(45) {
                let session = s.visits[i].session.clone();
                let tie = match rng.below(10) {
                    0..=4 => Tie::Session(session.clone()),
                    5 | 6 => Tie::Cart(format!("cart-{session}")),
                    7 => Tie::Anon,
                    8 if logged => Tie::Customer,
                    _ => Tie::Nothing,
                };
                let currency = if rng.chance(7) { "EUR" } else { "USD" };
                let amount = 500 + rng.below(49_500) as i64;
                let resend = rng.chance(10);
                s.order(i, tie, amount, currency, resend);
            }
        }
        // Every seventh person also shops on a second device: anonymous first, then logged in.
        if person % 7 == 0 && login.is_some() {
            for (k, back) in [(0, 20 * DAY + 3 * HOUR), (1, 4 * DAY + 5 * HOUR)] {
                s.visit(
                    Visit {
                        session: format!("s-{person}-b{k}"),
                        anon: format!("anon-{person}-b"),
                        customer: if k == 1 {
                            customer.clone()
                        } else {
                            String::new()
                        },
                        start: hour0 - back,
                        channel: 2 + k,
                    },
                    false,
                );
            }
        }
    }
    // One order of each backend tie, whatever the seed gave: a visitor browsing from Google, then
    // logged in from the newsletter.
    let mut fixed = Vec::new();
    for (k, back, customer, channel) in [(0, 10 * DAY, "", 1), (1, 6 * DAY, "cust-fixed", 3)] {
        fixed.push(s.visit(
            Visit {
                session: format!("fixed-{k}"),
                anon: "anon-fixed".into(),
                customer: customer.into(),
                start: hour0 - back,
                channel,
            },
            false,
        ));
    }
    s.order(fixed[0], Tie::Anon, 2_000, "USD", false);
    s.order(fixed[1], Tie::Customer, 3_000, "USD", true);
    s.order(fixed[1], Tie::Nothing, 4_000, "USD", false);
    // The lookback edge: a TikTok visit 30 days and an hour before an order is out of a 30-day lookback,
    // a Facebook one an hour inside it is in.
    let order_visit = hour0 - 2 * DAY;
    for (k, start, channel) in [
        (0, order_visit - 30 * DAY - HOUR, 5),
        (1, order_visit - 30 * DAY + HOUR, 2),
    ] {
        s.visit(
            Visit {
                session: format!("edge-{k}"),
                anon: "anon-edge".into(),
                customer: String::new(),
                start,
                channel,
            },
            false,
        );
    }
    let i = s.visit(
        Visit {
            session: "edge-2".into(),
            anon: "anon-edge".into(),
            customer: String::new(),
            start: order_visit,
            channel: 0,
        },
        true,
    );
    s.order(i, Tie::Session("edge-2".into()), 12_345, "USD", false);
    s
}

/// The channel a visit is credited to under `by`.
fn channel(v: &Visit, by: &str) -> String {
    let (_, _, source, medium, campaign, domain) = CHANNELS[v.channel];
    let value = match by {
        "source" => source,
        "medium" => medium,
        "campaign" => campaign,
        _ => domain,
    };
    if value.is_empty() { "(none)" } else { value }.to_owned()
}

/// What the report should say, computed from the scenario: per channel (orders, revenue) as exact
/// fractions, and per link (orders, revenue) of the attributed orders.
struct Expected {
    rows: BTreeMap<String, (f64, f64)>,
    orders: i64,
    revenue: i64,
    by_link: BTreeMap<&'static str, (i64, i64)>,
}

fn expected(
    s: &Scenario,
    (from, to): (i64, i64),
    model: &str,
    by: &str,
    lookback_days: i64,
    half_life_days: i64,
) -> Expected {
    let mut out = Expected {
        rows: BTreeMap::new(),
        orders: 0,
        revenue: 0,
        by_link: BTreeMap::new(),
    };
    for o in &s.orders {
        if o.currency != "USD" || o.at < from || o.at >= to {
            continue;
        }
        out.orders += 1;
        out.revenue += o.amount;
        // The visitor's ids, through the order's link.
        let mut sessions = HashSet::new();
        let mut anons: HashSet<String> = [o.anon.clone()].into();
        let mut customers: HashSet<String> = [o.customer.clone()].into();
        let linked = match &o.tie {
            Tie::Session(id) => Some((
                "session",
                s.visits.iter().find(|v| &v.session == id).cloned(),
            )),
            Tie::Cart(c) => Some(("cart", s.carts.get(c).map(|&i| s.visits[i].clone()))),
            _ => None,
        };
        let link = match (&o.tie, &linked) {
            (_, Some((name, _))) => *name,
            (Tie::Anon, None) => "anonymous_id",
            (Tie::Customer, None) => "customer_id",
            _ => "none",
        };
        if let Some((_, Some(v))) = &linked {
            sessions.insert(v.session.clone());
            anons.insert(v.anon.clone());
            customers.insert(v.customer.clone());
        }
        anons.remove("");
        customers.remove("");
        let mut touches: Vec<&Visit> = s
            .visits
            .iter()
            .filter(|v| {
                sessions.contains(&v.session)
                    || anons.contains(&v.anon)
                    || customers.contains(&v.customer)
            })
            .filter(|v| v.start <= o.at && v.start >= o.at - lookback_days * DAY)
            .collect();
        touches.sort_by_key(|v| v.start);
        if touches.is_empty() {
            let r = out.rows.entry("(unattributed)".into()).or_default();
            r.0 += 1.0;
            r.1 += o.amount as f64;
            continue;
        }
        let l = out.by_link.entry(link).or_default();
        l.0 += 1;
        l.1 += o.amount;
        let n = touches.len();
        let weights: Vec<f64> = match model {
            "first_touch" => (0..n).map(|i| f64::from(u8::from(i == 0))).collect(),
            "last_touch" => (0..n).map(|i| f64::from(u8::from(i == n - 1))).collect(),
            "last_non_direct" => {
                let pick = (0..n)
                    .rev()
                    .find(|&i| CHANNELS[touches[i].channel].2 != "direct")
                    .unwrap_or(n - 1);
                (0..n).map(|i| f64::from(u8::from(i == pick))).collect()
            }
            "linear" => vec![1.0 / n as f64; n],
            "position_based" if n == 1 => vec![1.0],
            "position_based" if n == 2 => vec![0.5, 0.5],
            "position_based" => (0..n)
                .map(|i| {
                    if i == 0 || i == n - 1 {
                        0.4
                    } else {
                        0.2 / (n - 2) as f64
                    }
                })
                .collect(),
            _ => {
                let raw: Vec<f64> = touches
                    .iter()
                    .map(|v| 0.5_f64.powf((o.at - v.start) as f64 / (half_life_days * DAY) as f64))
                    .collect();
                let sum: f64 = raw.iter().sum();
                raw.iter().map(|w| w / sum).collect()
            }
        };
        for (v, w) in touches.iter().zip(weights) {
            if w == 0.0 {
                continue;
            }
            let r = out.rows.entry(channel(v, by)).or_default();
            r.0 += w;
            r.1 += w * o.amount as f64;
        }
    }
    out
}

fn events(s: &Scenario) -> Vec<Event> {
    let v = integration_tests::validator();
    s.wire
        .iter()
        .enumerate()
        .map(|(i, (wire, at))| {
            let mut wire = wire.clone();
            wire["id"] = json!(format!("evt-{i}"));
            let mut e = v
                .validate(
                    wire,
                    "shop-a",
                    &RequestMeta::default(),
                    time::OffsetDateTime::now_utc(),
                )
                .expect("valid");
            e.timestamp =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(*at) * 1_000_000)
                    .expect("time");
            e
        })
        .collect()
}

#[tokio::test]
async fn every_model_credits_orders_as_an_independent_computation_on_both_warehouses() {
    // Half past the previous hour.
    let real = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let now_ms = real - real.rem_euclid(HOUR) - HOUR / 2;
    let now = jiff::Timestamp::from_millisecond(now_ms).expect("now");
    let s = scenario(now_ms);
    let events = events(&s);

    let ch = TestDb::new("attribution").await;
    ch.store.insert(&events, "all").await.expect("clickhouse");
    let bq = test_bigquery("attribution").await;
    bq.insert(&events, "all").await.expect("bigquery");
    let api = ch.api(time::OffsetDateTime::from_unix_timestamp(now.as_second()).expect("now"));

    let base = "period=30d&timezone=UTC&currency=USD";
    let range =
        commerce_analytics::query::params::Params::parse(base, &["period", "timezone", "currency"])
            .expect("params")
            .range(now)
            .expect("range");
    let period = (range.from_ms(), range.to_ms());
    let (_, revenue) = call(
        &api,
        "GET",
        &format!("/analytics/metrics?metric=revenue&{base}"),
        READ_KEY,
        None,
    )
    .await;

    let mut links_seen = HashSet::new();
    let mut compared = 0;
    for (model, by, lookback, half_life) in [
        ("first_touch", "source", 30, 7),
        ("last_touch", "source", 30, 7),
        ("last_non_direct", "source", 30, 7),
        ("linear", "source", 30, 7),
        ("position_based", "source", 30, 7),
        ("time_decay", "source", 30, 7),
        ("time_decay", "campaign", 14, 3),
        ("linear", "medium", 7, 7),
        ("position_based", "referrer_domain", 60, 7),
        ("first_touch", "campaign", 1, 7),
    ] {
        let mut query =
            format!("metric=attribution&{base}&model={model}&by={by}&lookback={lookback}d");
        if model == "time_decay" {
            query.push_str(&format!("&halfLife={half_life}d"));
        }
        let (status, body) = call(
            &api,
            "GET",
            &format!("/analytics/metrics?{query}"),
            READ_KEY,
            None,
        )
        .await;
        assert_eq!(status, 200, "{query}: {body}");
        let want = expected(&s, period, model, by, lookback, half_life);
        assert_eq!(
            body["total"],
            json!({"orders": want.orders, "revenue": want.revenue}),
            "{query}"
        );
        assert_eq!(
            body["total"]["revenue"], revenue["total"],
            "the rows add up to the revenue metric: {query}"
        );
        let rows = body["rows"].as_array().expect("rows");
        let got: BTreeMap<String, (f64, i64)> = rows
            .iter()
            .map(|r| {
                (
                    r["channel"].as_str().unwrap_or("").to_owned(),
                    (
                        r["orders"].as_f64().unwrap_or(-1.0),
                        r["revenue"].as_i64().unwrap_or(-1),
                    ),
                )
            })
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.rows.keys().collect::<Vec<_>>(),
            "{query}"
        );
        for (name, (orders, revenue)) in &want.rows {
            let (o, r) = got[name];
            assert!(
                (o - orders).abs() <= 0.000_05 + 1e-9,
                "{query} {name}: orders {o} vs {orders}"
            );
            assert!(
                (r as f64 - revenue).abs() < 1.0,
                "{query} {name}: revenue {r} vs {revenue}"
            );
        }
        assert_eq!(
            got.values().map(|v| v.1).sum::<i64>(),
            want.revenue,
            "{query}: revenue rows sum to the total exactly"
        );
        let by_link: Vec<Value> = want
            .by_link
            .iter()
            .map(|(l, (o, r))| json!({"link": l, "orders": o, "revenue": r}))
            .collect();
        let mut got_links = body["attributed"]["byLink"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        got_links.sort_by_key(|l| l["link"].as_str().unwrap_or("").to_owned());
        assert_eq!(Value::from(got_links), Value::from(by_link), "{query}");
        links_seen.extend(want.by_link.keys().copied());

        // BigQuery: the same answer from its own SQL.
        let Request::Attribution(q) = metrics::parse(&ch.store, "shop-a", &query, now)
            .await
            .expect("parse")
        else {
            panic!("an attribution request");
        };
        let on_ch = attribution::run(&ch.store, &q).await.expect("clickhouse");
        let on_bq = attribution::run(&bq, &q).await.expect("bigquery");
        assert_eq!(on_bq, on_ch, "{query}");
        assert_eq!(on_ch, body, "{query}");
        compared += 1;
    }
    assert_eq!(compared, 10);
    // The scenario reaches every link and leaves some orders unattributed, so each rule was exercised.
    for link in ["session", "cart", "anonymous_id", "customer_id"] {
        assert!(links_seen.contains(link), "{link} in {links_seen:?}");
    }
    let last_touch = expected(&s, period, "last_touch", "source", 30, 7);
    assert!(last_touch.rows.contains_key("(unattributed)"));
    assert!(last_touch.rows.contains_key("direct"));
    // The edge order is in the compared data, and is an edge: its first touch is the Facebook visit an hour
    // inside 30 days, and the blog visit an hour outside only with a 31-day lookback.
    let edge = s.orders.last().expect("edge order").clone();
    assert_eq!(edge.amount, 12_345);
    let alone = Scenario {
        visits: s.visits.clone(),
        orders: vec![edge],
        carts: s.carts.clone(),
        wire: vec![],
    };
    for (lookback, first) in [(30, "l.facebook.com"), (31, "blog.example.org")] {
        let e = expected(
            &alone,
            period,
            "first_touch",
            "referrer_domain",
            lookback,
            7,
        );
        assert_eq!(e.rows.keys().collect::<Vec<_>>(), [first], "{lookback}d");
    }

    // Bad parameters are JSON 400s naming the field.
    for (q, field) in [
        ("metric=attribution&model=data_driven", "model"),
        ("metric=attribution&by=country", "by"),
        ("metric=attribution&lookback=0d", "lookback"),
        ("metric=attribution&lookback=30", "lookback"),
        ("metric=attribution&halfLife=3d", "halfLife"),
        ("metric=attribution&compare=previous_period", "compare"),
        ("metric=attribution&breakdown=source", "breakdown"),
        ("metric=revenue&model=linear", "model"),
    ] {
        let (status, body) = call(
            &api,
            "GET",
            &format!("/analytics/metrics?{q}"),
            READ_KEY,
            None,
        )
        .await;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{q}: {body}"
        );
    }
    ch.drop_database().await;
    bq.drop_dataset().await.expect("drop");
}
