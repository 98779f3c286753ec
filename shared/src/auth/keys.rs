//! Key management: the key table, and creating, listing, revoking and seeding keys.
//!
//! A key is `pk_` (write, publishable) or `sk_` (read, secret) followed by 32 random characters from
//! `[0-9A-Za-z]` (about 190 bits), drawn from the thread-local CSPRNG (ChaCha, seeded by the OS). Only its
//! SHA-256 (hex) is stored, with a display prefix (the first 11 characters, e.g. `pk_7Hq2xK9a`) so people
//! can tell keys apart in listings and revoke one without ever handling the full key again. The key is
//! shown once, by `analytics keys create`.
//!
//! Revocation writes a newer version of the key's row ([`StoredKey::revoked_at`] set). Rows are never
//! "un-revoked": seeding inserts a key only when no row for its digest exists, and in the table the
//! revoked version always wins (see the ClickHouse adapter). Warm processes notice a revocation within
//! the key cache's TTL ([`super::Authenticator`]).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use rand::Rng;
use time::OffsetDateTime;

use super::{Principal, digest_hex, key_id_of_digest};
use crate::config::{ApiKeyConfig, KeyKind};
use crate::error::StoreError;
use crate::error::{Error, Result};

/// Characters of a key shown in listings: the kind prefix and 8 random characters.
pub const DISPLAY_PREFIX_LEN: usize = 11;

/// Random characters after `pk_` / `sk_`.
const SECRET_LEN: usize = 32;

/// One row of the key table: everything about a key except the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Hex SHA-256 of the whole key.
    pub sha256: String,
    /// The key's first [`DISPLAY_PREFIX_LEN`] characters.
    pub prefix: String,
    pub store_id: String,
    pub kind: KeyKind,
    /// Write keys: allowed browser origins (empty: any).
    pub origins: Vec<String>,
    /// What the key may do; empty: its kind's defaults ([`super::Scope::defaults`]), which is what every
    /// key created before scopes existed has.
    pub scopes: Vec<super::Scope>,
    /// A free-text label ("storefront", "BI export").
    pub name: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

impl StoredKey {
    /// `write` or `read`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            KeyKind::Write => "write",
            KeyKind::Read => "read",
        }
    }

    /// What the key may do: its scopes, or its kind's defaults.
    pub fn principal_scopes(&self) -> Vec<super::Scope> {
        if self.scopes.is_empty() {
            super::Scope::defaults(self.kind)
        } else {
            self.scopes.clone()
        }
    }

    /// What a request authenticated by this key may do; `None` once revoked.
    pub fn principal(&self) -> Option<Principal> {
        self.revoked_at.is_none().then(|| Principal {
            store_id: self.store_id.clone(),
            kind: self.kind,
            scopes: self.principal_scopes(),
            origins: self.origins.clone(),
            key_id: key_id_of_digest(&self.sha256),
        })
    }

    /// A key built from a secret the caller already has (seeding); `created_at` = `now`.
    pub fn from_secret(
        secret: &str,
        store_id: &str,
        kind: KeyKind,
        origins: Vec<String>,
        name: &str,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            sha256: digest_hex(secret),
            prefix: secret.chars().take(DISPLAY_PREFIX_LEN).collect(),
            store_id: store_id.to_owned(),
            kind,
            origins,
            scopes: Vec::new(),
            name: name.to_owned(),
            created_at: now,
            revoked_at: None,
        }
    }

    /// A configured key (the bootstrap keys of [`crate::config`]), named `name`.
    pub fn from_config(k: &ApiKeyConfig, name: &str, now: OffsetDateTime) -> Self {
        Self::from_secret(
            k.key.expose(),
            &k.store,
            k.kind,
            k.origins.clone(),
            name,
            now,
        )
    }
}

/// Where keys live. ClickHouse in production and locally ([`crate::store::ClickHouseStore`]); in memory
/// ([`KeyRing`]) for unit tests.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// The latest version of the key with this digest (revoked or not).
    async fn find_key(&self, sha256: &str) -> Result<Option<StoredKey>, StoreError>;
    /// Writes new versions of keys (a new key, or a revocation of an existing one).
    async fn put_keys(&self, keys: &[StoredKey]) -> Result<(), StoreError>;
    /// The latest version of every key, oldest first; only `store_id`'s when given.
    async fn list_keys(&self, store_id: Option<&str>) -> Result<Vec<StoredKey>, StoreError>;
}

/// A new random key of `kind`: `pk_…` or `sk_…`.
pub fn generate(kind: KeyKind) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut key = String::with_capacity(3 + SECRET_LEN);
    key.push_str(kind_prefix(kind));
    for _ in 0..SECRET_LEN {
        key.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    key
}

fn kind_prefix(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Write => "pk_",
        KeyKind::Read => "sk_",
    }
}

