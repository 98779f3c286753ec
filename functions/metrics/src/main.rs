//! Lambda `metrics`: `GET /analytics/metrics`, `/analytics/cohorts` and the `/analytics/dashboards` routes
//! behind API Gateway (HTTP API). Wiring only.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::lambda::store_routes().await
}
