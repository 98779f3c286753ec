//! Exchange rates, for reading money in one **reporting currency** (`convert=true`): every order and
//! refund is converted from its own currency at the rate of its day.
//!
//! - **Rates** are the European Central Bank's euro foreign exchange reference rates: units of a currency
//!   per euro, one set per TARGET business day (about 16:00 CET), for about 30 currencies. They are kept in
//!   the warehouse (`fx_rates`: day, currency, rate, source), loaded by the scheduled `rates` Lambda on
//!   AWS from the ECB's published XML ([`parse_ecb_xml`]), or from a file with `analytics rates load`
//!   ([`parse_ecb_csv`], the ECB's `eurofxref-hist.csv` layout; `data/fx/` holds the ECB's history for
//!   local use and tests).
//! - **The rate of a day** is the latest published on or before it, at most [`STALE_AFTER_DAYS`] days
//!   earlier (weekends and TARGET holidays have no rates of their own); older than that it is missing, and
//!   an amount without a rate is **never converted as 0**: it is left out of the figures and reported as
//!   unconverted (which currency, how many orders), so the reader sees what is missing.
//! - **Conversion** is exact decimal arithmetic: `amount / 10^e(from) / rate(from) * rate(to) * 10^e(to)`
//!   with each currency's ISO 4217 exponent `e` (JPY 0, USD 2, KWD 3) and EUR's rate 1. A bucket's value is
//!   the exact sum of its amounts converted, rounded half up to the reporting currency's minor units once.
//! - **The day** of an amount is its UTC date (the ECB's rates are for a calendar day; a UTC day is the
//!   same for every reader of the store, whatever the zone of the buckets).

use std::collections::{BTreeMap, HashMap};

use jiff::civil::Date;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// A rate older than this many days does not convert (the ECB publishes every TARGET business day; the
/// longest gap, over Easter, is four days).
pub const STALE_AFTER_DAYS: i64 = 7;

/// Where the committed rates for local use come from.
pub const ECB_SOURCE: &str = "ECB euro foreign exchange reference rates";

/// The ECB's reference rates of the last 90 days (what the scheduled `rates` function reads by default).
pub const ECB_90_DAYS_URL: &str =
    "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist-90d.xml";

/// What a refresh stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshReport {
    pub url: String,
    pub rates: usize,
    pub first_day: Option<String>,
    pub last_day: Option<String>,
}

/// Reads the ECB's XML at `url` and stores its rates (a day already stored is replaced by the same
/// rates, so running twice is harmless). Fails, storing nothing, when the answer is not a 200 with rates.
pub async fn refresh(
    http: &reqwest::Client,
    url: &str,
    store: &dyn RateStore,
) -> Result<RefreshReport, crate::error::Error> {
    use crate::error::Error;
    let fail = |what: String| Error::Internal(format!("rates from {url}: {what}"));
    let parsed = url::Url::parse(url).map_err(|e| fail(e.to_string()))?;
    let loopback = matches!(
        parsed.host(),
        Some(url::Host::Domain("localhost"))
            | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
            | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
    );
    if !(parsed.scheme() == "https" || (parsed.scheme() == "http" && loopback)) {
        return Err(fail(
            "only https (or plain http to loopback) is read".into(),
        ));
    }
    let response = http
        .get(url)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP {}", response.status())));
    }
    let text = response.text().await.map_err(|e| fail(e.to_string()))?;
    let rates = parse_ecb_xml(&text).map_err(fail)?;
    let stored = store.put_rates(&rates, ECB_SOURCE).await?;
    Ok(RefreshReport {
        url: url.to_owned(),
        rates: stored,
        first_day: rates.iter().map(|r| r.day).min().map(|d| d.to_string()),
        last_day: rates.iter().map(|r| r.day).max().map(|d| d.to_string()),
    })
}

/// One published rate: units of `currency` per euro on `day`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyRate {
    pub day: Date,
    pub currency: String,
    pub per_eur: Decimal,
}

/// The minor-unit exponent of an ISO 4217 currency (JPY 0, USD 2, KWD 3); 2 when ISO gives none.
pub fn exponent(code: &str) -> u32 {
    iso_currency::Currency::from_code(code)
        .and_then(|c| c.exponent())
        .map_or(2, u32::from)
}

