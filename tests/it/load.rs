//! The load test (`cli/src/bin/loadtest.rs`), short: tracking at a paced rate while dashboards are read,
//! then the stored rows must be exactly the preloaded events plus every event answered 202, with no error
//! on any request (the binary exits non-zero otherwise). The full-length run is in the README.

use std::process::Command;

use integration_tests::{clickhouse_url, debug_binary};

#[test]
fn a_short_load_stores_exactly_what_was_acknowledged_with_no_errors() {
    for durable in ["true", "false"] {
        let out = Command::new(debug_binary("loadtest", &["cli/src"]))
            .args(["--seconds", "8", "--rate", "2000", "--readers", "2"])
            .args(["--preload", "20000", "--durable-buffer", durable])
            .env("CLICKHOUSE_URL", clickhouse_url())
            .env("RUST_LOG", "warn")
            .output()
            .expect("loadtest runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "durable {durable}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": exact"), "durable {durable}: {stdout}");
    }
}
