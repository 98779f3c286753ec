//! Lambda `funnel`: `GET /analytics/funnel` behind API Gateway (HTTP API). Wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::api::Api::run_read_function().await
}
