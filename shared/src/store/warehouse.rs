//! The configured warehouse (`provider`), as one value that hands out each port: what the local server,
//! the Lambda functions and the CLI build from the configuration instead of naming an adapter.

use std::sync::Arc;

use super::bigquery::BigQueryStore;
use super::{ClickHouseStore, EventStore, StoreError};
use crate::auth::KeyStore;
use crate::config::{Config, Provider};
use crate::erasure::ErasureStore;
use crate::error::{Error, Result};
use crate::query::ReadStore;
use crate::query::dashboards::DashboardStore;
use crate::retention::RetentionStore;

#[derive(Debug, Clone)]
pub enum Warehouse {
    /// Boxed: the ClickHouse client is several times larger than the BigQuery one.
    ClickHouse(Box<ClickHouseStore>),
    BigQuery(BigQueryStore),
}

impl Warehouse {
    /// The adapter `config.provider` names.
    pub fn from_config(config: &Config) -> Result<Self> {
        Ok(match config.provider {
            Provider::Clickhouse => {
                Self::ClickHouse(Box::new(ClickHouseStore::new(&config.clickhouse)))
            }
            Provider::Bigquery => {
                let bq = config.bigquery.as_ref().ok_or_else(|| {
                    Error::Config("provider bigquery needs the bigquery_* settings".into())
                })?;
                Self::BigQuery(BigQueryStore::new(bq)?)
            }
        })
    }

    /// Where it is, for messages: the ClickHouse URL or the BigQuery project and dataset.
    pub fn describe(&self, config: &Config) -> String {
        match (self, &config.bigquery) {
            (Self::BigQuery(_), Some(bq)) => {
                format!("BigQuery {}.{} at {}", bq.project, bq.dataset, bq.endpoint)
            }
            _ => format!("ClickHouse at {}", config.clickhouse.url),
        }
    }

    /// Applies pending migrations (see each adapter's `migrations`).
    pub async fn migrate(&self, retention_days: u32) -> std::result::Result<(), StoreError> {
        match self {
            Self::ClickHouse(ch) => ch.migrate(retention_days).await.map(|_| ()),
            Self::BigQuery(bq) => bq.migrate(retention_days).await.map(|_| ()),
        }
    }

    /// Stored events of `store_id`, each counted once.
    pub async fn count_events(&self, store_id: &str) -> std::result::Result<u64, StoreError> {
        match self {
            Self::ClickHouse(ch) => ch.count_events(store_id).await,
            Self::BigQuery(bq) => bq.count_events(store_id).await,
        }
    }

    pub fn events(&self) -> Arc<dyn EventStore> {
        match self {
            Self::ClickHouse(ch) => Arc::new(ch.as_ref().clone()),
            Self::BigQuery(bq) => Arc::new(bq.clone()),
        }
    }

    pub fn keys(&self) -> Arc<dyn KeyStore> {
        match self {
            Self::ClickHouse(ch) => Arc::new(ch.as_ref().clone()),
            Self::BigQuery(bq) => Arc::new(bq.clone()),
        }
    }

    pub fn reads(&self) -> Arc<dyn ReadStore> {
        match self {
            Self::ClickHouse(ch) => Arc::new(ch.as_ref().clone()),
            Self::BigQuery(bq) => Arc::new(bq.clone()),
        }
    }

    pub fn dashboards(&self) -> Arc<dyn DashboardStore> {
        match self {
            Self::ClickHouse(ch) => Arc::new(ch.as_ref().clone()),
            Self::BigQuery(bq) => Arc::new(bq.clone()),
        }
    }

    /// Where alert rules, claims and the evaluation log live.
    pub fn alerts(&self) -> Arc<dyn crate::alerts::AlertStore> {
        match self {
            Self::ClickHouse(ch) => Arc::new(ch.as_ref().clone()),
            Self::BigQuery(bq) => Arc::new(bq.clone()),
        }
    }

    pub fn erasure(&self) -> Arc<dyn ErasureStore> {
        match self {
            Self::ClickHouse(ch) => Arc::new(ch.as_ref().clone()),
            Self::BigQuery(bq) => Arc::new(bq.clone()),
        }
    }

    pub fn rates(&self) -> Arc<dyn crate::fx::RateStore> {
        match self {
            Self::ClickHouse(ch) => Arc::new(ch.as_ref().clone()),
            Self::BigQuery(bq) => Arc::new(bq.clone()),
        }
    }

    pub fn retention(&self) -> Arc<dyn RetentionStore> {
        match self {
            Self::ClickHouse(ch) => Arc::new(ch.as_ref().clone()),
            Self::BigQuery(bq) => Arc::new(bq.clone()),
        }
    }
}
