//! What a session's source is called: its first `utm_source` when tagged, else the name of the site that
//! referred it, else `direct` (used by `traffic_sources`, the `source` breakdown and product performance's
//! `source` filter, on both warehouses).
//!
//! A referrer is named by its site, not its host: every Google (`www.google.com`, `google.co.uk`,
//! `news.google.de`) is `google`, `m.facebook.com` and `l.facebook.com` are `facebook`, `t.co` and `x.com`
//! are `twitter`, so organic visits land in the same row as the `utm_source=google` campaigns that
//! storefronts tag themselves (the names below are the ones UTM tagging conventions use). Any other
//! referrer keeps its domain without `www.`. [`KNOWN`] is the one table; each adapter turns it into its own
//! SQL (`multiIf(match…)` on ClickHouse, `CASE WHEN REGEXP_CONTAINS…` on BigQuery), both RE2 regular
//! expressions over the referrer's domain.

/// (source name, RE2 pattern over a referrer's lower-case domain without `www.`).
pub const KNOWN: &[(&str, &str)] = &[
    (
        "google",
        r"(^|\.)google\.(com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2})$",
    ),
    ("bing", r"(^|\.)bing\.com$"),
    (
        "yahoo",
        r"(^|\.)yahoo\.(com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2})$",
    ),
    ("duckduckgo", r"(^|\.)duckduckgo\.com$"),
    ("baidu", r"(^|\.)baidu\.com$"),
    (
        "yandex",
        r"(^|\.)yandex\.(com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2})$",
    ),
    ("ecosia", r"(^|\.)ecosia\.org$"),
    ("facebook", r"(^|\.)(facebook\.com|fb\.me)$"),
    ("instagram", r"(^|\.)instagram\.com$"),
    ("twitter", r"(^|\.)(twitter\.com|x\.com|t\.co)$"),
    ("linkedin", r"(^|\.)(linkedin\.com|lnkd\.in)$"),
    (
        "pinterest",
        r"(^|\.)pinterest\.(com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2})$",
    ),
    ("reddit", r"(^|\.)reddit\.com$"),
    ("tiktok", r"(^|\.)tiktok\.com$"),
    ("youtube", r"(^|\.)(youtube\.com|youtu\.be)$"),
];

/// The source name of a referrer's domain (without `www.`): the site's name when [`KNOWN`] (matched in
/// lower case), else the domain as sent. What the adapters' SQL computes (tests compare them).
pub fn name_of(domain: &str) -> String {
    let lower = domain.to_lowercase();
    KNOWN
        .iter()
        .find(|(_, pattern)| {
            regex::Regex::new(pattern)
                .map(|r| r.is_match(&lower))
                .unwrap_or(false)
        })
        .map_or_else(|| domain.to_owned(), |(name, _)| (*name).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_google_and_facebook_host_is_one_source_and_other_sites_keep_their_domain() {
        for (domain, name) in [
            ("google.com", "google"),
            ("google.co.uk", "google"),
            ("news.google.de", "google"),
            ("m.facebook.com", "facebook"),
            ("l.facebook.com", "facebook"),
            ("t.co", "twitter"),
            ("x.com", "twitter"),
            ("youtu.be", "youtube"),
            ("bing.com", "bing"),
            ("blog.example.com", "blog.example.com"),
            ("notgoogle.com", "notgoogle.com"),
            ("google.com.evil.example", "google.com.evil.example"),
        ] {
            assert_eq!(name_of(domain), name, "{domain}");
        }
    }
}
