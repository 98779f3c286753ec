//! Fair reads: each store may have at most `per_store` read queries in flight in this process; more wait
//! their turn (the store's own requests slow down, never another store's), and a query that waited
//! [`FairReads::MAX_WAIT`] without a turn fails with a retryable error (503), so a store over its share is
//! told so instead of queueing without bound. A request with a deadline ([`super::deadline`]) waits no
//! longer than its deadline, and then fails as out of time (504 `read_timeout`, not retried).
//!
//! Within its share, a store's reads are ranked: the first in flight has rank 1, the next rank 2, and so
//! on ([`current_rank`], a task-local set around each call). An adapter may hand the rank to its warehouse
//! as a priority (ClickHouse: the `priority` setting, 1 the highest; a lower-priority query pauses while a
//! higher one runs), so a store's 8 concurrent widgets yield to another store's single query instead of
//! sharing the CPU with it 8 to 1.
//!
//! A decorator over any [`ReadStore`]. Dashboards run their widgets concurrently, each widget one query,
//! so a 20-widget dashboard on 4 connections is 80 queries of one store that now take turns in its own
//! queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::ReadStore;
use super::cohorts::{CohortCell, CohortQuery};
use super::funnel::{FunnelCounts, FunnelQuery};
use super::live::{LiveData, LiveQuery};
use super::metrics::{MetricFacts, MetricQuery};
use super::ranked::{RankedQuery, RankedRow};
use crate::error::StoreError;

tokio::task_local! {
    /// The rank of the read running in this task among its store's reads in flight (1 = the first).
    static RANK: u32;
}

/// The rank of the current read among its store's reads in flight, when it runs under [`FairReads`].
pub fn current_rank() -> Option<u32> {
    RANK.try_with(|r| *r).ok()
}

/// A slot of a store's share, with the read's rank.
struct Turn {
    _permit: OwnedSemaphorePermit,
    rank: u32,
}

#[derive(Debug)]
pub struct FairReads {
    inner: Arc<dyn ReadStore>,
    per_store: usize,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl FairReads {
    /// Longest a query waits for its store's turn.
    pub const MAX_WAIT: Duration = Duration::from_secs(10);

    /// `per_store` queries of each store at once (at least 1).
    pub fn new(inner: Arc<dyn ReadStore>, per_store: usize) -> Self {
        Self {
            inner,
            per_store: per_store.max(1),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for one of the store's slots.
    async fn turn(&self, store_id: &str) -> Result<Turn, StoreError> {
        let slots = {
            let mut all = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            all.entry(store_id.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_store)))
                .clone()
        };
        // A request with less time left than the longest wait waits until its deadline, and then has
        // no time left for the read: that is the request running out of time, not the store.
        let left = super::deadline::remaining();
        let wait = left.map_or(Self::MAX_WAIT, |left| left.min(Self::MAX_WAIT));
        match tokio::time::timeout(wait, slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Turn {
                _permit: permit,
                rank: (self.per_store - slots.available_permits()) as u32,
            }),
            Err(_) if wait < Self::MAX_WAIT => Err(super::deadline::out_of_time(&format!(
                "waiting for a turn among store {store_id}'s {} reads in flight",
                self.per_store
            ))),
            _ => Err(StoreError::Unavailable(format!(
                "store {store_id} has more than {} reads in flight for {:?}; retry later",
                self.per_store,
                Self::MAX_WAIT
            ))),
        }
    }
}

