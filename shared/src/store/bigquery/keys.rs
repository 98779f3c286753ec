//! The key port on BigQuery's `api_keys`, as on ClickHouse: a key's rows are its versions (0 created,
//! 1 revoked); lookups and listings take each key's highest version. Only digests are stored.

use async_trait::async_trait;

use super::BigQueryStore;
use super::client::{Param, Rows};
use crate::auth::Scope;
use crate::auth::keys::{KeyStore, StoredKey};
use crate::config::KeyKind;
use crate::error::StoreError;

const TABLE: &str = "api_keys";
const COLUMNS: &str =
    "sha256, prefix, store_id, kind, origins, scopes, name, created_at, revoked_at";

fn micros(t: time::OffsetDateTime) -> Param {
    Param::Timestamp((t.unix_timestamp_nanos() / 1000) as i64)
}

/// Row `r` of a result with [`COLUMNS`].
fn key_at(rows: &Rows, r: usize) -> Result<StoredKey, StoreError> {
    let col = |name: &str| rows.column(name);
    let prefix = rows.string(r, col("prefix")?);
    let kind = match rows.string(r, col("kind")?).as_str() {
        "write" => KeyKind::Write,
        "read" => KeyKind::Read,
        other => {
            return Err(StoreError::Rejected(format!(
                "key {prefix} has unknown kind {other:?}"
            )));
        }
    };
    let scopes = rows
        .strings(r, col("scopes")?)?
        .iter()
        .map(|s| {
            Scope::parse(s).ok_or_else(|| {
                StoreError::Rejected(format!("key {prefix} has unknown scope {s:?}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StoredKey {
        sha256: rows.string(r, col("sha256")?),
        store_id: rows.string(r, col("store_id")?),
        kind,
        origins: rows.strings(r, col("origins")?)?,
        scopes,
        name: rows.string(r, col("name")?),
        created_at: rows
            .timestamp(r, col("created_at")?)?
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        revoked_at: rows.timestamp(r, col("revoked_at")?)?,
        prefix,
    })
}

#[async_trait]
impl KeyStore for BigQueryStore {
    async fn find_key(&self, sha256: &str) -> Result<Option<StoredKey>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE sha256 = @sha ORDER BY version DESC LIMIT 1",
            self.table(TABLE)
        );
        let rows = self
            .client()
            .query(&sql, &[("sha", Param::String(sha256.into()))])
            .await?;
        (!rows.rows.is_empty())
            .then(|| key_at(&rows, 0))
            .transpose()
    }

    async fn put_keys(&self, keys: &[StoredKey]) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO {} ({COLUMNS}, version) VALUES (@sha, @prefix, @store, @kind, @origins, @scopes, \
             @name, @created_at, IF(@revoked, @revoked_at, NULL), @version)",
            self.table(TABLE)
        );
        for k in keys {
            let revoked_at = k.revoked_at.unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            self.client()
                .query(
                    &sql,
                    &[
                        ("sha", Param::String(k.sha256.clone())),
                        ("prefix", Param::String(k.prefix.clone())),
                        ("store", Param::String(k.store_id.clone())),
                        ("kind", Param::String(k.kind_name().into())),
                        ("origins", Param::Strings(k.origins.clone())),
                        (
                            "scopes",
                            Param::Strings(k.scopes.iter().map(|s| s.name().to_owned()).collect()),
                        ),
                        ("name", Param::String(k.name.clone())),
                        ("created_at", micros(k.created_at)),
                        ("revoked", Param::Bool(k.revoked_at.is_some())),
                        ("revoked_at", micros(revoked_at)),
                        ("version", Param::Int64(i64::from(k.revoked_at.is_some()))),
                    ],
                )
                .await?;
        }
        Ok(())
    }

    async fn list_keys(&self, store_id: Option<&str>) -> Result<Vec<StoredKey>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM ( \
               SELECT * FROM {} WHERE @store = '' OR store_id = @store \
               QUALIFY ROW_NUMBER() OVER (PARTITION BY sha256 ORDER BY version DESC) = 1) \
             ORDER BY created_at, prefix",
            self.table(TABLE)
        );
        let rows = self
            .client()
            .query(
                &sql,
                &[("store", Param::String(store_id.unwrap_or("").into()))],
            )
            .await?;
        (0..rows.rows.len()).map(|r| key_at(&rows, r)).collect()
    }
}
