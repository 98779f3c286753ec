//! API keys and the store (tenant) they belong to.
//!
//! Every request names its key in `Authorization: Bearer <key>`. The store id of every event and every
//! query comes from the key, never from the request body or parameters. Keys are held only as SHA-256
//! digests (in the ClickHouse key table, see [`keys`]); a request's key is hashed and the digest looked
//! up, so the secret itself is never compared byte by byte and timing does not reveal how much of a guess
//! matched. [`Authenticator`] caches lookups for a bounded time (the revocation bound).
//!
//! Two kinds of key per store: publishable write keys (`pk_…`, may only track; may be limited to storefront
//! origins) and secret read keys (`sk_…`, every endpoint). No key or an unknown/revoked key: 401; a write
//! key on a read endpoint: 403.

pub mod keys;

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::config::KeyKind;
use crate::error::{Error, Result};

pub use keys::{KeyRing, KeyStore, StoredKey};

/// What a key may do, checked per route: `track` (the track routes), `read` (metrics, funnels, cohorts,
/// live, dashboards), `manage` (create, change and delete custom dashboards), `erase` (customer erasure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Track,
    Read,
    Manage,
    Erase,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Track, Scope::Read, Scope::Manage, Scope::Erase];

    pub fn name(self) -> &'static str {
        match self {
            Self::Track => "track",
            Self::Read => "read",
            Self::Manage => "manage",
            Self::Erase => "erase",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }

    /// What a key of `kind` without explicit scopes may do — every key created before scopes existed
    /// keeps working as it did: write keys track; read keys do everything.
    pub fn defaults(kind: KeyKind) -> Vec<Scope> {
        match kind {
            KeyKind::Write => vec![Scope::Track],
            KeyKind::Read => Self::ALL.to_vec(),
        }
    }
}

/// Who is calling: the store the key belongs to and what the key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub store_id: String,
    pub kind: KeyKind,
    /// What the key may do (its scopes, or its kind's defaults).
    pub scopes: Vec<Scope>,
    /// Write keys: the origins whose browsers may use the key (empty: any).
    pub origins: Vec<String>,
    /// A short, non-secret name of the key (the first 12 hex digits of its SHA-256): rate-limit buckets and
    /// logs use it, never the key.
    pub key_id: String,
}