/// Where rates are stored: the warehouse's `fx_rates` table.
#[async_trait::async_trait]
pub trait RateStore: Send + Sync + std::fmt::Debug {
    /// Stores `rates` from `source`; a rate stored again for the same day and currency replaces the
    /// earlier one. Returns how many were stored.
    async fn put_rates(
        &self,
        rates: &[DailyRate],
        source: &str,
    ) -> Result<usize, crate::error::StoreError>;
}

/// The UTC date of `t` (the day whose rate converts an amount of that moment).
pub fn utc_day(t: jiff::Timestamp) -> Date {
    jiff::tz::TimeZone::UTC.to_datetime(t).date()
}

/// A set of rates to convert with.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    by_currency: HashMap<String, BTreeMap<Date, Decimal>>,
}

impl Rates {
    pub fn new(rates: impl IntoIterator<Item = DailyRate>) -> Self {
        let mut by_currency: HashMap<String, BTreeMap<Date, Decimal>> = HashMap::new();
        for r in rates {
            by_currency
                .entry(r.currency)
                .or_default()
                .insert(r.day, r.per_eur);
        }
        Self { by_currency }
    }

    /// Units of `currency` per euro on `day`: 1 for EUR; else the latest rate published on or before
    /// `day`, at most [`STALE_AFTER_DAYS`] days earlier.
    pub fn per_eur(&self, currency: &str, day: Date) -> Option<Decimal> {
        if currency == "EUR" {
            return Some(Decimal::ONE);
        }
        let earliest = day
            .checked_sub(jiff::Span::new().days(STALE_AFTER_DAYS))
            .ok()?;
        self.by_currency
            .get(currency)?
            .range(earliest..=day)
            .next_back()
            .map(|(_, r)| *r)
    }

    /// `amount` minor units of `from` on `day`, in minor units of `to`, exact (not rounded); `None`
    /// without a rate for either currency.
    pub fn convert(&self, amount: i64, from: &str, to: &str, day: Date) -> Option<Decimal> {
        if from == to {
            return Some(Decimal::from(amount));
        }
        let (rate_from, rate_to) = (self.per_eur(from, day)?, self.per_eur(to, day)?);
        if rate_from.is_zero() {
            return None;
        }
        let scale = |e: u32| Decimal::from(10_i64.pow(e));
        let euros = Decimal::from(amount)
            .checked_div(scale(exponent(from)))?
            .checked_div(rate_from)?;
        euros.checked_mul(rate_to)?.checked_mul(scale(exponent(to)))
    }
}

/// Rates for the weekdays after each currency's last one in `rates`, up to `through`, each the currency's
/// last rate carried forward: for demo traffic dated after the committed history ends, so that the demo's
/// recent days convert (at rates that say where they come from through the source they are stored with).
pub fn carry_forward(rates: &[DailyRate], through: Date) -> Vec<DailyRate> {
    let mut last: BTreeMap<&str, &DailyRate> = BTreeMap::new();
    for r in rates {
        let l = last.entry(r.currency.as_str()).or_insert(r);
        if r.day > l.day {
            *l = r;
        }
    }
    let mut out = Vec::new();
    for r in last.values() {
        let mut day = r.day.tomorrow().ok();
        while let Some(d) = day.filter(|d| *d <= through) {
            if !matches!(
                d.weekday(),
                jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
            ) {
                out.push(DailyRate {
                    day: d,
                    currency: r.currency.clone(),
                    per_eur: r.per_eur,
                });
            }
            day = d.tomorrow().ok();
        }
    }
    out
}

/// `d` rounded half up (away from zero for negatives, as for positives) to a whole number of minor units.
pub fn round_minor(d: Decimal) -> i64 {
    d.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
        .to_i64()
        .unwrap_or(if d.is_sign_negative() {
            i64::MIN
        } else {
            i64::MAX
        })
}

/// A rate as published: a positive decimal (`1.1172`, `175.68`, `20275.17`).
fn parse_rate(text: &str) -> Option<Decimal> {
    let d: Decimal = text.trim().parse().ok()?;
    (d > Decimal::ZERO).then_some(d)
}

