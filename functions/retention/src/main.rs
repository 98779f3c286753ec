//! Lambda `retention`: run daily by an EventBridge schedule; enforces `retention_days` (and per-store
//! overrides) on every table with per-event rows. Input: the schedule event, or `{"dryRun": true}` to see
//! what would go. Output: the report (also logged as JSON). Wiring only; see
//! `commerce_analytics::retention`.

use commerce_analytics::clock::SystemClock;
use commerce_analytics::config::Config;
use commerce_analytics::retention::{self, Policy, Report};
use commerce_analytics::store::ClickHouseStore;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    commerce_analytics::telemetry::init(true);
    let config = Config::from_env()?;
    config.ensure_supported()?;
    let store = ClickHouseStore::new(&config.clickhouse);
    let policy = Policy::from_config(&config);
    let (store, policy) = (&store, &policy);
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<Report, Error>(retention::handle(store, policy, &SystemClock, &event.payload).await?)
    }))
    .await
}
