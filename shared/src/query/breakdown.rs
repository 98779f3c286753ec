//! Breakdowns of time-series metrics: `breakdown=<dimension>` splits a metric into its top `limit` values
//! (default 10) by the metric's total, plus `(other)` for the rest, each with its series and total.
//!
//! What a row is attributed to: every dimension but `product` is the **session's**: the first non-empty
//! value among the session's events in the range (its first country, device, browser and OS; its source
//! as `traffic_sources` defines it; its first `utm_medium` and `utm_campaign`; its landing page; its
//! referrer's domain). A session counts under its own value, an order under its session's, a visitor and a
//! product view under the session they were in. `product` is the viewed product itself (`product_views`
//! only). Rows without a session (a backend's order with no `sessionId`) and sessions without the value
//! fall under `(none)`.
//!
//! Which metrics: sessions, conversion_rate, add_to_cart_rate, orders, revenue, aov, visitors and
//! product_views take every session dimension; `product` only product_views; `net_revenue` (a refund has no
//! session) and `ltv` (a customer's lifetime spans sessions) none (400 naming `breakdown`).
//!
//! Ranking: counts and money by their total; rates and `aov` by the volume behind them (the sessions, or
//! the orders, they are computed over), so a group of one converting session does not outrank the store's
//! main source; ties by value name. The groups' totals of an additive metric (sessions, orders, revenue,
//! product_views) sum to the metric's total; distinct visitors can be active in several sessions, hence
//! under several values, and then count once in each (as in GA4 and Plausible); their `(other)` is counted
//! by the store as one group, so its distinct visitors are exact too.
//!
//! How it is read: when the groups partition what the metric counts (every metric but `visitors`, see
//! [`partitions`]) the store returns every group with its buckets in one read; the query side ranks
//! them, adds up `(other)` and gives the metric itself as their sum. For `visitors` the metric runs
//! alongside a first read of every group's total (to rank), then a second read counts the top groups
//! and `(other)` per bucket; by device, browser or OS ([`Dimension::few_values`]) the first read brings
//! every group's buckets too, and the second is made only when some group is left for `(other)`.
//! `compare` does not combine with a breakdown (400).

use serde::Serialize;
use serde_json::Value;

use super::ReadStore;
use super::metrics::{
    BucketFacts, DataPoint, Facts, Metric, MetricFacts, MetricQuery, MetricResponse,
};
use crate::error::{Error, Result};

/// What a metric can be broken down by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    Country,
    Device,
    Browser,
    Os,
    Source,
    Medium,
    Campaign,
    LandingPage,
    ReferrerDomain,
    Product,
}

impl Dimension {
    pub const ALL: [Dimension; 10] = [
        Dimension::Country,
        Dimension::Device,
        Dimension::Browser,
        Dimension::Os,
        Dimension::Source,
        Dimension::Medium,
        Dimension::Campaign,
        Dimension::LandingPage,
        Dimension::ReferrerDomain,
        Dimension::Product,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Country => "country",
            Self::Device => "device",
            Self::Browser => "browser",
            Self::Os => "os",
            Self::Source => "source",
            Self::Medium => "medium",
            Self::Campaign => "campaign",
            Self::LandingPage => "landing_page",
            Self::ReferrerDomain => "referrer_domain",
            Self::Product => "product",
        }
    }

    /// Whether the dimension's values come from a short fixed list: the user-agent parser's device
    /// families, browser and OS names (`crate::event::agent`), a few dozen at most. A metric whose groups
    /// overlap (`visitors`) then reads every group with its buckets at once, and needs no second read
    /// when they all fit in the limit (no `(other)`): visitors by browser over 30 days of the 100M-event
    /// store, one read of about 0.85 s instead of two. Other dimensions (countries, sources, pages) can
    /// have thousands of values, whose buckets the first read would fetch for nothing.
    pub fn few_values(self) -> bool {
        matches!(self, Self::Device | Self::Browser | Self::Os)
    }

    /// Whether `metric` can be broken down by this dimension (see the module docs).
    pub fn applies_to(self, metric: Metric) -> bool {
        match metric {
            Metric::NetRevenue | Metric::Ltv => false,
            Metric::ProductViews => true,
            _ => self != Self::Product,
        }
    }

    /// The dimension named `s` for `metric`, or a 400 naming `breakdown`.
    pub fn parse(s: &str, metric: Metric) -> Result<Self> {
        let Some(d) = Self::ALL.into_iter().find(|d| d.name() == s) else {
            let names: Vec<&str> = Self::ALL.iter().map(|d| d.name()).collect();
            return Err(Error::invalid(
                "invalid_parameter",
                "breakdown",
                format!(
                    "unknown breakdown {s:?}; valid breakdowns: {}",
                    names.join(", ")
                ),
            ));
        };
        if !d.applies_to(metric) {
            let valid: Vec<&str> = Self::ALL
                .iter()
                .filter(|d| d.applies_to(metric))
                .map(|d| d.name())
                .collect();
            return Err(Error::invalid(
                "invalid_parameter",
                "breakdown",
                if valid.is_empty() {
                    format!("{} cannot be broken down", metric.name())
                } else {
                    format!(
                        "{} cannot be broken down by {s}; it can by {}",
                        metric.name(),
                        valid.join(", ")
                    )
                },
            ));
        }
        Ok(d)
    }
}