/// Rates in the ECB's CSV layout (`eurofxref-hist.csv`): a header `Date,USD,JPY,…` and one line per day
/// (`2026-10-30,1.1172,175.68,…`), `N/A` where a currency had no rate that day; a trailing comma is
/// allowed. Only ISO 4217 codes still in use are kept (CYP, EEK, … are dropped). Errors name the line.
pub fn parse_ecb_csv(text: &str) -> Result<Vec<DailyRate>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or("the rates file is empty")?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    if columns.first() != Some(&"Date") {
        return Err(format!(
            "line 1: expected a header starting with Date, found {header:?}"
        ));
    }
    let mut out = Vec::new();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let day: Date = cells[0]
            .parse()
            .map_err(|e| format!("line {}: {:?} is not a date: {e}", i + 2, cells[0]))?;
        for (code, cell) in columns.iter().zip(&cells).skip(1) {
            if code.is_empty() || *cell == "N/A" || cell.is_empty() {
                continue;
            }
            if !crate::ident::is_currency_code(code) {
                continue;
            }
            let per_eur = parse_rate(cell)
                .ok_or_else(|| format!("line {}: {code} rate {cell:?} is not a rate", i + 2))?;
            out.push(DailyRate {
                day,
                currency: (*code).to_owned(),
                per_eur,
            });
        }
    }
    Ok(out)
}

