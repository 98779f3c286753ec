//! Entry points shared by the fuzz targets (`fuzz/`, run with `cargo fuzz`) and the regression test that
//! replays their corpus on every test run (`shared/tests/fuzz_corpus.rs`). Each takes raw bytes and must
//! never panic; what it checks beyond that is stated per function.

use std::net::{IpAddr, Ipv4Addr};

use crate::event::{Event, RequestMeta, Validator};

fn now() -> time::OffsetDateTime {
    time::macros::datetime!(2026-11-26 12:00 UTC)
}

/// Event parsing and validation of any body. An accepted event must survive the Firehose record format
/// (JSON line → `Event`, equal) and the ingest path's re-validation.
pub fn event(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let validator = Validator {
        limits: Default::default(),
        retention_days: 365,
        anonymize_ip: true,
    };
    let meta = RequestMeta {
        ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
        user_agent: Some("fuzz".into()),
        referrer: None,
        country: None,
        from_browser: true,
    };
    if let Ok(e) = validator.parse(text, "shop-a", &meta, now()) {
        let line = serde_json::to_string(&e).unwrap_or_default();
        let back: Event = serde_json::from_str(&line).unwrap_or_else(|err| {
            panic!("an accepted event does not decode: {err}: {line}");
        });
        assert_eq!(back, e, "the record format changed the event");
        let mut again = back.clone();
        assert!(
            validator.revalidate(&mut again, now()).is_ok(),
            "ingest refuses an event track accepted: {line}"
        );
        assert_eq!(
            again, back,
            "ingest changes an event track accepted: {line}"
        );
    }
}

/// Query-string parsing of the read endpoints (parameters, periods, time zones, funnel steps). Any input
/// is accepted or refused with a 400 that names a field.
pub fn query(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = jiff::Timestamp::from_second(1_795_000_000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    if let Err(e) = crate::query::funnel::parse("shop-a", text, now) {
        assert!(e.status() == 400, "a query string gave {}: {e}", e.status());
        assert!(e.field().is_some(), "a 400 must name its field: {e}");
    }
}
