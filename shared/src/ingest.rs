//! `ingest`: the destination of the Firehose delivery stream, implementing Amazon Data Firehose's "HTTP
//! endpoint delivery request and response specifications" (protocol version 1.0).
//!
//! Request: `POST`, `X-Amz-Firehose-Request-Id` (stable across retries of one batch),
//! `X-Amz-Firehose-Access-Key`, `X-Amz-Firehose-Protocol-Version`, `X-Amz-Firehose-Source-Arn`, optional
//! `Content-Encoding: gzip`; body `{ "requestId", "timestamp" (ms), "records": [{ "data": base64 }] }`.
//! Each record holds one or more NDJSON lines, each a canonical enriched [`Event`] written by `track`.
//!
//! Response: `{ "requestId", "timestamp" }` (+ `"errorMessage"` on failure), JSON, with `Content-Length`:
//! - 200 once every good record is in ClickHouse, as **one insert per delivery**: Firehose already made
//!   the batch (its buffer size and interval are what `batch_size` / `flush_interval_seconds` describe for
//!   the local buffer), so splitting it again would only multiply inserts and parts; the already-stored
//!   check before it is one query, its ids sent as external data (`store/clickhouse/external.rs`);
//! - records that can never be inserted (not base64, not JSON, not a valid event, older than retention) go
//!   to `commerce_events_rejects` with the reason and the raw payload, and do not block the others; the
//!   others get exactly track's rules (see [`crate::event::Validator::revalidate`]);
//! - 401 without the access key, 403 with a wrong one (compared in constant time);
//! - 400 for a body that is not a Firehose delivery; 413 when it is larger than `max_ingest_bytes`
//!   (after gzip) or holds more than [`MAX_RECORDS`] records (refused while parsing); 405 for other
//!   methods;
//! - at most [`MAX_REJECTS`] rejects are stored one by one per delivery; one more row counts the rest;
//! - 503 when ClickHouse is unavailable or overloaded (Firehose retries the same request id), 500 when it
//!   refuses the rows (Firehose retries, then backs the batch up to S3).
//!
//! Idempotency: a retried delivery recomputes the same insert, so the insert dedup token matches and the
//! store's pre-insert id check skips events already stored; rejects use a token from the request id.
//! Nothing runs after the response: a Lambda is frozen between invocations.
//!
//! Accepted variants (the real service can send them too): a missing request-id header falls back to the
//! body's `requestId`; `timestamp` in seconds is tolerated (moto sends seconds); without a configured
//! access key any caller is accepted (only for local runs; the ingest Lambda refuses to start so).

use std::io::Read;
use std::sync::Arc;

use base64::Engine;
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Clock;
use crate::config::{Config, Secret};
use crate::event::{Event, Validator};
use crate::store::{EventStore, Reject, StoreError};

#[derive(Debug)]
pub struct Ingest {
    store: Arc<dyn EventStore>,
    validator: Validator,
    access_key: Option<Secret>,
    max_bytes: usize,
    clock: Arc<dyn Clock>,
}

/// The rejects of one delivery: the first [`MAX_REJECTS`] kept one by one, the rest counted and summed up
/// in one more row (with the first of them's reason and payload, cut to 1 KiB), so memory and rows stay
/// bounded whatever the delivery holds.
#[derive(Debug, Default)]
struct RejectLog {
    kept: Vec<Reject>,
    more: usize,
    first_more: Option<Reject>,
}

impl RejectLog {
    fn push(&mut self, r: Reject) {
        if self.kept.len() < MAX_REJECTS {
            self.kept.push(r);
        } else {
            self.more += 1;
            if self.first_more.is_none() {
                let mut r = r;
                let cut = (0..=r.raw.len().min(1024))
                    .rev()
                    .find(|i| r.raw.is_char_boundary(*i))
                    .unwrap_or(0);
                r.raw.truncate(cut);
                self.first_more = Some(r);
            }
        }
    }

    /// How many records were rejected in all.
    fn count(&self) -> usize {
        self.kept.len() + self.more
    }

    /// The rows to store.
    fn into_rows(self) -> Vec<Reject> {
        let mut rows = self.kept;
        if let Some(mut r) = self.first_more {
            r.reason = format!(
                "{} more records of this delivery were rejected and not kept one by one; the first of \
                 them: {}",
                self.more, r.reason
            );
            rows.push(r);
        }
        rows
    }
}

/// What one delivery produced (also logged).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub records: usize,
    pub events: usize,
    pub rejected: usize,
}

