//! Device, browser and operating system from the visitor's user agent, parsed once at ingest into the
//! `device`, `browser` and `os` columns (and by the schema migration for rows stored before them), so
//! breakdowns read plain columns.
//!
//! The parser is the `woothee` crate (the Project Woothee rules, also used by Fluentd and Embulk). Compared
//! side by side with `uaparser` (the uap-core regex list) on uap-core's 17,581 test user agents
//! (README "Breakdowns"): ready in 72 ns instead of 383 ms (uaparser compiles about a thousand regexes at
//! start, which every Lambda cold start would pay), 1.2 µs per user agent instead of 460 µs, and +1.8 MB
//! of binary instead of +2.1 MB. uap-core names more rare devices; a commerce breakdown needs the family
//! (desktop / mobile / tablet), the browser and the OS, which woothee names for every mainstream agent.
//!
//! The columns are a pure function of the stored `user_agent` and `is_bot`, so the backfill of old rows
//! gives exactly what ingest gives:
//! - `device`: `bot` for an event flagged as a bot ([`super::bots`]) or a crawler woothee knows; `tablet`
//!   for an iPad, an Android agent without `Mobile`, or an agent saying `Tablet`; `mobile` for phones;
//!   `desktop` for PCs; `other` for consoles, TVs and unknown agents; empty without a user agent
//!   (server-to-server events).
//! - `browser`: woothee's name (`Chrome`, `Safari`, `Firefox`, `Edge`, `SamsungBrowser`, …), `other` when
//!   unknown; empty without a user agent.
//! - `os`: the family: `Windows`, `macOS`, `iOS` (iPhone, iPad, iPod), `Android`, `Linux`, `ChromeOS`, or
//!   woothee's name; `other` when unknown; empty without a user agent.

/// How many parsed user agents a thread keeps (then it starts again): a batch's distinct agents.
pub const RECENT_AGENTS: usize = 512;

thread_local! {
    /// The user agents this thread parsed lately (see [`Agent::of`]).
    static RECENT: std::cell::RefCell<super::recent::Recent<Agent>> =
        std::cell::RefCell::new(super::recent::Recent::new(RECENT_AGENTS));
}

/// What a user agent says about the visitor's device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Agent {
    pub device: &'static str,
    pub browser: String,
    pub os: String,
}

impl Agent {
    /// No user agent: nothing is known.
    pub const NONE: Agent = Agent {
        device: "",
        browser: String::new(),
        os: String::new(),
    };

    /// The device, browser and OS of `user_agent`; `bot` is the event's bot flag.
    ///
    /// Each thread remembers the last [`RECENT_AGENTS`] user agents it parsed: a store's events come in
    /// sessions, each repeating its visitor's user agent, and parsing one takes ~1.2 µs, a lookup ~50 ns
    /// (the demo loader's encoding spent a quarter of its time parsing the same nine agents).
    pub fn of(user_agent: &str, bot: bool) -> Agent {
        if user_agent.is_empty() {
            return Agent::NONE;
        }
        let mut agent = RECENT.with_borrow_mut(|recent| recent.get_or(user_agent, Agent::parse));
        if bot {
            agent.device = "bot";
        }
        agent
    }

    /// [`Agent::of`] a non-empty user agent of an event not flagged as a bot.
    fn parse(user_agent: &str) -> Agent {
        let parsed = woothee::parser::Parser::new().parse(user_agent);
        let (category, name, os) = parsed
            .as_ref()
            .map_or(("", "", ""), |r| (r.category, r.name, r.os));
        let device = if category == "crawler" {
            "bot"
        } else if os == "iPad"
            || user_agent.contains("Tablet")
            || (os == "Android" && !user_agent.contains("Mobile"))
        {
            "tablet"
        } else {
            match category {
                "pc" => "desktop",
                "smartphone" | "mobilephone" => "mobile",
                _ => "other",
            }
        };
        Agent {
            device,
            browser: known(name).to_owned(),
            os: os_family(os).to_owned(),
        }
    }
}

/// `name`, or `other` when woothee does not know it.
fn known(name: &str) -> &str {
    if name.is_empty() || name == woothee::woothee::VALUE_UNKNOWN {
        "other"
    } else {
        name
    }
}

/// The OS family of woothee's OS name.
fn os_family(os: &str) -> &str {
    match os {
        "iPhone" | "iPad" | "iPod" => "iOS",
        "Mac OSX" => "macOS",
        w if w.starts_with("Windows") && w != "Windows Phone OS" => "Windows",
        other => known(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mainstream_agents_get_their_device_browser_and_os() {
        for (ua, bot, device, browser, os) in [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                false,
                "desktop",
                "Chrome",
                "Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
                false,
                "desktop",
                "Safari",
                "macOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                false,
                "mobile",
                "Safari",
                "iOS",
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
                false,
                "tablet",
                "Safari",
                "iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
                false,
                "mobile",
                "Chrome",
                "Android",
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                false,
                "tablet",
                "Chrome",
                "Android",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
                false,
                "desktop",
                "Firefox",
                "Linux",
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                true,
                "bot",
                "Googlebot",
                "other",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
                true,
                "bot",
                "Chrome",
                "Linux",
            ),
            ("SomethingNobodyKnows/1.0", false, "other", "other", "other"),
        ] {
            assert_eq!(
                Agent::of(ua, bot),
                Agent {
                    device,
                    browser: browser.into(),
                    os: os.into()
                },
                "{ua}"
            );
        }
    }

    #[test]
    fn a_remembered_agent_answers_as_a_fresh_parse_whatever_the_bot_flag_and_order() {
        let desktop = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
        let crawler = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        for (ua, bot, device) in [
            (desktop, true, "bot"),
            (desktop, false, "desktop"),
            (desktop, true, "bot"),
            (crawler, false, "bot"),
            (crawler, true, "bot"),
        ] {
            let agent = Agent::of(ua, bot);
            assert_eq!(agent.device, device, "{ua} flagged {bot}");
            let mut fresh = Agent::parse(ua);
            if bot {
                fresh.device = "bot";
            }
            assert_eq!(agent, fresh, "{ua} flagged {bot}");
        }
        // More distinct agents than a thread keeps: it starts again, answers unchanged.
        for i in 0..=RECENT_AGENTS {
            let ua =
                format!("Mozilla/5.0 (X11; Linux x86_64; rv:{i}.0) Gecko/20100101 Firefox/{i}.0");
            assert_eq!(Agent::of(&ua, false), Agent::parse(&ua));
        }
        assert_eq!(Agent::of(desktop, false).device, "desktop");
    }

    #[test]
    fn an_event_without_a_user_agent_has_no_device_browser_or_os() {
        assert_eq!(Agent::of("", false), Agent::NONE);
        assert_eq!(Agent::of("", true), Agent::NONE);
    }
}
