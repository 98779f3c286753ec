//! The dashboards port on the `analytics_dashboards` table (a `ReplacingMergeTree` on `version`): a save
//! and a deletion are both a new version of the row; reads take the latest with `FINAL`.

use async_trait::async_trait;
use serde::Deserialize;

use crate::error::StoreError;
use crate::query::dashboards::{Dashboard, DashboardStore};
use crate::store::clickhouse::{ClickHouseStore, classify, version};

#[derive(Debug, Deserialize, serde::Serialize, clickhouse::Row)]
struct DashboardRow {
    store_id: String,
    id: String,
    name: String,
    widgets: String,
    /// Milliseconds of the save or deletion (the latest version wins).
    version: u64,
    deleted: u8,
}

#[async_trait]
impl DashboardStore for ClickHouseStore {
    async fn dashboards(&self, store_id: &str) -> Result<Vec<Dashboard>, StoreError> {
        let rows = self
            .client()
            .query(
                "SELECT store_id, id, name, widgets, version, deleted FROM analytics_dashboards FINAL \
                 WHERE store_id = {store:String} AND deleted = 0 ORDER BY name, id",
            )
            .param("store", store_id)
            .fetch_all::<DashboardRow>()
            .await
            .map_err(classify)?;
        rows.into_iter()
            .map(|r| Dashboard::stored(r.id, r.name, &r.widgets))
            .collect()
    }

    async fn save_dashboard(
        &self,
        store_id: &str,
        d: &Dashboard,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        let widgets = d.widgets_json()?;
        self.insert_row(
            "analytics_dashboards",
            &DashboardRow {
                store_id: store_id.to_owned(),
                id: d.id.clone(),
                name: d.name.clone(),
                widgets,
                version: version(at),
                deleted: 0,
            },
        )
        .await
    }

    async fn delete_dashboard(
        &self,
        store_id: &str,
        id: &str,
        at: jiff::Timestamp,
    ) -> Result<bool, StoreError> {
        let exists = self.dashboards(store_id).await?.iter().any(|d| d.id == id);
        if !exists {
            return Ok(false);
        }
        self.insert_row(
            "analytics_dashboards",
            &DashboardRow {
                store_id: store_id.to_owned(),
                id: id.to_owned(),
                name: String::new(),
                widgets: "[]".into(),
                version: version(at),
                deleted: 1,
            },
        )
        .await?;
        Ok(true)
    }
}
