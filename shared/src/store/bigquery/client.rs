//! A small BigQuery REST (API v2) client on `reqwest`: queries with named parameters (paged), dry runs,
//! and streaming inserts. Only what the adapter needs; every call maps failures to [`StoreError`].
//!
//! Contract, including what the emulator (`scripts/bigquery`) does differently:
//! - a query answer with a non-empty `errors` list is a failure even with HTTP 200 (the emulator answers a
//!   failing query that way);
//! - timestamps are requested as int64 microseconds (`formatOptions.useInt64Timestamp`), never as the
//!   float seconds the API otherwise returns;
//! - an unfinished job (`jobComplete: false`) is polled with `getQueryResults`, and results are read page
//!   by page (`pageToken`) until the last;
//! - `insertAll` with per-row `insertErrors` is refused whole ([`StoreError::Rejected`]); the emulator
//!   answers a bad row with HTTP 500 instead, so callers validate rows before sending (ours are validated
//!   events), and a 5xx is retryable;
//! - HTTP 5xx, 429 and transport errors are [`StoreError::Unavailable`] (retryable); other 4xx are
//!   [`StoreError::Rejected`].

use std::time::Duration;

use serde_json::{Value, json};

use super::auth::TokenSource;
use crate::config::BigQueryConfig;
use crate::store::StoreError;

/// A query parameter (`@name` in the SQL).
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    String(String),
    Int64(i64),
    Float64(f64),
    Bool(bool),
    /// Microseconds since the Unix epoch.
    Timestamp(i64),
    Strings(Vec<String>),
}

