//! Event parsing + validation with arbitrary bodies; see `commerce_analytics::fuzzing::event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| commerce_analytics::fuzzing::event(data));
