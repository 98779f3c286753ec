//! The OpenAPI 3.1 document (`shared/openapi.yaml`), served as JSON at `GET /analytics/openapi.json`.
//!
//! Kept in step with the code by the tests below (every read endpoint's query parameters are exactly the
//! parser's list, the metric and dashboard enums are the catalog's) and against the running server by
//! schemathesis (`tests/it/contract.rs`: no 5xx, every status and body as documented).

use std::sync::LazyLock;

use serde_json::Value;

const YAML: &str = include_str!("../../openapi.yaml");

static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    // The YAML is part of the binary and checked by the tests below; a parse failure is a build defect.
    serde_yaml_ng::from_str(YAML).unwrap_or_else(|e| {
        tracing::error!(error = %e, "openapi.yaml does not parse");
        Value::Null
    })
});

/// The document as JSON.
pub fn document() -> &'static Value {
    &DOCUMENT
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::query::{cohorts, funnel, live, metrics, ranked};

    fn query_params(path: &str) -> BTreeSet<String> {
        let doc = document();
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} has parameters"))
            .iter()
            .map(|p| match p.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let name = r.trim_start_matches("#/components/parameters/");
                    doc["components"]["parameters"][name]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                }
                None => p["name"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_document_parses_as_openapi_3_1() {
        assert_eq!(document()["openapi"], "3.1.0");
    }

    #[test]
    fn each_read_endpoint_documents_exactly_the_parameters_its_parser_takes() {
        let exportable = |own: &[&'static str]| [own, crate::api::export::PARAMS].concat();
        for (path, params) in [
            ("/analytics/metrics", exportable(metrics::PARAMS)),
            ("/analytics/funnel", exportable(funnel::PARAMS)),
            ("/analytics/cohorts", exportable(cohorts::PARAMS)),
            ("/analytics/live", live::PARAMS.to_vec()),
        ] {
            assert_eq!(query_params(path), set(&params), "{path}");
        }
    }

    #[test]
    fn the_metric_enum_is_the_catalog() {
        let documented: BTreeSet<String> =
            document()["paths"]["/analytics/metrics"]["get"]["parameters"][0]["schema"]["enum"]
                .as_array()
                .expect("enum")
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
        let catalog: BTreeSet<String> = metrics::Metric::ALL
            .iter()
            .map(|m| m.name().to_owned())
            .chain(ranked::Ranked::ALL.iter().map(|m| m.name().to_owned()))
            .chain([
                crate::query::products::NAME.to_owned(),
                crate::query::sales::NAME.to_owned(),
                crate::query::attribution::NAME.to_owned(),
            ])
            .collect();
        assert_eq!(documented, catalog);
    }

    /// The metrics answer is `oneOf` Series, Ranked and Attribution: an attribution answer has every field
    /// Ranked requires, so Ranked must exclude it, or a validator finds it valid under two schemas (the
    /// contract test did, on a 2-shard cluster run whose fuzzing reached a 200 attribution answer).
    #[test]
    fn an_attribution_answer_is_told_apart_from_a_ranked_one() {
        let schemas = &document()["components"]["schemas"];
        let name = crate::query::attribution::NAME;
        assert_eq!(
            schemas["Ranked"]["properties"]["metric"]["not"]["const"],
            name
        );
        assert_eq!(
            schemas["Attribution"]["properties"]["metric"]["enum"],
            serde_json::json!([name])
        );
    }
}