impl Principal {
    /// A write key limited to storefront origins refuses a browser request from any other origin. A
    /// request without `Origin` (server-side code, curl) is not a browser's and passes: the allow-list
    /// stops other websites from spending a store's publishable key in their visitors' browsers, while the
    /// key itself stays publishable by design.
    pub fn check_origin(&self, origin: Option<&str>) -> Result<()> {
        match origin {
            Some(o) if !self.origins.is_empty() && !self.origins.iter().any(|a| a == o) => {
                Err(Error::Forbidden(format!(
                    "origin {o} may not use this key; allowed: {}",
                    self.origins.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    /// Read endpoints need a secret (read) key.
    pub fn require_read(&self) -> Result<()> {
        self.require(Scope::Read)
    }

    /// The route needs `scope`: 403 naming it otherwise.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.contains(&scope) {
            return Ok(());
        }
        Err(Error::Forbidden(match (self.kind, scope) {
            (KeyKind::Write, _) => {
                "this endpoint needs a secret read key (sk_...); a write key can only track".into()
            }
            (KeyKind::Read, scope) => format!(
                "this key may not {}; its scopes: {}",
                scope.name(),
                self.scopes
                    .iter()
                    .map(|s| s.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }))
    }
}

pub use crate::ident::is_valid_store_id;

/// Authenticates requests against a [`KeyStore`], remembering each answer (key found, revoked or unknown)
/// for `ttl`.
///
/// The cache is what keeps the key table off the request path of a warm Lambda, and its TTL is the
/// documented bound on revocation: a revoked key stops working in every warm process within `ttl`
/// (default 60 s, `key_cache_ttl_seconds`). Keys found in the table (live or revoked) and unknown keys
/// are remembered in two separate least-recently-used caches of at most [`Authenticator::MAX_CACHED`]
/// entries each, so a flood of random keys can only evict other unknown keys, never a known one.
/// Looking up a key the process has never seen is rate limited ([`Authenticator::UNKNOWN_LOOKUPS`] per
/// second overall and [`Authenticator::UNKNOWN_LOOKUPS_PER_CLIENT`] per client address): past that a
/// request with a new key gets 429 `rate_limited` before it costs a table lookup. When the key table is
/// unreachable, the last answer seen for a key stands (expired or not) until the table is back, so
/// tracking survives a storage outage; a key never seen gets a retryable 503. A revocation is written to
/// that same table, so the bound is "TTL after the revocation is readable".
#[derive(Debug)]
pub struct Authenticator {
    keys: Arc<dyn KeyStore>,
    ttl: time::Duration,
    clock: Arc<dyn Clock>,
    cache: Mutex<Cache>,
    lookups: Option<crate::ratelimit::RateLimiter>,
    client_lookups: Option<crate::ratelimit::RateLimiter>,
}

/// Answers remembered: keys found in the table (with their principal, `None` when revoked), and keys
/// not found; each with the instant the answer expires.
#[derive(Debug)]
struct Cache {
    known: lru::LruCache<String, (Option<Principal>, OffsetDateTime)>,
    unknown: lru::LruCache<String, OffsetDateTime>,
}

impl Cache {
    fn new() -> Self {
        let cap = std::num::NonZeroUsize::new(Authenticator::MAX_CACHED)
            .unwrap_or(std::num::NonZeroUsize::MIN);
        Self {
            known: lru::LruCache::new(cap),
            unknown: lru::LruCache::new(cap),
        }
    }

    /// The remembered answer for a key: `Some((principal, expires))`, where `principal` is `None` for a
    /// revoked or unknown key.
    fn get(&mut self, sha256: &str) -> Option<(Option<Principal>, OffsetDateTime)> {
        if let Some(hit) = self.known.get(sha256) {
            return Some(hit.clone());
        }
        self.unknown.get(sha256).map(|expires| (None, *expires))
    }

    /// Whether the key was ever found in the table (a known key's refresh is never rate limited).
    fn is_known(&self, sha256: &str) -> bool {
        self.known.contains(sha256)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.known.len() + self.unknown.len()
    }
}

impl Authenticator {
    /// Most keys remembered at once, of each kind (found in the table, unknown).
    pub const MAX_CACHED: usize = 10_000;
    /// Table lookups of keys never seen, per second, in the whole process (bursts of twice as many).
    pub const UNKNOWN_LOOKUPS: u32 = 100;
    /// The same per client address.
    pub const UNKNOWN_LOOKUPS_PER_CLIENT: u32 = 10;

    pub fn new(keys: Arc<dyn KeyStore>, ttl: std::time::Duration, clock: Arc<dyn Clock>) -> Self {
        let limiter = |per_second: u32| {
            crate::ratelimit::RateLimiter::new(per_second, per_second * 2, clock.clone())
        };
        Self {
            keys,
            ttl: time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX),
            lookups: limiter(Self::UNKNOWN_LOOKUPS),
            client_lookups: limiter(Self::UNKNOWN_LOOKUPS_PER_CLIENT),
            clock,
            cache: Mutex::new(Cache::new()),
        }
    }

    /// The production wiring: `keys` (the ClickHouse store) with the configured TTL and the system clock.
    pub fn from_config(keys: Arc<dyn KeyStore>, config: &crate::config::Config) -> Self {
        Self::new(
            keys,
            std::time::Duration::from_secs(config.key_cache_ttl_seconds.into()),
            Arc::new(crate::clock::SystemClock),
        )
    }

    /// Resolves the `Authorization` header value to a principal.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal> {
        self.authenticate_from(authorization, None).await
    }

    /// [`Self::authenticate`] for a request from `client` (its address), which bounds the table lookups
    /// of keys never seen that one client can cause.
    pub async fn authenticate_from(
        &self,
        authorization: Option<&str>,
        client: Option<&str>,
    ) -> Result<Principal> {
        let header = authorization.ok_or_else(|| {
            Error::Unauthorized(
                "missing Authorization header; send `Authorization: Bearer <key>`".into(),
            )
        })?;
        let key = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized("Authorization header must be `Bearer <key>`".into())
            })?;
        let sha256 = digest_hex(key);
        let now = self.clock.now();
        let (cached, known) = {
            let mut cache = self.lock();
            (cache.get(&sha256), cache.is_known(&sha256))
        };
        if !known && !matches!(cached, Some((_, expires)) if expires > now) {
            self.allow_unknown_lookup(client)?;
        }
        let principal = match cached {
            Some((p, expires)) if expires > now => p,
            stale => match self.keys.find_key(&sha256).await {
                Ok(found) => {
                    let in_table = found.is_some();
                    let found = found.and_then(|k| k.principal());
                    if self.ttl > time::Duration::ZERO {
                        self.remember(sha256, in_table, found.clone(), now);
                    }
                    found
                }
                // The key table is unreachable: the last answer for this key stands until it is back
                // (a revocation cannot be written there meanwhile either). A key never seen: 503.
                Err(e) if e.is_retryable() && stale.is_some() => {
                    tracing::warn!(error = %e, "key table unreachable; using the last known answer");
                    stale.and_then(|(p, _)| p)
                }
                Err(e) => return Err(e.into()),
            },
        };
        principal.ok_or_else(|| Error::Unauthorized("unknown or revoked API key".into()))
    }

    /// Loads the whole key table into the cache (it holds one row per key), so a long-running process
    /// keeps authenticating its known keys while the table is briefly unreachable. The local server calls
    /// it at start; Lambdas load lazily (no extra work at cold start).
    pub async fn preload(&self) -> Result<usize> {
        let all = self.keys.list_keys(None).await?;
        let now = self.clock.now();
        let n = all.len();
        for k in all.into_iter().take(Self::MAX_CACHED) {
            let principal = k.principal();
            self.remember(k.sha256, true, principal, now);
        }
        Ok(n)
    }

    /// Remembers the table's answer for a key: found (`in_table`, with its principal or `None` when
    /// revoked) or unknown. The least recently used answer of the same kind makes room.
    fn remember(
        &self,
        sha256: String,
        in_table: bool,
        principal: Option<Principal>,
        now: OffsetDateTime,
    ) {
        let mut cache = self.lock();
        let expires = now + self.ttl;
        if in_table {
            cache.unknown.pop(&sha256);
            cache.known.put(sha256, (principal, expires));
        } else {
            cache.known.pop(&sha256);
            cache.unknown.put(sha256, expires);
        }
    }

    /// Whether a key never seen may cost a table lookup now (see the type's docs).
    fn allow_unknown_lookup(&self, client: Option<&str>) -> Result<()> {
        let over = |limiter: &Option<crate::ratelimit::RateLimiter>, key: &str| {
            limiter
                .as_ref()
                .and_then(|l| l.check(key).err().map(|wait| (l.per_second(), wait)))
        };
        let refused = client
            .and_then(|c| over(&self.client_lookups, c))
            .or_else(|| over(&self.lookups, "*"));
        match refused {
            Some((per_second, retry_after)) => {
                tracing::warn!(client, "too many lookups of unknown API keys");
                Err(Error::RateLimited {
                    per_second,
                    retry_after,
                })
            }
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Keys from configuration only, nothing cached (unit tests and in-process tools).
impl From<KeyRing> for Authenticator {
    fn from(ring: KeyRing) -> Self {
        Self::new(
            Arc::new(ring),
            std::time::Duration::ZERO,
            Arc::new(crate::clock::SystemClock),
        )
    }
}

/// Hex SHA-256 of a key: what the key table stores and looks up.
pub fn digest_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key id: the first 12 hex digits of the key's SHA-256.
pub(crate) fn key_id_of_digest(sha256: &str) -> String {
    sha256.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::config::{ApiKeyConfig, Secret};

    fn ring() -> KeyRing {
        KeyRing::from_config(&[
            ApiKeyConfig {
                key: Secret::new("pk_test_write"),
                store: "s1".into(),
                kind: KeyKind::Write,
                origins: vec![],
            },
            ApiKeyConfig {
                key: Secret::new("sk_test_read1"),
                store: "s1".into(),
                kind: KeyKind::Read,
                origins: vec![],
            },
        ])
    }

    fn auth() -> Authenticator {
        ring().into()
    }

    /// A key store that counts lookups and can be switched off.
    #[derive(Debug, Default)]
    struct Counting {
        ring: KeyRing,
        lookups: std::sync::atomic::AtomicUsize,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl KeyStore for Counting {
        async fn find_key(
            &self,
            sha256: &str,
        ) -> Result<Option<StoredKey>, crate::error::StoreError> {
            use std::sync::atomic::Ordering::SeqCst;
            self.lookups.fetch_add(1, SeqCst);
            if self.down.load(SeqCst) {
                return Err(crate::error::StoreError::Unavailable("down".into()));
            }
            self.ring.find_key(sha256).await
        }
        async fn put_keys(&self, keys: &[StoredKey]) -> Result<(), crate::error::StoreError> {
            self.ring.put_keys(keys).await
        }
        async fn list_keys(
            &self,
            store_id: Option<&str>,
        ) -> Result<Vec<StoredKey>, crate::error::StoreError> {
            self.ring.list_keys(store_id).await
        }
    }

    /// A counting key store behind a 60 s cache on a clock pinned at the epoch, and a key `kind` in it.
    async fn cached(kind: KeyKind) -> (Arc<Counting>, Arc<FixedClock>, Authenticator, String) {
        let store = Arc::new(Counting::default());
        let (secret, _) = keys::create(
            store.as_ref(),
            "s1",
            kind,
            vec![],
            "",
            OffsetDateTime::UNIX_EPOCH,
        )
        .await
        .expect("created");
        let clock = Arc::new(FixedClock::new(OffsetDateTime::UNIX_EPOCH));
        let auth = Authenticator::new(
            store.clone(),
            std::time::Duration::from_secs(60),
            clock.clone(),
        );
        (store, clock, auth, secret)
    }

    #[tokio::test]
    async fn bearer_key_resolves_to_its_store_and_kind() {
        let p = auth()
            .authenticate(Some("Bearer pk_test_write"))
            .await
            .expect("known");
        assert_eq!((p.store_id.as_str(), p.kind), ("s1", KeyKind::Write));
        assert_eq!(p.key_id.len(), 12);
        assert!(
            !p.key_id.contains("pk_"),
            "the key id reveals nothing of the key"
        );
    }

    #[tokio::test]
    async fn missing_malformed_and_unknown_keys_are_unauthorized() {
        for header in [
            None,
            Some("pk_test_write"),
            Some("Bearer "),
            Some("Bearer pk_nope_nope"),
        ] {
            let err = auth().authenticate(header).await.expect_err("must fail");
            assert_eq!(err.status(), 401, "{header:?}");
        }
    }

    #[tokio::test]
    async fn write_key_cannot_read_but_read_key_can() {
        let w = auth()
            .authenticate(Some("Bearer pk_test_write"))
            .await
            .expect("known");
        assert_eq!(w.require_read().expect_err("must fail").status(), 403);
        let r = auth()
            .authenticate(Some("Bearer sk_test_read1"))
            .await
            .expect("known");
        assert!(r.require_read().is_ok());
    }

    #[tokio::test]
    async fn a_revoked_key_works_until_the_cache_ttl_then_never_again() {
        let (store, clock, auth, secret) = cached(KeyKind::Read).await;
        let prefix: String = secret.chars().take(keys::DISPLAY_PREFIX_LEN).collect();
        let header = format!("Bearer {secret}");
        auth.authenticate(Some(&header)).await.expect("live");
        keys::revoke(store.as_ref(), &prefix, clock.now())
            .await
            .expect("revoked");
        clock.advance(time::Duration::seconds(59));
        auth.authenticate(Some(&header))
            .await
            .expect("still cached: the bound is the TTL, not zero");
        clock.advance(time::Duration::seconds(1));
        let err = auth.authenticate(Some(&header)).await.expect_err("revoked");
        assert_eq!(err.status(), 401);
        assert_eq!(store.lookups.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unknown_keys_are_remembered_so_guessing_does_not_hammer_the_table() {
        let (store, _, auth, _) = cached(KeyKind::Write).await;
        for _ in 0..5 {
            assert_eq!(
                auth.authenticate(Some("Bearer pk_guess"))
                    .await
                    .expect_err("unknown")
                    .status(),
                401
            );
        }
        assert_eq!(store.lookups.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded_under_a_flood_of_random_keys() {
        let (_, _, auth, _) = cached(KeyKind::Write).await;
        for i in 0..Authenticator::MAX_CACHED + 10 {
            let _ = auth.authenticate(Some(&format!("Bearer pk_{i}"))).await;
        }
        assert!(auth.lock().len() <= Authenticator::MAX_CACHED);
    }

    #[test]
    fn each_route_needs_its_scope_and_keys_without_scopes_keep_their_kinds() {
        use Scope::*;
        let principal = |kind, scopes: &[Scope]| {
            let mut k =
                StoredKey::from_secret("sk_x", "s1", kind, vec![], "", OffsetDateTime::UNIX_EPOCH);
            k.scopes = scopes.to_vec();
            k.principal().expect("live")
        };
        for (kind, scopes, needed, allowed) in [
            (KeyKind::Write, &[][..], Track, true),
            (KeyKind::Write, &[], Read, false),
            (KeyKind::Read, &[], Track, true),
            (KeyKind::Read, &[], Read, true),
            (KeyKind::Read, &[], Manage, true),
            (KeyKind::Read, &[], Erase, true),
            (KeyKind::Read, &[Read], Read, true),
            (KeyKind::Read, &[Read], Manage, false),
            (KeyKind::Read, &[Read], Erase, false),
            (KeyKind::Read, &[Read], Track, false),
            (KeyKind::Read, &[Erase], Erase, true),
        ] {
            let p = principal(kind, scopes);
            let got = p.require(needed);
            assert_eq!(got.is_ok(), allowed, "{kind:?} {scopes:?} needs {needed:?}");
            if let Err(e) = got {
                assert_eq!(e.status(), 403);
            }
        }
    }

    #[tokio::test]
    async fn a_write_key_may_only_track() {
        let store = KeyRing::default();
        let err = keys::create_scoped(
            &store,
            "s1",
            KeyKind::Write,
            vec![Scope::Read],
            vec![],
            "",
            OffsetDateTime::UNIX_EPOCH,
        )
        .await
        .expect_err("publishable keys cannot read");
        assert_eq!(err.field(), Some("scope"));
    }

    #[tokio::test]
    async fn a_flood_of_unknown_keys_never_evicts_a_known_one() {
        let (store, clock, auth, secret) = cached(KeyKind::Write).await;
        let header = format!("Bearer {secret}");
        auth.authenticate(Some(&header)).await.expect("known");
        // More random keys than the cache holds, slowly enough that every one is looked up.
        for i in 0..Authenticator::MAX_CACHED + 10 {
            clock.advance(time::Duration::milliseconds(10));
            let err = auth
                .authenticate(Some(&format!("Bearer pk_flood_{i}")))
                .await
                .expect_err("unknown");
            assert_eq!(err.status(), 401, "key {i}");
        }
        assert!(auth.lock().len() <= 2 * Authenticator::MAX_CACHED);
        // The table goes down right after: the known key still works (its answer was kept).
        store.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let p = auth
            .authenticate(Some(&header))
            .await
            .expect("the known key survives the flood and the outage");
        assert_eq!(p.store_id, "s1");
    }

    #[tokio::test]
    async fn lookups_of_unknown_keys_are_bounded_per_client_and_overall() {
        use std::sync::atomic::Ordering::SeqCst;
        let (store, clock, auth, secret) = cached(KeyKind::Write).await;
        let known = format!("Bearer {secret}");
        auth.authenticate(Some(&known)).await.expect("known");
        let before = store.lookups.load(SeqCst);
        let mut limited = 0;
        for i in 0..1000 {
            match auth
                .authenticate_from(Some(&format!("Bearer pk_guess_{i}")), Some("198.51.100.7"))
                .await
            {
                Err(e) if e.status() == 429 => limited += 1,
                other => assert_eq!(other.expect_err("unknown").status(), 401),
            }
        }
        let per_client = 2 * Authenticator::UNKNOWN_LOOKUPS_PER_CLIENT as usize;
        assert_eq!(
            store.lookups.load(SeqCst) - before,
            per_client,
            "one client's burst"
        );
        assert_eq!(limited, 1000 - per_client);
        // Many clients: the process-wide bound.
        for i in 0..1000 {
            let _ = auth
                .authenticate_from(
                    Some(&format!("Bearer pk_spread_{i}")),
                    Some(&format!("10.0.{}.{}", i / 250, i % 250)),
                )
                .await;
        }
        assert_eq!(
            store.lookups.load(SeqCst) - before,
            2 * Authenticator::UNKNOWN_LOOKUPS as usize - 1,
            "the process-wide burst (less the known key's first lookup)"
        );
        // A key the process knows is never refused for that, even when its answer expired and it is
        // looked up again.
        clock.advance(time::Duration::seconds(61));
        let p = auth
            .authenticate_from(Some(&known), Some("198.51.100.7"))
            .await;
        assert!(p.is_ok(), "{p:?}");
    }

    #[tokio::test]
    async fn a_failing_key_table_is_a_retryable_503_not_a_401() {
        let (store, _, auth, _) = cached(KeyKind::Write).await;
        store.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let err = auth
            .authenticate(Some("Bearer pk_any"))
            .await
            .expect_err("down");
        assert_eq!((err.status(), err.is_retryable()), (503, true));
    }

    #[tokio::test]
    async fn while_the_key_table_is_down_the_last_answer_for_a_known_key_stands() {
        let (store, clock, auth, secret) = cached(KeyKind::Write).await;
        assert_eq!(auth.preload().await.expect("preloaded"), 1);
        store.down.store(true, std::sync::atomic::Ordering::SeqCst);
        clock.advance(time::Duration::hours(1));
        let header = format!("Bearer {secret}");
        let p = auth
            .authenticate(Some(&header))
            .await
            .expect("known before the outage");
        assert_eq!(p.store_id, "s1");
        let err = auth
            .authenticate(Some("Bearer pk_never_seen"))
            .await
            .expect_err("unknown");
        assert_eq!(err.status(), 503);
    }

    #[test]
    fn store_ids_follow_the_documented_pattern() {
        for ok in ["demo", "shop-1", "a_b", "0shop"] {
            assert!(is_valid_store_id(ok), "{ok}");
        }
        for bad in ["", "Shop", "-a", "a b", "a;drop", &"x".repeat(65)] {
            assert!(!is_valid_store_id(bad), "{bad}");
        }
    }
}
