//! CSV exports of metrics, ranked metrics, funnels and cohorts: `format=csv` or `Accept: text/csv`.
//!
//! Contract:
//! - One header row, then one row per data point, ranked row, funnel step or cohort period, quoted per
//!   RFC 4180 (the `csv` crate: fields with commas, quotes or line breaks are quoted, quotes doubled;
//!   lines end in CRLF).
//! - Money stays in minor units, as in JSON, with a `currency` column beside it (so `1999,USD` and
//!   `2999,JPY` both read exactly); rates are fractions (`0.0312`), as in JSON.
//! - With `compare`, the comparison's figures are columns beside the current ones: `previous_date` and
//!   `previous_<metric>` for a series, `previous_<column>` for each number of a ranked row, and
//!   `previous_count`, `previous_conversion_rate` for a funnel step (changes are derivable and left out).
//! - Totals are not rows: a spreadsheet sums the column, and a total of a rate or an average is not a
//!   sum, so a "total" row would invite a wrong formula. JSON carries them.
//! - `Content-Disposition: attachment; filename="<what>-<period>.csv"`.
//! - Errors stay JSON (`application/json`), whatever was asked for.
//!
//! Every answer here is an aggregate the warehouse has already reduced (at most a few thousand buckets,
//! `limit` ranked rows, ten funnel steps, cohorts × periods), so a CSV is written in one pass from the
//! typed answer into its body, with no intermediate copy of the rows; there is no row-level (per-event)
//! export whose size would grow with the store.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::query::cohorts::CohortResponse;
use crate::query::funnel::FunnelResponse;
use crate::query::metrics::MetricResponse;

/// The parameter every exportable read takes besides its own (the API strips it before their parsers).
pub const PARAMS: &[&str] = &["format"];

/// How the caller wants a read answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// The requested format (`format=json|csv`, else `Accept: text/csv`), and the query string without the
/// `format` parameter (the read's own parser refuses parameters it does not know).
pub fn requested(req: &Request) -> Result<(Format, String)> {
    let query = req.uri().query().unwrap_or("");
    let mut format = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("format", value) => {
                format = Some(match value {
                    "csv" => Format::Csv,
                    "json" => Format::Json,
                    _ => {
                        return Err(Error::invalid(
                            "invalid_parameter",
                            "format",
                            "format must be json or csv",
                        ));
                    }
                });
            }
            _ => rest.push(pair),
        }
    }
    let format = format.unwrap_or_else(|| {
        let accepts_csv = req
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|range| range.split(';').next().unwrap_or("").trim() == "text/csv");
        if accepts_csv {
            Format::Csv
        } else {
            Format::Json
        }
    });
    Ok((format, rest.join("&")))
}

/// A metric's data points: `date,<metric>` (+ `currency` for money metrics, + `previous_date`,
/// `previous_<metric>` with `compare`).
///
/// With `breakdown`: one row per group and bucket, `<breakdown>,date,<metric>` (+ `currency`), groups in
/// the answer's order (the metric's own series is their sum for additive metrics, and not repeated).
pub fn series(r: &MetricResponse) -> Result<Response<Body>> {
    let mut w = writer();
    let money = r.currency.as_deref();
    if let (Some(by), Some(groups)) = (r.breakdown, &r.groups) {
        let mut header = vec![by, "date", r.metric];
        header.extend(money.map(|_| "currency"));
        w.write_record(&header).map_err(internal)?;
        for g in groups {
            for p in &g.data_points {
                let mut row = vec![g.key.clone(), p.date.clone(), cell(&p.value)];
                row.extend(money.map(str::to_owned));
                w.write_record(&row).map_err(internal)?;
            }
        }
        return finish(w, &format!("{}-by-{by}-{}", r.metric, r.period));
    }
    let compared = r.comparison.is_some();
    let previous_name = format!("previous_{}", r.metric);
    let mut header = vec!["date", r.metric];
    header.extend(money.map(|_| "currency"));
    if compared {
        header.extend(["previous_date", previous_name.as_str()]);
    }
    w.write_record(&header).map_err(internal)?;
    for p in &r.data_points {
        let mut row = vec![p.date.clone(), cell(&p.value)];
        row.extend(money.map(str::to_owned));
        if compared {
            let (date, value) = p
                .previous
                .as_ref()
                .map_or((String::new(), String::new()), |b| {
                    (b.date.clone(), cell(&b.value))
                });
            row.extend([date, value]);
        }
        w.write_record(&row).map_err(internal)?;
    }
    finish(w, &format!("{}-{}", r.metric, r.period))
}

