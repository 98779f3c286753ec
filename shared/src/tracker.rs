//! The one way events enter the pipeline: validate + enrich, then hand to the sink.
//!
//! The HTTP handlers use it, and so can any other commerce service in-process (the spec: "commerce events
//! are automatically tracked for all API operations"):
//!
//! ```no_run
//! # async fn f(tracker: &commerce_analytics::tracker::Tracker) -> commerce_analytics::Result<()> {
//! use serde_json::json;
//! let id = tracker
//!     .track("demo", json!({
//!         "id": "order_1-completed",
//!         "type": "order.completed",
//!         "anonymousId": "anon_7f3c",
//!         "customerId": "cust_1",
//!         "timestamp": "2025-01-15T10:35:00Z",
//!         "properties": { "orderId": "order_1", "total": 6791, "currency": "USD", "cartId": "cart_42" }
//!     }))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Server-side callers should set `id` (e.g. derived from their order id) and `timestamp` when the
//! business event happens, so a retried call can never be counted twice.
//!
//! **So that a backend order is attributed to the visits that led to it** (`metric=attribution`), pass
//! what ties it to the storefront visitor, best first: `properties.cartId` (the id the storefront's
//! `cart.item_added` / `checkout.started` events sent: the SDK's cart id, or the platform's checkout
//! token), else `anonymousId` (the SDK's, e.g. carried in a cookie to the checkout), else `customerId`
//! (matches the sessions where that customer was logged in). An order with none of them is counted in
//! revenue but reported as `(unattributed)`. A `sessionId` is only for orders sent from the visit itself.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::clock::Clock;
use crate::error::{Error, FieldError, Result};
use crate::event::{Event, RequestMeta, Validator};
use crate::sink::EventSink;

#[derive(Debug)]
pub struct Tracker {
    validator: Validator,
    sink: Arc<dyn EventSink>,
    clock: Arc<dyn Clock>,
}

/// Per-index outcome of a batch.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct BatchReport {
    pub accepted: Vec<AcceptedEvent>,
    pub rejected: Vec<RejectedEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptedEvent {
    pub index: usize,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedEvent {
    pub index: usize,
    pub error: FieldError,
}

impl Tracker {
    pub fn new(validator: Validator, sink: Arc<dyn EventSink>, clock: Arc<dyn Clock>) -> Self {
        Self {
            validator,
            sink,
            clock,
        }
    }

    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Server-side tracking for `store_id`: `event` is anything that serializes to the event JSON shape.
    /// Returns the event id.
    pub async fn track(&self, store_id: &str, event: impl Serialize) -> Result<String> {
        let value = serde_json::to_value(event).map_err(|e| {
            Error::invalid("invalid_json", "", format!("event does not serialize: {e}"))
        })?;
        let ev = self
            .validator
            .validate(value, store_id, &RequestMeta::default(), self.clock.now())
            .map_err(Error::Invalid)?;
        self.send(vec![ev]).await.map(|mut ids| ids.remove(0))
    }

    /// One event as JSON text (the single-event endpoint).
    pub async fn track_json(
        &self,
        store_id: &str,
        json: &str,
        meta: &RequestMeta,
    ) -> Result<String> {
        let ev = self
            .validator
            .parse(json, store_id, meta, self.clock.now())
            .map_err(|e| {
                if e.code == "event_too_large" {
                    Error::TooLarge {
                        message: e.message,
                        field: "body".into(),
                    }
                } else {
                    Error::Invalid(e)
                }
            })?;
        self.send(vec![ev]).await.map(|mut ids| ids.remove(0))
    }

    /// Many events (the batch endpoint). Invalid events are reported per index and do not stop the
    /// others; valid ones go to the sink together. If the sink refuses them, the whole call fails with
    /// 503 naming their ids (none of them was accepted).
    pub async fn track_many(
        &self,
        store_id: &str,
        raw: &[&RawValue],
        meta: &RequestMeta,
    ) -> Result<BatchReport> {
        let now = self.clock.now();
        let mut report = BatchReport::default();
        let mut valid = Vec::with_capacity(raw.len());
        let mut valid_idx = Vec::with_capacity(raw.len());
        for (index, r) in raw.iter().enumerate() {
            match self.validator.parse(r.get(), store_id, meta, now) {
                Ok(ev) => {
                    valid_idx.push(index);
                    valid.push(ev);
                }
                Err(error) => report.rejected.push(RejectedEvent { index, error }),
            }
        }
        if !valid.is_empty() {
            let ids = self.send(valid).await?;
            report.accepted = valid_idx
                .into_iter()
                .zip(ids)
                .map(|(index, id)| AcceptedEvent { index, id })
                .collect();
        }
        Ok(report)
    }

    /// Hands validated events to the sink; returns their ids in order.
    pub async fn send(&self, events: Vec<Event>) -> Result<Vec<String>> {
        let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        match self.sink.send_batch(events).await {
            Ok(()) => Ok(ids),
            Err(e) => Err(e.into_error(|| ids)),
        }
    }
}
