//! Parsers of environment variables, one per kind of setting (see [`super::settings`]). Each names the
//! variable in its error.

use std::collections::BTreeMap;

use super::{ApiKeyConfig, KeyKind, Provider, Secret};
use crate::error::{Error, Result};

/// A value with `FromStr` (numbers, booleans), surrounding spaces ignored.
pub(super) fn from_str<T: std::str::FromStr>(name: &str, v: String) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| Error::Config(format!("environment variable {name}={v:?} is not valid")))
}

/// Like [`from_str`], for a setting whose default is computed from others.
pub(super) fn optional<T: std::str::FromStr>(name: &str, v: String) -> Result<Option<T>> {
    from_str(name, v).map(Some)
}

/// Text as it is.
pub(super) fn text(_name: &str, v: String) -> Result<String> {
    Ok(v)
}

/// Comma-separated values, spaces around each ignored.
pub(super) fn list(_name: &str, v: String) -> Result<Vec<String>> {
    Ok(v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect())
}

/// A secret as it is (never logged).
pub(super) fn secret(_name: &str, v: String) -> Result<Secret> {
    Ok(Secret::new(v))
}

/// `clickhouse` or `bigquery`.
pub(super) fn provider(name: &str, v: String) -> Result<Provider> {
    match v.trim() {
        "clickhouse" => Ok(Provider::Clickhouse),
        "bigquery" => Ok(Provider::Bigquery),
        _ => Err(Error::Config(format!(
            "{name} must be clickhouse or bigquery, got {v:?}"
        ))),
    }
}

/// Comma-separated `store:days` pairs, e.g. `shop-a:30,shop-b:730`.
pub(super) fn store_days(name: &str, v: String) -> Result<BTreeMap<String, u32>> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (store, days) = item.split_once(':').ok_or_else(|| {
                Error::Config(format!("{name} entry {item:?} must be store:days"))
            })?;
            let days = days.trim().parse().map_err(|_| {
                Error::Config(format!(
                    "{name} entry {item:?}: days must be a whole number"
                ))
            })?;
            Ok((store.trim().to_owned(), days))
        })
        .collect()
}

/// Comma-separated `key:store:kind[:origin|origin...]` entries, e.g. `pk_live_x:shop1:write`.
pub(super) fn key_list(name: &str, v: String) -> Result<Vec<ApiKeyConfig>> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, item)| {
            // key:store:kind, optionally :origin|origin (origins contain ':' themselves, so at most 4 parts).
            let mut parts = item.splitn(4, ':');
            let (Some(key), Some(store), Some(kind)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(Error::Config(format!(
                    "{name} entry {i} must be key:store:kind[:origin|origin...]"
                )));
            };
            let origins: Vec<String> = parts
                .next()
                .map(|o| {
                    o.split('|')
                        .map(str::trim)
                        .filter(|o| !o.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let kind = match kind {
                "write" => KeyKind::Write,
                "read" => KeyKind::Read,
                _ => {
                    return Err(Error::Config(format!(
                        "{name} entry {i}: kind must be write or read"
                    )));
                }
            };
            Ok(ApiKeyConfig {
                key: Secret::new(key),
                store: store.to_owned(),
                kind,
                origins,
            })
        })
        .collect()
}
