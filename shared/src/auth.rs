//! API keys and the store (tenant) they belong to.
//!
//! Every request names its key in `Authorization: Bearer <key>`. The store id of every event and every
//! query comes from the key, never from the request body or parameters. Keys are held only as SHA-256
//! digests; lookup hashes the presented key and finds the digest in a map, so the secret itself is never
//! compared byte by byte and timing does not reveal how much of a guess matched.
//!
//! Until key management arrives (its own issue), keys come from configuration.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::{ApiKeyConfig, KeyKind};
use crate::error::{Error, Result};

/// Who is calling: the store the key belongs to and what the key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub store_id: String,
    pub kind: KeyKind,
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
        match self.kind {
            KeyKind::Read => Ok(()),
            KeyKind::Write => Err(Error::Forbidden(
                "this endpoint needs a secret read key (sk_...); a write key can only track".into(),
            )),
        }
    }
}

/// Store ids: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn is_valid_store_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

#[derive(Debug, Default, Clone)]
pub struct KeyRing {
    by_digest: HashMap<[u8; 32], Principal>,
}

impl KeyRing {
    pub fn from_config(keys: &[ApiKeyConfig]) -> Self {
        let by_digest = keys
            .iter()
            .map(|k| {
                (
                    digest(k.key.expose()),
                    Principal {
                        store_id: k.store.clone(),
                        kind: k.kind,
                        origins: k.origins.clone(),
                        key_id: key_id(k.key.expose()),
                    },
                )
            })
            .collect();
        Self { by_digest }
    }

    /// Resolves the `Authorization` header value to a principal.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Principal> {
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
        self.by_digest
            .get(&digest(key))
            .cloned()
            .ok_or_else(|| Error::Unauthorized("unknown API key".into()))
    }
}

/// The first 12 hex digits of the key's SHA-256.
fn key_id(key: &str) -> String {
    digest(key)[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

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

    #[test]
    fn bearer_key_resolves_to_its_store_and_kind() {
        let p = ring()
            .authenticate(Some("Bearer pk_test_write"))
            .expect("known");
        assert_eq!((p.store_id.as_str(), p.kind), ("s1", KeyKind::Write));
        assert_eq!(p.key_id.len(), 12);
        assert!(
            !p.key_id.contains("pk_"),
            "the key id reveals nothing of the key"
        );
    }

    #[test]
    fn missing_malformed_and_unknown_keys_are_unauthorized() {
        for header in [
            None,
            Some("pk_test_write"),
            Some("Bearer "),
            Some("Bearer pk_nope_nope"),
        ] {
            let err = ring().authenticate(header).expect_err("must fail");
            assert_eq!(err.status(), 401, "{header:?}");
        }
    }

    #[test]
    fn write_key_cannot_read_but_read_key_can() {
        let w = ring()
            .authenticate(Some("Bearer pk_test_write"))
            .expect("known");
        assert_eq!(w.require_read().expect_err("must fail").status(), 403);
        let r = ring()
            .authenticate(Some("Bearer sk_test_read1"))
            .expect("known");
        assert!(r.require_read().is_ok());
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
