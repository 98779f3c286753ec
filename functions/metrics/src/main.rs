//! Lambda `metrics`: `GET /analytics/metrics` behind API Gateway (HTTP API). Wiring only.

use commerce_analytics::api::Api;
use commerce_analytics::config::Config;
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    commerce_analytics::telemetry::init(true);
    let config = Config::from_env()?;
    config.ensure_supported()?;
    let api = Api::for_reads(&config);
    let api = &api;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(api.handle(req).await)
    }))
    .await
}