/// Creates a key for `store_id`; returns the key (shown once, never stored) and its row.
pub async fn create(
    keys: &dyn KeyStore,
    store_id: &str,
    kind: KeyKind,
    origins: Vec<String>,
    name: &str,
    now: OffsetDateTime,
) -> Result<(String, StoredKey)> {
    create_scoped(keys, store_id, kind, Vec::new(), origins, name, now).await
}

/// [`create`] with explicit scopes (empty: the kind's defaults). A write key is publishable, so it may
/// only track; a read key may have any non-empty set.
pub async fn create_scoped(
    keys: &dyn KeyStore,
    store_id: &str,
    kind: KeyKind,
    scopes: Vec<super::Scope>,
    origins: Vec<String>,
    name: &str,
    now: OffsetDateTime,
) -> Result<(String, StoredKey)> {
    if kind == KeyKind::Write && scopes.iter().any(|s| *s != super::Scope::Track) {
        return Err(Error::invalid(
            "invalid_scope",
            "scope",
            "a write key is publishable and may only track",
        ));
    }
    if !super::is_valid_store_id(store_id) {
        return Err(Error::invalid(
            "invalid_store",
            "store",
            format!("store {store_id:?} must match [a-z0-9][a-z0-9_-]{{0,63}}"),
        ));
    }
    if kind == KeyKind::Read && !origins.is_empty() {
        return Err(Error::invalid(
            "invalid_origin",
            "origin",
            "origins apply to write keys only (read keys never belong in a browser)",
        ));
    }
    if let Some(bad) = origins.iter().find(|o| !crate::ident::is_origin(o)) {
        return Err(Error::invalid(
            "invalid_origin",
            "origin",
            format!("{bad:?} must be scheme://host[:port], e.g. https://shop.example.com"),
        ));
    }
    let secret = generate(kind);
    let mut row = StoredKey::from_secret(&secret, store_id, kind, origins, name, now);
    row.scopes = scopes;
    keys.put_keys(std::slice::from_ref(&row)).await?;
    Ok((secret, row))
}

