//! Lambda `funnel`: `GET /analytics/funnel` behind API Gateway (HTTP API). Wiring only.

use std::sync::Arc;

use commerce_analytics::api::Api;
use commerce_analytics::auth::KeyRing;
use commerce_analytics::clock::SystemClock;
use commerce_analytics::config::Config;
use commerce_analytics::event::Validator;
use commerce_analytics::sink::DiscardSink;
use commerce_analytics::store::ClickHouseStore;
use commerce_analytics::tracker::Tracker;
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    commerce_analytics::telemetry::init(true);
    let config = Config::from_env()?;
    config.ensure_supported()?;
    let store = Arc::new(ClickHouseStore::new(&config.clickhouse));
    // This function only reads; its tracker is never reached (the track routes live in `track`).
    let tracker = Tracker::new(
        Validator::from_config(&config),
        Arc::new(DiscardSink),
        Arc::new(SystemClock),
    );
    let api = Api::new(
        Arc::new(tracker),
        KeyRing::from_config(&config.keys),
        config.limits,
    )
    .with_queries(store, Arc::new(SystemClock));
    let api = &api;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api.handle(req).await)
    }))
    .await
}