/// A breakdown request: the dimension and how many values to keep before `(other)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breakdown {
    pub dimension: Dimension,
    pub limit: u32,
}

/// Which groups the store returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Groups<'a> {
    /// Every value, with buckets and totals: one read for a metric whose groups partition what it counts
    /// ([`partitions`]); the query side ranks them and adds up `(other)`.
    All,
    /// Every value, totals only (no buckets): the first of two reads, to rank them.
    AllTotals,
    /// These values apart, everything else as [`GroupKey::Other`], with buckets and totals.
    Top(&'a [String]),
}

/// Whether every row a metric counts (a session, an order, a product view) falls under exactly one value,
/// so `(other)` is the sum of the values outside the top: true for every metric but `visitors` (a visitor
/// active in sessions from two sources is one visitor under each, and once in `(other)`).
pub fn partitions(metric: Metric) -> bool {
    metric != Metric::Visitors
}

/// A group of a breakdown, as the store returns it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum GroupKey {
    /// A value of the dimension (empty: the row has none).
    Value(String),
    /// Every value outside the kept ones.
    Other,
}

/// One group's facts: per bucket (empty for [`Groups::AllTotals`]) and over the range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupFacts {
    pub key: GroupKey,
    pub buckets: Vec<BucketFacts>,
    pub total: Facts,
}

/// A group in the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    /// The value, `(none)` for rows without one, `(other)` for the values outside the top.
    pub key: String,
    /// `true` for `(other)`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub other: bool,
    pub total: Value,
    pub data_points: Vec<DataPoint>,
}

/// The name shown for a group.
pub fn label(key: &GroupKey) -> String {
    match key {
        GroupKey::Value(v) if v.is_empty() => "(none)".into(),
        GroupKey::Value(v) => v.clone(),
        GroupKey::Other => "(other)".into(),
    }
}

/// How much a group weighs when picking the top ones: the metric's total for counts and money, the
/// volume behind a rate or an average (its denominator).
pub fn weight(metric: Metric, facts: Facts) -> i64 {
    match (metric, facts) {
        (Metric::Aov, Facts::Money { orders, .. }) => orders,
        (_, Facts::Money { amount, .. } | Facts::Amount { amount }) => amount,
        (_, Facts::Count { count }) => count,
        (_, Facts::Rate { denominator, .. }) => denominator,
        (_, Facts::PerCustomer { customers, .. }) => customers,
    }
}

/// The `limit` heaviest values of `totals` (see [`weight`]), ties by value.
pub fn top(metric: Metric, totals: &[GroupFacts], limit: u32) -> Vec<String> {
    let mut ranked: Vec<(i64, &str)> = totals
        .iter()
        .filter_map(|g| match &g.key {
            GroupKey::Value(v) => Some((weight(metric, g.total), v.as_str())),
            GroupKey::Other => None,
        })
        .filter(|(w, _)| *w != 0)
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    ranked
        .into_iter()
        .take(limit as usize)
        .map(|(_, v)| v.to_owned())
        .collect()
}

