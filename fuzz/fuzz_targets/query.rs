//! Read-endpoint query strings; see `commerce_analytics::fuzzing::query`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| commerce_analytics::fuzzing::query(data));
