//! Amazon Data Firehose as the sink of the `track` Lambda (`PutRecordBatch`).
//!
//! - One record per event: the canonical enriched event as one line of NDJSON (JSON + `\n`), which the
//!   `ingest` function decodes.
//! - Service limits: at most [`MAX_RECORDS`] records and [`MAX_CALL_BYTES`] per call, [`MAX_RECORD_BYTES`] per
//!   record. Events are far smaller (the API caps them at 32 KiB), but the split is by bytes too.
//! - Partial failures: the response's per-record `ErrorCode` says which records failed; only those are sent
//!   again, with jittered exponential backoff, at most `max_attempts` calls in all. Records that still fail
//!   are reported by id ([`SinkError::Unavailable`]) so the API answers 503 naming them: a 202 is never
//!   given for an event Firehose did not accept.
//! - Non-retryable errors (unknown stream, bad argument) fail at once.
//!
//! The call itself is behind [`RecordBatchApi`]: [`SdkFirehose`] is the real client (built once per cold
//! start); tests script partial failures with a fake, and run the real client against moto.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_firehose::primitives::Blob;
use aws_sdk_firehose::types::Record;

use super::{EventSink, SinkError};
use crate::event::Event;
use crate::retry::Backoff;

pub const MAX_RECORDS: usize = 500;
pub const MAX_CALL_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_RECORD_BYTES: usize = 1000 * 1024;

/// Why a whole `PutRecordBatch` call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PutError {
    pub retryable: bool,
    pub message: String,
}

/// One `PutRecordBatch` call.
#[async_trait]
pub trait RecordBatchApi: Send + Sync + std::fmt::Debug {
    /// Sends `records`; on success returns each record's error code (`None` = accepted), in order.
    async fn put_record_batch(&self, records: &[Vec<u8>]) -> Result<Vec<Option<String>>, PutError>;
}

/// The real Firehose client for one delivery stream.
#[derive(Debug, Clone)]
pub struct SdkFirehose {
    client: aws_sdk_firehose::Client,
    stream: String,
}

impl SdkFirehose {
    pub fn new(client: aws_sdk_firehose::Client, stream: impl Into<String>) -> Self {
        Self {
            client,
            stream: stream.into(),
        }
    }

    /// Client from the standard AWS configuration chain (`AWS_REGION`, credentials,
    /// `AWS_ENDPOINT_URL_FIREHOSE` for moto/local endpoints).
    pub async fn from_env(stream: impl Into<String>) -> Self {
        let cfg = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(aws_sdk_firehose::Client::new(&cfg), stream)
    }
}

#[async_trait]
impl RecordBatchApi for SdkFirehose {
    async fn put_record_batch(&self, records: &[Vec<u8>]) -> Result<Vec<Option<String>>, PutError> {
        let records = records
            .iter()
            .map(|r| Record::builder().data(Blob::new(r.clone())).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PutError {
                retryable: false,
                message: e.to_string(),
            })?;
        let n = records.len();
        let out = self
            .client
            .put_record_batch()
            .delivery_stream_name(&self.stream)
            .set_records(Some(records))
            .send()
            .await
            .map_err(|e| {
                let retryable = match e.as_service_error() {
                    Some(service) => service.is_service_unavailable_exception(),
                    None => true, // transport failure, timeout, unparseable response
                };
                PutError {
                    retryable,
                    message: aws_sdk_firehose::error::DisplayErrorContext(&e).to_string(),
                }
            })?;
        let codes: Vec<Option<String>> = out
            .request_responses()
            .iter()
            .map(|r| r.error_code().map(str::to_owned))
            .collect();
        if codes.len() != n {
            return Err(PutError {
                retryable: true,
                message: format!("Firehose answered {} entries for {n} records", codes.len()),
            });
        }
        Ok(codes)
    }
}

#[derive(Debug, Clone)]
pub struct FirehoseSink {
    api: Arc<dyn RecordBatchApi>,
    backoff: Backoff,
    /// Calls per chunk, first one included. Default 4 (≈ 0.1 + 0.2 + 0.4 s of waiting at most).
    max_attempts: u32,
}

