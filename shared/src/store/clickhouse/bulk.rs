//! Bulk loads whose rollups are built once, at the end ([`StagedLoad`]).
//!
//! A materialized view aggregates every insert's block on its own: a 100M-event load is a thousand
//! blocks per view, each written as small parts that the server then merges again, on the same cores
//! that are writing the events. A staged load writes the events to a *staging table* that no view
//! watches (`CREATE TABLE … AS commerce_events`: the same columns, codecs, indexes, partitioning and
//! settings), then, month by month (a partition of both tables): inserts each rollup's rows with its
//! view's own query ([`ROLLUP_VIEWS`], one `INSERT … SELECT` over the month's staged rows), then moves
//! the month's parts into `commerce_events` (`ALTER TABLE … MOVE PARTITION … TO TABLE`: the parts change
//! tables, no block is inserted, so no view runs a second time). The store then holds the rows
//! [`EventStore::insert_new`](crate::store::EventStore::insert_new) of the same batches would have
//! written, and rollup rows that merge into the same aggregates (an integration test compares both ways
//! table by table).
//!
//! Where: one server (or ClickHouse Cloud, one endpoint). On a cluster a load goes through the
//! `Distributed` table and the nodes' views like any insert ([`ClickHouseStore::staged_load`] answers
//! `None`). A month's rollups are written before its events move: a reader in between sees that month's
//! rollup reads before its raw reads, which a load into a store that holds no events yet (the only
//! caller, the demo loader) makes harmless. A failed load is discarded: the staging table is dropped with
//! the months not moved yet (the months moved before stay, as the batches a failed plain load had
//! inserted would); a process killed mid-load leaves a `commerce_events_staged_…` table that no
//! read looks at and that can be dropped.

use std::collections::HashSet;

use async_trait::async_trait;

use super::migrations::ROLLUP_VIEWS;
use super::row::{EventRow, EventsBlock};
use super::{ClickHouseStore, EVENTS_TABLE, classify};
use crate::event::Event;
use crate::store::{DedupToken, EncodedBatch, StagedBatch, StagedLoad, StoreError};

/// The prefix of staging tables' names.
pub const STAGED_PREFIX: &str = "commerce_events_staged_";

/// A load into a staging table of one server.
#[derive(Debug)]
pub struct ClickHouseStagedLoad {
    store: ClickHouseStore,
    table: String,
}

impl ClickHouseStore {
    /// Creates the staging table of a [`StagedLoad`]; `None` on a cluster (see the module docs).
    pub(super) async fn open_staged_load(
        &self,
    ) -> Result<Option<ClickHouseStagedLoad>, StoreError> {
        if self.cluster.is_some() {
            return Ok(None);
        }
        let table = format!(
            "{STAGED_PREFIX}{}",
            ulid::Ulid::new().to_string().to_lowercase()
        );
        self.client
            .query(&format!("CREATE TABLE {table} AS {EVENTS_TABLE}"))
            .execute()
            .await
            .map_err(classify)?;
        Ok(Some(ClickHouseStagedLoad {
            store: self.clone(),
            table,
        }))
    }
}

impl ClickHouseStagedLoad {
    /// The staging table's months (partition ids, `YYYYMM`), oldest first.
    async fn months(&self) -> Result<Vec<String>, StoreError> {
        let months: Vec<String> = self
            .store
            .client
            .query(
                "SELECT DISTINCT partition_id FROM system.parts \
                 WHERE database = currentDatabase() AND table = ? AND active ORDER BY partition_id",
            )
            .bind(&self.table)
            .fetch_all()
            .await
            .map_err(classify)?;
        // Partition ids go into `MOVE PARTITION ID '…'`, which takes no parameters.
        match months
            .iter()
            .find(|m| !m.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            Some(odd) => Err(StoreError::Rejected(format!(
                "unexpected partition id {odd:?} in {}",
                self.table
            ))),
            None => Ok(months),
        }
    }

