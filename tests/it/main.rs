//! The integration tests against the real components (ClickHouse, moto, Chromium), one module per topic,
//! linked into one test binary: the workspace links it once instead of once per topic. Each test uses its
//! own database (see `integration_tests::TestDb`), so the tests of all topics run side by side.
//!
//! `no_secrets_in_logs` stays a binary of its own: it installs the process's only log subscriber and
//! reads everything logged.

mod adversarial;
mod alerts;
mod attribution;
mod bigquery;
mod bots;
mod bulk_load;
mod clickhouse_store;
mod cluster;
mod contract;
mod crash;
mod dashboard_page;
mod firehose_pipe;
mod isolation;
mod keys;
mod lambda_runtime;
mod lifecycle;
mod live;
mod load;
mod local_server;
mod queries;
mod sales;
mod sdk_browser;
mod server_limits;