impl FirehoseSink {
    pub fn new(api: Arc<dyn RecordBatchApi>) -> Self {
        Self {
            api,
            backoff: Backoff {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
            max_attempts: 4,
        }
    }

    pub fn with_retry(mut self, backoff: Backoff, max_attempts: u32) -> Self {
        self.backoff = backoff;
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sends one chunk; returns the indexes (into `records`) that were not accepted.
    async fn put_chunk(&self, records: &[Vec<u8>]) -> Vec<usize> {
        let mut pending: Vec<usize> = (0..records.len()).collect();
        for attempt in 0..self.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff.delay(attempt - 1)).await;
            }
            let batch: Vec<Vec<u8>> = pending.iter().map(|&i| records[i].clone()).collect();
            match self.api.put_record_batch(&batch).await {
                Ok(codes) => {
                    let failed: Vec<usize> = pending
                        .iter()
                        .zip(&codes)
                        .filter(|(_, code)| code.is_some())
                        .map(|(&i, _)| i)
                        .collect();
                    if !failed.is_empty() {
                        tracing::warn!(
                            failed = failed.len(),
                            sent = pending.len(),
                            attempt,
                            code = codes
                                .iter()
                                .flatten()
                                .next()
                                .map(String::as_str)
                                .unwrap_or(""),
                            "Firehose rejected some records; resending only those"
                        );
                    }
                    pending = failed;
                }
                Err(e) if e.retryable => {
                    tracing::warn!(error = %e, attempt, "PutRecordBatch failed; retrying");
                }
                Err(e) => {
                    tracing::error!(error = %e, "PutRecordBatch failed and cannot succeed on retry");
                    return pending;
                }
            }
            if pending.is_empty() {
                return pending;
            }
        }
        pending
    }
}

/// Splits records into calls within the count and byte limits; returns index ranges.
pub fn plan_calls(sizes: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut calls = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (i - start == MAX_RECORDS || bytes + size > MAX_CALL_BYTES) {
            calls.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        calls.push(start..sizes.len());
    }
    calls
}

/// The Firehose record for an event: its canonical JSON and a newline.
pub fn encode_record(event: &Event) -> Vec<u8> {
    let mut buf = serde_json::to_vec(event).unwrap_or_default();
    buf.push(b'\n');
    buf
}

