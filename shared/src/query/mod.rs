//! Read side: metrics and funnels for the dashboards.
//!
//! The domain here (parameters, catalog, response shapes, arithmetic on aggregates) is storage-agnostic;
//! the SQL lives in the store adapter behind [`QueryStore`] (`store::clickhouse::query`), so a BigQuery
//! adapter can answer the same questions. Every query is scoped to the caller's store, taken from the key.

pub mod cohorts;
pub mod dashboards;
pub mod funnel;
pub mod live;
pub mod metrics;
pub mod params;
pub mod ranked;

use async_trait::async_trait;

use crate::store::StoreError;

pub use funnel::{FunnelCounts, FunnelQuery};
pub use metrics::{Aggregates, MetricQuery};

/// What the store-backed endpoints (reads, custom dashboards, erasure) need from storage.
#[async_trait]
pub trait QueryStore: Send + Sync + std::fmt::Debug {
    /// Raw aggregates of a metric per bucket and over the whole range (see [`metrics::Metric`]).
    async fn metric(&self, q: &MetricQuery) -> Result<Aggregates, StoreError>;
    /// The currency most of the store's orders of the last 90 days use, if it has any.
    async fn main_currency(&self, store_id: &str) -> Result<Option<String>, StoreError>;
    /// Rows of a ranked metric (see [`ranked::Ranked`]), ordered and limited.
    async fn ranked(&self, q: &ranked::RankedQuery) -> Result<ranked::RankedRows, StoreError>;
    /// Cohort cells (see [`cohorts`]).
    async fn cohorts(&self, q: &cohorts::CohortQuery) -> Result<cohorts::CohortCells, StoreError>;
    /// The store's custom dashboards.
    async fn dashboards(&self, store_id: &str) -> Result<Vec<dashboards::Dashboard>, StoreError>;
    /// Creates or replaces a custom dashboard.
    async fn save_dashboard(
        &self,
        store_id: &str,
        d: &dashboards::Dashboard,
    ) -> Result<(), StoreError>;
    /// Deletes a custom dashboard; false when it did not exist.
    async fn delete_dashboard(&self, store_id: &str, id: &str) -> Result<bool, StoreError>;
    /// Keys (sessions or customers) reaching each funnel step, and median step times.
    async fn funnel(&self, q: &FunnelQuery) -> Result<FunnelCounts, StoreError>;
    /// Events of the last minutes (see [`live`]).
    async fn live(&self, q: &live::LiveQuery) -> Result<live::LiveData, StoreError>;
    /// Removes a customer's data from the store (see [`crate::erasure`]).
    async fn erase_customer(
        &self,
        store_id: &str,
        customer_id: &str,
    ) -> Result<crate::erasure::ErasureReport, StoreError>;
}