/// Runs a broken-down metric: the metric itself (as without a breakdown) plus its groups, heaviest first,
/// `(other)` last when anything is left.
pub async fn run(
    store: &dyn ReadStore,
    q: &MetricQuery,
    by: Breakdown,
) -> Result<(MetricResponse, Vec<Group>)> {
    if partitions(q.metric) {
        // One read: every group; the metric itself is their sum (every row is in exactly one group).
        let all = store.metric_groups(q, by.dimension, Groups::All).await?;
        return answer_all(q, all, by);
    }
    let first = if by.dimension.few_values() {
        Groups::All
    } else {
        Groups::AllTotals
    };
    let (whole, totals) =
        futures_util::future::try_join(super::metrics::run_plain(store, q), async {
            Ok(store.metric_groups(q, by.dimension, first).await?)
        })
        .await?;
    let keep = top(q.metric, &totals, by.limit);
    let found = match first {
        Groups::All if !left_out(q.metric, &totals, &keep) => kept(totals, &keep),
        _ => second_read(store, q, by, &totals, &keep).await?,
    };
    Ok((whole, answer_groups(q, found)?))
}

/// Runs a metric broken down by each of `bys` (a dashboard's breakdowns of one metric): for each, what
/// [`run`] answers. When the metric's groups partition it and the store reads every group of each
/// dimension at once ([`ReadStore::metric_groups_at_once`]), that is one read in place of one per
/// dimension; else each runs as [`run`].
pub async fn run_each(
    store: &dyn ReadStore,
    q: &MetricQuery,
    bys: &[Breakdown],
) -> Result<Vec<(MetricResponse, Vec<Group>)>> {
    if partitions(q.metric) && bys.len() > 1 {
        let dims: Vec<Dimension> = bys.iter().map(|b| b.dimension).collect();
        if let Some(read) = store.metric_groups_at_once(q, &dims) {
            return read
                .await?
                .into_iter()
                .zip(bys)
                .map(|(all, by)| answer_all(q, all, *by))
                .collect();
        }
    }
    futures_util::future::try_join_all(bys.iter().map(|by| run(store, q, *by))).await
}

/// The answer from every group of a metric that partitions what it counts: the metric is their sum, the
/// top `by.limit` are kept and the rest is `(other)`.
fn answer_all(
    q: &MetricQuery,
    all: Vec<GroupFacts>,
    by: Breakdown,
) -> Result<(MetricResponse, Vec<Group>)> {
    let whole = super::metrics::answer(q, &sum(&all, q.metric.family().zero()))?;
    let keep = top(q.metric, &all, by.limit);
    Ok((whole, answer_groups(q, fold(all, &keep))?))
}

/// The groups as answered: labelled, each with its buckets filled.
fn answer_groups(q: &MetricQuery, found: Vec<GroupFacts>) -> Result<Vec<Group>> {
    found
        .into_iter()
        .map(|g| {
            let (points, total) = super::metrics::fill(q, &g.buckets, g.total);
            Ok(Group {
                other: g.key == GroupKey::Other,
                key: label(&g.key),
                total,
                data_points: points?,
            })
        })
        .collect()
}

/// Every group of a metric that partitions what it counts, added up: the metric's own facts (`zero`:
/// its family's, when there is no group).
fn sum(all: &[GroupFacts], zero: Facts) -> MetricFacts {
    let mut buckets: Vec<BucketFacts> = Vec::new();
    let mut total = zero;
    for g in all {
        buckets = add_buckets(&buckets, &g.buckets);
        total = total.plus(g.total);
    }
    MetricFacts { buckets, total }
}

