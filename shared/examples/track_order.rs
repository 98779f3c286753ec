//! A commerce service tracking `order.completed` in-process, through the same validation as the API.
//!
//! ```sh
//! scripts/clickhouse start
//! CLICKHOUSE_URL=http://127.0.0.1:8123 cargo run -p commerce-analytics --example track_order -- ord_1001
//! ```
//!
//! Events go straight into ClickHouse (`StoreSink`); a service on AWS would use the Firehose sink
//! (`commerce_analytics::sink::lambda_sink`) instead. The event id is derived from the order id, so calling
//! this twice for the same order (a retried job, a redelivered message) stores the order once.

use std::sync::Arc;

use commerce_analytics::clock::SystemClock;
use commerce_analytics::config::Config;
use commerce_analytics::event::Validator;
use commerce_analytics::sink::StoreSink;
use commerce_analytics::store::ClickHouseStore;
use commerce_analytics::tracker::Tracker;
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let order_id = std::env::args().nth(1).unwrap_or_else(|| "ord_1001".into());
    let config = Config::from_env()?;
    let store = ClickHouseStore::new(&config.clickhouse);
    store.migrate(config.max_retention_days()).await?;
    let tracker = Tracker::new(
        Validator::from_config(&config),
        Arc::new(StoreSink::new(Arc::new(store))),
        Arc::new(SystemClock),
    );
    let id = tracker
        .track(
            "my-store",
            json!({
                "id": format!("{order_id}_completed"),
                "type": "order.completed",
                "customerId": "cust_abc123",
                "properties": {
                    "orderId": order_id,
                    "total": 6791,
                    "currency": "USD",
                    "items": [{"productId": "prod_abc123", "quantity": 1, "price": 6791}]
                }
            }),
        )
        .await?;
    eprintln!("tracked {id}");
    Ok(())
}
