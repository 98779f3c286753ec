//! The crate's one error type.
//!
//! Every failure a caller can see is a variant of [`Error`]. Each variant knows its HTTP status, its stable
//! machine-readable `code`, the request field at fault (when there is one) and whether retrying the same
//! request can succeed. [`crate::api::response`] turns it into the module API's JSON body
//! `{ "error": { "code", "message", "field"? } }`, the one place that builds that object (the batch
//! report of `POST /analytics/events` embeds the same object next to its accepted and rejected events).
//! The Firehose endpoint ([`crate::ingest`]) answers in the shape the Firehose HTTP endpoint protocol
//! prescribes instead (`{ "requestId", "timestamp", "errorMessage" }`), with the same statuses.
//!
//! [`StoreError`] is the storage error every port and adapter reports; it lives here, on the ground
//! floor, so the ports need not import the store.

use std::time::Duration;

/// A field-level problem with one event or one request parameter.
///
/// `code` is stable (clients may branch on it); `message` is for humans; `field` is a dotted path into the
/// request (`properties.total`, `context.country`, `events[3].type` in batch reports).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub code: &'static str,
    pub message: String,
    pub field: String,
}

impl FieldError {
    pub fn new(code: &'static str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: field.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A storage failure, as every adapter reports it (ClickHouse, BigQuery, in memory). Defined here, on the
/// ground floor, so that the ports in `query`, `auth`, `retention` and `erasure` can name it without
/// importing the store module; `crate::store` re-exports it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Transport failure, timeout, overload or another state that a later retry can get past.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The storage refused the request itself (schema or data problem); retrying the same data is useless.
    #[error("storage rejected the request: {0}")]
    Rejected(String),
    /// A read needed more memory than one read query may use (`clickhouse_query_max_memory_bytes`), even
    /// spilling its aggregation to disk: retrying the same read is useless; a shorter period or a filter
    /// can succeed.
    #[error("read over its memory limit: {0}")]
    ReadLimit(String),
    /// A read ran past the time one read may take (`clickhouse_query_timeout_seconds`,
    /// `bigquery_query_timeout_seconds`: below API Gateway's and the metrics function's 30 s), or past
    /// what was left of its request's time ([`crate::query::deadline`]): the same read would almost
    /// always run as long again, so it is not retried on its own; a shorter period, a filter or fewer
    /// widgets can succeed.
    #[error("read over its time limit: {0}")]
    ReadTimeout(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request (or one event in it) is malformed or violates the event contract. Never retryable.
    #[error("{0}")]
    Invalid(FieldError),

    /// The body or a part of it is larger than a documented limit. Never retryable as is.
    #[error("{message}")]
    TooLarge { message: String, field: String },

    /// No `Authorization: Bearer <key>` header, or a key that is not known.
    #[error("{0}")]
    Unauthorized(String),

    /// A valid key that may not do this (e.g. a write key on a read endpoint).
    #[error("{0}")]
    Forbidden(String),

    /// The request line's target is longer than the server reads (local server; API Gateway has its own).
    #[error("{message}")]
    UriTooLong { message: String },

    /// The request's headers are larger or more numerous than the server reads.
    #[error("{message}")]
    HeadersTooLarge { message: String },

    /// The client did not send its whole body in time (local server's body-read timeout).
    #[error("{message}")]
    RequestTimeout { message: String },

    #[error("no route for {method} {path}")]
    NotFound { method: String, path: String },

    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },

    /// The pipeline cannot take more events right now (buffer full, Firehose throttling, ClickHouse down).
    /// Nothing from the request was accepted unless `accepted_ids` says otherwise; clients should resend the
    /// events named in `failed_ids` after `retry_after` (event ids make resending harmless).
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after: Duration,
        failed_ids: Vec<String>,
    },

