//! Lambda `rates`: run daily by an EventBridge schedule; stores the ECB's euro reference rates of the
//! last 90 days (`rates_url`) in the warehouse's `fx_rates`, for `convert=true`. Input: the schedule event
//! (ignored). Output: what it stored (also logged as JSON). Wiring only; see
//! `commerce_analytics::fx::refresh`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::lambda::rates().await
}
