//! Marketing attribution: `GET /analytics/metrics?metric=attribution` — which channels the period's
//! revenue came from, each order's revenue split across the visits that led to it.
//!
//! **Orders**: the period's completed orders in `currency` (default the store's main one), each once at
//! its first completion, under the read's filters: the orders and revenue of `metric=revenue`.
//!
//! **Tying an order to its visits** (its *link*, reported per order):
//! - `session`: the order event carries a `sessionId` (a storefront order);
//! - `cart`: a backend order without a session whose `cartId` was sent by a cart or checkout event of the
//!   storefront: the visitor of that event (its session, anonymous id, customer id);
//! - `anonymous_id`, else `customer_id`: what the order event itself carries;
//! - `none`: nothing to tie it with.
//!
//! **Touches**: the visitor's sessions (a session is a touch) that started within `lookback` (default
//! `30d`, `1d`..`365d`) before the order, up to the order itself: the order's session, its cart events'
//! sessions, and the sessions with one of the anonymous or customer ids the order or its cart events
//! carry. A customer who browsed anonymously on a phone and bought logged in on a laptop has both
//! devices' sessions as touches once the phone session logged in too.
//!
//! **Models** ([`Model`]), each order's credit (1 order, its revenue) split across its touches in time
//! order: `first_touch` all to the first; `last_touch` all to the last; `last_non_direct` all to the last
//! touch whose source is not `direct`, else to the last (Google Analytics' classic default, and ours);
//! `linear` equally; `position_based` 40 % first, 40 % last, 20 % shared by the touches between (two
//! touches: half each); `time_decay` by weight 2^(−age/halfLife), age = order time − session start,
//! `halfLife` default `7d`.
//!
//! **Channels** (`by`, [`Channel`]): the session's `source` (as `traffic_sources` names it), its first
//! `utm_medium`, its first `utm_campaign` or its first referrer's domain; an empty value is `(none)`. An
//! order without touches goes to the row `(unattributed)`, so the rows add up to the revenue metric: rows'
//! `revenue` (minor units; the fractional credits rounded by largest remainder, so they sum exactly to the
//! total) and `orders` (fractional credits, 4 decimals) sum to `total`. `share` is the row's share of
//! the orders (its conversion share). `attributed` says how much revenue found touches, and by which link.
//!
//! The store returns typed facts ([`AttributionFacts`]: the orders, the carts they name, the candidate
//! sessions); every rule above is applied here, once, for every warehouse.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use super::params::{Filters, Params, Range};
use crate::error::{Error, Result};

pub const NAME: &str = "attribution";

/// The parameters only attribution takes.
pub const PARAMS: [&str; 4] = ["model", "by", "lookback", "halfLife"];

/// The row of orders without touches.
pub const UNATTRIBUTED: &str = "(unattributed)";
/// An empty channel value.
pub const NONE: &str = "(none)";

const DAY_MS: i64 = 86_400_000;

/// How an order's credit is split across its touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    FirstTouch,
    LastTouch,
    LastNonDirect,
    Linear,
    PositionBased,
    TimeDecay,
}

impl Model {
    pub const ALL: [Model; 6] = [
        Model::FirstTouch,
        Model::LastTouch,
        Model::LastNonDirect,
        Model::Linear,
        Model::PositionBased,
        Model::TimeDecay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Model::FirstTouch => "first_touch",
            Model::LastTouch => "last_touch",
            Model::LastNonDirect => "last_non_direct",
            Model::Linear => "linear",
            Model::PositionBased => "position_based",
            Model::TimeDecay => "time_decay",
        }
    }

    fn parse(s: &str) -> Result<Model> {
        Model::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "invalid_parameter",
                    "model",
                    format!(
                        "model must be one of {}, not {s:?}",
                        Model::ALL.map(Model::name).join(", ")
                    ),
                )
            })
    }
}

/// What a touch is credited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Source,
    Medium,
    Campaign,
    ReferrerDomain,
}