/// A ranked metric's rows, columns in the JSON answer's order (+ `currency` when it has money).
pub fn ranked(body: &Value) -> Result<Response<Body>> {
    let mut w = writer();
    let rows = body["rows"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let currency = body["currency"].as_str();
    let first = rows.first().and_then(Value::as_object);
    let columns: Vec<&str> = first.map_or_else(Vec::new, |f| {
        f.keys()
            .map(String::as_str)
            .filter(|k| !matches!(*k, "previous" | "change"))
            .collect()
    });
    // With `compare`: a `previous_<column>` for each number of the row.
    let previous: Vec<&str> = match first {
        Some(f) if f.contains_key("previous") => columns
            .iter()
            .copied()
            .filter(|c| f[*c].is_number())
            .collect(),
        _ => Vec::new(),
    };
    let with_currency = currency.is_some() && columns.contains(&"revenue");
    let mut header: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
    if with_currency {
        header.push("currency".into());
    }
    header.extend(previous.iter().map(|c| format!("previous_{c}")));
    if !header.is_empty() {
        w.write_record(&header).map_err(internal)?;
    }
    for row in rows {
        let mut cells: Vec<String> = columns.iter().map(|c| cell(&row[*c])).collect();
        if with_currency {
            cells.extend(currency.map(str::to_owned));
        }
        cells.extend(previous.iter().map(|c| cell(&row["previous"][*c])));
        w.write_record(&cells).map_err(internal)?;
    }
    let name = format!(
        "{}-{}",
        body["metric"].as_str().unwrap_or("ranked"),
        body["period"].as_str().unwrap_or("")
    );
    finish(w, &name)
}

/// A funnel's steps: `step,count,conversion_rate,step_conversion_rate,drop_off,median_seconds_to_convert`.
pub fn funnel(r: &FunnelResponse) -> Result<Response<Body>> {
    let mut w = writer();
    let compared = r.comparison.is_some();
    let mut header = vec![
        "step",
        "count",
        "conversion_rate",
        "step_conversion_rate",
        "drop_off",
        "median_seconds_to_convert",
    ];
    if compared {
        header.extend(["previous_count", "previous_conversion_rate"]);
    }
    w.write_record(&header).map_err(internal)?;
    for s in &r.steps {
        let mut row = vec![
            s.step.clone(),
            s.count.to_string(),
            s.conversion_rate.to_string(),
            s.step_conversion_rate.to_string(),
            s.drop_off.to_string(),
            s.median_seconds_to_convert
                .map(|m| m.to_string())
                .unwrap_or_default(),
        ];
        if compared {
            let (count, rate) = s
                .previous
                .as_ref()
                .map_or((String::new(), String::new()), |p| {
                    (p.count.to_string(), p.conversion_rate.to_string())
                });
            row.extend([count, rate]);
        }
        w.write_record(&row).map_err(internal)?;
    }
    finish(w, &format!("funnel-{}", r.period))
}

/// Cohorts, one row per cohort and period after it:
/// `cohort,size,period,customers,retention,revenue,currency`.
pub fn cohorts(r: &CohortResponse) -> Result<Response<Body>> {
    let mut w = writer();
    w.write_record([
        "cohort",
        "size",
        "period",
        "customers",
        "retention",
        "revenue",
        "currency",
    ])
    .map_err(internal)?;
    for c in &r.cohorts {
        for p in &c.periods {
            w.write_record([
                c.cohort.clone(),
                c.size.to_string(),
                p.offset.to_string(),
                p.customers.to_string(),
                p.retention.to_string(),
                p.revenue.to_string(),
                r.currency.clone(),
            ])
            .map_err(internal)?;
        }
    }
    finish(w, &format!("cohorts-{}-{}", r.interval, r.period))
}

fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new())
}

