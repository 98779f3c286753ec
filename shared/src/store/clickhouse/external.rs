//! Queries that carry rows of their own: ClickHouse's *external data* (a temporary table sent in the
//! request body as `multipart/form-data` and read by the query by its name, see ClickHouse's "External
//! Data for Query Processing"). The already-stored lookup before every insert of events
//! ([`super::ClickHouseStore`]) sends its `(store_id, id)` pairs this way.
//!
//! Why not an inline `IN (…)` list: the server parses, analyzes and plans such a list literal by literal,
//! and the lookup sits on the ingest path of every delivery. Measured on the 10M and 100M bench stores
//! (the query alone, p50 of 9, ids not stored, 2026-12-08): 500 ids **6.2 against 8.3 ms**, 7,400 ids
//! (a 5 MiB Firehose delivery) **16 against 45 ms** in one query; an inline list must also be split past
//! ~1,500 ids to stay under `max_query_size` (256 KiB), and a `{ids:Array(String)}` parameter is parsed as
//! a literal too (11.9 ms for 1,500 ids) and refused past ~100 KiB as a form field. On a cluster the
//! initiator sends external tables to every shard with the query.
//!
//! On the ingest path (`bench firehose`, the lookup's time per delivery as ingest logs it, p50, the
//! build before and this one alternating, 2026-12-08): 500-record deliveries 8.1 against 9.7 ms, 5 MiB
//! deliveries (7,400 records: five inline lookups of 1,500 ids, four at a time, before) 13.9 against
//! 42.9 ms.
//!
//! The `clickhouse` crate sends no external data, so this is one plain HTTP request (reqwest) to the
//! same URL, as the same user, in the same database and session time zone as the crate's client; the
//! answer comes back as `JSONCompactEachRow`, one JSON array per row.

use std::time::Duration;

use crate::config::ClickHouseConfig;
use crate::store::StoreError;

/// How long one query with external data may take, transport included (an insert's budget).
const TIMEOUT: Duration = Duration::from_secs(30);

/// A table sent with a query: its name in the query, its columns (`name Type, …`) and its rows as
/// `TabSeparated` text ([`Table::push_row`]).
#[derive(Debug)]
pub(super) struct Table {
    name: &'static str,
    structure: &'static str,
    tsv: Vec<u8>,
}

impl Table {
    pub(super) fn new(name: &'static str, structure: &'static str) -> Self {
        Self {
            name,
            structure,
            tsv: Vec::new(),
        }
    }

    /// Appends one row of string fields, escaped as `TabSeparated` reads them back.
    pub(super) fn push_row(&mut self, fields: &[&str]) {
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                self.tsv.push(b'\t');
            }
            for &b in field.as_bytes() {
                match b {
                    b'\\' => self.tsv.extend_from_slice(b"\\\\"),
                    b'\t' => self.tsv.extend_from_slice(b"\\t"),
                    b'\n' => self.tsv.extend_from_slice(b"\\n"),
                    b'\r' => self.tsv.extend_from_slice(b"\\r"),
                    b'\0' => self.tsv.extend_from_slice(b"\\0"),
                    _ => self.tsv.push(b),
                }
            }
        }
        self.tsv.push(b'\n');
    }
}

/// Runs queries with external data against one ClickHouse endpoint (see the module docs).
#[derive(Clone)]
pub(super) struct ExternalQueries {
    http: reqwest::Client,
    url: String,
    database: String,
    user: Option<String>,
    password: String,
}

impl ExternalQueries {
    pub(super) fn new(cfg: &ClickHouseConfig) -> Self {
        crate::store::bigquery::client::install_tls_provider();
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            // ClickHouse closes idle keep-alive connections after 3 s; drop ours before that.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            http,
            url: cfg.url.clone(),
            database: cfg.database.clone(),
            user: cfg.user.clone(),
            password: cfg.password.expose().to_owned(),
        }
    }

    /// The rows of `sql` (a `SELECT` without `FORMAT`) run with `table` attached, each decoded from its
    /// JSON array as a `T` (a tuple of its columns, say). Transport failures and the server's retryable
    /// codes are [`StoreError::Unavailable`], as for every other query ([`super::classify_response`]).
    pub(super) async fn fetch<T>(&self, sql: &str, table: &Table) -> Result<Vec<T>, StoreError>
    where
        T: serde::de::DeserializeOwned,
    {
        let boundary = format!("external-{:032x}", rand::random::<u128>());
        let body = multipart_body(
            &boundary,
            table,
            &format!("{sql} FORMAT JSONCompactEachRow"),
        );
        let structure = format!("{}_structure", table.name);
        let mut request = self
            .http
            .post(&self.url)
            .query(&[
                ("database", self.database.as_str()),
                ("session_timezone", "UTC"),
                // The whole answer is kept until the query ends, so an error met while it runs comes back
                // as an error status with its code, never as a 200 whose body stops in an exception (the
                // answers here are a few rows).
                ("wait_end_of_query", "1"),
                (structure.as_str(), table.structure),
            ])
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .timeout(TIMEOUT)
            .body(body);
        if let Some(user) = &self.user {
            request = request.header("X-ClickHouse-User", user);
        }
        if !self.password.is_empty() {
            request = request.header("X-ClickHouse-Key", &self.password);
        }
        let response = request
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(format!("ClickHouse: {e}")))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| StoreError::Unavailable(format!("ClickHouse: {e}")))?;
        if !status.is_success() {
            return Err(super::classify_response(&text));
        }
        text.lines()
            .filter(|line| !line.is_empty())
            .map(|line| {
                serde_json::from_str(line).map_err(|e| {
                    StoreError::Rejected(format!("ClickHouse answered a row we cannot read: {e}"))
                })
            })
            .collect()
    }
}

/// The request body: the table as a file part named after it, then the query.
fn multipart_body(boundary: &str, table: &Table, query: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(table.tsv.len() + query.len() + 4 * boundary.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{0}\"; filename=\"{0}\"\r\n\r\n",
            table.name
        )
        .as_bytes(),
    );
    body.extend_from_slice(&table.tsv);
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(query.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_escaped_as_tab_separated_reads_them_back() {
        let cases = [
            (vec!["shop-a", "evt_1"], "shop-a\tevt_1\n"),
            (vec!["a\\b", "c"], "a\\\\b\tc\n"),
            (vec!["tab\there", "new\nline"], "tab\\there\tnew\\nline\n"),
            (vec!["cr\r", "nul\0"], "cr\\r\tnul\\0\n"),
            (vec!["", "ünïcode"], "\tünïcode\n"),
        ];
        for (fields, expected) in cases {
            let mut t = Table::new("batch", "store_id String, id String");
            t.push_row(&fields);
            assert_eq!(
                String::from_utf8(t.tsv).expect("utf-8"),
                expected,
                "{fields:?}"
            );
        }
    }

    #[test]
    fn the_body_sends_the_table_as_a_file_part_then_the_query() {
        let mut t = Table::new("batch", "store_id String, id String");
        t.push_row(&["shop-a", "evt_1"]);
        t.push_row(&["shop-a", "evt_2"]);
        let body = multipart_body("B", &t, "SELECT 1 FORMAT JSONCompactEachRow");
        assert_eq!(
            String::from_utf8(body).expect("utf-8"),
            "--B\r\nContent-Disposition: form-data; name=\"batch\"; filename=\"batch\"\r\n\r\n\
             shop-a\tevt_1\nshop-a\tevt_2\n\
             \r\n--B\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n\
             SELECT 1 FORMAT JSONCompactEachRow\
             \r\n--B--\r\n"
        );
    }
}
