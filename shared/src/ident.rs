//! Identifier and code rules shared by every layer: event validation, query parameters, configuration,
//! authentication and the migrations all check the same spellings here, so a value valid in one place is
//! valid in all (and `config` and `auth` need not import each other for them).
//!
//! This module is the ground floor: it imports nothing from the crate.

/// An ISO 4217 currency code as the module stores it: one of the standard's active codes, upper case
/// (`USD`; `usd` and `ZZZ` are not). The list is the `iso_currency` crate's.
pub fn is_currency_code(s: &str) -> bool {
    s.len() == 3
        && s.bytes().all(|c| c.is_ascii_uppercase())
        && iso_currency::Currency::from_code(s).is_some()
}

/// An ISO 3166-1 alpha-2 country code as the module stores it: two upper-case ASCII letters (`US`).
pub fn is_country_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|c| c.is_ascii_uppercase())
}

/// Store ids: `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn is_valid_store_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// `scheme://host[:port]` with nothing after, as browsers send in `Origin`.
pub fn is_origin(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.path() == "/"
            && u.query().is_none()
            && !s.ends_with('/')
    })
}

/// A SQL identifier we may name a database after, and an environment variable name:
/// `[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_upper_case_letters_of_the_right_length() {
        for (code, currency, country) in [
            ("USD", true, false),
            ("JPY", true, false),
            ("KWD", true, false),
            ("ZZZ", false, false),
            ("US", false, true),
            ("usd", false, false),
            ("us", false, false),
            ("US1", false, false),
            ("", false, false),
            ("ÜSD", false, false),
        ] {
            assert_eq!(is_currency_code(code), currency, "{code}");
            assert_eq!(is_country_code(code), country, "{code}");
        }
    }
}
