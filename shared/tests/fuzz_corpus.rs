//! The fuzz corpus as regression tests: every input in `fuzz/corpus/<target>/` (seeds, and whatever
//! `cargo fuzz` found worth keeping) runs through the same entry point as the fuzz target, on every test run.

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus")).join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_event_corpus_input_validates_or_is_refused_without_panicking() {
    let files = inputs("event");
    assert!(files.len() >= 8, "the seed corpus is there");
    for (path, bytes) in files {
        let outcome = std::panic::catch_unwind(|| commerce_analytics::fuzzing::event(&bytes));
        assert!(outcome.is_ok(), "{} panicked", path.display());
    }
}

#[test]
fn every_query_corpus_input_parses_or_is_refused_without_panicking() {
    let files = inputs("query");
    assert!(files.len() >= 8, "the seed corpus is there");
    for (path, bytes) in files {
        let outcome = std::panic::catch_unwind(|| commerce_analytics::fuzzing::query(&bytes));
        assert!(outcome.is_ok(), "{} panicked", path.display());
    }
}
