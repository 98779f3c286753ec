//! A request's deadline, shared by every read it makes.
//!
//! On Lambda a request has the function's time and no more: past it the invocation is cut off and API
//! Gateway answers with its own error, losing every widget already read. Each read has its own limit
//! (`clickhouse_query_timeout_seconds`, `bigquery_query_timeout_seconds`, 25 s), but a request may make
//! several reads one after another or wait for its store's turn ([`super::fair`]) before one: a
//! dashboard with more slow widgets than its store has slots waited up to 10 s, then read up to 25 s,
//! past the function's 30 s.
//!
//! So the API handler runs a request [`within`] its deadline (the Lambda invocation's, less
//! [`ANSWER_MARGIN`] to answer in), and every read takes the smaller of its own limit and what is left
//! ([`read_limit`]); a wait for a turn ends at the deadline too. A read that runs out of the request's
//! time fails like one past its own limit, [`StoreError::ReadTimeout`] (504 `read_timeout`), so a
//! dashboard answers in time with the widgets that were read and an error on those that were not.
//! Outside Lambda (`analytics serve`, the scheduled alerts) there is no deadline and each read keeps its
//! own limit.
//!
//! The deadline is a task-local, set around the request's future: the reads a request makes are polled
//! within it (a dashboard's widgets are joined, not spawned), and the adapters read it where they set a
//! read's limit, as they read [`super::fair::current_rank`].

use std::future::Future;
use std::time::{Duration, SystemTime};

// tokio's clock, so tests with paused time see deadlines pass as timers do.
use tokio::time::Instant;

use crate::error::StoreError;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The end of a Lambda invocation's time kept for answering: building and sending the response.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// The shortest limit a read is sent with; with less left, it fails without being sent (ClickHouse's
/// `max_execution_time` counts in milliseconds at best, and 0 would mean no limit).
pub const SHORTEST_READ: Duration = Duration::from_millis(1);

/// Runs `f` with every read in it ending by `deadline`; with none, `f` as it is.
pub async fn within<F: Future>(deadline: Option<Instant>, f: F) -> F::Output {
    match deadline {
        Some(at) => DEADLINE.scope(at, f).await,
        None => f.await,
    }
}

/// What is left of the current request's time, when it has a deadline.
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .try_with(|at| at.saturating_duration_since(Instant::now()))
        .ok()
}

/// The time limit of a read whose own limit is `own`: `own`, or what is left of the request when that
/// is less. A request with less than [`SHORTEST_READ`] left gets [`StoreError::ReadTimeout`]: the read
/// is not sent.
pub fn read_limit(own: Duration) -> Result<Duration, StoreError> {
    limit_with(own, remaining())
}

fn limit_with(own: Duration, left: Option<Duration>) -> Result<Duration, StoreError> {
    match left {
        None => Ok(own),
        Some(left) if left < SHORTEST_READ => Err(out_of_time("before this read started")),
        Some(left) => Ok(own.min(left)),
    }
}

/// The error of a read that the request's deadline stopped; `when` says at what point.
pub fn out_of_time(when: &str) -> StoreError {
    StoreError::ReadTimeout(format!("the request's time ran out {when}"))
}

/// The deadline of a Lambda invocation whose runtime deadline is `end` (0 when the runtime gave none),
/// as an [`Instant`] for a request handled from `at` (the same moment as `now`): [`ANSWER_MARGIN`]
/// before `end`, or `at` when that has passed.
pub fn of_lambda(end_ms: u64, now: SystemTime, at: Instant) -> Option<Instant> {
    if end_ms == 0 {
        return None;
    }
    let end = SystemTime::UNIX_EPOCH + Duration::from_millis(end_ms);
    let left = end
        .duration_since(now)
        .unwrap_or_default()
        .saturating_sub(ANSWER_MARGIN);
    Some(at + left)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: Duration = Duration::from_secs(25);

    #[test]
    fn a_read_takes_the_smaller_of_its_own_limit_and_what_is_left_of_the_request() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        for (left, expected, case) in [
            (None, Some(OWN), "no deadline: the read's own limit"),
            (
                Some(s(60)),
                Some(OWN),
                "more time left than the read's own limit",
            ),
            (Some(s(25)), Some(OWN), "exactly the read's own limit left"),
            (Some(ms(7_250)), Some(ms(7_250)), "less left: what is left"),
            (Some(ms(1)), Some(ms(1)), "the shortest read left"),
            (
                Some(Duration::from_micros(999)),
                None,
                "less than the shortest read: not sent",
            ),
            (Some(Duration::ZERO), None, "the deadline passed: not sent"),
        ] {
            match (limit_with(OWN, left), expected) {
                (Ok(limit), Some(expected)) => assert_eq!(limit, expected, "{case}"),
                (Err(StoreError::ReadTimeout(m)), None) => {
                    assert!(m.contains("ran out before"), "{case}: {m}")
                }
                (other, _) => panic!("{case}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_lambda_deadline_keeps_its_last_second_for_the_answer() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_000);
        let at = Instant::now();
        for (end_ms, expected, case) in [
            (0, None, "the runtime gave no deadline"),
            (
                1_764_000_030_000,
                Some(Duration::from_secs(29)),
                "30 s left: 29 s to read",
            ),
            (
                1_764_000_000_400,
                Some(Duration::ZERO),
                "less than the margin left: none to read",
            ),
            (
                1_763_999_999_000,
                Some(Duration::ZERO),
                "the deadline passed",
            ),
        ] {
            assert_eq!(
                of_lambda(end_ms, now, at).map(|d| d - at),
                expected,
                "{case}"
            );
        }
    }

    #[tokio::test]
    async fn reads_see_the_deadline_of_the_request_they_run_in_and_none_outside_it() {
        assert_eq!(remaining(), None);
        let at = Instant::now() + Duration::from_secs(5);
        let left = within(Some(at), async {
            // Joined futures are polled in the request's task: a dashboard's widgets see its deadline.
            let (a, b) = tokio::join!(async { remaining() }, async { remaining() });
            (a, b)
        })
        .await;
        for l in [left.0, left.1] {
            let l = l.expect("within the request");
            assert!(
                l <= Duration::from_secs(5) && l > Duration::from_secs(4),
                "{l:?}"
            );
        }
        assert_eq!(within(None, async { remaining() }).await, None);
        assert_eq!(remaining(), None);
    }
}