/// A JSON value as a CSV field: strings bare, `null` empty, numbers as JSON writes them.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn internal(e: csv::Error) -> Error {
    Error::Internal(format!("writing CSV: {e}"))
}

fn finish(w: csv::Writer<Vec<u8>>, name: &str) -> Result<Response<Body>> {
    let bytes = w
        .into_inner()
        .map_err(|e| Error::Internal(format!("writing CSV: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| Error::Internal(e.to_string()))?;
    let mut resp = Response::new(Body::Text(text));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}.csv\"", file_stem(name)))
    {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// A file name safe in any browser and file system: letters, digits, `-`, `_`, `.`; others become `_`.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::metrics::DataPoint;

    fn request(uri: &str, accept: Option<&str>) -> Request {
        let mut b = lambda_http::http::Request::builder().uri(uri);
        if let Some(a) = accept {
            b = b.header("accept", a);
        }
        b.body(Body::Empty).expect("request")
    }

    #[test]
    fn the_format_comes_from_the_parameter_then_the_accept_header() {
        let cases = [
            (
                "/m?metric=revenue&format=csv",
                None,
                Format::Csv,
                "metric=revenue",
            ),
            (
                "/m?format=json&metric=orders",
                Some("text/csv"),
                Format::Json,
                "metric=orders",
            ),
            (
                "/m?metric=orders",
                Some("text/csv; q=0.9, application/json"),
                Format::Csv,
                "metric=orders",
            ),
            (
                "/m?metric=orders",
                Some("application/json"),
                Format::Json,
                "metric=orders",
            ),
            ("/m?metric=orders", None, Format::Json, "metric=orders"),
        ];
        for (uri, accept, want, rest) in cases {
            let (format, query) = requested(&request(uri, accept)).expect("valid");
            assert_eq!((format, query.as_str()), (want, rest), "{uri} {accept:?}");
        }
    }

    #[test]
    fn an_unknown_format_is_refused_naming_the_parameter() {
        let err = requested(&request("/m?format=xlsx", None)).expect_err("refused");
        assert_eq!((err.status(), err.field()), (400, Some("format")));
    }

    #[test]
    fn fields_are_quoted_per_rfc_4180_and_money_carries_its_currency() {
        let r = MetricResponse {
            metric: "revenue",
            period: "custom".into(),
            granularity: "day",
            timezone: "UTC".into(),
            total: Value::from(3),
            currency: Some("JPY".into()),
            breakdown: None,
            groups: None,
            conversion: None,
            data_points: vec![
                DataPoint {
                    date: "2026-01-01".into(),
                    value: Value::from(2998),
                    previous: None,
                    change: None,
                    partial: false,
                    future: false,
                    no_data: false,
                },
                DataPoint {
                    date: "a \"quoted\", odd\ndate".into(),
                    value: Value::Null,
                    previous: None,
                    change: None,
                    partial: false,
                    future: false,
                    no_data: false,
                },
            ],
            comparison: None,
        };
        let resp = series(&r).expect("csv");
        let Body::Text(text) = resp.body() else {
            panic!("text body")
        };
        assert_eq!(
            text,
            "date,revenue,currency\r\n2026-01-01,2998,JPY\r\n\"a \"\"quoted\"\", odd\ndate\",,JPY\r\n"
        );
        assert_eq!(
            resp.headers()[header::CONTENT_DISPOSITION],
            "attachment; filename=\"revenue-custom.csv\""
        );
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/csv; charset=utf-8"
        );
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(
            file_stem("revenue-2026-01-01..2026-01-31"),
            "revenue-2026-01-01..2026-01-31"
        );
        assert_eq!(file_stem("a/b\"c d"), "a_b_c_d");
    }
}
