//! Webhook notifications: a JSON POST, signed, retried, and only ever sent to public addresses.
//!
//! **Signature**: `X-Analytics-Timestamp: <Unix seconds>` and `X-Analytics-Signature: v1=<hex>`, the
//! HMAC-SHA256 of `<timestamp>.<body>` under the rule's `signingSecret`. A receiver recomputes it over the raw
//! body, compares in constant time, and refuses timestamps older than a few minutes (replays).
//! `X-Analytics-Delivery` is the notification's id: the same for every attempt of one notification, so a
//! receiver can drop a repeat.
//!
//! **Retries**: up to [`ATTEMPTS`] attempts, waiting `base`, 2·`base`, 4·`base` between them (base 2 s);
//! a 2xx delivers; a 4xx other than 408 and 429 is final (the receiver refuses it).
//!
//! **SSRF**: a URL is `https` and every address its host resolves to is public: not loopback, private
//! (10/8, 172.16/12, 192.168/16, fc00::/7), link-local (169.254/16 — the cloud metadata endpoint — and
//! fe80::/10), carrier-grade NAT (100.64/10), unspecified, multicast or broadcast. Checked when a rule is
//! saved and again at each delivery, which connects to the checked address only (no DNS rebinding) and
//! follows no redirect. `alerts_allow_loopback` (the local configuration) also allows `http` and `https`
//! to loopback, for development receivers.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, FieldError};

pub const ATTEMPTS: u32 = 4;

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    let tag = ctx.sign();
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// Whether `ip` may receive a webhook.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// Checks a webhook URL and resolves it: the addresses a delivery may connect to. Errors name `field`.
pub async fn check_url(
    url: &str,
    allow_loopback: bool,
    field: &str,
) -> Result<(url::Url, Vec<SocketAddr>), Error> {
    let refuse = |message: String| Error::Invalid(FieldError::new("unsafe_url", field, message));
    if url.len() > 2048 {
        return Err(refuse("a webhook URL is at most 2048 characters".into()));
    }
    let parsed = url::Url::parse(url).map_err(|e| refuse(format!("not a URL: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_loopback => {}
        s => {
            return Err(refuse(format!(
                "webhooks are sent over https only, not {s}{}",
                if allow_loopback {
                    " (http only to loopback)"
                } else {
                    ""
                }
            )));
        }
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| refuse("a webhook URL needs a host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let lookup = tokio::net::lookup_host((host.as_str(), port));
            tokio::time::timeout(Duration::from_secs(3), lookup)
                .await
                .map_err(|_| refuse(format!("{host} did not resolve within 3 s")))?
                .map_err(|e| refuse(format!("{host} does not resolve: {e}")))?
                .collect()
        }
    };
    if addrs.is_empty() {
        return Err(refuse(format!("{host} does not resolve")));
    }
    if parsed.scheme() == "http" && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(refuse(
            "webhooks are sent over https only (http only to loopback)".into(),
        ));
    }
    if let Some(bad) = addrs
        .iter()
        .find(|a| !(is_public(a.ip()) || (allow_loopback && a.ip().is_loopback())))
    {
        return Err(refuse(format!(
            "{host} resolves to {}, a private, loopback or link-local address; webhooks go to public \
             addresses only",
            bad.ip()
        )));
    }
    Ok((parsed, addrs))
}

/// How one notification went to one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub delivered: bool,
    pub attempts: u32,
    pub status: u16,
    pub detail: String,
}

/// Sends notifications.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The SNS client, made from the AWS configuration chain at the first SNS notification (or given).
    pub sns: std::sync::Arc<tokio::sync::OnceCell<aws_sdk_sns::Client>>,
    pub allow_loopback: bool,
    /// At most this many attempts ([`ATTEMPTS`] for notifications; 1 for a test the caller waits for).
    pub attempts: u32,
    /// The first wait between attempts (then doubled).
    pub retry_base: Duration,
    pub timeout: Duration,
}

impl Sender {
    pub fn new(allow_loopback: bool) -> Self {
        Self {
            sns: std::sync::Arc::default(),
            allow_loopback,
            attempts: ATTEMPTS,
            retry_base: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
        }
    }