impl Channel {
    pub const ALL: [Channel; 4] = [
        Channel::Source,
        Channel::Medium,
        Channel::Campaign,
        Channel::ReferrerDomain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Channel::Source => "source",
            Channel::Medium => "medium",
            Channel::Campaign => "campaign",
            Channel::ReferrerDomain => "referrer_domain",
        }
    }

    fn parse(s: &str) -> Result<Channel> {
        Channel::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "invalid_parameter",
                    "by",
                    format!(
                        "by must be one of {}, not {s:?}",
                        Channel::ALL.map(Channel::name).join(", ")
                    ),
                )
            })
    }

    fn of(self, s: &SessionFact) -> &str {
        let v = match self {
            Channel::Source => &s.source,
            Channel::Medium => &s.medium,
            Channel::Campaign => &s.campaign,
            Channel::ReferrerDomain => &s.referrer_domain,
        };
        if v.is_empty() { NONE } else { v }
    }
}

/// How an order was tied to its visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Link {
    Session,
    Cart,
    AnonymousId,
    CustomerId,
    None,
}

impl Link {
    pub fn name(self) -> &'static str {
        match self {
            Link::Session => "session",
            Link::Cart => "cart",
            Link::AnonymousId => "anonymous_id",
            Link::CustomerId => "customer_id",
            Link::None => "none",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttributionQuery {
    pub store_id: String,
    pub range: Range,
    pub currency: String,
    pub filters: Filters,
    pub include_bots: bool,
    pub model: Model,
    pub by: Channel,
    /// Whole days before an order whose sessions are its touches.
    pub lookback_days: i64,
    /// `time_decay`'s half-life, whole days.
    pub half_life_days: i64,
}

impl AttributionQuery {
    /// Where the touches are read from: the period's start less the lookback (Unix milliseconds).
    pub fn touches_from_ms(&self) -> i64 {
        self.range.from_ms() - self.lookback_days * DAY_MS
    }
}

/// A completed order of the period (first completion), in the query's currency. Ids the event did not
/// carry are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFact {
    pub order_id: String,
    /// First completion, Unix milliseconds.
    pub at_ms: i64,
    pub amount: i64,
    pub session_id: String,
    pub cart_id: String,
    pub anonymous_id: String,
    pub customer_id: String,
}

/// The visitor of the cart and checkout events that named a cart an order names (any one of them; a
/// cart belongs to one visitor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartFact {
    pub cart_id: String,
    pub session_id: String,
    pub anonymous_id: String,
    pub customer_id: String,
}

/// A session between the touches' start and the period's end that may be a touch of an order (the
/// adapter may return more sessions than needed, never fewer: every session with an event carrying the
/// session, anonymous or customer id of an order or of its cart events): its start (first event),
/// channels and visitor ids (any non-empty one). `medium` may be empty unless the report is by medium
/// (the ClickHouse adapter then reads the other channels from its session rollup, which keeps no medium).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFact {
    pub session_id: String,
    pub start_ms: i64,
    pub source: String,
    pub medium: String,
    pub campaign: String,
    pub referrer_domain: String,
    pub anonymous_id: String,
    pub customer_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributionFacts {
    pub orders: Vec<OrderFact>,
    pub carts: Vec<CartFact>,
    pub sessions: Vec<SessionFact>,
}

/// Parses an attribution request (`p` already checked against the metrics endpoint's parameters).
pub fn parse(
    p: &Params,
    store_id: &str,
    range: Range,
    currency: String,
) -> Result<AttributionQuery> {
    if let Some(k) = [
        "productId",
        "compare",
        "limit",
        "breakdown",
        "sort",
        "order",
    ]
    .into_iter()
    .find(|k| p.get(k).is_some())
    {
        return Err(Error::invalid(
            "invalid_parameter",
            k,
            format!("attribution takes no {k}"),
        ));
    }
    let model = p
        .get("model")
        .map_or(Ok(Model::LastNonDirect), Model::parse)?;
    if p.get("halfLife").is_some() && model != Model::TimeDecay {
        return Err(Error::invalid(
            "invalid_parameter",
            "halfLife",
            "halfLife applies to model=time_decay only",
        ));
    }
    Ok(AttributionQuery {
        store_id: store_id.to_owned(),
        range,
        currency,
        filters: p.filters()?,
        include_bots: p.include_bots()?,
        model,
        by: p.get("by").map_or(Ok(Channel::Source), Channel::parse)?,
        lookback_days: days(p.get("lookback"), "lookback", 30)?,
        half_life_days: days(p.get("halfLife"), "halfLife", 7)?,
    })
}