/// The kept groups of `all` in the order of `keep`, then every other group added up as `(other)` (when
/// there is any).
fn fold(all: Vec<GroupFacts>, keep: &[String]) -> Vec<GroupFacts> {
    let mut kept: Vec<GroupFacts> = Vec::new();
    let mut other: Option<GroupFacts> = None;
    for g in all {
        match &g.key {
            GroupKey::Value(v) if keep.contains(v) => kept.push(g),
            _ => {
                other = Some(match other {
                    None => GroupFacts {
                        key: GroupKey::Other,
                        ..g
                    },
                    Some(o) => GroupFacts {
                        key: GroupKey::Other,
                        buckets: add_buckets(&o.buckets, &g.buckets),
                        total: o.total.plus(g.total),
                    },
                });
            }
        }
    }
    kept.sort_by_key(|g| match &g.key {
        GroupKey::Value(v) => keep.iter().position(|x| x == v),
        GroupKey::Other => None,
    });
    kept.extend(other);
    kept
}

/// Two bucket lists (each in order) added bucket by bucket.
fn add_buckets(a: &[BucketFacts], b: &[BucketFacts]) -> Vec<BucketFacts> {
    let mut out: Vec<BucketFacts> = a.to_vec();
    for x in b {
        match out.iter_mut().find(|o| o.start == x.start) {
            Some(o) => o.facts = o.facts.plus(x.facts),
            None => out.push(*x),
        }
    }
    out.sort_by_key(|o| o.start);
    out
}

/// Whether any group of `totals` with something in it falls outside `keep`: then there is an `(other)`.
fn left_out(metric: Metric, totals: &[GroupFacts], keep: &[String]) -> bool {
    totals.iter().any(|g| match &g.key {
        GroupKey::Value(v) => !keep.contains(v) && weight(metric, g.total) != 0,
        GroupKey::Other => true,
    })
}

/// The groups of `all` whose values are kept, in the order of `keep`: the answer when nothing is left
/// for `(other)`.
fn kept(all: Vec<GroupFacts>, keep: &[String]) -> Vec<GroupFacts> {
    let mut kept: Vec<GroupFacts> = all
        .into_iter()
        .filter(|g| matches!(&g.key, GroupKey::Value(v) if keep.contains(v)))
        .collect();
    kept.sort_by_key(|g| match &g.key {
        GroupKey::Value(v) => keep.iter().position(|x| x == v),
        GroupKey::Other => None,
    });
    kept
}

