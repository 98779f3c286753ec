use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

const SPEC_YAML: &str = "analytics:
  enabled: true
  provider: clickhouse # clickhouse | bigquery
  clickhouse_url: ${CLICKHOUSE_URL}
  batch_size: 1000 # events per batch write
  flush_interval_seconds: 5 # max time between flushes
  retention_days: 365 # event retention period
";

#[test]
fn spec_yaml_parses_with_interpolated_url_and_spec_defaults() {
    let env = env_of(&[("CLICKHOUSE_URL", "http://ch:8123")]);
    let c = Config::from_sources(Some(SPEC_YAML), &env).expect("valid");
    assert_eq!(c.clickhouse.url, "http://ch:8123");
    assert_eq!(c.batch_size, 1000);
    assert_eq!(c.flush_interval, Duration::from_secs(5));
    assert_eq!(c.retention_days, 365);
    assert!(c.enabled);
    assert_eq!(c.provider, Provider::Clickhouse);
    assert_eq!(c.clickhouse.database, "commerce_analytics");
    assert_eq!(c.max_buffered_events, 100_000);
    assert!(c.anonymize_ip);
}

#[test]
fn store_retention_overrides_come_from_yaml_or_env_and_raise_the_ttl_floor() {
    let yaml = "analytics:\n  clickhouse_url: http://ch:8123\n  retention_days: 90\n  store_retention_days:\n    shop-a: 30\n    shop-b: 730\n";
    let c = Config::from_sources(Some(yaml), &env_of(&[])).expect("valid");
    assert_eq!(c.retention_days_for("shop-a"), 30);
    assert_eq!(c.retention_days_for("shop-b"), 730);
    assert_eq!(c.retention_days_for("shop-c"), 90);
    assert_eq!(c.max_retention_days(), 730);

    let env = env_of(&[
        ("CLICKHOUSE_URL", "http://ch:8123"),
        ("ANALYTICS_STORE_RETENTION_DAYS", "shop-x:7, shop-y:14"),
    ]);
    let c = Config::from_sources(None, &env).expect("valid");
    assert_eq!(c.retention_days_for("shop-x"), 7);
    assert_eq!(c.retention_days_for("shop-y"), 14);
    assert_eq!(c.max_retention_days(), 365);
}

#[test]
fn write_keys_take_an_origin_allow_list_and_bad_ones_are_refused() {
    let ok = [
        ("CLICKHOUSE_URL", "http://ch:8123"),
        (
            "ANALYTICS_API_KEYS",
            "pk_live_key_1:shop-a:write:https://shop.example.com|http://localhost:5173,sk_live_key_1:shop-a:read",
        ),
    ];
    let c = Config::from_sources(None, &env_of(&ok)).expect("valid");
    assert_eq!(
        c.keys[0].origins,
        ["https://shop.example.com", "http://localhost:5173"]
    );
    assert!(c.keys[1].origins.is_empty());
    for (keys, needle) in [
        (
            "sk_live_key_1:shop-a:read:https://a.example",
            "write keys only",
        ),
        (
            "pk_live_key_1:shop-a:write:https://a.example/path",
            "must be scheme://host",
        ),
        (
            "pk_live_key_1:shop-a:write:shop.example.com",
            "must be scheme://host",
        ),
    ] {
        let env = [
            ("CLICKHOUSE_URL", "http://ch:8123"),
            ("ANALYTICS_API_KEYS", keys),
        ];
        let err = Config::from_sources(None, &env_of(&env)).expect_err(keys);
        assert!(err.to_string().contains(needle), "{keys}: {err}");
    }
}

#[test]
fn bad_store_retention_overrides_are_refused_with_the_entry_named() {
    for (value, needle) in [
        ("shop-a", "must be store:days"),
        ("shop-a:x", "days must be a whole number"),
        ("shop-a:0", "store_retention_days.shop-a must be at least 1"),
        ("Shop A:10", "must match"),
    ] {
        let pairs = [
            ("CLICKHOUSE_URL", "http://ch:8123"),
            ("ANALYTICS_STORE_RETENTION_DAYS", value),
        ];
        let env = env_of(&pairs);
        let err = Config::from_sources(None, &env).expect_err(value);
        assert!(err.to_string().contains(needle), "{value}: {err}");
    }
}

