//! Lambda `retention`: run daily by an EventBridge schedule; enforces `retention_days` (and per-store
//! overrides) on every table with per-event rows. Input: the schedule event, or `{"dryRun": true}` to see
//! what would go. Output: the report (also logged as JSON). Wiring only; see
//! `commerce_analytics::retention`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::lambda::retention().await
}