/// `Nd`, 1 to 365 days.
fn days(v: Option<&str>, field: &str, default: i64) -> Result<i64> {
    let Some(v) = v else {
        return Ok(default);
    };
    v.strip_suffix('d')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| (1..=365).contains(n))
        .ok_or_else(|| {
            Error::invalid(
                "invalid_parameter",
                field,
                format!("{field} must be whole days from 1d to 365d, like 30d; not {v:?}"),
            )
        })
}

/// One order's credit to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Credit {
    pub channel: String,
    pub weight: f64,
}

/// What each order of the period was tied by and credited to.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderCredit {
    pub order_id: String,
    pub amount: i64,
    pub link: Link,
    /// Empty when the order has no touch (it goes to [`UNATTRIBUTED`]).
    pub credits: Vec<Credit>,
}

/// Applies the link, lookback and model rules to the facts: each order's credits.
pub fn credit(q: &AttributionQuery, facts: &AttributionFacts) -> Vec<OrderCredit> {
    let carts: HashMap<&str, &CartFact> = facts
        .carts
        .iter()
        .map(|c| (c.cart_id.as_str(), c))
        .collect();
    let mut by_session: HashMap<&str, usize> = HashMap::new();
    let mut by_anonymous: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_customer: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in facts.sessions.iter().enumerate() {
        by_session.insert(&s.session_id, i);
        if !s.anonymous_id.is_empty() {
            by_anonymous.entry(&s.anonymous_id).or_default().push(i);
        }
        if !s.customer_id.is_empty() {
            by_customer.entry(&s.customer_id).or_default().push(i);
        }
    }
    let lookback_ms = q.lookback_days * DAY_MS;
    // In time order, so the sums of fractional credits add up in the same order on every warehouse.
    let mut orders: Vec<&OrderFact> = facts.orders.iter().collect();
    orders.sort_by(|a, b| (a.at_ms, &a.order_id).cmp(&(b.at_ms, &b.order_id)));
    orders
        .into_iter()
        .map(|o| {
            let cart = (!o.cart_id.is_empty())
                .then(|| carts.get(o.cart_id.as_str()).copied())
                .flatten();
            let link = if !o.session_id.is_empty() {
                Link::Session
            } else if cart.is_some() {
                Link::Cart
            } else if !o.anonymous_id.is_empty() {
                Link::AnonymousId
            } else if !o.customer_id.is_empty() {
                Link::CustomerId
            } else {
                Link::None
            };
            // Every id known for the visitor: the order's and its cart's.
            let mut sessions: Vec<&str> = vec![&o.session_id];
            let mut anonymous: Vec<&str> = vec![&o.anonymous_id];
            let mut customers: Vec<&str> = vec![&o.customer_id];
            if let Some(c) = cart {
                sessions.push(&c.session_id);
                anonymous.push(&c.anonymous_id);
                customers.push(&c.customer_id);
            }
            let mut touches: Vec<&SessionFact> = sessions
                .iter()
                .filter_map(|s| by_session.get(s).copied())
                .chain(
                    anonymous
                        .iter()
                        .filter(|a| !a.is_empty())
                        .flat_map(|a| by_anonymous.get(a).into_iter().flatten().copied()),
                )
                .chain(
                    customers
                        .iter()
                        .filter(|c| !c.is_empty())
                        .flat_map(|c| by_customer.get(c).into_iter().flatten().copied()),
                )
                .collect::<HashSet<usize>>()
                .into_iter()
                .map(|i| &facts.sessions[i])
                .filter(|s| s.start_ms <= o.at_ms && s.start_ms >= o.at_ms - lookback_ms)
                .collect();
            touches.sort_by(|a, b| (a.start_ms, &a.session_id).cmp(&(b.start_ms, &b.session_id)));
            let weights = weights(q, o.at_ms, &touches);
            OrderCredit {
                order_id: o.order_id.clone(),
                amount: o.amount,
                link,
                credits: touches
                    .iter()
                    .zip(weights)
                    .filter(|(_, w)| *w > 0.0)
                    .map(|(s, weight)| Credit {
                        channel: q.by.of(s).to_owned(),
                        weight,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Each touch's share of an order's credit (touches in time order; the shares sum to 1).
fn weights(q: &AttributionQuery, at_ms: i64, touches: &[&SessionFact]) -> Vec<f64> {
    let n = touches.len();
    let mut w = vec![0.0; n];
    if n == 0 {
        return w;
    }
    match q.model {
        Model::FirstTouch => w[0] = 1.0,
        Model::LastTouch => w[n - 1] = 1.0,
        Model::LastNonDirect => {
            let i = touches
                .iter()
                .rposition(|s| s.source != "direct")
                .unwrap_or(n - 1);
            w[i] = 1.0;
        }
        Model::Linear => w.fill(1.0 / n as f64),
        Model::PositionBased => match n {
            1 => w[0] = 1.0,
            2 => w.fill(0.5),
            _ => {
                w.fill(0.2 / (n - 2) as f64);
                w[0] = 0.4;
                w[n - 1] = 0.4;
            }
        },
        Model::TimeDecay => {
            let half_life = (q.half_life_days * DAY_MS) as f64;
            for (x, s) in w.iter_mut().zip(touches) {
                *x = (-((at_ms - s.start_ms) as f64) / half_life).exp2();
            }
            let sum: f64 = w.iter().sum();
            w.iter_mut().for_each(|x| *x /= sum);
        }
    }
    w
}

/// A channel's row before rounding.
#[derive(Debug, Default)]
struct Row {
    orders: f64,
    revenue: f64,
}

/// Integers that sum to `total` from fractional parts that sum to it (largest remainder: each part's
/// floor, then one unit more to the parts with the largest remainders; ties to the first).
fn largest_remainder(parts: &[f64], total: i64) -> Vec<i64> {
    let mut out: Vec<i64> = parts.iter().map(|p| p.floor() as i64).collect();
    let mut left = total - out.iter().sum::<i64>();
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (parts[a] - parts[a].floor(), parts[b] - parts[b].floor());
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for i in order.into_iter().cycle().take(parts.len().max(1) * 2) {
        if left == 0 || parts.is_empty() {
            break;
        }
        let step = left.signum();
        out[i] += step;
        left -= step;
    }
    out
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The answer for the credits of the period's orders.
pub fn answer(q: &AttributionQuery, credits: &[OrderCredit]) -> Value {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut by_link: BTreeMap<Link, (i64, i64)> = BTreeMap::new();
    let (mut attributed_orders, mut attributed_revenue) = (0_i64, 0_i64);
    for o in credits {
        if o.credits.is_empty() {
            let r = rows.entry(UNATTRIBUTED.to_owned()).or_default();
            r.orders += 1.0;
            r.revenue += o.amount as f64;
            continue;
        }
        attributed_orders += 1;
        attributed_revenue += o.amount;
        let l = by_link.entry(o.link).or_default();
        l.0 += 1;
        l.1 += o.amount;
        for c in &o.credits {
            let r = rows.entry(c.channel.clone()).or_default();
            r.orders += c.weight;
            r.revenue += c.weight * o.amount as f64;
        }
    }
    let total_orders = credits.len() as i64;
    let total_revenue: i64 = credits.iter().map(|o| o.amount).sum();
    let names: Vec<String> = rows.keys().cloned().collect();
    let revenue = largest_remainder(
        &rows.values().map(|r| r.revenue).collect::<Vec<_>>(),
        total_revenue,
    );
    let mut out: Vec<(String, f64, i64)> = names
        .into_iter()
        .zip(rows.values().map(|r| r.orders))
        .zip(revenue)
        .map(|((n, o), r)| (n, o, r))
        .collect();
    // Most revenue first; the unattributed row last.
    out.sort_by(|a, b| {
        (a.0 == UNATTRIBUTED)
            .cmp(&(b.0 == UNATTRIBUTED))
            .then(b.2.cmp(&a.2))
            .then(a.0.cmp(&b.0))
    });
    let share = |part: f64, whole: f64| {
        if whole > 0.0 {
            round4(part / whole)
        } else {
            0.0
        }
    };
    let mut body = json!({
        "metric": NAME,
        "model": q.model.name(),
        "by": q.by.name(),
        "lookback": format!("{}d", q.lookback_days),
        "period": q.range.label,
        "timezone": q.range.tz_name,
        "currency": q.currency,
        "rows": out.iter().map(|(channel, orders, revenue)| json!({
            "channel": channel,
            "orders": round4(*orders),
            "revenue": revenue,
            "share": share(*orders, total_orders as f64),
        })).collect::<Vec<_>>(),
        "total": {"orders": total_orders, "revenue": total_revenue},
        "attributed": {
            "orders": attributed_orders,
            "revenue": attributed_revenue,
            "share": share(attributed_revenue as f64, total_revenue as f64),
            "byLink": by_link.iter().map(|(link, (orders, revenue))| json!({
                "link": link.name(), "orders": orders, "revenue": revenue,
            })).collect::<Vec<_>>(),
        },
    });
    if q.model == Model::TimeDecay {
        body["halfLife"] = Value::from(format!("{}d", q.half_life_days));
    }
    body
}

/// Runs the report.
pub async fn run(store: &dyn super::ReadStore, q: &AttributionQuery) -> Result<Value> {
    let facts = store.attribution(q).await?;
    Ok(answer(q, &credit(q, &facts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(model: Model) -> AttributionQuery {
        let p = Params::parse("period=30d&timezone=UTC", &super::super::params::SHARED)
            .expect("params");
        AttributionQuery {
            store_id: "s".into(),
            range: p
                .range(jiff::Timestamp::from_second(1_800_000_000).expect("ts"))
                .expect("range"),
            currency: "USD".into(),
            filters: Filters::default(),
            include_bots: false,
            model,
            by: Channel::Source,
            lookback_days: 30,
            half_life_days: 7,
        }
    }

    fn session(id: &str, day: i64, source: &str, anonymous: &str) -> SessionFact {
        SessionFact {
            session_id: id.into(),
            start_ms: day * DAY_MS,
            source: source.into(),
            medium: String::new(),
            campaign: String::new(),
            referrer_domain: String::new(),
            anonymous_id: anonymous.into(),
            customer_id: String::new(),
        }
    }

    fn order(id: &str, day: i64, amount: i64, session: &str, anonymous: &str) -> OrderFact {
        OrderFact {
            order_id: id.into(),
            at_ms: day * DAY_MS + 1,
            amount,
            session_id: session.into(),
            cart_id: String::new(),
            anonymous_id: anonymous.into(),
            customer_id: String::new(),
        }
    }

    /// Four sessions (google, direct, newsletter, direct) then an order in the last one.
    fn journey() -> AttributionFacts {
        AttributionFacts {
            orders: vec![order("o1", 100, 1_000, "s4", "a")],
            carts: vec![],
            sessions: vec![
                session("s1", 91, "google", "a"),
                session("s2", 95, "direct", "a"),
                session("s3", 98, "newsletter", "a"),
                session("s4", 100, "direct", "a"),
                // Too early for a 30-day lookback, and another visitor's.
                session("s0", 60, "tiktok", "a"),
                session("x", 99, "bing", "b"),
            ],
        }
    }

    #[test]
    fn each_model_splits_one_order_across_its_touches_as_documented() {
        let decay = |days: f64| (-days / 7.0).exp2();
        let sum = decay(9.0) + decay(5.0) + decay(2.0) + decay(0.0);
        for (model, want) in [
            (Model::FirstTouch, vec![("google", 1.0)]),
            (Model::LastTouch, vec![("direct", 1.0)]),
            (Model::LastNonDirect, vec![("newsletter", 1.0)]),
            (
                Model::Linear,
                vec![("google", 0.25), ("direct", 0.5), ("newsletter", 0.25)],
            ),
            (
                Model::PositionBased,
                vec![("google", 0.4), ("direct", 0.5), ("newsletter", 0.1)],
            ),
            (
                Model::TimeDecay,
                vec![
                    ("google", decay(9.0) / sum),
                    ("direct", (decay(5.0) + decay(0.0)) / sum),
                    ("newsletter", decay(2.0) / sum),
                ],
            ),
        ] {
            let credits = credit(&query(model), &journey());
            let mut got: BTreeMap<String, f64> = BTreeMap::new();
            for c in &credits[0].credits {
                *got.entry(c.channel.clone()).or_default() += c.weight;
            }
            assert_eq!(got.len(), want.len(), "{model:?}: {got:?}");
            for (channel, w) in want {
                assert!(
                    (got[channel] - w).abs() < 1e-9,
                    "{model:?} {channel}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn a_backend_order_ties_by_cart_then_anonymous_then_customer_id() {
        let mut facts = journey();
        facts.orders = vec![
            OrderFact {
                cart_id: "c1".into(),
                ..order("by_cart", 100, 10, "", "")
            },
            OrderFact {
                cart_id: "unknown".into(),
                ..order("by_anonymous", 100, 10, "", "b")
            },
            OrderFact {
                customer_id: "nobody".into(),
                ..order("by_customer", 100, 10, "", "")
            },
            order("no_link", 100, 10, "", ""),
        ];
        facts.carts = vec![CartFact {
            cart_id: "c1".into(),
            session_id: "s3".into(),
            anonymous_id: "a".into(),
            customer_id: String::new(),
        }];
        let credits = credit(&query(Model::LastTouch), &facts);
        let got: BTreeMap<&str, (Link, Vec<&str>)> = credits
            .iter()
            .map(|c| {
                (
                    c.order_id.as_str(),
                    (
                        c.link,
                        c.credits.iter().map(|x| x.channel.as_str()).collect(),
                    ),
                )
            })
            .collect();
        assert_eq!(
            got,
            BTreeMap::from([
                // The cart's events name their visitor `a`, whose last touch is s4.
                ("by_cart", (Link::Cart, vec!["direct"])),
                ("by_anonymous", (Link::AnonymousId, vec!["bing"])),
                ("by_customer", (Link::CustomerId, vec![])),
                ("no_link", (Link::None, vec![])),
            ])
        );
    }

    #[test]
    fn rows_add_up_to_the_orders_and_revenue_exactly() {
        let mut facts = journey();
        facts.orders.push(order("o2", 100, 333, "x", "b"));
        facts.orders.push(order("o3", 100, 1, "", ""));
        let q = query(Model::Linear);
        let body = answer(&q, &credit(&q, &facts));
        let rows = body["rows"].as_array().expect("rows");
        let revenue: i64 = rows
            .iter()
            .map(|r| r["revenue"].as_i64().unwrap_or(0))
            .sum();
        let orders: f64 = rows
            .iter()
            .map(|r| r["orders"].as_f64().unwrap_or(0.0))
            .sum();
        assert_eq!(revenue, 1_334);
        assert!((orders - 3.0).abs() < 1e-9);
        assert_eq!(body["total"], json!({"orders": 3, "revenue": 1_334}));
        assert_eq!(
            rows.last().map(|r| &r["channel"]),
            Some(&json!(UNATTRIBUTED))
        );
        assert_eq!(body["attributed"]["revenue"], 1_333);
        assert_eq!(
            body["attributed"]["byLink"],
            json!([{"link": "session", "orders": 2, "revenue": 1_333}])
        );
    }

    #[test]
    fn largest_remainder_keeps_the_total() {
        for (parts, total, want) in [
            (vec![333.5, 333.5, 333.0], 1_000, vec![334, 333, 333]),
            (vec![0.25, 0.25, 0.25, 0.25], 1, vec![1, 0, 0, 0]),
            (vec![], 0, vec![]),
        ] {
            assert_eq!(largest_remainder(&parts, total), want, "{parts:?}");
        }
    }

    #[test]
    fn lookback_and_half_life_are_whole_days() {
        assert_eq!(days(None, "lookback", 30).ok(), Some(30));
        assert_eq!(days(Some("7d"), "lookback", 30).ok(), Some(7));
        for bad in ["0d", "366d", "7", "7h", "-1d", "x"] {
            let e = days(Some(bad), "lookback", 30).expect_err(bad);
            assert_eq!(e.code(), "invalid_parameter");
        }
    }
}
