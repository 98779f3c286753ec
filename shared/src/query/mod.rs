//! Read side: what the read endpoints answer and what each number means.
//!
//! - [`params`]: query-string parsing shared by every endpoint (periods, zones, buckets, filters);
//! - [`metrics`]: the time-series catalog; [`ranked`]: ranked metrics (rows); [`funnel`]; [`cohorts`];
//!   [`live`]: the last minutes; [`dashboards`]: built-in and custom dashboards of widgets.
//!
//! The domain here (parameters, catalog, response shapes, arithmetic on facts) is storage-agnostic; the
//! SQL lives in a store adapter behind [`ReadStore`] (`store::clickhouse::read`), which turns a typed
//! query into its warehouse's SQL and returns typed facts. Every query is scoped to the caller's store,
//! taken from the key.

pub mod attribution;
pub mod breakdown;
pub mod cohorts;
pub mod compare;
pub mod convert;
pub mod currency;
pub mod dashboards;
pub mod deadline;
pub mod fair;
pub mod funnel;
pub mod live;
pub mod metrics;
pub mod names;
pub mod params;
pub mod products;
pub mod ranked;
pub mod sales;
pub mod sources;

use async_trait::async_trait;

use crate::error::StoreError;

pub use funnel::{FunnelCounts, FunnelQuery};
pub use metrics::{MetricFacts, MetricQuery};

/// A read standing for several ([`ReadStore::metric_groups_at_once`], [`ReadStore::ranked_at_once`]).
pub type AtOnce<'a, T> = futures_util::future::BoxFuture<'a, Result<T, StoreError>>;

/// The read port: what the read endpoints (metrics, ranked metrics, funnels, cohorts, live) need from
/// storage. Each method takes a validated, typed query and returns typed facts (counts, amounts, rows
/// with named fields); the meaning of every number and all derived values (rates, averages, labels,
/// zero-filling) stay on this side, so a second adapter implements SQL only.
///
/// Custom dashboards ([`dashboards::DashboardStore`]) and erasure ([`crate::erasure::ErasureStore`]) are
/// separate ports.
#[async_trait]
pub trait ReadStore: Send + Sync + std::fmt::Debug {
    /// The facts of a metric per bucket and over the whole range (see [`metrics::Facts`]).
    async fn metric(&self, q: &MetricQuery) -> Result<MetricFacts, StoreError>;
    /// A metric's facts per value of `by` ([`breakdown`]): every value's total, or the kept values' and
    /// the rest's (as [`breakdown::GroupKey::Other`]) buckets and totals; groups without rows are absent.
    async fn metric_groups(
        &self,
        q: &MetricQuery,
        by: breakdown::Dimension,
        groups: breakdown::Groups<'_>,
    ) -> Result<Vec<breakdown::GroupFacts>, StoreError>;
    /// Every group of a metric for each of `by`, in their order, as [`Self::metric_groups`] reads them
    /// with [`breakdown::Groups::All`], in one read (a dashboard's breakdowns of one metric by several
    /// dimensions): the read, when the adapter can make it, else `None` and the caller reads them one by
    /// one. Decided without reading anything, so a decorator ([`fair::FairReads`]) takes a turn only for
    /// a read that happens. By default `None`.
    fn metric_groups_at_once<'a>(
        &'a self,
        _q: &'a MetricQuery,
        _by: &'a [breakdown::Dimension],
    ) -> Option<AtOnce<'a, Vec<Vec<breakdown::GroupFacts>>>> {
        None
    }
    /// A money metric's amounts per bucket, currency and UTC day, in every currency (for `convert`; see
    /// [`convert::CurrencyDayFacts`]); `q.currency` is the reporting currency and filters nothing.
    async fn money_by_currency(
        &self,
        q: &MetricQuery,
    ) -> Result<Vec<convert::CurrencyDayFacts>, StoreError>;
    /// The exchange rates published from `from` to `to`, both included ([`crate::fx`]).
    async fn exchange_rates(
        &self,
        from: jiff::civil::Date,
        to: jiff::civil::Date,
    ) -> Result<Vec<crate::fx::DailyRate>, StoreError>;
    /// The currency most of the store's orders of the 90 days before `now` use, if it has any: human
    /// orders only unless `include_bots` (the default currency follows the traffic a read counts, so bots
    /// never pick the currency of a read that leaves them out).
    async fn main_currency(
        &self,
        store_id: &str,
        now: jiff::Timestamp,
        include_bots: bool,
    ) -> Result<Option<String>, StoreError>;
    /// Rows of a ranked metric (see [`ranked::RankedRow`]), ordered and limited.
    async fn ranked(&self, q: &ranked::RankedQuery) -> Result<Vec<ranked::RankedRow>, StoreError>;
    /// The rows of each of `qs`, in their order, as [`Self::ranked`] reads them, in one read (a
    /// dashboard's ranked metrics over one query): the read, when the adapter can make it, else `None`
    /// and the caller reads them one by one (decided as [`Self::metric_groups_at_once`] is). By
    /// default `None`.
    fn ranked_at_once<'a>(
        &'a self,
        _qs: &'a [ranked::RankedQuery],
    ) -> Option<AtOnce<'a, Vec<Vec<ranked::RankedRow>>>> {
        None
    }
    /// The latest name of each of the query's products in its window (see [`names`]); products without
    /// one are absent.
    async fn product_names(
        &self,
        q: &names::NamesQuery,
    ) -> Result<Vec<names::ProductName>, StoreError>;
    /// The orders, carts and candidate sessions of an attribution report ([`attribution`]).
    async fn attribution(
        &self,
        q: &attribution::AttributionQuery,
    ) -> Result<attribution::AttributionFacts, StoreError>;
    /// The sales report's sums per bucket and over the period ([`sales`]).
    async fn sales(&self, q: &sales::SalesQuery) -> Result<sales::SalesRead, StoreError>;
    /// Every product's facts for product performance (see [`products::ProductFacts`]), unsorted.
    async fn product_performance(
        &self,
        q: &products::ProductQuery,
    ) -> Result<Vec<products::ProductFacts>, StoreError>;
    /// Cohort cells (see [`cohorts::CohortCell`]).
    async fn cohorts(
        &self,
        q: &cohorts::CohortQuery,
    ) -> Result<Vec<cohorts::CohortCell>, StoreError>;
    /// Keys (sessions or customers) reaching each funnel step, and median step times.
    async fn funnel(&self, q: &FunnelQuery) -> Result<FunnelCounts, StoreError>;
    /// Events of the last minutes (see [`live`]).
    async fn live(&self, q: &live::LiveQuery) -> Result<live::LiveData, StoreError>;
}

