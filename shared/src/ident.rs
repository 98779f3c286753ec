//! Identifier and code rules shared by every layer: event validation, query parameters, configuration and
//! authentication all check the same spellings here, so a code valid in one place is valid in all.
//!
//! This module is the ground floor: it imports nothing from the crate.

/// An ISO 4217 currency code as the module stores it: three upper-case ASCII letters (`USD`).
pub fn is_currency_code(s: &str) -> bool {
    s.len() == 3 && s.bytes().all(|c| c.is_ascii_uppercase())
}

/// An ISO 3166-1 alpha-2 country code as the module stores it: two upper-case ASCII letters (`US`).
pub fn is_country_code(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|c| c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_upper_case_letters_of_the_right_length() {
        for (code, currency, country) in [
            ("USD", true, false),
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
