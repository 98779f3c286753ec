//! The dashboards port on BigQuery's `analytics_dashboards`: as on ClickHouse, a save and a deletion are
//! both a new version of the row (`version`: the save's milliseconds), and reads keep each dashboard's
//! latest version. Rows are written with DML `INSERT` (not streamed), so nothing here is subject to the
//! streaming buffer's DML restrictions.

use async_trait::async_trait;

use super::BigQueryStore;
use super::client::Param;
use crate::error::StoreError;
use crate::query::dashboards::{Dashboard, DashboardStore};

const TABLE: &str = "analytics_dashboards";

impl BigQueryStore {
    /// One version of a dashboard row.
    async fn write_dashboard_row(
        &self,
        store_id: &str,
        id: &str,
        name: &str,
        widgets: &str,
        at: jiff::Timestamp,
        deleted: bool,
    ) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} (store_id, id, name, widgets, version, deleted) \
             VALUES (@store, @id, @name, @widgets, @version, @deleted)",
            self.table(TABLE)
        );
        self.client()
            .query(
                &sql,
                &[
                    ("store", Param::String(store_id.into())),
                    ("id", Param::String(id.into())),
                    ("name", Param::String(name.into())),
                    ("widgets", Param::String(widgets.into())),
                    ("version", Param::Int64(at.as_millisecond())),
                    ("deleted", Param::Bool(deleted)),
                ],
            )
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl DashboardStore for BigQueryStore {
    async fn dashboards(&self, store_id: &str) -> Result<Vec<Dashboard>, StoreError> {
        let sql = format!(
            "SELECT id, name, widgets FROM ( \
               SELECT id, name, widgets, deleted FROM {} WHERE store_id = @store \
               QUALIFY ROW_NUMBER() OVER (PARTITION BY id ORDER BY version DESC, deleted DESC) = 1) \
             WHERE NOT deleted ORDER BY name, id",
            self.table(TABLE)
        );
        let rows = self
            .client()
            .query(&sql, &[("store", Param::String(store_id.into()))])
            .await?;
        let (id, name, widgets) = (
            rows.column("id")?,
            rows.column("name")?,
            rows.column("widgets")?,
        );
        (0..rows.rows.len())
            .map(|r| {
                Dashboard::stored(
                    rows.string(r, id),
                    rows.string(r, name),
                    &rows.string(r, widgets),
                )
            })
            .collect()
    }

    async fn save_dashboard(
        &self,
        store_id: &str,
        d: &Dashboard,
        at: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        let widgets = d.widgets_json()?;
        self.write_dashboard_row(store_id, &d.id, &d.name, &widgets, at, false)
            .await
    }

    async fn delete_dashboard(
        &self,
        store_id: &str,
        id: &str,
        at: jiff::Timestamp,
    ) -> Result<bool, StoreError> {
        if !self.dashboards(store_id).await?.iter().any(|d| d.id == id) {
            return Ok(false);
        }
        self.write_dashboard_row(store_id, id, "", "[]", at, true)
            .await?;
        Ok(true)
    }
}
