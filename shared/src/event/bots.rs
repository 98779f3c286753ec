//! Which events come from bots and crawlers.
//!
//! The rule (documented in the README): an event is flagged `bot` when the *visitor's* user agent matches
//! the `isbot` crate's list (the patterns of the widely used `isbot` npm list: search and SEO crawlers, link
//! previewers, monitoring and uptime agents, HTTP libraries, `HeadlessChrome`, PhantomJS, Lighthouse, …).
//! The visitor's user agent is `context.userAgent` when the client sends it (an SDK, or a backend
//! forwarding the shopper's), else the request's `User-Agent` **only when the request comes from a
//! browser** (it carries `Origin`, as every browser `fetch`/`sendBeacon` POST does). A server-to-server
//! call that names no visitor user agent is never flagged: its HTTP client (`curl`, `python-requests`,
//! `axios`) says nothing about the shopper, and an order reported by a backend is a business fact.
//!
//! Flagged events are stored like any other (`is_bot` column) and left out of every metric, funnel,
//! cohort and dashboard unless the query says `includeBots=true`.

use std::sync::LazyLock;

static BOTS: LazyLock<isbot::Bots> = LazyLock::new(|| {
    let mut bots = isbot::Bots::default();
    // Headless browsers beyond HeadlessChrome (already listed).
    bots.append(&["headless"]);
    bots
});

/// Whether `user_agent` is a known bot, crawler or headless browser. Each thread remembers the answers
/// for the last user agents it saw, as [`super::agent::Agent::of`] does (a session repeats its agent; the
/// bot patterns are one large regex).
pub fn is_bot_user_agent(user_agent: &str) -> bool {
    RECENT.with_borrow_mut(|recent| recent.get_or(user_agent, |ua| BOTS.is_bot(ua)))
}

thread_local! {
    /// The user agents this thread checked lately, and the answers.
    static RECENT: std::cell::RefCell<super::recent::Recent<bool>> =
        std::cell::RefCell::new(super::recent::Recent::new(super::agent::RECENT_AGENTS));
}

/// The user agent that speaks for the visitor: the one the client sent in `context`, else the request's
/// when it came from a browser.
pub fn visitor_user_agent<'a>(
    sent: Option<&'a str>,
    request: Option<&'a str>,
    from_browser: bool,
) -> Option<&'a str> {
    sent.or(if from_browser { request } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crawlers_monitors_and_headless_browsers_are_bots_and_browsers_are_not() {
        for bot in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/78.0 Safari/537.36 Chrome-Lighthouse",
            "curl/8.5.0",
            "python-requests/2.31.0",
            "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
        ] {
            assert!(is_bot_user_agent(bot), "{bot}");
        }
        for human in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:132.0) Gecko/20100101 Firefox/132.0",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
        ] {
            assert!(!is_bot_user_agent(human), "{human}");
        }
    }

    #[test]
    fn only_a_browser_request_lets_its_own_user_agent_speak_for_the_visitor() {
        for (sent, request, browser, expected) in [
            (
                Some("Googlebot/2.1"),
                Some("curl/8"),
                false,
                Some("Googlebot/2.1"),
            ),
            (None, Some("curl/8"), false, None),
            (
                None,
                Some("HeadlessChrome/120"),
                true,
                Some("HeadlessChrome/120"),
            ),
            (
                Some("Firefox/132"),
                Some("HeadlessChrome/120"),
                true,
                Some("Firefox/132"),
            ),
        ] {
            assert_eq!(visitor_user_agent(sent, request, browser), expected);
        }
    }
}