/// The second read of a metric whose groups overlap: the kept values' and `(other)`'s buckets and totals,
/// as the store counts them, heaviest first, `(other)` last when anything is left.
async fn second_read(
    store: &dyn ReadStore,
    q: &MetricQuery,
    by: Breakdown,
    totals: &[GroupFacts],
    keep: &[String],
) -> Result<Vec<GroupFacts>> {
    let others = left_out(q.metric, totals, keep);
    if keep.is_empty() && !others {
        return Ok(Vec::new());
    }
    let mut found = store
        .metric_groups(q, by.dimension, Groups::Top(keep))
        .await?;
    if !others {
        found.retain(|g| g.key != GroupKey::Other);
    }
    // Heaviest first as ranked; `(other)` last.
    let order = |k: &GroupKey| match k {
        GroupKey::Value(v) => keep.iter().position(|x| x == v).unwrap_or(usize::MAX),
        GroupKey::Other => usize::MAX,
    };
    found.sort_by_key(|g| order(&g.key));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(key: &str, total: Facts) -> GroupFacts {
        GroupFacts {
            key: GroupKey::Value(key.into()),
            buckets: Vec::new(),
            total,
        }
    }

    #[test]
    fn counts_and_money_rank_by_total_rates_and_averages_by_their_volume() {
        let money = |amount, orders| Facts::Money { amount, orders };
        let totals = [
            group("a", money(100, 10)),
            group("b", money(500, 1)),
            group("c", money(300, 3)),
        ];
        assert_eq!(top(Metric::Revenue, &totals, 2), ["b", "c"]);
        assert_eq!(top(Metric::Aov, &totals, 2), ["a", "c"]);
        let rate = |numerator, denominator| Facts::Rate {
            numerator,
            denominator,
        };
        let sessions = [
            group("tiny", rate(1, 1)),
            group("big", rate(10, 1000)),
            group("mid", rate(5, 100)),
        ];
        assert_eq!(
            top(Metric::ConversionRate, &sessions, 5),
            ["big", "mid", "tiny"]
        );
    }

    #[test]
    fn ties_rank_by_value_and_empty_groups_are_left_out() {
        let count = |count| Facts::Count { count };
        let totals = [
            group("b", count(5)),
            group("a", count(5)),
            group("z", count(0)),
        ];
        assert_eq!(top(Metric::Orders, &totals, 10), ["a", "b"]);
    }

    #[test]
    fn net_revenue_and_ltv_cannot_be_broken_down_and_product_is_for_product_views() {
        for (metric, by, ok) in [
            (Metric::Revenue, "device", true),
            (Metric::Sessions, "landing_page", true),
            (Metric::ProductViews, "product", true),
            (Metric::Orders, "product", false),
            (Metric::NetRevenue, "country", false),
            (Metric::Ltv, "source", false),
            (Metric::Visitors, "planet", false),
        ] {
            let parsed = Dimension::parse(by, metric);
            assert_eq!(parsed.is_ok(), ok, "{} by {by}", metric.name());
            if let Err(e) = parsed {
                assert_eq!(e.field(), Some("breakdown"));
            }
        }
    }

    #[test]
    fn the_groups_outside_the_top_add_up_to_other_bucket_by_bucket() {
        let money = |amount, orders| Facts::Money { amount, orders };
        let g = |key: &str, buckets: &[(i64, i64)]| GroupFacts {
            key: GroupKey::Value(key.into()),
            buckets: buckets
                .iter()
                .map(|(start, amount)| BucketFacts {
                    start: *start,
                    facts: money(*amount, 1),
                })
                .collect(),
            total: money(buckets.iter().map(|b| b.1).sum(), buckets.len() as i64),
        };
        let all = vec![
            g("c", &[(10, 5)]),
            g("a", &[(0, 100), (10, 200)]),
            g("b", &[(0, 7)]),
            g("", &[(20, 1)]),
        ];
        let keep = top(Metric::Revenue, &all, 1);
        assert_eq!(keep, ["a"]);
        let folded = fold(all, &keep);
        assert_eq!(folded.len(), 2);
        assert_eq!(folded[0].key, GroupKey::Value("a".into()));
        assert_eq!(folded[1].key, GroupKey::Other);
        assert_eq!(folded[1].total, money(13, 3));
        let starts: Vec<(i64, Facts)> = folded[1]
            .buckets
            .iter()
            .map(|b| (b.start, b.facts))
            .collect();
        assert_eq!(
            starts,
            [(0, money(7, 1)), (10, money(5, 1)), (20, money(1, 1))]
        );
        assert_eq!(
            fold(vec![g("a", &[(0, 1)])], &["a".to_owned()]).len(),
            1,
            "no (other) when nothing is left"
        );
    }

    #[test]
    fn a_first_read_of_every_group_is_the_answer_only_when_nothing_is_left_for_other() {
        let count = |count| Facts::Count { count };
        let totals = || {
            vec![
                group("Safari", count(7)),
                group("Chrome", count(9)),
                group("", count(2)),
                group("Opera", count(0)),
            ]
        };
        let keep = top(Metric::Visitors, &totals(), 10);
        assert_eq!(keep, ["Chrome", "Safari", ""]);
        assert!(
            !left_out(Metric::Visitors, &totals(), &keep),
            "an empty group is no (other)"
        );
        let keys: Vec<GroupKey> = kept(totals(), &keep).into_iter().map(|g| g.key).collect();
        assert_eq!(
            keys,
            [
                GroupKey::Value("Chrome".into()),
                GroupKey::Value("Safari".into()),
                GroupKey::Value(String::new())
            ],
            "heaviest first, the empty group left out"
        );
        let keep = top(Metric::Visitors, &totals(), 2);
        assert!(left_out(Metric::Visitors, &totals(), &keep));
        assert!(Dimension::Browser.few_values() && !Dimension::Country.few_values());
    }

    #[test]
    fn groups_without_a_value_read_none_and_the_rest_reads_other() {
        assert_eq!(label(&GroupKey::Value(String::new())), "(none)");
        assert_eq!(label(&GroupKey::Value("mobile".into())), "mobile");
        assert_eq!(label(&GroupKey::Other), "(other)");
    }
}
