//! Lambda `metrics`: `GET /analytics/metrics`, `/analytics/cohorts` and the `/analytics/dashboards` routes
//! behind API Gateway (HTTP API). Wiring only.

use commerce_analytics::api::Api;
use commerce_analytics::config::Config;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::telemetry::init(true);
    let config = Config::from_env()?;
    config.ensure_supported()?;
    Api::for_reads(&config).run_on_lambda().await
}
