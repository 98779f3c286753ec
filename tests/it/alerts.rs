//! Alerts against ClickHouse and a webhook receiver on loopback: rules through the API (checked, SSRF
//! targets refused), a rule that fires once and resolves once across repeated and concurrent
//! evaluations, a webhook answering 500 then 200 delivered once, signatures checked by an independent
//! HMAC, the checkout guard firing when orders stop for 3 hours while sessions go on, and the guards'
//! false alarms counted over 30 simulated days of demo data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commerce_analytics::alerts::evaluate::{self, GuardQueries, Values};
use commerce_analytics::alerts::run::Runner;
use commerce_analytics::alerts::webhook::Sender;
use commerce_analytics::alerts::{AlertStore, Guard};
use commerce_analytics::event::{Event, RequestMeta};
use commerce_analytics::store::EventStore;
use integration_tests::{READ_KEY, TestDb, call};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOUR: i64 = 3_600_000;

/// A request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

/// A webhook receiver on loopback: records every request; paths in `fail_first` answer 500 to their first
/// request, every other request 200.
#[derive(Clone)]
struct Receiver {
    base: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(fail_first: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let failing: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
            fail_first.iter().map(|s| (*s).to_owned()).collect(),
        ));
        let (log, fails) = (got.clone(), failing.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (log, fails) = (log.clone(), fails.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0_u8; 4096];
                    let (head, body) = loop {
                        let n = conn.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let length = head
                                .lines()
                                .find_map(|l| {
                                    l.to_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if body.len() >= length {
                                break (head.to_owned(), body.to_owned());
                            }
                        }
                    };
                    let mut lines = head.lines();
                    let path = lines
                        .next()
                        .and_then(|l| l.split_whitespace().nth(1))
                        .unwrap_or("")
                        .to_owned();
                    let headers = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                        .collect();
                    let fail = {
                        let mut f = fails.lock().expect("lock");
                        match f.iter().position(|p| *p == path) {
                            Some(i) => {
                                f.remove(i);
                                true
                            }
                            None => false,
                        }
                    };
                    log.lock().expect("lock").push(Received {
                        path,
                        headers,
                        body,
                    });
                    let status = if fail {
                        "500 Internal Server Error"
                    } else {
                        "200 OK"
                    };
                    let _ = conn
                        .write_all(
                            format!(
                                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                            )
                            .as_bytes(),
                        )
                        .await;
                });
            }
        });
        Self { base, got }
    }

    fn at(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

/// HMAC-SHA256 as RFC 2104 defines it, on `sha2` (independent of the module's implementation).
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    let mut k = [0_u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = sha2::Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = sha2::Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

fn event(wire: Value, at_ms: i64) -> Event {
    let mut e = integration_tests::validator()
        .validate(
            wire,
            "shop-a",
            &RequestMeta::default(),
            time::OffsetDateTime::now_utc(),
        )
        .expect("valid");
    e.timestamp =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).expect("at");
    e
}

/// Five weeks of a steady store up to `until`: 40 sessions and 5 to 7 orders an hour, except that orders
/// stop at `orders_stop`.
fn steady_store(until: i64, orders_stop: i64) -> Vec<Event> {
    let mut out = Vec::new();
    let start = until - 35 * 24 * HOUR;
    let mut n = 0_u64;
    let mut hour = start;
    while hour < until {
        for s in 0..40 {
            n += 1;
            let at = hour + s * 90_000;
            out.push(event(
                json!({"id": format!("pv{n}"), "type": "page.viewed", "sessionId": format!("s{n}"),
                       "context": {"page": {"url": "https://shop.example/"}}}),
                at,
            ));
            let orders = 5 + (hour / HOUR) % 3;
            if s < orders && at < orders_stop {
                out.push(event(
                    json!({"id": format!("o{n}"), "type": "order.completed", "sessionId": format!("s{n}"),
                           "properties": {"orderId": format!("ord{n}"), "total": 2_500, "currency": "USD"}}),
                    at + 60_000,
                ));
            }
        }
        hour += HOUR;
    }
    out
}

/// The scenario's clock: evaluations at T + `minutes`, T 5 minutes past the hour before the last one, so
/// the slot at T reads windows ending at the hour `end`.
#[derive(Clone, Copy)]
struct Clock {
    end: i64,
}

impl Clock {
    fn new() -> Self {
        let real = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        Self {
            end: real - real.rem_euclid(HOUR) - HOUR,
        }
    }

    fn t(self, minutes: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_millisecond(self.end + (5 + minutes) * 60_000).expect("t")
    }
}

/// On a steady store whose orders stopped 3 hours before `clock.end` (stored already), with a rule "orders
/// below 1 in the last hour" and the checkout guard (each with a channel): both fire at T and notify once;
/// the slot again, and the next slot by two runs at once, evaluate each rule once per slot and notify
/// nothing new; orders come back and the rule resolves, once, and stays quiet after.
async fn fires_once_then_resolves_once<S>(store: &S, clock: Clock)
where
    S: commerce_analytics::query::ReadStore + AlertStore + EventStore,
{
    let runner = || {
        let mut sender = Sender::new(true);
        sender.retry_base = Duration::from_millis(50);
        Runner::new(store, store, sender, "http://127.0.0.1:3000")
    };
    let run = async |minutes: i64| {
        runner()
            .run_store("shop-a", clock.t(minutes))
            .await
            .expect("run")
    };
    let first = run(0).await;
    assert_eq!(
        (
            first.evaluated,
            first.firing,
            first.notifications,
            first.delivered
        ),
        (4, 2, 2, 2),
        "{first:?}"
    );
    let again = run(0).await;
    assert_eq!((again.evaluated, again.skipped), (0, 4), "{again:?}");
    let (a, b) = tokio::join!(run(5), run(5));
    assert_eq!((a.evaluated + b.evaluated, a.skipped + b.skipped), (4, 4));
    assert_eq!(
        a.notifications + b.notifications,
        0,
        "still firing: nothing new"
    );
    store
        .insert(
            &[event(
                json!({"id": "back", "type": "order.completed", "sessionId": "s_back",
                       "properties": {"orderId": "ord_back", "total": 900, "currency": "USD"}}),
                clock.end + 2 * 60_000,
            )],
            "back",
        )
        .await
        .expect("stored");
    let resolved = run(10).await;
    assert_eq!(resolved.notifications, 1, "{resolved:?}");
    for m in [15, 20] {
        let later = run(m).await;
        assert_eq!(later.notifications, 0, "{later:?}");
    }
}

#[tokio::test]
async fn rules_fire_once_resolve_once_and_are_delivered_signed_to_safe_urls_only() {
    let receiver = Receiver::start(&["/rule"]).await;
    let db = TestDb::new("alerts").await;
    let clock = Clock::new();
    let (end, t) = (clock.end, |m: i64| clock.t(m));
    db.store
        .insert(&steady_store(end + HOUR, end - 3 * HOUR), "steady")
        .await
        .expect("stored");
    let clock_now = time::OffsetDateTime::from_unix_timestamp(t(0).as_second()).expect("now");
    let api =
        db.api(clock_now)
            .with_alerts(Arc::new(db.store.clone()), true, "http://127.0.0.1:3000");
    let send = async |method: &str, path: &str, body: Option<Value>| {
        call(&api, method, path, READ_KEY, body).await
    };

    // Rules are checked: the metric, its filters, the condition, and every webhook against SSRF.
    let rule = |url: &str| {
        json!({"name": "No orders", "metric": "orders", "condition": {"type": "below", "threshold": 1},
               "window": "1h", "cooldownMinutes": 60, "channels": [{"type": "webhook", "url": url}]})
    };
    for (body, field) in [
        (
            rule("https://169.254.169.254/latest/meta-data"),
            "channels[0].url",
        ),
        (rule("https://10.0.0.1/hook"), "channels[0].url"),
        (rule("ftp://93.184.216.34/hook"), "channels[0].url"),
        (
            json!({"name": "x", "metric": "best_sellers", "condition": {"type": "above", "threshold": 1}}),
            "metric",
        ),
        (
            json!({"name": "x", "metric": "nope", "condition": {"type": "above", "threshold": 1}}),
            "metric",
        ),
        (
            json!({"name": "x", "metric": "sessions", "filters": {"country": "usa"},
                   "condition": {"type": "above", "threshold": 1}}),
            "filters.country",
        ),
        (
            json!({"name": "x", "metric": "sessions", "window": "90m",
                   "condition": {"type": "above", "threshold": 1}}),
            "window",
        ),
        (
            json!({"name": "x", "metric": "sessions",
                   "condition": {"type": "anomaly", "weeks": 1}}),
            "condition.weeks",
        ),
        (json!({"name": "x", "metric": "sessions"}), "body"),
    ] {
        let (status, answer) = send("POST", "/analytics/alerts", Some(body.clone())).await;
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {answer}"
        );
    }
    // Loopback only where the setting allows it.
    let strict = db
        .api(clock_now)
        .with_alerts(Arc::new(db.store.clone()), false, "");
    let (status, answer) = call(
        &strict,
        "POST",
        "/analytics/alerts",
        READ_KEY,
        Some(rule(&format!("{}/rule", receiver.base))),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("unsafe_url"))
    );

    let (status, created) = send(
        "POST",
        "/analytics/alerts",
        Some(rule(&format!("{}/rule", receiver.base))),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let secret = created["signingSecret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert!(secret.starts_with("whsec_"));
    // The checkout guard notifies this store's receiver too.
    let (status, guard) = send(
        "PUT",
        "/analytics/alerts/checkout_broken",
        Some(json!({"channels": [{"type": "webhook", "url": format!("{}/guard", receiver.base)}]})),
    )
    .await;
    assert_eq!(status, 200, "{guard}");
    let (_, list) = send("GET", "/analytics/alerts", None).await;
    let ids: Vec<&str> = list["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            id.as_str(),
            "checkout_broken",
            "traffic_collapse",
            "best_seller_stockout"
        ]
    );
    let (status, answer) = send("DELETE", "/analytics/alerts/traffic_collapse", None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("built_in_guard"))
    );

    // T: no order in the last 3 hours. The rule fires (its receiver answers 500 once: one delivery, in
    // two attempts), the checkout guard fires, traffic is normal; then it resolves once.
    fires_once_then_resolves_once(&db.store, clock).await;
    let store = db.store.clone();

    let got = receiver.at("/rule");
    let kinds: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).expect("json");
            (
                body["type"].as_str().unwrap_or("").to_owned(),
                r.headers["x-analytics-delivery"].clone(),
            )
        })
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(kinds[0], kinds[1], "the retry is the same delivery");
    assert_eq!(
        kinds.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(),
        ["alert.firing", "alert.firing", "alert.resolved"]
    );
    assert_ne!(kinds[1].1, kinds[2].1);
    for r in &got {
        let ts = &r.headers["x-analytics-timestamp"];
        let want = format!(
            "v1={}",
            hmac_sha256(secret.as_bytes(), format!("{ts}.{}", r.body).as_bytes())
        );
        assert_eq!(r.headers["x-analytics-signature"], want, "signed");
    }
    let firing: Value = serde_json::from_str(&got[0].body).expect("json");
    assert_eq!(firing["rule"]["id"], id.as_str());
    assert_eq!(firing["value"], 0.0);
    assert!(firing["text"].as_str().unwrap_or("").contains("No orders"));
    assert!(
        firing["link"]
            .as_str()
            .unwrap_or("")
            .starts_with("http://127.0.0.1:3000/dashboard#")
    );
    let guard = receiver.at("/guard");
    assert_eq!(
        guard.len(),
        1,
        "the checkout guard fired once, still firing later"
    );
    let body: Value = serde_json::from_str(&guard[0].body).expect("json");
    assert_eq!(body["rule"]["id"], "checkout_broken");
    assert!(
        body["expected"]["median"].as_f64().unwrap_or(0.0) >= 10.0,
        "{body}"
    );

    // The history: every evaluation, newest first, and the deliveries (the first in two attempts).
    let (status, history) = send("GET", &format!("/analytics/alerts/{id}/history"), None).await;
    assert_eq!(status, 200, "{history}");
    let notes: Vec<&str> = history["evaluations"]
        .as_array()
        .expect("evaluations")
        .iter()
        .map(|e| e["notification"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(notes, ["", "", "resolved", "", "firing"]);
    let attempts: Vec<u64> = history["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .map(|d| d["attempts"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(attempts, [1, 2]);
    // A test notification, on demand.
    let (status, tested) = send("POST", &format!("/analytics/alerts/{id}/test"), None).await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["deliveries"][0]["delivered"], true);
    assert_eq!(receiver.at("/rule").len(), 4);
    // Muted, then deleted.
    let mut muted = rule(&format!("{}/rule", receiver.base));
    muted["muted"] = json!(true);
    let (status, saved) = send("PUT", &format!("/analytics/alerts/{id}"), Some(muted)).await;
    assert_eq!(
        (status, &saved["muted"], &saved["signingSecret"]),
        (200, &json!(true), &json!(secret))
    );
    let (status, _) = send("DELETE", &format!("/analytics/alerts/{id}"), None).await;
    assert_eq!(status, 200);
    let (status, _) = send("GET", &format!("/analytics/alerts/{id}"), None).await;
    assert_eq!(status, 404);
    assert!(
        store
            .alert_rules("shop-a")
            .await
            .expect("rules")
            .iter()
            .all(|r| r.id != id)
    );
    db.drop_database().await;
}

#[tokio::test]
async fn of_many_simultaneous_claims_of_a_slot_exactly_one_wins_and_a_claimer_asking_again_keeps_its_answer()
 {
    use futures_util::future::join_all;
    let db = TestDb::new("alert_claims").await;
    for slot in 0..5_i64 {
        let claimers: Vec<String> = (0..12).map(|i| format!("runner-{slot}-{i}")).collect();
        let won = join_all(
            claimers
                .iter()
                .map(|c| db.store.claim_slot("shop-a", "rule-1", slot, c)),
        )
        .await;
        let winners: Vec<&String> = claimers
            .iter()
            .zip(&won)
            .filter(|(_, w)| *w.as_ref().expect("claim"))
            .map(|(c, _)| c)
            .collect();
        assert_eq!(winners.len(), 1, "slot {slot}: winners {winners:?}");
        for (c, w) in claimers.iter().zip(&won) {
            let again = db
                .store
                .claim_slot("shop-a", "rule-1", slot, c)
                .await
                .expect("claim again");
            assert_eq!(again, *w.as_ref().expect("claim"), "{c} asking again");
        }
    }
    db.drop_database().await;
}

#[tokio::test]
async fn the_guards_stay_silent_on_30_days_of_normal_demo_traffic() {
    use commerce_analytics::demo::{DemoConfig, DemoGenerator};
    use futures_util::StreamExt;
    let db = TestDb::new("alerts_demo").await;
    // The demo's last 60 days up to the last Monday 00:00 UTC: the same traffic whenever the test runs
    // (the generator is seeded and its days and hours follow the end's weekday and hour).
    let real_day = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .div_euclid(86_400);
    let monday = real_day - (real_day + 3).rem_euclid(7);
    let end = monday * 24 * HOUR;
    let end_time = time::OffsetDateTime::from_unix_timestamp(end / 1000).expect("end");
    let v = integration_tests::validator();
    let events: Vec<Event> = DemoGenerator::new(DemoConfig {
        seed: 7,
        events: 1_200_000,
        days: 60,
        end: end_time,
    })
    .map(|w| {
        v.validate(w, "shop-a", &RequestMeta::default(), end_time)
            .expect("valid")
    })
    .collect();
    // One batch id per chunk: a batch id is the insert's deduplication token.
    for (i, chunk) in events.chunks(50_000).enumerate() {
        db.store
            .insert(chunk, &format!("demo-{i}"))
            .await
            .expect("stored");
    }
    let now = jiff::Timestamp::from_millisecond(end).expect("now");
    let queries = GuardQueries::of(&db.store, "shop-a", now)
        .await
        .expect("queries");
    let values = Values::new(&db.store);
    // Every hour of the 30 days, as the evaluation at 5 past that hour sees it.
    let cases: Vec<(Guard, i64)> = (0..30 * 24)
        .flat_map(|h| [Guard::CheckoutBroken, Guard::TrafficCollapse].map(|g| (g, end - h * HOUR)))
        .collect();
    let outcomes: Vec<(Guard, i64, evaluate::Outcome)> = futures_util::stream::iter(cases)
        .map(|(g, at)| {
            let (values, queries) = (&values, &queries);
            async move {
                let o = evaluate::guard(values, "shop-a", queries, g, at)
                    .await
                    .expect("evaluated");
                (g, at, o)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut report = Vec::new();
    for g in [Guard::CheckoutBroken, Guard::TrafficCollapse] {
        let of: Vec<&evaluate::Outcome> = outcomes
            .iter()
            .filter(|(x, ..)| *x == g)
            .map(|(.., o)| o)
            .collect();
        // Active: the history was enough and the expected volume large enough to judge.
        let active = of
            .iter()
            .filter(|o| o.detail.is_empty() || o.detail.starts_with("sessions") || o.firing)
            .count();
        let alarms: Vec<_> = of
            .iter()
            .filter(|o| o.firing)
            .map(|o| (o.window_to, o.value, o.expected))
            .collect();
        eprintln!(
            "{}: {} hourly evaluations over 30 days of demo traffic, {active} active, {} false alarms",
            g.id(),
            of.len(),
            alarms.len()
        );
        report.push((g.id(), of.len(), active, alarms));
    }
    let (checkout, traffic) = (&report[0], &report[1]);
    assert!(
        traffic.2 * 10 >= traffic.1 * 9,
        "traffic collapse judged at least 90% of the hours: {} of {}",
        traffic.2,
        traffic.1
    );
    // The demo is a small store (about 1.8 orders an hour): only its busiest hours expect the 10 orders
    // (in 6 hours) the checkout guard needs to tell an outage from a quiet spell.
    assert!(
        checkout.2 * 20 >= checkout.1,
        "checkout broken judged at least 5% of the hours (the busy ones): {} of {}",
        checkout.2,
        checkout.1
    );
    assert_eq!(checkout.3, [], "checkout broken: false alarms");
    assert_eq!(traffic.3, [], "traffic collapse: false alarms");
    db.drop_database().await;
}

#[tokio::test]
async fn on_bigquery_rules_fire_once_resolve_once_and_each_slot_is_evaluated_once() {
    use commerce_analytics::alerts::{Channel, GuardSettings, RuleBody, RuleInput, StoredRule};
    let receiver = Receiver::start(&[]).await;
    let bq = integration_tests::test_bigquery("alerts").await;
    let clock = Clock::new();
    let (end, t) = (clock.end, |m: i64| clock.t(m));
    bq.insert(&steady_store(end + HOUR, end - 3 * HOUR), "steady")
        .await
        .expect("stored");
    let hook = |path: &str| Channel::Webhook {
        url: format!("{}{path}", receiver.base),
    };
    let rule = StoredRule {
        id: "alert_bq".into(),
        body: RuleBody::Custom(RuleInput {
            name: "No orders".into(),
            metric: "orders".into(),
            filters: Default::default(),
            currency: None,
            condition: commerce_analytics::alerts::Condition::Below { threshold: 1.0 },
            window: "1h".into(),
            interval_minutes: 5,
            cooldown_minutes: 60,
            channels: vec![hook("/rule")],
            muted: false,
        }),
        signing_secret: "whsec_bq".into(),
    };
    let guard = StoredRule {
        id: "checkout_broken".into(),
        body: RuleBody::Guard(
            Guard::CheckoutBroken,
            GuardSettings {
                channels: vec![hook("/guard")],
                muted: false,
            },
        ),
        signing_secret: "whsec_guard".into(),
    };
    for r in [&rule, &guard] {
        bq.save_alert_rule("shop-a", r, t(0)).await.expect("saved");
    }
    assert_eq!(
        bq.alert_rules("shop-a").await.expect("rules"),
        [rule.clone(), guard.clone()]
    );
    fires_once_then_resolves_once(&bq, clock).await;
    let types = |path: &str| -> Vec<String> {
        receiver
            .at(path)
            .iter()
            .map(|r| {
                let body: Value = serde_json::from_str(&r.body).expect("json");
                body["type"].as_str().unwrap_or("").to_owned()
            })
            .collect()
    };
    assert_eq!(types("/rule"), ["alert.firing", "alert.resolved"]);
    assert_eq!(types("/guard"), ["alert.firing"]);
    let commerce_analytics::alerts::History {
        evaluations,
        deliveries,
    } = bq
        .alert_history("shop-a", "alert_bq", 10)
        .await
        .expect("history");
    assert_eq!(
        evaluations
            .iter()
            .map(|e| e.notification.as_str())
            .collect::<Vec<_>>(),
        ["", "", "resolved", "", "firing"]
    );
    assert_eq!(evaluations[4].value, Some(0.0));
    assert_eq!(deliveries.len(), 2);
    bq.delete_alert_rule("shop-a", "alert_bq", t(20))
        .await
        .expect("deleted");
    assert_eq!(bq.alert_rules("shop-a").await.expect("rules"), [guard]);
    bq.drop_dataset().await.expect("drop");
}

#[tokio::test]
async fn an_sns_channel_publishes_each_notification_to_its_topic_on_moto() {
    use commerce_analytics::alerts::{Channel, RuleBody, RuleInput, StoredRule};
    let moto = std::env::var("AWS_ENDPOINT_URL_SNS").unwrap_or_else(|_| {
        panic!(
            "AWS_ENDPOINT_URL_SNS is not set. The SNS test runs the real AWS SDK against moto: run it with \
             scripts/test, or `scripts/moto start` and export AWS_ENDPOINT_URL_SNS=http://127.0.0.1:5000 \
             AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
        )
    });
    let cfg = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let sns = aws_sdk_sns::Client::new(&cfg);
    let topic = sns
        .create_topic()
        .name(format!("alerts-{}", ulid::Ulid::new()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("moto at {moto}: {e}"))
        .topic_arn
        .expect("arn");
    // An HTTP subscriber stands in for an email address: moto delivers to it as SNS would.
    let receiver = Receiver::start(&[]).await;
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("http")
        .endpoint(format!("{}/sns", receiver.base))
        .send()
        .await
        .expect("subscribed");

    let db = TestDb::new("alerts_sns").await;
    let rule = StoredRule {
        id: "alert_sns".into(),
        body: RuleBody::Custom(RuleInput {
            name: "Revenue drop".into(),
            metric: "revenue".into(),
            filters: Default::default(),
            currency: Some("USD".into()),
            condition: commerce_analytics::alerts::Condition::Below { threshold: 100.0 },
            window: "1h".into(),
            interval_minutes: 5,
            cooldown_minutes: 60,
            channels: vec![Channel::Sns {
                topic_arn: topic.clone(),
            }],
            muted: false,
        }),
        signing_secret: "whsec_sns".into(),
    };
    db.store
        .save_alert_rule("shop-a", &rule, jiff::Timestamp::now())
        .await
        .expect("saved");
    let runner = Runner::new(&db.store, &db.store, Sender::new(false), "");
    // No revenue at all in the last hour: it fires, published once to the topic.
    let report = runner
        .run_store("shop-a", jiff::Timestamp::now())
        .await
        .expect("run");
    assert_eq!(
        (report.notifications, report.delivered, report.failed),
        (1, 1, 0),
        "{report:?}"
    );
    assert!(
        integration_tests::eventually(Duration::from_secs(10), || async {
            !receiver.at("/sns").is_empty()
        })
        .await,
        "moto delivers to the subscriber"
    );
    let got = receiver.at("/sns");
    assert_eq!(got.len(), 1);
    let note: Value = serde_json::from_str(&got[0].body).expect("json");
    assert_eq!(note["Type"], "Notification");
    assert_eq!(note["TopicArn"], topic.as_str());
    assert_eq!(note["Subject"], "Firing: Revenue drop");
    let message = note["Message"].as_str().unwrap_or("");
    assert!(
        message.starts_with("🔴 Firing: Revenue drop (shop-a)"),
        "{message}"
    );
    assert!(message.contains("\"type\": \"alert.firing\""), "{message}");
    // A bad ARN is refused through the API, naming the field.
    let api =
        db.api(time::OffsetDateTime::now_utc())
            .with_alerts(Arc::new(db.store.clone()), false, "");
    let (status, answer) = call(
        &api,
        "POST",
        "/analytics/alerts",
        READ_KEY,
        Some(json!({"name": "x", "metric": "orders", "condition": {"type": "below", "threshold": 1},
                    "channels": [{"type": "sns", "topicArn": "arn:aws:sqs:us-east-1:123456789012:q"}]})),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["field"].as_str()),
        (400, Some("channels[0].topicArn"))
    );
    db.drop_database().await;
}

#[tokio::test]
async fn the_stockout_guard_names_the_best_sellers_at_stock_zero_only() {
    let db = TestDb::new("alerts_stock").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let mut events = Vec::new();
    // Twelve products; product pN sells N units over the last days, so p3..p12 are the 10 best sellers.
    for n in 1..=12_i64 {
        events.push(event(
            json!({"id": format!("o{n}"), "type": "order.completed", "sessionId": format!("s{n}"),
                   "properties": {"orderId": format!("ord{n}"), "total": 100 * n, "currency": "USD",
                                  "items": [{"productId": format!("p{n}"), "quantity": n, "price": 100}]}}),
            now - n * HOUR,
        ));
        // Stock after the sales: p5 and p1 are sold out, the others are not.
        let stock = if n == 5 || n == 1 { 0 } else { 10 };
        events.push(event(
            json!({"id": format!("inv{n}"), "type": "inventory.updated",
                   "properties": {"productId": format!("p{n}"), "quantity": stock}}),
            now - 30 * 60_000,
        ));
    }
    db.store.insert(&events, "stock").await.expect("stored");
    let at = jiff::Timestamp::from_millisecond(now).expect("now");
    let queries = GuardQueries::of(&db.store, "shop-a", at)
        .await
        .expect("queries");
    let values = Values::new(&db.store);
    let o = evaluate::guard(&values, "shop-a", &queries, Guard::BestSellerStockout, now)
        .await
        .expect("evaluated");
    // p1 is out of stock too, but not among the 10 best sellers.
    assert!(o.firing, "{o:?}");
    assert_eq!(o.value, Some(1.0));
    assert_eq!(o.detail, "out of stock: p5");
    // Restocked: silent.
    db.store
        .insert(
            &[event(
                json!({"id": "inv5b", "type": "inventory.updated",
                       "properties": {"productId": "p5", "quantity": 4}}),
                now - 60_000,
            )],
            "restock",
        )
        .await
        .expect("stored");
    let o = evaluate::guard(
        &Values::new(&db.store),
        "shop-a",
        &queries,
        Guard::BestSellerStockout,
        now,
    )
    .await
    .expect("evaluated");
    assert!(!o.firing, "{o:?}");
    db.drop_database().await;
}