/// Revokes the live key whose display prefix (or key id, the first 12 hex digits of its SHA-256) is
/// `prefix`. Exactly one live key must match: an ambiguous prefix revokes nothing and says which keys
/// matched.
pub async fn revoke(keys: &dyn KeyStore, prefix: &str, now: OffsetDateTime) -> Result<StoredKey> {
    if prefix.len() < 6 {
        return Err(Error::invalid(
            "invalid_prefix",
            "prefix",
            "give at least 6 characters of the key prefix (as `analytics keys list` shows it)",
        ));
    }
    let live: Vec<StoredKey> = keys
        .list_keys(None)
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .filter(|k| k.prefix.starts_with(prefix) || k.sha256.starts_with(prefix))
        .collect();
    match live.as_slice() {
        [] => Err(Error::invalid(
            "unknown_key",
            "prefix",
            format!("no live key starts with {prefix:?}"),
        )),
        [one] => {
            let mut revoked = one.clone();
            revoked.revoked_at = Some(now);
            keys.put_keys(std::slice::from_ref(&revoked)).await?;
            Ok(revoked)
        }
        many => Err(Error::invalid(
            "ambiguous_prefix",
            "prefix",
            format!(
                "{} live keys start with {prefix:?} ({}); give more characters or the key id",
                many.len(),
                many.iter()
                    .map(|k| format!("{} / {}", k.prefix, key_id_of_digest(&k.sha256)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Inserts each configured key that the table has never seen; returns how many were inserted. A key
/// already there (live or revoked) is left alone, so a revoked development key stays revoked.
pub async fn seed(
    keys: &dyn KeyStore,
    configured: &[ApiKeyConfig],
    now: OffsetDateTime,
) -> Result<usize> {
    let mut missing = Vec::new();
    for k in configured {
        let row = StoredKey::from_config(k, "seeded from configuration", now);
        if keys.find_key(&row.sha256).await?.is_none() {
            missing.push(row);
        }
    }
    if !missing.is_empty() {
        keys.put_keys(&missing).await?;
    }
    Ok(missing.len())
}

/// Keys in memory: unit tests, and any process whose keys come only from configuration.
#[derive(Debug, Default)]
pub struct KeyRing {
    by_digest: Mutex<HashMap<String, StoredKey>>,
}

impl KeyRing {
    /// The configured keys, live.
    pub fn from_config(keys: &[ApiKeyConfig]) -> Self {
        let now = OffsetDateTime::UNIX_EPOCH;
        let by_digest = keys
            .iter()
            .map(|k| {
                let row = StoredKey::from_config(k, "", now);
                (row.sha256.clone(), row)
            })
            .collect();
        Self {
            by_digest: Mutex::new(by_digest),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredKey>> {
        self.by_digest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl KeyStore for KeyRing {
    async fn find_key(&self, sha256: &str) -> Result<Option<StoredKey>, StoreError> {
        Ok(self.map().get(sha256).cloned())
    }

    async fn put_keys(&self, keys: &[StoredKey]) -> Result<(), StoreError> {
        let mut map = self.map();
        for k in keys {
            map.insert(k.sha256.clone(), k.clone());
        }
        Ok(())
    }

    async fn list_keys(&self, store_id: Option<&str>) -> Result<Vec<StoredKey>, StoreError> {
        let mut all: Vec<StoredKey> = self
            .map()
            .values()
            .filter(|k| store_id.is_none_or(|s| k.store_id == s))
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.prefix).cmp(&(b.created_at, &b.prefix)));
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("valid")
    }

    #[test]
    fn generated_keys_carry_their_kind_and_enough_randomness() {
        let w = generate(KeyKind::Write);
        let r = generate(KeyKind::Read);
        assert!(w.starts_with("pk_") && r.starts_with("sk_"));
        assert_eq!((w.len(), r.len()), (35, 35));
        assert!(w[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        let many: std::collections::HashSet<String> =
            (0..1000).map(|_| generate(KeyKind::Write)).collect();
        assert_eq!(many.len(), 1000, "no two keys alike");
    }

    #[tokio::test]
    async fn a_created_key_is_stored_only_as_its_digest_and_prefix() {
        let ring = KeyRing::default();
        let (secret, row) = create(&ring, "shop", KeyKind::Write, vec![], "storefront", now())
            .await
            .expect("created");
        let listed = ring.list_keys(Some("shop")).await.expect("list");
        assert_eq!(listed, vec![row.clone()]);
        assert_eq!(row.prefix, secret[..DISPLAY_PREFIX_LEN]);
        assert_eq!(row.sha256, digest_hex(&secret));
        assert!(!format!("{row:?}").contains(&secret[DISPLAY_PREFIX_LEN..]));
    }

    #[tokio::test]
    async fn create_refuses_bad_stores_and_origins() {
        let ring = KeyRing::default();
        for (store, kind, origins, code) in [
            ("Bad Store", KeyKind::Write, vec![], "invalid_store"),
            (
                "shop",
                KeyKind::Read,
                vec!["https://a.example".to_owned()],
                "invalid_origin",
            ),
            (
                "shop",
                KeyKind::Write,
                vec!["a.example".to_owned()],
                "invalid_origin",
            ),
        ] {
            let err = create(&ring, store, kind, origins, "", now())
                .await
                .expect_err("refused");
            assert_eq!(err.code(), code);
        }
        assert!(ring.list_keys(None).await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn revoke_needs_exactly_one_live_match() {
        let ring = KeyRing::default();
        let (_, a) = create(&ring, "shop", KeyKind::Write, vec![], "", now())
            .await
            .expect("a");
        let (_, b) = create(&ring, "shop", KeyKind::Write, vec![], "", now())
            .await
            .expect("b");
        let err = revoke(&ring, "pk_", now()).await.expect_err("too short");
        assert_eq!(err.code(), "invalid_prefix");
        // Force two keys to share a prefix.
        let mut twin = b.clone();
        twin.prefix = a.prefix.clone();
        ring.put_keys(&[twin]).await.expect("put");
        let err = revoke(&ring, &a.prefix, now())
            .await
            .expect_err("ambiguous");
        assert_eq!(err.code(), "ambiguous_prefix");
        let revoked = revoke(&ring, &a.sha256[..12], now())
            .await
            .expect("by key id");
        assert_eq!(revoked.revoked_at, Some(now()));
        assert!(
            ring.find_key(&a.sha256)
                .await
                .expect("find")
                .expect("kept")
                .principal()
                .is_none()
        );
        let err = revoke(&ring, &a.sha256[..12], now())
            .await
            .expect_err("already");
        assert_eq!(err.code(), "unknown_key");
    }

    #[tokio::test]
    async fn seeding_adds_missing_keys_and_never_revives_a_revoked_one() {
        let ring = KeyRing::default();
        let configured = [ApiKeyConfig {
            key: Secret::new("pk_dev_demo_write_0000000000000000"),
            store: "demo".into(),
            kind: KeyKind::Write,
            origins: vec![],
        }];
        assert_eq!(seed(&ring, &configured, now()).await.expect("seed"), 1);
        assert_eq!(seed(&ring, &configured, now()).await.expect("seed"), 0);
        revoke(&ring, "pk_dev_demo", now()).await.expect("revoked");
        assert_eq!(seed(&ring, &configured, now()).await.expect("seed"), 0);
        let row = ring
            .find_key(&digest_hex("pk_dev_demo_write_0000000000000000"))
            .await
            .expect("find")
            .expect("kept");
        assert!(row.principal().is_none(), "still revoked");
    }
}
