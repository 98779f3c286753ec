//! `context`: what the client says about where the event happened (IP, user agent, referrer, country,
//! page, campaign), checked field by field, then completed from the request ([`enrich`]).

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{MAX_TEXT_LEN, RequestMeta};
use crate::error::FieldError;
use crate::event::{Campaign, Context, Page};
use crate::ident::is_country_code;

/// Parses `context`; unknown fields are rejected by name.
pub(super) fn parse_context(mut m: Map<String, Value>) -> Result<Context, FieldError> {
    const KEYS: [&str; 6] = ["ip", "userAgent", "referrer", "country", "page", "campaign"];
    if let Some(unknown) = m.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(FieldError::new(
            "unknown_field",
            format!("context.{unknown}"),
            format!(
                "unknown context field {unknown:?}; expected one of {}",
                KEYS.join(", ")
            ),
        ));
    }
    let text = |m: &mut Map<String, Value>, key: &'static str, path: &str, max: usize| match m
        .remove(key)
    {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > max => Err(FieldError::new(
            "too_long",
            path,
            format!("{path} is longer than {max} bytes"),
        )),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(FieldError::new(
            "invalid_type",
            path,
            format!("{path} must be a string"),
        )),
    };
    let ip = text(&mut m, "ip", "context.ip", 64)?;
    if ip.as_ref().is_some_and(|ip| ip.parse::<IpAddr>().is_err()) {
        return Err(FieldError::new(
            "invalid_value",
            "context.ip",
            "context.ip must be an IPv4 or IPv6 address",
        ));
    }
    let user_agent = text(&mut m, "userAgent", "context.userAgent", 1024)?;
    let referrer = text(&mut m, "referrer", "context.referrer", MAX_TEXT_LEN)?;
    let country = text(&mut m, "country", "context.country", 2)?;
    if country.as_deref().is_some_and(|c| !is_country_code(c)) {
        return Err(FieldError::new(
            "invalid_value",
            "context.country",
            "context.country must be an ISO 3166-1 alpha-2 code in upper case, e.g. US",
        ));
    }
    let page = match m.remove("page") {
        None | Some(Value::Null) => None,
        Some(Value::Object(mut p)) => {
            if let Some(unknown) = p
                .keys()
                .find(|k| !["url", "path", "title"].contains(&k.as_str()))
            {
                return Err(FieldError::new(
                    "unknown_field",
                    format!("context.page.{unknown}"),
                    "context.page takes url, path, title",
                ));
            }
            Some(Page {
                url: text(&mut p, "url", "context.page.url", MAX_TEXT_LEN)?,
                path: text(&mut p, "path", "context.page.path", MAX_TEXT_LEN)?,
                title: text(&mut p, "title", "context.page.title", 512)?,
            })
        }
        Some(_) => {
            return Err(FieldError::new(
                "invalid_type",
                "context.page",
                "context.page must be an object",
            ));
        }
    };
    let campaign = match m.remove("campaign") {
        None | Some(Value::Null) => None,
        Some(Value::Object(mut c)) => {
            const CK: [&str; 5] = ["source", "medium", "name", "term", "content"];
            if let Some(unknown) = c.keys().find(|k| !CK.contains(&k.as_str())) {
                return Err(FieldError::new(
                    "unknown_field",
                    format!("context.campaign.{unknown}"),
                    "context.campaign takes source, medium, name, term, content",
                ));
            }
            Some(Campaign {
                source: text(&mut c, "source", "context.campaign.source", 256)?,
                medium: text(&mut c, "medium", "context.campaign.medium", 256)?,
                name: text(&mut c, "name", "context.campaign.name", 256)?,
                term: text(&mut c, "term", "context.campaign.term", 256)?,
                content: text(&mut c, "content", "context.campaign.content", 256)?,
            })
            .filter(|c| !c.is_empty())
        }
        Some(_) => {
            return Err(FieldError::new(
                "invalid_type",
                "context.campaign",
                "context.campaign must be an object",
            ));
        }
    };
    Ok(Context {
        ip,
        user_agent,
        referrer,
        country,
        page,
        campaign,
    })
}

/// Completes `ctx` from the request: IP (anonymized when `anonymize_ip`), `User-Agent`, `Referer`,
/// `CloudFront-Viewer-Country`, and the campaign from the page URL's `utm_*` parameters.
pub(super) fn enrich(mut ctx: Context, meta: &RequestMeta, anonymize_ip: bool) -> Context {
    if ctx.ip.is_none() {
        ctx.ip = meta.ip.map(|ip| ip.to_string());
    }
    if anonymize_ip {
        ctx.ip = ctx
            .ip
            .and_then(|s| s.parse::<IpAddr>().ok())
            .map(|ip| anonymize(ip).to_string());
    }
    if ctx.user_agent.is_none() {
        ctx.user_agent = meta.user_agent.as_deref().map(|s| truncate(s, 1024));
    }
    if ctx.referrer.is_none() {
        ctx.referrer = meta.referrer.as_deref().map(|s| truncate(s, MAX_TEXT_LEN));
    }
    if ctx.country.is_none() {
        ctx.country = meta
            .country
            .as_deref()
            .map(str::to_ascii_uppercase)
            .filter(|c| is_country_code(c));
    }
    if ctx.campaign.is_none() {
        ctx.campaign = ctx
            .page
            .as_ref()
            .and_then(|p| p.url.as_deref())
            .and_then(campaign_from_url);
    }
    ctx
}

/// IPv4: last octet zeroed. IPv6: only the first 48 bits kept.
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return anonymize(IpAddr::V4(v4));
            }
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

fn campaign_from_url(url: &str) -> Option<Campaign> {
    let parsed = url::Url::parse(url).ok()?;
    let mut c = Campaign::default();
    for (k, v) in parsed.query_pairs() {
        let v = Some(truncate(&v, 256));
        match k.as_ref() {
            "utm_source" => c.source = v,
            "utm_medium" => c.medium = v,
            "utm_campaign" => c.name = v,
            "utm_term" => c.term = v,
            "utm_content" => c.content = v,
            _ => {}
        }
    }
    (!c.is_empty()).then_some(c)
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}