/// Most records one delivery may hold: Firehose's largest buffer (128 MiB) of events of at least ~500
/// bytes. A delivery with more is refused (413) while it is parsed, before they are all in memory, so a
/// small gzip body of millions of tiny records cannot exhaust the function.
pub const MAX_RECORDS: usize = 250_000;

/// Most rejected records stored for one delivery; beyond, one more row says how many more were rejected
/// and why the first one was, so a hostile delivery cannot write millions of reject rows.
pub const MAX_REJECTS: usize = 1_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    request_id: Option<String>,
    #[allow(dead_code)]
    timestamp: Option<i64>,
    records: Records,
}

/// The delivery's records, at most [`MAX_RECORDS`] (parsing stops with an error past that).
struct Records(Vec<DeliveryRecord>);

impl<'de> Deserialize<'de> for Records {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bounded;
        impl<'de> serde::de::Visitor<'de> for Bounded {
            type Value = Records;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an array of at most {MAX_RECORDS} records")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Records, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(record) = seq.next_element()? {
                    if out.len() == MAX_RECORDS {
                        return Err(serde::de::Error::custom(TOO_MANY_RECORDS));
                    }
                    out.push(record);
                }
                Ok(Records(out))
            }
        }
        d.deserialize_seq(Bounded)
    }
}

/// The parse error of a delivery over [`MAX_RECORDS`] (answered 413).
const TOO_MANY_RECORDS: &str = "too many records";

#[derive(Deserialize)]
struct DeliveryRecord {
    data: String,
}