/// Rates in the ECB's XML (`eurofxref-daily.xml`, `eurofxref-hist-90d.xml`, `eurofxref-hist.xml`):
/// `<Cube time="2026-10-30"><Cube currency="USD" rate="1.1172"/>…</Cube>`.
pub fn parse_ecb_xml(text: &str) -> Result<Vec<DailyRate>, String> {
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("not XML: {e}"))?;
    let mut out = Vec::new();
    for day_cube in doc
        .descendants()
        .filter(|n| n.tag_name().name() == "Cube" && n.has_attribute("time"))
    {
        let time = day_cube.attribute("time").unwrap_or_default();
        let day: Date = time
            .parse()
            .map_err(|e| format!("Cube time {time:?} is not a date: {e}"))?;
        for c in day_cube
            .children()
            .filter(|n| n.tag_name().name() == "Cube" && n.has_attribute("currency"))
        {
            let code = c.attribute("currency").unwrap_or_default();
            let rate = c.attribute("rate").unwrap_or_default();
            if !crate::ident::is_currency_code(code) {
                continue;
            }
            let per_eur = parse_rate(rate)
                .ok_or_else(|| format!("{time} {code}: rate {rate:?} is not a rate"))?;
            out.push(DailyRate {
                day,
                currency: code.to_owned(),
                per_eur,
            });
        }
    }
    if out.is_empty() {
        return Err("no rates in the document".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().expect("date")
    }

    fn rate(day: &str, currency: &str, per_eur: &str) -> DailyRate {
        DailyRate {
            day: d(day),
            currency: currency.into(),
            per_eur: per_eur.parse().expect("rate"),
        }
    }

    fn rates() -> Rates {
        Rates::new([
            rate("2026-10-30", "USD", "1.1172"),
            rate("2026-10-30", "JPY", "175.68"),
            rate("2026-10-30", "KWD", "0.3425"),
            rate("2026-10-29", "USD", "1.1000"),
        ])
    }

    #[test]
    fn a_days_rate_is_the_latest_published_within_a_week() {
        let r = rates();
        for (day, want) in [
            ("2026-10-29", Some("1.1000")),
            ("2026-10-30", Some("1.1172")),
            // A weekend and the week after use Friday's rate, for at most seven days.
            ("2026-11-01", Some("1.1172")),
            ("2026-11-06", Some("1.1172")),
            ("2026-11-07", None),
            // Before the first rate there is none.
            ("2026-10-28", None),
        ] {
            assert_eq!(
                r.per_eur("USD", d(day)),
                want.map(|w| w.parse().expect("rate")),
                "{day}"
            );
        }
        assert_eq!(r.per_eur("EUR", d("1990-01-01")), Some(Decimal::ONE));
        assert_eq!(r.per_eur("GBP", d("2026-10-30")), None);
    }

    #[test]
    fn conversion_uses_each_currencys_own_minor_units() {
        let r = rates();
        let day = d("2026-10-30");
        // 10,000 JPY (no minor units) = 10000 / 175.68 EUR = 56.9216… EUR → 5692 cents.
        let jpy = r.convert(10_000, "JPY", "EUR", day).expect("rate");
        assert_eq!(round_minor(jpy), 5692);
        // $111.72 = €100 exactly; in JPY 17,568 yen.
        assert_eq!(
            r.convert(11_172, "USD", "EUR", day),
            Some(Decimal::from(10_000))
        );
        assert_eq!(
            round_minor(r.convert(11_172, "USD", "JPY", day).expect("rate")),
            17_568
        );
        // 1 KWD has 1000 fils: €1 = 0.3425 KWD = 342.5 fils → 343 (half up).
        assert_eq!(
            round_minor(r.convert(100, "EUR", "KWD", day).expect("rate")),
            343
        );
        // The same currency is not converted; a currency without a rate is not converted at all.
        assert_eq!(r.convert(5, "GBP", "GBP", day), Some(Decimal::from(5)));
        assert_eq!(r.convert(5, "GBP", "EUR", day), None);
        assert_eq!(round_minor(Decimal::new(-25, 1)), -3);
    }

    #[test]
    fn the_ecb_csv_and_xml_layouts_parse_to_the_same_rates() {
        let csv = "Date,USD,JPY,CYP,GBP,\n2026-10-30,1.1172,175.68,N/A,0.8338,\n2026-10-29,1.1000,N/A,N/A,0.8301,\n";
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
  <gesmes:subject>Reference rates</gesmes:subject>
  <Cube>
    <Cube time="2026-10-30"><Cube currency="USD" rate="1.1172"/><Cube currency="JPY" rate="175.68"/><Cube currency="GBP" rate="0.8338"/></Cube>
    <Cube time="2026-10-29"><Cube currency="USD" rate="1.1000"/><Cube currency="GBP" rate="0.8301"/></Cube>
  </Cube>
</gesmes:Envelope>"#;
        let mut a = parse_ecb_csv(csv).expect("csv");
        let mut b = parse_ecb_xml(xml).expect("xml");
        let key = |r: &DailyRate| (r.day, r.currency.clone());
        a.sort_by_key(key);
        b.sort_by_key(key);
        assert_eq!(a, b);
        assert_eq!(
            a.len(),
            5,
            "CYP (no longer ISO 4217) and N/A cells are left out"
        );
    }

    #[test]
    fn carrying_forward_fills_the_weekdays_after_each_currencys_last_rate() {
        let filled = carry_forward(
            &[
                rate("2026-10-29", "USD", "1.1"),
                rate("2026-10-30", "USD", "1.1172"),
                rate("2026-10-28", "JPY", "170"),
            ],
            d("2026-11-03"),
        );
        let got: Vec<(String, String, String)> = filled
            .iter()
            .map(|r| (r.day.to_string(), r.currency.clone(), r.per_eur.to_string()))
            .collect();
        let want = [
            ("2026-10-29", "JPY", "170"),
            ("2026-10-30", "JPY", "170"),
            ("2026-11-02", "JPY", "170"),
            ("2026-11-03", "JPY", "170"),
            ("2026-11-02", "USD", "1.1172"),
            ("2026-11-03", "USD", "1.1172"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
        );
    }

    #[test]
    fn the_committed_history_parses() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../data/fx/eurofxref-hist.csv"
        ))
        .expect("data/fx/eurofxref-hist.csv");
        let rates = Rates::new(parse_ecb_csv(&text).expect("parses"));
        assert_eq!(
            rates.per_eur("USD", d("2026-10-30")),
            Some("1.1172".parse().expect("rate"))
        );
        assert_eq!(
            rates.per_eur("JPY", d("2020-01-02")),
            Some("121.75".parse().expect("rate"))
        );
    }

    #[test]
    fn malformed_rates_files_are_refused_naming_the_line() {
        for (text, needle) in [
            ("", "empty"),
            ("Day,USD\n", "line 1"),
            ("Date,USD\n2026-13-01,1.1\n", "line 2"),
            ("Date,USD\n2026-10-30,abc\n", "line 2: USD"),
            ("Date,USD\n2026-10-30,-1\n", "line 2: USD"),
        ] {
            let err = parse_ecb_csv(text).expect_err(text);
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        assert!(parse_ecb_xml("<a/>").is_err());
        assert!(parse_ecb_xml("not xml").is_err());
    }
}
