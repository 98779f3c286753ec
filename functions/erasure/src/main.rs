//! Lambda `erasure`: `DELETE /analytics/customers/{customerId}` behind API Gateway (HTTP API), secret key
//! only. Its own function so that its longer timeout and its audit trail stay apart from the dashboards'.
//! Wiring only; see `commerce_analytics::erasure`.

use commerce_analytics::api::Api;
use commerce_analytics::config::Config;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::telemetry::init(true);
    let config = Config::from_env()?;
    config.ensure_supported()?;
    Api::for_reads(&config).run_on_lambda().await
}