#[async_trait]
impl ReadStore for FairReads {
    async fn metric(&self, q: &MetricQuery) -> Result<MetricFacts, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.metric(q)).await
    }

    async fn metric_groups(
        &self,
        q: &MetricQuery,
        by: super::breakdown::Dimension,
        groups: super::breakdown::Groups<'_>,
    ) -> Result<Vec<super::breakdown::GroupFacts>, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.metric_groups(q, by, groups))
            .await
    }

    fn metric_groups_at_once<'a>(
        &'a self,
        q: &'a MetricQuery,
        by: &'a [super::breakdown::Dimension],
    ) -> Option<super::AtOnce<'a, Vec<Vec<super::breakdown::GroupFacts>>>> {
        let read = self.inner.metric_groups_at_once(q, by)?;
        Some(Box::pin(async move {
            let turn = self.turn(&q.store_id).await?;
            RANK.scope(turn.rank, read).await
        }))
    }

    async fn money_by_currency(
        &self,
        q: &MetricQuery,
    ) -> Result<Vec<super::convert::CurrencyDayFacts>, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.money_by_currency(q)).await
    }

    async fn exchange_rates(
        &self,
        from: jiff::civil::Date,
        to: jiff::civil::Date,
    ) -> Result<Vec<crate::fx::DailyRate>, StoreError> {
        // Rates are global (no store's turn): one small read.
        self.inner.exchange_rates(from, to).await
    }

    async fn main_currency(
        &self,
        store_id: &str,
        now: jiff::Timestamp,
        include_bots: bool,
    ) -> Result<Option<String>, StoreError> {
        let turn = self.turn(store_id).await?;
        RANK.scope(
            turn.rank,
            self.inner.main_currency(store_id, now, include_bots),
        )
        .await
    }

    async fn ranked(&self, q: &RankedQuery) -> Result<Vec<RankedRow>, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.ranked(q)).await
    }

    fn ranked_at_once<'a>(
        &'a self,
        qs: &'a [RankedQuery],
    ) -> Option<super::AtOnce<'a, Vec<Vec<RankedRow>>>> {
        let store_id = &qs.first()?.store_id;
        let read = self.inner.ranked_at_once(qs)?;
        Some(Box::pin(async move {
            let turn = self.turn(store_id).await?;
            RANK.scope(turn.rank, read).await
        }))
    }

    async fn attribution(
        &self,
        q: &super::attribution::AttributionQuery,
    ) -> Result<super::attribution::AttributionFacts, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.attribution(q)).await
    }

    async fn sales(
        &self,
        q: &super::sales::SalesQuery,
    ) -> Result<super::sales::SalesRead, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.sales(q)).await
    }

    async fn product_names(
        &self,
        q: &super::names::NamesQuery,
    ) -> Result<Vec<super::names::ProductName>, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.product_names(q)).await
    }

    async fn product_performance(
        &self,
        q: &super::products::ProductQuery,
    ) -> Result<Vec<super::products::ProductFacts>, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.product_performance(q))
            .await
    }

    async fn cohorts(&self, q: &CohortQuery) -> Result<Vec<CohortCell>, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.cohorts(q)).await
    }

    async fn funnel(&self, q: &FunnelQuery) -> Result<FunnelCounts, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.funnel(q)).await
    }

    async fn live(&self, q: &LiveQuery) -> Result<LiveData, StoreError> {
        let turn = self.turn(&q.store_id).await?;
        RANK.scope(turn.rank, self.inner.live(q)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose `main_currency` takes 100 ms and counts how many run at once.
    #[derive(Debug, Default)]
    struct Slow {
        running: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        /// Each call's store and the rank it ran with.
        ranks: std::sync::Mutex<Vec<(String, Option<u32>)>>,
    }

    #[async_trait]
    impl crate::query::fakes::MainCurrencyOnly for Slow {
        async fn main_currency(&self, store: &str) -> Result<Option<String>, StoreError> {
            use std::sync::atomic::Ordering::SeqCst;
            self.ranks
                .lock()
                .expect("lock")
                .push((store.to_owned(), current_rank()));
            let now = self.running.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(now, SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.running.fetch_sub(1, SeqCst);
            Ok(None)
        }
    }

    /// `slow` as a read store.
    fn store(slow: &Arc<Slow>) -> Arc<dyn ReadStore> {
        Arc::new(crate::query::fakes::CurrencyStore(slow.clone()))
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_store_waits_its_turn_and_another_store_does_not_wait_behind_it() {
        let slow = Arc::new(Slow::default());
        let fair = Arc::new(FairReads::new(store(&slow), 4));
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().expect("now");
        let start = tokio::time::Instant::now();
        // The neighbour: 40 queries at once (a 20-widget dashboard on 2 connections).
        let neighbour: Vec<_> = (0..40)
            .map(|_| {
                let fair = fair.clone();
                tokio::spawn(async move { fair.main_currency("busy", now, false).await })
            })
            .collect();
        tokio::task::yield_now().await;
        // Another store's read runs at once, in one query's time.
        fair.main_currency("quiet", now, false)
            .await
            .expect("quiet store");
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(100),
            "not queued behind the neighbour"
        );
        for task in neighbour {
            task.await.expect("joined").expect("served in turn");
        }
        // The neighbour ran 4 at a time: 10 rounds of 100 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(1000));
        assert_eq!(
            slow.most.load(std::sync::atomic::Ordering::SeqCst),
            5,
            "4 busy + 1 quiet"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_that_waited_too_long_gets_a_retryable_error() {
        let slow = Arc::new(Slow::default());
        let fair = Arc::new(FairReads::new(store(&slow), 1));
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().expect("now");
        // 150 queries of 100 ms, one at a time: the last ones would wait 15 s.
        let tasks: Vec<_> = (0..150)
            .map(|_| {
                let fair = fair.clone();
                tokio::spawn(async move { fair.main_currency("busy", now, false).await })
            })
            .collect();
        let mut refused = 0;
        for task in tasks {
            if let Err(e) = task.await.expect("joined") {
                assert!(e.is_retryable());
                refused += 1;
            }
        }
        assert!(refused > 0 && refused < 150, "{refused}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_for_a_turn_no_longer_than_its_deadline_and_is_then_out_of_time() {
        let slow = Arc::new(Slow::default());
        let fair = Arc::new(FairReads::new(store(&slow), 1));
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().expect("now");
        // One slot, taken by 30 queries of 100 ms (3 s of work ahead).
        let ahead: Vec<_> = (0..30)
            .map(|_| {
                let fair = fair.clone();
                tokio::spawn(async move { fair.main_currency("busy", now, false).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let start = tokio::time::Instant::now();
        let deadline = start + Duration::from_millis(750);
        let late =
            super::super::deadline::within(Some(deadline), fair.main_currency("busy", now, false))
                .await;
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(750),
            "waited to its deadline"
        );
        match late {
            Err(e @ StoreError::ReadTimeout(_)) => {
                assert!(!e.is_retryable());
                assert!(e.to_string().contains("waiting for a turn"), "{e}");
            }
            other => panic!("expected out of time, got {other:?}"),
        }
        for task in ahead {
            task.await.expect("joined").expect("served in turn");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stores_concurrent_reads_are_ranked_and_another_stores_read_ranks_first() {
        let slow = Arc::new(Slow::default());
        let fair = Arc::new(FairReads::new(store(&slow), 4));
        let now: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().expect("now");
        let busy: Vec<_> = (0..3)
            .map(|_| {
                let fair = fair.clone();
                tokio::spawn(async move { fair.main_currency("busy", now, false).await })
            })
            .collect();
        tokio::task::yield_now().await;
        fair.main_currency("quiet", now, false)
            .await
            .expect("quiet");
        for task in busy {
            task.await.expect("joined").expect("served");
        }
        let mut ranks = slow.ranks.lock().expect("lock").clone();
        ranks.sort();
        let want: Vec<(String, Option<u32>)> = vec![
            ("busy".into(), Some(1)),
            ("busy".into(), Some(2)),
            ("busy".into(), Some(3)),
            ("quiet".into(), Some(1)),
        ];
        assert_eq!(ranks, want);
        assert_eq!(current_rank(), None, "outside a read, no rank");
    }
}