    /// The key made more requests than its rate limit allows (see [`crate::ratelimit`]).
    #[error(
        "rate limit exceeded for this key ({per_second} requests/s); retry after the Retry-After delay"
    )]
    RateLimited {
        per_second: u32,
        retry_after: Duration,
    },

    /// The configuration is unusable; reported at start-up, never per request.
    #[error("configuration error: {0}")]
    Config(String),

    /// A storage failure that is not the caller's fault.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// A bug or an unexpected state; the message is logged, clients get a generic text.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(
        code: &'static str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::Invalid(FieldError::new(code, field, message))
    }

    /// Whether sending the same request again later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable { .. }
            | Self::RateLimited { .. }
            | Self::RequestTimeout { .. }
            | Self::Internal(_) => true,
            Self::Store(e) => e.is_retryable(),
            Self::Invalid(_)
            | Self::TooLarge { .. }
            | Self::UriTooLong { .. }
            | Self::HeadersTooLarge { .. }
            | Self::Unauthorized(_)
            | Self::Forbidden(_)
            | Self::NotFound { .. }
            | Self::MethodNotAllowed { .. }
            | Self::Config(_) => false,
        }
    }

    /// HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::RequestTimeout { .. } => 408,
            Self::TooLarge { .. } => 413,
            Self::UriTooLong { .. } => 414,
            Self::HeadersTooLarge { .. } => 431,
            Self::RateLimited { .. } => 429,
            Self::Unavailable { .. } => 503,
            Self::Store(StoreError::ReadLimit(_)) => 422,
            Self::Store(StoreError::ReadTimeout(_)) => 504,
            Self::Store(e) if e.is_retryable() => 503,
            Self::Store(_) | Self::Config(_) | Self::Internal(_) => 500,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(f) => f.code,
            Self::TooLarge { .. } => "payload_too_large",
            Self::UriTooLong { .. } => "uri_too_long",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Unavailable { .. } => "unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::Store(StoreError::ReadLimit(_)) => "read_too_large",
            Self::Store(StoreError::ReadTimeout(_)) => "read_timeout",
            Self::Store(e) if e.is_retryable() => "storage_unavailable",
            Self::Store(_) => "storage_error",
            Self::Config(_) => "configuration_error",
            Self::Internal(_) => "internal_error",
        }
    }

    /// The request field at fault, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid(f) => Some(&f.field),
            Self::TooLarge { field, .. } => Some(field),
            Self::UriTooLong { .. } => Some("uri"),
            Self::HeadersTooLarge { .. } => Some("headers"),
            Self::RequestTimeout { .. } => Some("body"),
            Self::Store(StoreError::ReadLimit(_) | StoreError::ReadTimeout(_)) => Some("period"),
            _ => None,
        }
    }

    /// Message safe to show to clients: internal details (SQL, server text) are logged, not returned.
    pub fn public_message(&self) -> String {
        match self {
            Self::Store(StoreError::ReadLimit(_)) => "this read needs more memory than one query may use \
                 on the warehouse (clickhouse_query_max_memory_bytes), even spilling to disk; choose a \
                 shorter period or add a filter"
                .to_owned(),
            Self::Store(StoreError::ReadTimeout(_)) => "this read takes longer than one query may run on \
                 the warehouse (clickhouse_query_timeout_seconds, bigquery_query_timeout_seconds) or than \
                 the request has left; choose a shorter period, add a filter, or read fewer widgets at once"
                .to_owned(),
            Self::Store(e) if e.is_retryable() => {
                "storage is temporarily unavailable; retry later".to_owned()
            }
            Self::Store(_) | Self::Internal(_) | Self::Config(_) => {
                "internal error; the incident was logged".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// Seconds a client should wait before retrying, when the error says so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } | Self::RateLimited { retry_after, .. } => {
                Some(*retry_after)
            }
            Self::Store(e) if e.is_retryable() => Some(Duration::from_secs(1)),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::{Error, StoreError};

    const SERVER: &str = "Code: 159. DB::Exception: Timeout exceeded";

    #[test]
    fn each_storage_failure_has_its_status_code_field_and_retry_advice() {
        let cases = [
            (
                StoreError::Unavailable(SERVER.into()),
                503,
                "storage_unavailable",
                None,
                true,
            ),
            (
                StoreError::Rejected(SERVER.into()),
                500,
                "storage_error",
                None,
                false,
            ),
            (
                StoreError::ReadLimit(SERVER.into()),
                422,
                "read_too_large",
                Some("period"),
                false,
            ),
            (
                StoreError::ReadTimeout(SERVER.into()),
                504,
                "read_timeout",
                Some("period"),
                false,
            ),
        ];
        for (store_error, status, code, field, retryable) in cases {
            let e = Error::Store(store_error);
            assert_eq!(
                (e.status(), e.code(), e.field(), e.is_retryable()),
                (status, code, field, retryable),
                "{e}"
            );
            assert!(
                !e.public_message().contains(SERVER),
                "the server's text stays in the log: {}",
                e.public_message()
            );
        }
    }
}
