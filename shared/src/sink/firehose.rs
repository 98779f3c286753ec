//! Amazon Data Firehose as the sink of the `track` Lambda (`PutRecordBatch`).
//!
//! - Events as NDJSON lines (the canonical enriched event, JSON + `\n`), consecutive events of a request
//!   packed into records of at most [`RECORD_PACK_BYTES`]: Firehose bills ingestion per record rounded up
//!   to 5 KB, so one ~0.8 KB event per record pays for 5 KB, while a packed record of six pays about
//!   what it holds. An event larger than the pack size goes alone. The `ingest` function decodes every
//!   line of a record. A record that fails fails all of its events (they are sent again together, or
//!   named in the 503), so packing never splits an event's fate.
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
/// Bytes of NDJSON packed into one record at most: Firehose's billing unit (5 KB), so packing never makes
/// a record cost more than one unit.
pub const RECORD_PACK_BYTES: usize = 5_000;

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
    /// Bytes packed into one record at most ([`RECORD_PACK_BYTES`]; 0 puts every event in its own record).
    pack_bytes: usize,
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
            pack_bytes: RECORD_PACK_BYTES,
        }
    }

    /// Packs at most `bytes` of events into one record (0: one event per record).
    pub fn with_pack_bytes(mut self, bytes: usize) -> Self {
        self.pack_bytes = bytes;
        self
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

/// One Firehose record: NDJSON lines of one or more events, and their ids in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedRecord<'a> {
    pub data: Vec<u8>,
    pub ids: Vec<&'a str>,
}

/// Packs consecutive `(id, line)` pairs into records of at most `limit` bytes, in order; a line longer
/// than `limit` goes alone.
pub fn pack_records(lines: Vec<(&str, Vec<u8>)>, limit: usize) -> Vec<PackedRecord<'_>> {
    let mut records: Vec<PackedRecord<'_>> = Vec::new();
    for (id, line) in lines {
        match records.last_mut() {
            Some(last) if last.data.len() + line.len() <= limit => {
                last.data.extend_from_slice(&line);
                last.ids.push(id);
            }
            _ => records.push(PackedRecord {
                data: line,
                ids: vec![id],
            }),
        }
    }
    records
}

/// The NDJSON line of an event in a Firehose record: its canonical JSON and a newline.
pub fn encode_record(event: &Event) -> Vec<u8> {
    let mut buf = serde_json::to_vec(event).unwrap_or_default();
    buf.push(b'\n');
    buf
}

#[async_trait]
impl EventSink for FirehoseSink {
    async fn send_batch(&self, events: Vec<Event>) -> Result<(), SinkError> {
        let mut failed_ids = Vec::new();
        let mut lines = Vec::with_capacity(events.len());
        for e in &events {
            let line = encode_record(e);
            if line.len() > MAX_RECORD_BYTES {
                failed_ids.push(e.id.clone());
                continue;
            }
            lines.push((e.id.as_str(), line));
        }
        let (records, record_ids): (Vec<Vec<u8>>, Vec<Vec<&str>>) =
            pack_records(lines, self.pack_bytes)
                .into_iter()
                .map(|p| (p.data, p.ids))
                .unzip();
        let sizes: Vec<usize> = records.iter().map(Vec::len).collect();
        for call in plan_calls(&sizes) {
            let offset = call.start;
            for i in self.put_chunk(&records[call]).await {
                failed_ids.extend(record_ids[offset + i].iter().map(|id| (*id).to_owned()));
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
            .flat_map(|r| r.split(|b| *b == b'\n').filter(|l| !l.is_empty()))
            .map(|line| {
                serde_json::from_slice::<Event>(line)
                    .expect("line is an event")
                    .id
            })
            .collect()
    }

    /// Fast retries, one event per record (the retry tests count records).
    fn fast(api: Arc<ScriptedFirehose>) -> FirehoseSink {
        FirehoseSink::new(api)
            .with_retry(
                Backoff {
                    initial: Duration::from_millis(1),
                    max: Duration::from_millis(2),
                },
                4,
            )
            .with_pack_bytes(0)
    }

    #[tokio::test]
    async fn events_are_packed_into_records_of_at_most_the_billing_unit_in_order() {
        let api = Arc::new(ScriptedFirehose::default());
        let sent = events(40);
        let one = encode_record(&sent[0]).len();
        FirehoseSink::new(api.clone())
            .send_batch(sent.clone())
            .await
            .expect("ok");
        let records = &api.calls()[0];
        let per_record = RECORD_PACK_BYTES / one;
        assert!(per_record >= 2, "test events are small ({one} bytes)");
        assert_eq!(records.len(), sent.len().div_ceil(per_record));
        assert!(records.iter().all(|r| r.len() <= RECORD_PACK_BYTES));
        let want: Vec<String> = sent.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids_in(records), want, "every event once, in order");
    }

    #[tokio::test]
    async fn a_packed_record_that_keeps_failing_names_every_event_in_it() {
        let api = Arc::new(
            ScriptedFirehose::default()
                .then(|n| {
                    Ok((0..n)
                        .map(|i| (i == 1).then(|| "InternalFailure".to_owned()))
                        .collect())
                })
                .then(|n| Ok(vec![Some("InternalFailure".to_owned()); n]))
                .then(|n| Ok(vec![Some("InternalFailure".to_owned()); n]))
                .then(|n| Ok(vec![Some("InternalFailure".to_owned()); n])),
        );
        let per_record = RECORD_PACK_BYTES / encode_record(&events(1)[0]).len();
        let sent = events(3 * per_record);
        let err = fast(api.clone())
            .with_pack_bytes(RECORD_PACK_BYTES)
            .send_batch(sent.clone())
            .await
            .expect_err("the second record never lands");
        let SinkError::Unavailable { failed_ids, .. } = err else {
            panic!("{err:?}")
        };
        let first_call = &api.calls()[0];
        assert!(first_call.len() >= 3, "three packed records");
        let second = ids_in(&first_call[1..2]);
        assert!(second.len() > 1, "the failing record holds several events");
        assert_eq!(failed_ids, second);
    }

    #[test]
    fn a_line_longer_than_the_pack_size_goes_alone() {
        let lines = vec![
            ("a", vec![b'x'; 10]),
            ("b", vec![b'x'; 30]),
            ("c", vec![b'x'; 5]),
            ("d", vec![b'x'; 5]),
        ];
        let ids: Vec<Vec<&str>> = pack_records(lines, 20).into_iter().map(|r| r.ids).collect();
        assert_eq!(ids, vec![vec!["a"], vec!["b"], vec!["c", "d"]]);
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
