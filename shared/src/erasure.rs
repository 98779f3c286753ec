//! Erasure of one customer's data (GDPR art. 17 / CCPA deletion): `DELETE /analytics/customers/{id}`.
//!
//! Contract:
//! - Secret (read) key only; the store is the key's, so a store can only erase its own customers.
//! - Removed from every table that can identify the customer: their events (`customer_id`), the events of
//!   the anonymous ids and sessions they used that carry no other customer's id (pre-login browsing of the
//!   same person), and rejected records whose raw payload names the customer id (the store's own, and
//!   unattributed ones unless their payload names another store). The hourly rollup's rows
//!   of the hours touched are rebuilt from the events left, so no aggregate keeps counting the customer.
//!   Custom dashboards hold no personal data and are untouched.
//! - Other customers' rows are never touched: a linked anonymous id or session only removes rows without a
//!   customer id, so a shared device does not erase someone else's orders.
//! - Idempotent: a second call removes nothing and answers the same shape with zero counts.
//! - Rows are deleted with lightweight `DELETE`: invisible to every query as soon as the call returns,
//!   physically gone at the next merges. Events still in flight (Firehose buffers, at most the buffering
//!   interval) can arrive after the call; clients erase again after that interval if they need certainty.

use async_trait::async_trait;
use serde::Serialize;

use crate::error::StoreError;
use crate::error::{Error, Result};

/// The erasure port.
#[async_trait]
pub trait ErasureStore: Send + Sync + std::fmt::Debug {
    /// Removes a customer's data from the store, as the module docs above describe.
    async fn erase_customer(
        &self,
        store_id: &str,
        customer_id: &str,
    ) -> std::result::Result<ErasureReport, StoreError>;
}

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErasureReport {
    pub customer_id: String,
    /// Event rows removed (the customer's own and their linked anonymous activity).
    pub events_deleted: u64,
    /// Rejected records removed.
    pub rejects_deleted: u64,
    /// Anonymous ids linked to the customer whose anonymous events were removed.
    pub anonymous_ids: u64,
    /// Sessions linked to the customer.
    pub sessions: u64,
}

/// Validates the customer id taken from the path (already percent-decoded).
pub fn parse_customer_id(raw: &str, max_len: usize) -> Result<String> {
    let id = raw.trim();
    if id.is_empty() {
        return Err(Error::invalid(
            "missing_customer_id",
            "customerId",
            "the path must name a customer: DELETE /analytics/customers/{customerId}",
        ));
    }
    if id.len() > max_len || id.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid_customer_id",
            "customerId",
            format!("customerId must be 1 to {max_len} characters without control characters"),
        ));
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_ids_from_the_path_are_checked_like_event_ids() {
        for (raw, ok) in [
            ("cust_1", true),
            ("  cust_1 ", true),
            ("", false),
            ("  ", false),
            ("a\u{0}b", false),
            (&"x".repeat(129), false),
            (&"x".repeat(128), true),
        ] {
            let got = parse_customer_id(raw, 128);
            assert_eq!(got.is_ok(), ok, "{raw:?}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.status(), 400);
            }
        }
    }
}
