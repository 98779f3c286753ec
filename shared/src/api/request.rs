//! Reading what the handlers need from a request: key, body, client context.

use std::net::{IpAddr, SocketAddr};

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::error::{Error, Result};
use crate::event::RequestMeta;

/// The TCP peer, inserted as a request extension by the local server (on Lambda the API Gateway request
/// context carries the source IP instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

pub fn authorization(req: &Request) -> Option<&str> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Client context from the transport: source IP (API Gateway context, else the socket peer),
/// `User-Agent`, `Referer`, `CloudFront-Viewer-Country`.
pub fn meta(req: &Request) -> RequestMeta {
    RequestMeta {
        ip: client_ip(req),
        user_agent: header(req, "user-agent"),
        referrer: header(req, "referer"),
        country: header(req, "cloudfront-viewer-country"),
        from_browser: req.headers().contains_key("origin"),
    }
}

/// The caller's address: API Gateway's source IP, or the socket's peer locally.
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    #[allow(unreachable_patterns)]
    let gateway_ip = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.http.source_ip.as_deref().and_then(|s| s.parse().ok())
        }
        _ => None,
    };
    gateway_ip.or_else(|| req.extensions().get::<PeerAddr>().map(|p| p.0.ip()))
}

/// The body as UTF-8 text within `max` bytes.
pub fn body_text(req: &Request, max: usize) -> Result<&str> {
    let bytes: &[u8] = req.body().as_ref();
    if bytes.len() > max {
        return Err(Error::TooLarge {
            message: format!("body is {} bytes; the limit is {max} bytes", bytes.len()),
            field: "body".into(),
        });
    }
    if bytes.is_empty() {
        return Err(Error::invalid(
            "empty_body",
            "body",
            "request body is empty; send JSON",
        ));
    }
    std::str::from_utf8(bytes)
        .map_err(|_| Error::invalid("invalid_encoding", "body", "body must be UTF-8 JSON"))
}
