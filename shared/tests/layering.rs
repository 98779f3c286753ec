//! The layering that `lib.rs` states, checked on the source: every `crate::` path in code (comments
//! aside) of a top-level module names a module of its own layer or a lower one, and no two modules
//! import each other through any path (no import cycles).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom first; a module may use its own layer and the ones before it.
const LAYERS: &[&[&str]] = &[
    &["error", "ident", "clock", "retry", "ratelimit", "telemetry"],
    &["config", "fx"],
    &["event", "demo"],
    &["auth", "query", "retention", "erasure", "alerts"],
    &["store"],
    &["sink", "ingest"],
    &["tracker"],
    &["api"],
    &["lambda", "fuzzing"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS and lib.rs"))
}

fn read_sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            read_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source");
            out.push((path.display().to_string(), text));
        }
    }
}

/// Each top-level module and the crate modules its code (tests and comments aside) names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    read_sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files {
        let rel = path
            .strip_prefix(&src.display().to_string())
            .unwrap_or(&path)
            .trim_start_matches('/');
        let module = rel
            .split('/')
            .next()
            .unwrap_or(rel)
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" {
            continue;
        }
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        let deps = graph.entry(module.clone()).or_default();
        for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let name: String = line[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != module {
                    deps.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn every_module_imports_only_from_its_layer_or_below() {
    let mut upward = Vec::new();
    for (module, deps) in imports() {
        for dep in deps {
            if layer_of(&dep) > layer_of(&module) {
                upward.push(format!("{module} -> {dep}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports up the layers: {upward:?}");
}

#[test]
fn no_modules_import_each_other() {
    let graph = imports();
    // Depth-first search for a path back to the start.
    fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.to_owned()];
        while let Some(m) = stack.pop() {
            for d in graph.get(&m).into_iter().flatten() {
                if d == to {
                    return true;
                }
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        false
    }
    let cyclic: Vec<&String> = graph.keys().filter(|m| reaches(&graph, m, m)).collect();
    assert!(cyclic.is_empty(), "modules on an import cycle: {cyclic:?}");
}
