//! Lambda `track`: `POST /analytics/event` and `POST /analytics/events` behind API Gateway (HTTP API).
//!
//! Wiring only. With `FIREHOSE_STREAM_NAME` set, events go to Firehose (PutRecordBatch); without it, each
//! invocation inserts its events into ClickHouse as one batch before answering (a Lambda is frozen between
//! invocations, so no background flushing).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    commerce_analytics::lambda::track().await
}
