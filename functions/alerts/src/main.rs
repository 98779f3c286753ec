//! Lambda `alerts`: run every 5 minutes by an EventBridge schedule; evaluates every store's due alert
//! rules and built-in guards and sends their notifications. Input: the schedule event (ignored). Output:
//! what it did (also logged as JSON). Wiring only; see `commerce_analytics::alerts::run`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::lambda::alerts().await
}
