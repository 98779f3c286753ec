//! Lambda `track`: `POST /analytics/event` and `POST /analytics/events` behind API Gateway (HTTP API).
//!
//! Wiring only. With `FIREHOSE_STREAM_NAME` set, events go to Firehose (PutRecordBatch); without it, each
//! invocation inserts its events into ClickHouse as one batch before answering (a Lambda is frozen between
//! invocations, so no background flushing).

use std::sync::Arc;

use commerce_analytics::api::Api;
use commerce_analytics::auth::Authenticator;
use commerce_analytics::clock::SystemClock;
use commerce_analytics::config::Config;
use commerce_analytics::event::Validator;
use commerce_analytics::sink;
use commerce_analytics::store::ClickHouseStore;
use commerce_analytics::tracker::Tracker;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::telemetry::init(true);
    let config = Config::from_env()?;
    config.ensure_supported()?;
    let sink = sink::lambda_sink(&config).await;
    let clock = Arc::new(SystemClock);
    let tracker = Tracker::new(Validator::from_config(&config), sink, clock.clone());
    let api = Api::new(
        Arc::new(tracker),
        // Keys live in ClickHouse even when events go to Firehose (looked up once per key per TTL).
        Authenticator::from_config(Arc::new(ClickHouseStore::new(&config.clickhouse)), &config),
        config.limits,
    )
    .with_rate_limit(&config, clock);
    api.run_on_lambda().await
}
