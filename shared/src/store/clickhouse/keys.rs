//! The key table (`api_keys`, migration v5): [`KeyStore`] on ClickHouse.
//!
//! `ReplacingMergeTree(version)` ordered by the key's SHA-256: a key's rows are its versions, `version` 0
//! when created and 1 when revoked, so the revoked row always wins a merge and a late seeding insert can
//! never bring a key back. Lookups read the highest version (`ORDER BY version DESC LIMIT 1`), which is
//! right before and after merges; listings use `FINAL`. The table is tiny (one row per key), so both are
//! cheap; warm processes cache lookups anyway ([`crate::auth::Authenticator`]).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{ClickHouseStore, classify};
use crate::auth::{KeyStore, StoredKey};
use crate::config::KeyKind;
use crate::store::StoreError;

pub const KEYS_TABLE: &str = "api_keys";

#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
struct KeyRow {
    sha256: String,
    prefix: String,
    store_id: String,
    kind: String,
    origins: Vec<String>,
    name: String,
    #[serde(with = "clickhouse::serde::time::datetime64::millis")]
    created_at: OffsetDateTime,
    #[serde(with = "clickhouse::serde::time::datetime64::millis::option")]
    revoked_at: Option<OffsetDateTime>,
    version: u8,
    /// Migration v8; empty: the kind's default scopes.
    scopes: Vec<String>,
}

impl KeyRow {
    fn from_key(k: &StoredKey) -> Self {
        Self {
            sha256: k.sha256.clone(),
            prefix: k.prefix.clone(),
            store_id: k.store_id.clone(),
            kind: match k.kind {
                KeyKind::Write => "write",
                KeyKind::Read => "read",
            }
            .to_owned(),
            origins: k.origins.clone(),
            name: k.name.clone(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
            version: u8::from(k.revoked_at.is_some()),
            scopes: k.scopes.iter().map(|s| s.name().to_owned()).collect(),
        }
    }

    fn into_key(self) -> Result<StoredKey, StoreError> {
        let kind = match self.kind.as_str() {
            "write" => KeyKind::Write,
            "read" => KeyKind::Read,
            other => {
                return Err(StoreError::Rejected(format!(
                    "key {} has unknown kind {other:?}",
                    self.prefix
                )));
            }
        };
        let scopes = self
            .scopes
            .iter()
            .map(|s| {
                crate::auth::Scope::parse(s).ok_or_else(|| {
                    StoreError::Rejected(format!("key {} has unknown scope {s:?}", self.prefix))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoredKey {
            sha256: self.sha256,
            prefix: self.prefix,
            store_id: self.store_id,
            kind,
            origins: self.origins,
            scopes,
            name: self.name,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        })
    }
}

#[async_trait]
impl KeyStore for ClickHouseStore {
    async fn find_key(&self, sha256: &str) -> Result<Option<StoredKey>, StoreError> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM {KEYS_TABLE} WHERE sha256 = ? ORDER BY version DESC LIMIT 1"
            ))
            .bind(sha256)
            .fetch_optional::<KeyRow>()
            .await
            .map_err(classify)?
            .map(KeyRow::into_key)
            .transpose()
    }

    async fn put_keys(&self, keys: &[StoredKey]) -> Result<(), StoreError> {
        let mut insert = self
            .client
            .insert::<KeyRow>(KEYS_TABLE)
            .await
            .map_err(classify)?;
        for k in keys {
            insert.write(&KeyRow::from_key(k)).await.map_err(classify)?;
        }
        insert.end().await.map_err(classify)
    }

    async fn list_keys(&self, store_id: Option<&str>) -> Result<Vec<StoredKey>, StoreError> {
        self.client
            .query(&format!(
                "SELECT ?fields FROM {KEYS_TABLE} FINAL WHERE ? = '' OR store_id = ? \
                 ORDER BY created_at, prefix"
            ))
            .bind(store_id.unwrap_or(""))
            .bind(store_id.unwrap_or(""))
            .fetch_all::<KeyRow>()
            .await
            .map_err(classify)?
            .into_iter()
            .map(KeyRow::into_key)
            .collect()
    }
}