#[test]
fn unset_variable_without_default_is_an_error_naming_it() {
    let err = Config::from_sources(Some(SPEC_YAML), &env_of(&[])).expect_err("must fail");
    assert!(
        err.to_string().contains("CLICKHOUSE_URL is not set"),
        "{err}"
    );
    assert!(err.to_string().contains("line 4"), "{err}");
}

#[test]
fn default_after_colon_dash_is_used_when_variable_is_unset() {
    let yaml = "analytics:\n  clickhouse_url: ${CH:-http://127.0.0.1:8123}\n";
    let c = Config::from_sources(Some(yaml), &env_of(&[])).expect("valid");
    assert_eq!(c.clickhouse.url, "http://127.0.0.1:8123");
}

#[test]
fn environment_overrides_win_over_the_file() {
    let env = env_of(&[
        ("CLICKHOUSE_URL", "http://a:1"),
        ("ANALYTICS_BATCH_SIZE", "50"),
        ("ANALYTICS_FLUSH_INTERVAL_SECONDS", "0.5"),
        ("ANALYTICS_ENABLED", "false"),
        (
            "ANALYTICS_API_KEYS",
            "pk_test_12345:shop-1:write, sk_test_12345:shop-1:read",
        ),
    ]);
    let c = Config::from_sources(Some(SPEC_YAML), &env).expect("valid");
    assert_eq!(c.batch_size, 50);
    assert_eq!(c.flush_interval, Duration::from_millis(500));
    assert!(!c.enabled);
    assert_eq!(c.keys.len(), 2);
    assert_eq!(c.keys[1].kind, KeyKind::Read);
    assert_eq!(c.keys[1].store, "shop-1");
}

#[test]
fn bad_settings_fail_with_the_setting_named() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("CLICKHOUSE_URL", "http://a:1"),
                ("ANALYTICS_BATCH_SIZE", "0"),
            ],
            "batch_size",
        ),
        (
            &[
                ("CLICKHOUSE_URL", "http://a:1"),
                ("ANALYTICS_BATCH_SIZE", "x"),
            ],
            "ANALYTICS_BATCH_SIZE",
        ),
        (&[("CLICKHOUSE_URL", "ftp://a")], "clickhouse_url"),
        (&[], "clickhouse_url is not set"),
        (
            &[
                ("CLICKHOUSE_URL", "http://a:1"),
                ("ANALYTICS_RETENTION_DAYS", "0"),
            ],
            "retention_days",
        ),
        (
            &[
                ("CLICKHOUSE_URL", "http://a:1"),
                ("CLICKHOUSE_QUERY_TIMEOUT_SECONDS", "0"),
            ],
            "clickhouse_query_timeout_seconds",
        ),
        (
            &[
                ("ANALYTICS_PROVIDER", "bigquery"),
                ("BIGQUERY_PROJECT", "local-project"),
                ("BIGQUERY_QUERY_TIMEOUT_SECONDS", "0"),
            ],
            "bigquery_query_timeout_seconds",
        ),
        (
            &[
                ("CLICKHOUSE_URL", "http://a:1"),
                ("CLICKHOUSE_DATABASE", "x;drop"),
            ],
            "clickhouse_database",
        ),
        (
            &[
                ("CLICKHOUSE_URL", "http://a:1"),
                ("ANALYTICS_API_KEYS", "short:s:write"),
            ],
            "keys[0].key",
        ),
        (
            &[
                ("CLICKHOUSE_URL", "http://a:1"),
                ("ANALYTICS_API_KEYS", "pk_123456789:Bad Store:write"),
            ],
            "keys[0].store",
        ),
        (
            &[
                ("CLICKHOUSE_URL", "http://a:1"),
                ("ANALYTICS_PROVIDER", "mysql"),
            ],
            "ANALYTICS_PROVIDER",
        ),
    ];
    for (env, needle) in cases {
        let err = Config::from_sources(None, &env_of(env))
            .expect_err("must fail")
            .to_string();
        assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    }
}

