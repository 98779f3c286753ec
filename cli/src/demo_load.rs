//! Loads generated demo traffic straight into the store (validated by the same [`Validator`] as the API).

use commerce_analytics::demo::{DemoConfig, DemoGenerator};
use commerce_analytics::event::{RequestMeta, Validator};
use commerce_analytics::store::{EventStore, StoreError, dedup_token};

/// Generates and inserts demo events for `store_id`; returns how many were stored.
pub async fn load(
    store: &dyn EventStore,
    validator: &Validator,
    store_id: &str,
    cfg: DemoConfig,
) -> Result<usize, StoreError> {
    if cfg.days >= validator.retention_days {
        return Err(StoreError::Rejected(format!(
            "demo traffic over {} days would start beyond retention_days ({}); use fewer days",
            cfg.days, validator.retention_days
        )));
    }
    let now = time::OffsetDateTime::now_utc();
    let meta = RequestMeta::default();
    let mut total = 0;
    let mut batch = Vec::with_capacity(50_000);
    for value in DemoGenerator::new(cfg) {
        match validator.validate(value, store_id, &meta, now) {
            Ok(ev) => batch.push(ev),
            Err(e) => {
                return Err(StoreError::Rejected(format!(
                    "demo generator produced an invalid event: {e}"
                )));
            }
        }
        if batch.len() == 50_000 {
            store.insert(&batch, &dedup_token(&batch)).await?;
            total += batch.len();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.insert(&batch, &dedup_token(&batch)).await?;
        total += batch.len();
    }
    Ok(total)
}
