//! Building responses; the single place where [`Error`] becomes HTTP.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;
use serde_json::json;

use crate::error::Error;

pub fn json(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".into());
    let mut resp = Response::new(Body::Text(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `{ "code", "message", "field"? }`: the error object of every API error body.
pub fn error_object(e: &Error) -> serde_json::Value {
    let mut err = json!({ "code": e.code(), "message": e.public_message() });
    if let Some(field) = e.field() {
        err["field"] = json!(field);
    }
    err
}

/// `{ "error": { "code", "message", "field"? } }` (+ `failedIds` for 503s) with the error's status and,
/// when retrying makes sense, `Retry-After` in whole seconds.
pub fn error(e: &Error) -> Response<Body> {
    let mut body = json!({ "error": error_object(e) });
    if let Error::Unavailable { failed_ids, .. } = e {
        body["failedIds"] = json!(failed_ids);
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json(status, &body);
    if let Some(after) = e.retry_after() {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Answer to a CORS preflight of a route taking `methods` (e.g. `GET, OPTIONS`); the caller adds the
/// allowed origin (see [`add_cors`]) when the origin may call the route.
pub fn preflight(methods: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("authorization, content-type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    resp
}

/// Lets the calling origin read the response (storefronts track from the browser).
pub fn add_cors(resp: &mut Response<Body>, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("retry-after"),
        );
    }
}