    /// POSTs `payload` to `url`, signed with `secret`, until delivered, refused or out of attempts.
    pub async fn send(
        &self,
        url: &str,
        secret: &str,
        delivery_id: &str,
        payload: &Value,
    ) -> Outcome {
        let body = payload.to_string();
        let mut last = Outcome {
            delivered: false,
            attempts: 0,
            status: 0,
            detail: String::new(),
        };
        for attempt in 1..=self.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(self.retry_base * 2_u32.pow(attempt - 2)).await;
            }
            last.attempts = attempt;
            // Checked again at each attempt, and connected to the checked address only.
            let (parsed, addrs) = match check_url(url, self.allow_loopback, "url").await {
                Ok(x) => x,
                Err(e) => {
                    last.detail = e.to_string();
                    return last;
                }
            };
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(self.timeout)
                .user_agent("commerce-analytics-alerts");
            if let Some(host) = parsed.host_str()
                && host.parse::<IpAddr>().is_err()
            {
                builder = builder.resolve(host, addrs[0]);
            }
            let client = match builder.build() {
                Ok(c) => c,
                Err(e) => {
                    last.detail = e.to_string();
                    return last;
                }
            };
            let timestamp = jiff::Timestamp::now().as_second();
            let sent = client
                .post(parsed)
                .header("content-type", "application/json")
                .header("x-analytics-delivery", delivery_id)
                .header("x-analytics-timestamp", timestamp.to_string())
                .header(
                    "x-analytics-signature",
                    sign(secret, timestamp, body.as_bytes()),
                )
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let status = resp.status();
                    last.status = status.as_u16();
                    if status.is_success() {
                        last.delivered = true;
                        last.detail = String::new();
                        return last;
                    }
                    last.detail = format!("answered {status}");
                    if status.is_client_error() && status != 408 && status != 429 {
                        return last;
                    }
                }
                Err(e) => {
                    last.status = 0;
                    last.detail = format!("not reached: {e}");
                }
            }
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently (Python's hmac module).
        assert_eq!(
            sign("whsec_test", 1_700_000_000, br#"{"type":"alert.test"}"#),
            "v1=b39423ffb354295c9288df7a65e8f02ffaf2513d6c672561bd45207a5be82beb"
        );
        assert_ne!(
            sign("whsec_test", 1_700_000_001, br#"{"type":"alert.test"}"#),
            sign("whsec_test", 1_700_000_000, br#"{"type":"alert.test"}"#)
        );
    }

    #[test]
    fn only_public_addresses_receive_webhooks() {
        for (ip, public) in [
            ("93.184.216.34", true),
            ("2606:2800:220:1:248:1893:25c8:1946", true),
            ("127.0.0.1", false),
            ("10.1.2.3", false),
            ("172.16.0.1", false),
            ("192.168.1.1", false),
            ("169.254.169.254", false),
            ("100.64.0.1", false),
            ("0.0.0.0", false),
            ("::1", false),
            ("fd00::1", false),
            ("fe80::1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:93.184.216.34", true),
        ] {
            assert_eq!(is_public(ip.parse().expect("ip")), public, "{ip}");
        }
    }

    #[tokio::test]
    async fn unsafe_urls_are_refused_with_the_field_named() {
        for (url, allow, ok) in [
            ("https://93.184.216.34/hook", false, true),
            ("http://93.184.216.34/hook", false, false),
            ("https://127.0.0.1/hook", false, false),
            ("http://127.0.0.1:9/hook", true, true),
            ("http://localhost:9/hook", true, true),
            ("https://169.254.169.254/latest/meta-data", true, false),
            ("https://10.0.0.1/hook", true, false),
            ("https://[::1]/hook", false, false),
            ("ftp://93.184.216.34/", false, false),
            ("not a url", false, false),
        ] {
            let got = check_url(url, allow, "channels[0].url").await;
            assert_eq!(got.is_ok(), ok, "{url}: {got:?}");
            if let Err(Error::Invalid(e)) = got {
                assert_eq!(e.field, "channels[0].url");
                assert_eq!(e.code, "unsafe_url");
            }
        }
    }
}
