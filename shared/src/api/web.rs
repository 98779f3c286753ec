//! The dashboard page at `/dashboard`: three files built from `web/dashboard` (esbuild; `dist/` is
//! committed and checked against its sources in CI) and embedded in the binary, so the local server and
//! the `metrics` Lambda serve the page from the API's own origin: no CORS, no separate hosting, and the
//! page always matches the API it ships with.
//!
//! Security headers: a strict Content-Security-Policy (scripts and connections to this origin only; inline
//! styles allowed for chart sizing), `nosniff`, no referrer, no framing. The read key is typed into the
//! page and kept in `sessionStorage`; nothing here ever sees it except the API routes.

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};

const INDEX: &str = include_str!("../../../web/dashboard/dist/index.html");
const APP_JS: &str = include_str!("../../../web/dashboard/dist/app.js");
const APP_CSS: &str = include_str!("../../../web/dashboard/dist/app.css");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
                   form-action 'self'";

/// The asset at `path` (`/dashboard`, `/dashboard/app.js`, …), if it is one.
pub fn asset(path: &str) -> Option<Response<Body>> {
    let (body, content_type) = match path {
        "/dashboard" | "/dashboard/" | "/dashboard/index.html" => {
            (INDEX, "text/html; charset=utf-8")
        }
        "/dashboard/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/dashboard/app.css" => (APP_CSS, "text/css; charset=utf-8"),
        _ => return None,
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .body(Body::Text(body.to_owned()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_its_assets_are_served_with_their_types_and_a_strict_policy() {
        for (path, ty) in [
            ("/dashboard", "text/html"),
            ("/dashboard/app.js", "text/javascript"),
            ("/dashboard/app.css", "text/css"),
        ] {
            let r = asset(path).expect(path);
            let h = r.headers();
            assert!(
                h[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap_or("")
                    .starts_with(ty),
                "{path}"
            );
            assert!(
                h[header::CONTENT_SECURITY_POLICY]
                    .to_str()
                    .unwrap_or("")
                    .contains("script-src 'self'")
            );
            assert!(!r.body().is_empty(), "{path}");
        }
        assert!(asset("/dashboard/../Cargo.toml").is_none());
        assert!(asset("/dashboard/secret").is_none());
        assert!(
            INDEX.contains("/dashboard/app.js"),
            "the page loads the embedded script"
        );
    }
}