impl Param {
    fn to_json(&self, name: &str) -> Value {
        let (kind, value) = match self {
            Self::String(s) => ("STRING", json!({ "value": s })),
            Self::Int64(n) => ("INT64", json!({ "value": n.to_string() })),
            Self::Float64(x) => ("FLOAT64", json!({ "value": x.to_string() })),
            Self::Bool(b) => ("BOOL", json!({ "value": b.to_string() })),
            Self::Timestamp(us) => ("TIMESTAMP", json!({ "value": timestamp_literal(*us) })),
            Self::Strings(items) => {
                return json!({
                    "name": name,
                    "parameterType": { "type": "ARRAY", "arrayType": { "type": "STRING" } },
                    "parameterValue": { "arrayValues": items.iter().map(|s| json!({ "value": s })).collect::<Vec<_>>() },
                });
            }
        };
        json!({ "name": name, "parameterType": { "type": kind }, "parameterValue": value })
    }
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00:00`, the form BigQuery parses for TIMESTAMP parameters.
fn timestamp_literal(us: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// The rows of a query, as the API returns them (every cell a string or null), with column names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    /// What the query scanned (billing is by bytes scanned).
    pub bytes_processed: u64,
}

impl Rows {
    /// The index of column `name`.
    pub fn column(&self, name: &str) -> Result<usize, StoreError> {
        self.columns
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| StoreError::Rejected(format!("the result has no column {name}")))
    }

    /// Cell `col` of row `row` as an integer (NULL: 0).
    pub fn i64(&self, row: usize, col: usize) -> Result<i64, StoreError> {
        match self.cell(row, col) {
            None => Ok(0),
            Some(s) => s
                .parse()
                .map_err(|_| StoreError::Rejected(format!("{s:?} is not an integer"))),
        }
    }

    /// Cell `col` of row `row` as a float (NULL: 0).
    pub fn f64(&self, row: usize, col: usize) -> Result<f64, StoreError> {
        match self.cell(row, col) {
            None => Ok(0.0),
            Some(s) => s
                .parse()
                .map_err(|_| StoreError::Rejected(format!("{s:?} is not a number"))),
        }
    }

    /// Cell `col` of row `row` as a list of strings (an ARRAY<STRING> column; NULL: empty).
    pub fn strings(&self, row: usize, col: usize) -> Result<Vec<String>, StoreError> {
        let Some(text) = self.cell(row, col) else {
            return Ok(Vec::new());
        };
        let items: Vec<Value> = serde_json::from_str(text)
            .map_err(|e| StoreError::Rejected(format!("{text:?} is not an array ({e})")))?;
        Ok(items
            .iter()
            .filter_map(|item| item["v"].as_str().map(str::to_owned))
            .collect())
    }

    /// Cell `col` of row `row`, a TIMESTAMP read as int64 microseconds (NULL: None).
    pub fn timestamp(
        &self,
        row: usize,
        col: usize,
    ) -> Result<Option<time::OffsetDateTime>, StoreError> {
        if self.cell(row, col).is_none() {
            return Ok(None);
        }
        let us = self.i64(row, col)?;
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
            .map(Some)
            .map_err(|e| StoreError::Rejected(format!("timestamp {us} out of range ({e})")))
    }

    /// Cell `col` of row `row` as text (NULL: empty).
    pub fn string(&self, row: usize, col: usize) -> String {
        self.cell(row, col).unwrap_or_default().to_owned()
    }

    pub fn cell(&self, row: usize, col: usize) -> Option<&str> {
        self.rows.get(row)?.get(col)?.as_deref()
    }
}

/// Talks to one project's BigQuery API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `<endpoint>/bigquery/v2/projects/<project>`.
    base: String,
    location: String,
    tokens: TokenSource,
    /// How long one [`Client::read`] may take.
    read_timeout: Duration,
}

/// How long one request may take; a query longer than this is polled.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How much later than a read's own deadline BigQuery stops its job.
const READ_JOB_GRACE: Duration = Duration::from_secs(5);
/// Rows per result page.
const PAGE_ROWS: u32 = 50_000;

impl Client {
    pub fn new(config: &BigQueryConfig, tokens: TokenSource) -> Self {
        install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: format!(
                "{}/bigquery/v2/projects/{}",
                config.endpoint.trim_end_matches('/'),
                config.project
            ),
            location: config.location.clone(),
            tokens,
            read_timeout: Duration::from_millis(config.read_timeout_ms),
        }
    }

    /// [`Client::query`] for a read that answers a request: past `bigquery_query_timeout_seconds`, or
    /// past what is left of its request's time when less ([`crate::query::deadline`]), it is
    /// [`StoreError::ReadTimeout`] (the caller's answer must come before API Gateway's and the function's
    /// 30 s). The job gets `jobTimeoutMs` a few seconds later than our own deadline, so BigQuery stops
    /// the work we no longer wait for, and its own stop never races our answer.
    pub async fn read(&self, sql: &str, params: &[(&str, Param)]) -> Result<Rows, StoreError> {
        let limit = crate::query::deadline::read_limit(self.read_timeout)?;
        let job_timeout = limit + READ_JOB_GRACE;
        match tokio::time::timeout(limit, self.run(sql, params, Some(job_timeout))).await {
            Ok(rows) => rows,
            Err(_) => Err(StoreError::ReadTimeout(format!(
                "BigQuery: the read ran past {limit:?}"
            ))),
        }
    }

    /// Runs `sql` (standard SQL, named parameters) and reads every page of its result.
    pub async fn query(&self, sql: &str, params: &[(&str, Param)]) -> Result<Rows, StoreError> {
        self.run(sql, params, None).await
    }

    async fn run(
        &self,
        sql: &str,
        params: &[(&str, Param)],
        job_timeout: Option<Duration>,
    ) -> Result<Rows, StoreError> {
        let mut body = json!({
            "query": sql,
            "useLegacySql": false,
            "parameterMode": "NAMED",
            "queryParameters": params.iter().map(|(n, p)| p.to_json(n)).collect::<Vec<_>>(),
            "formatOptions": { "useInt64Timestamp": true },
            "location": self.location,
            "maxResults": PAGE_ROWS,
            "timeoutMs": 50_000,
        });
        if let Some(t) = job_timeout {
            body["jobTimeoutMs"] = json!(t.as_millis().to_string());
        }
        let first = self
            .send(self.http.post(format!("{}/queries", self.base)).json(&body))
            .await?;
        let mut rows = Rows::default();
        let mut page = first;
        loop {
            let job_id = page["jobReference"]["jobId"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if page["jobComplete"].as_bool() == Some(false) {
                page = self.results(&job_id, None).await?;
                continue;
            }
            if rows.columns.is_empty() {
                rows.columns = page["schema"]["fields"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .map(|f| f["name"].as_str().unwrap_or_default().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                rows.bytes_processed = number(&page["totalBytesProcessed"]);
            }
            if let Some(list) = page["rows"].as_array() {
                for r in list {
                    let cells = r["f"].as_array().map_or_else(Vec::new, |cells| {
                        cells.iter().map(|c| cell_text(&c["v"])).collect()
                    });
                    rows.rows.push(cells);
                }
            }
            match page["pageToken"].as_str() {
                Some(token) if !token.is_empty() => {
                    let token = token.to_owned();
                    page = self.results(&job_id, Some(&token)).await?;
                }
                _ => return Ok(rows),
            }
        }
    }

    /// The bytes `sql` would scan, from a dry run (nothing is executed or billed).
    pub async fn dry_run(&self, sql: &str, params: &[(&str, Param)]) -> Result<u64, StoreError> {
        let body = json!({
            "query": sql,
            "useLegacySql": false,
            "parameterMode": "NAMED",
            "queryParameters": params.iter().map(|(n, p)| p.to_json(n)).collect::<Vec<_>>(),
            "location": self.location,
            "dryRun": true,
        });
        let answer = self
            .send(self.http.post(format!("{}/queries", self.base)).json(&body))
            .await?;
        Ok(number(&answer["totalBytesProcessed"]))
    }

    /// Streams `rows` (JSON objects keyed by column) into `dataset.table`, all or nothing.
    pub async fn insert_all(
        &self,
        dataset: &str,
        table: &str,
        rows: &[Value],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let body = json!({
            "skipInvalidRows": false,
            "ignoreUnknownValues": false,
            "rows": rows.iter().map(|r| json!({ "json": r })).collect::<Vec<_>>(),
        });
        let url = format!("{}/datasets/{dataset}/tables/{table}/insertAll", self.base);
        let answer = self.send(self.http.post(url).json(&body)).await?;
        match answer["insertErrors"].as_array() {
            Some(errors) if !errors.is_empty() => Err(StoreError::Rejected(format!(
                "insertAll refused {} rows, e.g. {}",
                errors.len(),
                errors[0]
            ))),
            _ => Ok(()),
        }
    }

    /// Creates `dataset` in the configured location unless it exists.
    pub async fn ensure_dataset(&self, dataset: &str) -> Result<(), StoreError> {
        let url = format!("{}/datasets/{dataset}", self.base);
        let exists = self.authorized(self.http.get(&url)).await?.send().await;
        if let Ok(resp) = exists
            && resp.status().is_success()
        {
            return Ok(());
        }
        let body = json!({
            "datasetReference": { "datasetId": dataset },
            "location": self.location,
        });
        match self
            .send(
                self.http
                    .post(format!("{}/datasets", self.base))
                    .json(&body),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Created concurrently by another process: fine.
            Err(StoreError::Rejected(msg))
                if msg.contains("Already Exists") || msg.contains("409") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Deletes `dataset` and everything in it (tests and `drop_database`).
    pub async fn delete_dataset(&self, dataset: &str) -> Result<(), StoreError> {
        let url = format!("{}/datasets/{dataset}?deleteContents=true", self.base);
        let resp = self
            .authorized(self.http.delete(url))
            .await?
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("BigQuery: {e}")))?;
        if resp.status().is_success() || resp.status() == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(classify(
                resp.status(),
                &resp.text().await.unwrap_or_default(),
            ))
        }
    }

    async fn results(&self, job_id: &str, page_token: Option<&str>) -> Result<Value, StoreError> {
        let mut url = format!(
            "{}/queries/{job_id}?location={}&maxResults={PAGE_ROWS}&timeoutMs=50000&formatOptions.useInt64Timestamp=true",
            self.base, self.location
        );
        if let Some(token) = page_token {
            url.push_str("&pageToken=");
            url.push_str(
                &percent_encoding::utf8_percent_encode(token, percent_encoding::NON_ALPHANUMERIC)
                    .to_string(),
            );
        }
        self.send(self.http.get(url)).await
    }

    /// `req` with the bearer token, when the endpoint takes one.
    async fn authorized(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, StoreError> {
        Ok(match self.tokens.token().await? {
            Some(token) => req.bearer_auth(token),
            None => req,
        })
    }

    /// Sends with the bearer token; a failure status, or an answer listing errors, is an error.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, StoreError> {
        let resp = self
            .authorized(req)
            .await?
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("BigQuery: {e}")))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| StoreError::Unavailable(format!("BigQuery: {e}")))?;
        if !status.is_success() {
            return Err(classify(status, &text));
        }
        let body: Value = serde_json::from_str(&text)
            .map_err(|e| StoreError::Unavailable(format!("BigQuery answered non-JSON ({e})")))?;
        // The emulator answers a failing query with 200 and `errors`; real BigQuery puts errors of a
        // finished job there too. Either way: failure.
        if let Some(errors) = body["errors"].as_array().filter(|e| !e.is_empty()) {
            return Err(job_error(&errors[0], "query failed"));
        }
        if body["status"]["errorResult"].is_object() {
            return Err(job_error(&body["status"]["errorResult"], "job failed"));
        }
        Ok(body)
    }
}

/// reqwest's rustls needs a process-wide crypto provider: aws-lc-rs, the one the rest of the binary (the
/// ClickHouse client, the AWS SDK) already links. Installing it again is a no-op.
pub(crate) fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// BigQuery's reason for a query that needed more than a query may use ("Resources exceeded during query
/// execution"): the same query fails again, as a ClickHouse read past its memory limit does.
const RESOURCES_EXCEEDED: &str = "resourcesExceeded";

/// A failed job's (or query's) error object: its `message`, and [`StoreError::ReadLimit`] when its
/// `reason` is [`RESOURCES_EXCEEDED`].
fn job_error(error: &Value, fallback: &str) -> StoreError {
    let msg = format!(
        "BigQuery: {}",
        error["message"].as_str().unwrap_or(fallback)
    );
    if error["reason"].as_str() == Some(RESOURCES_EXCEEDED) {
        StoreError::ReadLimit(msg)
    } else {
        StoreError::Rejected(msg)
    }
}

/// A failure status: 429 and 5xx are worth retrying, other 4xx are not; a 400 whose reason is
/// [`RESOURCES_EXCEEDED`] is a read over its limit.
fn classify(status: reqwest::StatusCode, text: &str) -> StoreError {
    let parsed = serde_json::from_str::<Value>(text).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| text.chars().take(300).collect());
    let msg = format!("BigQuery {}: {message}", status.as_u16());
    let reason = parsed.as_ref().and_then(|v| {
        v["error"]["errors"][0]["reason"]
            .as_str()
            .map(str::to_owned)
    });
    if reason.as_deref() == Some(RESOURCES_EXCEEDED) {
        StoreError::ReadLimit(msg)
    } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        StoreError::Unavailable(msg)
    } else {
        StoreError::Rejected(msg)
    }
}

/// A number the API sends as a string (int64 fields) or as a number.
fn number(v: &Value) -> u64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_u64())
        .unwrap_or(0)
}

/// A cell as text: strings as they are, numbers and booleans printed, nested values as JSON, NULL as None.
fn cell_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_parameters_are_written_as_bigquery_parses_them() {
        assert_eq!(timestamp_literal(0), "1970-01-01 00:00:00.000000+00:00");
        assert_eq!(
            timestamp_literal(1_796_032_800_123_456),
            "2026-11-30 10:00:00.123456+00:00"
        );
    }

    #[test]
    fn array_parameters_carry_their_element_type() {
        let p = Param::Strings(vec!["a".into(), "b".into()]).to_json("ids");
        assert_eq!(p["parameterType"]["arrayType"]["type"], "STRING");
        assert_eq!(p["parameterValue"]["arrayValues"][1]["value"], "b");
    }

    #[test]
    fn failure_statuses_are_retryable_only_when_a_retry_can_help() {
        let body = r#"{"error": {"message": "Quota exceeded"}}"#;
        for (status, retryable) in [
            (500, true),
            (503, true),
            (429, true),
            (400, false),
            (404, false),
        ] {
            let e = classify(reqwest::StatusCode::from_u16(status).expect("status"), body);
            assert_eq!(e.is_retryable(), retryable, "{status}");
            assert!(e.to_string().contains("Quota exceeded"), "{e}");
        }
    }

    #[test]
    fn a_query_over_its_resources_is_a_read_over_its_limit_however_bigquery_reports_it() {
        let refused = classify(
            reqwest::StatusCode::BAD_REQUEST,
            r#"{"error": {"code": 400, "message": "Resources exceeded during query execution",
                "errors": [{"reason": "resourcesExceeded", "message": "Resources exceeded"}]}}"#,
        );
        let failed_job = job_error(
            &json!({"reason": "resourcesExceeded", "message": "Resources exceeded during query execution"}),
            "job failed",
        );
        let other_job = job_error(
            &json!({"reason": "invalidQuery", "message": "Unrecognized name: x"}),
            "job failed",
        );
        for (e, over_limit) in [(refused, true), (failed_job, true), (other_job, false)] {
            assert_eq!(matches!(e, StoreError::ReadLimit(_)), over_limit, "{e}");
            assert!(!e.is_retryable(), "{e}");
        }
    }
}
