//! Lambda `funnel`: `GET /analytics/funnel` behind API Gateway (HTTP API). Wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::lambda::store_routes().await
}
