//! Lambda `erasure`: `DELETE /analytics/customers/{customerId}` behind API Gateway (HTTP API), secret key
//! only. Its own function so that its longer timeout and its audit trail stay apart from the dashboards'.
//! Wiring only; see `commerce_analytics::erasure`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::lambda::store_routes().await
}