#[async_trait]
impl EventSink for FirehoseSink {
    async fn send_batch(&self, events: Vec<Event>) -> Result<(), SinkError> {
        let mut failed_ids = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        let mut ids = Vec::with_capacity(events.len());
        for e in &events {
            let r = encode_record(e);
            if r.len() > MAX_RECORD_BYTES {
                failed_ids.push(e.id.clone());
                continue;
            }
            records.push(r);
            ids.push(e.id.as_str());
        }
        let sizes: Vec<usize> = records.iter().map(Vec::len).collect();
        for call in plan_calls(&sizes) {
            let offset = call.start;
            for i in self.put_chunk(&records[call]).await {
                failed_ids.push(ids[offset + i].to_owned());
            }
        }
        if failed_ids.is_empty() {
            Ok(())
        } else {
            Err(SinkError::Unavailable {
                message: format!(
                    "{} events were not accepted by Firehose; resend them",
                    failed_ids.len()
                ),
                retry_after: Duration::from_secs(1),
                failed_ids,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Answer = Box<dyn Fn(usize) -> Result<Vec<Option<String>>, PutError> + Send>;

    /// Scripted Firehose: each call takes the next answer (then "all accepted"); records every call.
    #[derive(Default)]
    struct ScriptedFirehose {
        answers: Mutex<Vec<Answer>>,
        calls: Mutex<Vec<Vec<Vec<u8>>>>,
    }

    impl std::fmt::Debug for ScriptedFirehose {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ScriptedFirehose").finish_non_exhaustive()
        }
    }

    impl ScriptedFirehose {
        fn then(
            self,
            f: impl Fn(usize) -> Result<Vec<Option<String>>, PutError> + Send + 'static,
        ) -> Self {
            self.answers.lock().expect("lock").insert(0, Box::new(f));
            self
        }
        fn calls(&self) -> Vec<Vec<Vec<u8>>> {
            self.calls.lock().expect("lock").clone()
        }
    }

    #[async_trait]
    impl RecordBatchApi for ScriptedFirehose {
        async fn put_record_batch(
            &self,
            records: &[Vec<u8>],
        ) -> Result<Vec<Option<String>>, PutError> {
            self.calls.lock().expect("lock").push(records.to_vec());
            let answer = self.answers.lock().expect("lock").pop();
            match answer {
                Some(f) => f(records.len()),
                None => Ok(vec![None; records.len()]),
            }
        }
    }

    fn events(n: usize) -> Vec<Event> {
        crate::event::test_page_views("e", n)
    }

    fn ids_in(call: &[Vec<u8>]) -> Vec<String> {
        call.iter()
            .map(|r| {
                serde_json::from_slice::<Event>(r)
                    .expect("record is an event")
                    .id
            })
            .collect()
    }

    fn fast(api: Arc<ScriptedFirehose>) -> FirehoseSink {
        FirehoseSink::new(api).with_retry(
            Backoff {
                initial: Duration::from_millis(1),
                max: Duration::from_millis(2),
            },
            4,
        )
    }

    #[tokio::test]
    async fn only_the_records_that_failed_are_sent_again() {
        let api = Arc::new(ScriptedFirehose::default().then(|n| {
            Ok((0..n)
                .map(|i| (i % 2 == 1).then(|| "ServiceUnavailableException".to_owned()))
                .collect())
        }));
        fast(api.clone())
            .send_batch(events(6))
            .await
            .expect("all accepted in the end");
        let calls = api.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(ids_in(&calls[1]), vec!["e1", "e3", "e5"]);
    }

    #[tokio::test]
    async fn records_still_failing_after_the_last_attempt_are_named_in_the_error() {
        let api = Arc::new(
            ScriptedFirehose::default()
                .then(|n| {
                    Ok((0..n)
                        .map(|i| (i == 0).then(|| "InternalFailure".to_owned()))
                        .collect())
                })
                .then(|n| Ok(vec![Some("InternalFailure".to_owned()); n]))
                .then(|n| Ok(vec![Some("InternalFailure".to_owned()); n]))
                .then(|n| Ok(vec![Some("InternalFailure".to_owned()); n])),
        );
        let err = fast(api.clone())
            .send_batch(events(3))
            .await
            .expect_err("e0 never lands");
        let SinkError::Unavailable { failed_ids, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(failed_ids, vec!["e0"]);
        assert_eq!(api.calls().len(), 4, "bounded attempts");
    }

    #[tokio::test]
    async fn a_retryable_call_failure_resends_everything_and_a_fatal_one_stops_at_once() {
        let api = Arc::new(ScriptedFirehose::default().then(|_| {
            Err(PutError {
                retryable: true,
                message: "503".into(),
            })
        }));
        fast(api.clone())
            .send_batch(events(2))
            .await
            .expect("second call succeeds");
        assert_eq!(api.calls().len(), 2);
        assert_eq!(ids_in(&api.calls()[1]), vec!["e0", "e1"]);

        let api = Arc::new(ScriptedFirehose::default().then(|_| {
            Err(PutError {
                retryable: false,
                message: "no such stream".into(),
            })
        }));
        let err = fast(api.clone())
            .send_batch(events(2))
            .await
            .expect_err("fatal");
        assert!(
            matches!(err, SinkError::Unavailable { ref failed_ids, .. } if failed_ids.len() == 2)
        );
        assert_eq!(api.calls().len(), 1);
    }

    #[test]
    fn calls_respect_the_record_count_and_byte_limits() {
        assert_eq!(
            plan_calls(&vec![100; 1200]),
            vec![0..500, 500..1000, 1000..1200]
        );
        let big = 1000 * 1024;
        assert_eq!(
            plan_calls(&[big, big, big, big, big]),
            vec![0..4, 4..5],
            "4 MiB per call"
        );
        assert_eq!(plan_calls(&[]), Vec::<std::ops::Range<usize>>::new());
    }

    #[tokio::test]
    async fn each_record_is_one_ndjson_line_of_the_enriched_event() {
        let api = Arc::new(ScriptedFirehose::default());
        let sent = events(1);
        fast(api.clone())
            .send_batch(sent.clone())
            .await
            .expect("ok");
        let record = &api.calls()[0][0];
        assert_eq!(record.last(), Some(&b'\n'));
        assert_eq!(record.iter().filter(|b| **b == b'\n').count(), 1);
        let back: Event = serde_json::from_slice(record).expect("json");
        assert_eq!(back, sent[0]);
    }
}