    /// Writes every rollup's rows of one month of staged events, then moves the month into the events
    /// table.
    async fn publish_month(&self, month: &str) -> Result<(), StoreError> {
        let staged = format!(
            "(SELECT * FROM {} WHERE _partition_id = {{month:String}})",
            self.table
        );
        for view in ROLLUP_VIEWS {
            self.store
                .client
                .query(&format!(
                    "INSERT INTO {} {} FROM {staged} {}",
                    view.table, view.select, view.rest
                ))
                .param("month", month)
                .execute()
                .await
                .map_err(classify)?;
        }
        self.store
            .client
            .query(&format!(
                "ALTER TABLE {} MOVE PARTITION ID '{month}' TO TABLE {EVENTS_TABLE}",
                self.table
            ))
            .execute()
            .await
            .map_err(classify)
    }

    async fn drop_table(&self) -> Result<(), StoreError> {
        self.store
            .client
            .query(&format!("DROP TABLE IF EXISTS {}", self.table))
            .execute()
            .await
            .map_err(classify)
    }
}

/// A batch of a staged load: one Native block ([`EventsBlock`]) and the token of its events.
#[derive(Debug, Default)]
pub struct ClickHouseStagedBatch {
    block: EventsBlock,
    token: DedupToken,
    /// The 128-bit hash (XXH3) of each event's store and id in the batch: repeats are dropped without
    /// keeping the ids. Two different events of one batch share a hash with a probability under
    /// 10^-27 (a batch holds at most a few hundred thousand events).
    seen: HashSet<u128>,
}

impl StagedBatch for ClickHouseStagedBatch {
    fn push(&mut self, event: &Event) {
        let mut key = twox_hash::XxHash3_128::new();
        key.write(event.store_id.as_bytes());
        key.write(&[0]);
        key.write(event.id.as_bytes());
        if !self.seen.insert(key.finish_128()) {
            return;
        }
        self.token.add(event);
        self.block.push(&EventRow::from_event(event));
    }

    fn len(&self) -> usize {
        self.block.len()
    }

    fn take(&mut self) -> EncodedBatch {
        self.seen.clear();
        EncodedBatch {
            events: self.block.len(),
            dedup_token: self.token.finish(),
            body: self.block.take(),
        }
    }

    fn fresh(&self) -> Box<dyn StagedBatch> {
        Box::<Self>::default()
    }
}

#[async_trait]
impl StagedLoad for ClickHouseStagedLoad {
    fn batch(&self) -> Box<dyn StagedBatch> {
        Box::<ClickHouseStagedBatch>::default()
    }

    async fn insert_encoded(&self, batch: EncodedBatch) -> Result<(), StoreError> {
        if batch.events == 0 {
            return Ok(());
        }
        self.store
            .write_block_to(&self.table, batch.body, &batch.dedup_token)
            .await
    }

    async fn publish(
        self: Box<Self>,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<(), StoreError> {
        let months = self.months().await?;
        progress(0, months.len());
        for (done, month) in months.iter().enumerate() {
            if let Err(e) = self.publish_month(month).await {
                let _ = self.drop_table().await;
                return Err(e);
            }
            progress(done + 1, months.len());
        }
        self.drop_table().await
    }

    async fn discard(self: Box<Self>) -> Result<(), StoreError> {
        self.drop_table().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::dedup_token;

    #[test]
    fn a_staged_batch_drops_repeats_and_is_taken_with_the_token_of_the_events_it_kept() {
        let events = crate::event::test_page_views("e", 3);
        let mut batch = ClickHouseStagedBatch::default();
        for e in [&events[0], &events[1], &events[0], &events[2], &events[1]] {
            batch.push(e);
        }
        assert_eq!(batch.len(), 3, "each (store, id) once");
        let taken = batch.take();
        assert_eq!(taken.events, 3);
        assert_eq!(taken.dedup_token, dedup_token(&events));
        assert!(batch.is_empty(), "taking empties the batch");

        // The next batch starts afresh: what the last one held is no repeat, and its token is its own.
        batch.push(&events[2]);
        batch.push(&events[0]);
        let next = batch.take();
        assert_eq!(next.events, 2);
        assert_eq!(next.dedup_token, dedup_token([&events[2], &events[0]]));
        assert!(next.body.len() < taken.body.len());
        assert!(batch.fresh().is_empty());
    }
}
