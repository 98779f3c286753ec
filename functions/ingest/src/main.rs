//! Lambda `ingest`: the Firehose delivery stream's HTTP endpoint destination, behind a Function URL.
//! Wiring only; the protocol lives in `commerce_analytics::ingest`.

use std::sync::Arc;

use commerce_analytics::clock::SystemClock;
use commerce_analytics::config::Config;
use commerce_analytics::event::Validator;
use commerce_analytics::ingest::Ingest;
use commerce_analytics::store::ClickHouseStore;
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    commerce_analytics::telemetry::init(true);
    let config = Config::from_env()?;
    config.ensure_supported()?;
    let access_key = config.require_firehose_access_key()?.clone();
    let store = Arc::new(ClickHouseStore::new(&config.clickhouse));
    let ingest = Ingest::new(
        store,
        Validator::from_config(&config),
        Some(access_key),
        config.batch_size,
        config.limits.max_ingest_bytes,
        Arc::new(SystemClock),
    );
    let ingest = &ingest;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(ingest.handle(req).await)
    }))
    .await
}