/// Read stores for unit tests of the query side's own machinery (fair turns, currency guesses): they
/// answer `main_currency` only.
#[cfg(test)]
pub(crate) mod fakes {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;

    /// What the fake answers for [`ReadStore::main_currency`].
    #[async_trait]
    pub trait MainCurrencyOnly: Send + Sync + std::fmt::Debug {
        async fn main_currency(&self, store_id: &str) -> Result<Option<String>, StoreError>;
    }

    /// A [`ReadStore`] that answers `main_currency` from its `T` and no other read.
    #[derive(Debug)]
    pub struct CurrencyStore<T>(pub Arc<T>);

    #[async_trait]
    impl<T: MainCurrencyOnly + 'static> ReadStore for CurrencyStore<T> {
        async fn metric(&self, _: &MetricQuery) -> Result<MetricFacts, StoreError> {
            unreachable!("not used")
        }
        async fn metric_groups(
            &self,
            _: &MetricQuery,
            _: breakdown::Dimension,
            _: breakdown::Groups<'_>,
        ) -> Result<Vec<breakdown::GroupFacts>, StoreError> {
            unreachable!("not used")
        }
        async fn money_by_currency(
            &self,
            _: &MetricQuery,
        ) -> Result<Vec<convert::CurrencyDayFacts>, StoreError> {
            unreachable!("not used")
        }
        async fn exchange_rates(
            &self,
            _: jiff::civil::Date,
            _: jiff::civil::Date,
        ) -> Result<Vec<crate::fx::DailyRate>, StoreError> {
            unreachable!("not used")
        }
        async fn main_currency(
            &self,
            store_id: &str,
            _: jiff::Timestamp,
            _: bool,
        ) -> Result<Option<String>, StoreError> {
            self.0.main_currency(store_id).await
        }
        async fn ranked(
            &self,
            _: &ranked::RankedQuery,
        ) -> Result<Vec<ranked::RankedRow>, StoreError> {
            unreachable!("not used")
        }
        async fn product_names(
            &self,
            _: &names::NamesQuery,
        ) -> Result<Vec<names::ProductName>, StoreError> {
            unreachable!("not used")
        }
        async fn attribution(
            &self,
            _: &attribution::AttributionQuery,
        ) -> Result<attribution::AttributionFacts, StoreError> {
            unreachable!("not used")
        }
        async fn sales(&self, _: &sales::SalesQuery) -> Result<sales::SalesRead, StoreError> {
            unreachable!("not used")
        }
        async fn product_performance(
            &self,
            _: &products::ProductQuery,
        ) -> Result<Vec<products::ProductFacts>, StoreError> {
            unreachable!("not used")
        }
        async fn cohorts(
            &self,
            _: &cohorts::CohortQuery,
        ) -> Result<Vec<cohorts::CohortCell>, StoreError> {
            unreachable!("not used")
        }
        async fn funnel(&self, _: &FunnelQuery) -> Result<FunnelCounts, StoreError> {
            unreachable!("not used")
        }
        async fn live(&self, _: &live::LiveQuery) -> Result<live::LiveData, StoreError> {
            unreachable!("not used")
        }
    }
}