#[test]
fn unknown_setting_in_the_file_is_rejected() {
    let yaml = "analytics:\n  clickhouse_url: http://a:1\n  batch_sise: 10\n";
    let err = Config::from_sources(Some(yaml), &env_of(&[]))
        .expect_err("must fail")
        .to_string();
    assert!(err.contains("batch_sise"), "{err}");
}

#[test]
fn bigquery_settings_parse_with_their_defaults() {
    let yaml = "analytics:\n  provider: bigquery\n  bigquery_project: shop-analytics\n";
    let c = Config::from_sources(Some(yaml), &env_of(&[])).expect("parses");
    assert_eq!(c.provider, Provider::Bigquery);
    let bq = c.bigquery.as_ref().expect("bigquery settings");
    assert_eq!(
        (
            bq.project.as_str(),
            bq.dataset.as_str(),
            bq.location.as_str()
        ),
        ("shop-analytics", "commerce_analytics", "US")
    );
    assert!(!bq.is_emulator(), "Google's endpoint by default");
}

#[test]
fn bad_bigquery_settings_are_refused_naming_the_setting() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "bigquery_project"),
        (
            &[("BIGQUERY_PROJECT", "Shop Analytics")],
            "bigquery_project",
        ),
        (
            &[("BIGQUERY_PROJECT", "p-1"), ("BIGQUERY_DATASET", "a.b")],
            "bigquery_dataset",
        ),
        (
            &[
                ("BIGQUERY_PROJECT", "p-1"),
                ("BIGQUERY_LOCATION", "us east"),
            ],
            "bigquery_location",
        ),
        (
            &[
                ("BIGQUERY_PROJECT", "p-1"),
                ("BIGQUERY_ENDPOINT", "ftp://x"),
            ],
            "bigquery_endpoint",
        ),
    ];
    for (env, setting) in cases {
        let mut all = vec![("ANALYTICS_PROVIDER", "bigquery")];
        all.extend_from_slice(env);
        let err = Config::from_sources(None, &env_of(&all))
            .expect_err("refused")
            .to_string();
        assert!(err.contains(setting), "{env:?}: {err}");
    }
    let emulator = Config::from_sources(
        None,
        &env_of(&[
            ("ANALYTICS_PROVIDER", "bigquery"),
            ("BIGQUERY_PROJECT", "local-project"),
            ("BIGQUERY_ENDPOINT", "http://127.0.0.1:9050/"),
        ]),
    )
    .expect("parses");
    let bq = emulator.bigquery.expect("bigquery");
    assert!(bq.is_emulator());
    assert_eq!(bq.endpoint, "http://127.0.0.1:9050");
}

#[test]
fn the_readme_configuration_table_is_the_declared_settings() {
    let readme = include_str!("../../../README.md");
    let table = settings::markdown_table();
    assert!(
        readme.contains(&table),
        "README.md's configuration table differs from the settings declared in \
             shared/src/config/settings.rs; paste this table into README.md:\n{table}"
    );
}

#[test]
fn every_setting_has_one_unique_name_and_variable() {
    let mut names: Vec<&str> = settings::ALL.iter().map(|s| s.name).collect();
    let mut vars: Vec<&str> = settings::ALL.iter().map(|s| s.env).collect();
    names.sort_unstable();
    vars.sort_unstable();
    let n = settings::ALL.len();
    names.dedup();
    vars.dedup();
    assert_eq!((names.len(), vars.len()), (n, n));
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let env = env_of(&[
        ("CLICKHOUSE_URL", "http://a:1"),
        ("CLICKHOUSE_PASSWORD", "hunter2-very-secret"),
        ("ANALYTICS_API_KEYS", "sk_secret_value_1:s:read"),
    ]);
    let c = Config::from_sources(None, &env).expect("valid");
    let dbg = format!("{c:?}");
    assert!(
        !dbg.contains("hunter2") && !dbg.contains("sk_secret_value_1"),
        "{dbg}"
    );
}