impl Ingest {
    /// The destination for `config`: its validation rules, `firehose_access_key` (empty: any caller is
    /// accepted, as against moto locally; the ingest Lambda refuses to start without one) and
    /// `limits.max_ingest_bytes`.
    pub fn new(store: Arc<dyn EventStore>, config: &Config, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            validator: Validator::from_config(config),
            access_key: Some(config.firehose_access_key.clone()).filter(|k| !k.is_empty()),
            max_bytes: config.limits.max_ingest_bytes,
            clock,
        }
    }

    pub async fn handle(&self, req: Request) -> Response<Body> {
        let header_id = header_str(&req, "x-amz-firehose-request-id").map(str::to_owned);
        let id_for_errors = header_id.clone().unwrap_or_default();
        if req.method() != Method::POST {
            return self.respond(
                StatusCode::METHOD_NOT_ALLOWED,
                &id_for_errors,
                Some("only POST is accepted"),
            );
        }
        if let Some(expected) = &self.access_key {
            match header_str(&req, "x-amz-firehose-access-key") {
                None => {
                    return self.respond(
                        StatusCode::UNAUTHORIZED,
                        &id_for_errors,
                        Some("missing X-Amz-Firehose-Access-Key"),
                    );
                }
                Some(given) if !keys_match(given, expected.expose()) => {
                    return self.respond(
                        StatusCode::FORBIDDEN,
                        &id_for_errors,
                        Some("wrong access key"),
                    );
                }
                Some(_) => {}
            }
        }
        let body = match self.body(&req) {
            Ok(b) => b,
            Err((status, msg)) => return self.respond(status, &id_for_errors, Some(&msg)),
        };
        let delivery: Delivery = match serde_json::from_slice(&body) {
            Ok(d) => d,
            Err(e) if e.to_string().starts_with(TOO_MANY_RECORDS) => {
                return self.respond(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &id_for_errors,
                    Some(&format!(
                        "a delivery holds at most {MAX_RECORDS} records; lower the stream's buffer size"
                    )),
                );
            }
            Err(e) => {
                return self.respond(
                    StatusCode::BAD_REQUEST,
                    &id_for_errors,
                    Some(&format!("body is not a Firehose delivery request: {e}")),
                );
            }
        };
        let request_id = header_id
            .or(delivery.request_id.clone())
            .unwrap_or_default();
        if request_id.is_empty() {
            return self.respond(
                StatusCode::BAD_REQUEST,
                "",
                Some("no request id (header or body)"),
            );
        }
        match self.deliver(&request_id, delivery).await {
            Ok(outcome) => {
                tracing::info!(
                    request_id,
                    records = outcome.records,
                    events = outcome.events,
                    rejected = outcome.rejected,
                    "delivery stored"
                );
                self.respond(StatusCode::OK, &request_id, None)
            }
            Err(e) => {
                let status = if e.is_retryable() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::INTERNAL_SERVER_ERROR
                };
                tracing::error!(request_id, error = %e, "delivery failed; Firehose will retry");
                self.respond(status, &request_id, Some("storage unavailable; retry"))
            }
        }
    }

    /// The body, gunzipped when `Content-Encoding: gzip`, within `max_bytes`.
    fn body(&self, req: &Request) -> Result<Vec<u8>, (StatusCode, String)> {
        let raw: &[u8] = req.body().as_ref();
        let too_large = |n: usize| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "delivery is larger than {} bytes (at least {n})",
                    self.max_bytes
                ),
            )
        };
        if raw.len() > self.max_bytes {
            return Err(too_large(raw.len()));
        }
        let gzip =
            header_str(req, "content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
        if !gzip {
            return Ok(raw.to_vec());
        }
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .take(self.max_bytes as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("body is not valid gzip: {e}"),
                )
            })?;
        if out.len() > self.max_bytes {
            return Err(too_large(out.len()));
        }
        Ok(out)
    }

    /// Decodes, validates and stores one delivery.
    async fn deliver(&self, request_id: &str, delivery: Delivery) -> Result<Outcome, StoreError> {
        let now = self.clock.now();
        let started = std::time::Instant::now();
        let mut events: Vec<Event> = Vec::new();
        let mut rejects = RejectLog::default();
        let records = delivery.records.0.len();
        for (index, record) in delivery.records.0.into_iter().enumerate() {
            let reject = |raw: String, reason: String, store_id: &str, event_id: &str| Reject {
                received_at: now,
                source: "firehose",
                request_id: request_id.to_owned(),
                record_index: u32::try_from(index).unwrap_or(u32::MAX),
                store_id: store_id.to_owned(),
                event_id: event_id.to_owned(),
                reason,
                raw,
            };
            let bytes =
                match base64::engine::general_purpose::STANDARD.decode(record.data.as_bytes()) {
                    Ok(b) => b,
                    Err(e) => {
                        rejects.push(reject(
                            record.data,
                            format!("record data is not base64: {e}"),
                            "",
                            "",
                        ));
                        continue;
                    }
                };
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    rejects.push(reject(
                        record.data,
                        format!("record is not UTF-8: {e}"),
                        "",
                        "",
                    ));
                    continue;
                }
            };
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Event>(line) {
                    Ok(mut event) => match self.validator.revalidate(&mut event, now) {
                        Ok(()) => events.push(event),
                        Err(fe) => rejects.push(reject(
                            line.to_owned(),
                            format!("{}: {} ({})", fe.code, fe.message, fe.field),
                            &event.store_id,
                            &event.id,
                        )),
                    },
                    Err(e) => {
                        // Attributed to its store when the record still names a valid one, so that
                        // store's erasure and retention find it and no other store's does.
                        let named = |key: &str| {
                            serde_json::from_str::<serde_json::Value>(line)
                                .ok()
                                .and_then(|v| v.get(key)?.as_str().map(str::to_owned))
                        };
                        let store_id = named("storeId")
                            .filter(|s| crate::ident::is_valid_store_id(s))
                            .unwrap_or_default();
                        rejects.push(reject(
                            line.to_owned(),
                            format!("not an event: {e}"),
                            &store_id,
                            "",
                        ))
                    }
                }
            }
        }
        let rejected = rejects.count();
        let rejects = rejects.into_rows();
        let decoded = started.elapsed();
        // One insert: same delivery → same token, and ids already stored are skipped, so a retried request
        // id (or a duplicate delivery) is stored once.
        self.store
            .insert_batches(&events, events.len().max(1))
            .await?;
        if !rejects.is_empty() {
            tracing::warn!(request_id, rejected = rejects.len(), first_reason = %rejects[0].reason,
                "records rejected to commerce_events_rejects");
            let token = format!(
                "{:x}",
                Sha256::digest(format!("rejects:{request_id}:{}", rejects.len()))
            );
            self.store.insert_rejects(&rejects, &token).await?;
        }
        tracing::debug!(
            request_id,
            decode_ms = decoded.as_secs_f64() * 1e3,
            total_ms = started.elapsed().as_secs_f64() * 1e3,
            "delivery timings"
        );
        Ok(Outcome {
            records,
            events: events.len(),
            rejected,
        })
    }

    fn respond(&self, status: StatusCode, request_id: &str, error: Option<&str>) -> Response<Body> {
        let ms = i64::try_from(self.clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let mut body = serde_json::json!({ "requestId": request_id, "timestamp": ms });
        if let Some(msg) = error {
            body["errorMessage"] = msg.into();
        }
        let text = body.to_string();
        let len = text.len();
        let mut resp = Response::new(Body::Text(text));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        resp
    }
}

fn header_str<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// Constant-time comparison (over SHA-256 digests, so lengths leak nothing either).
fn keys_match(given: &str, expected: &str) -> bool {
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.ct_eq(&b).into()
}
