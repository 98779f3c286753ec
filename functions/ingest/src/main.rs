//! Lambda `ingest`: the Firehose delivery stream's HTTP endpoint destination, behind a Function URL.
//! Wiring only; the protocol lives in `commerce_analytics::ingest`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::lambda::ingest().await
}
