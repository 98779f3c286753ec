//! Per-key rate limiting inside the app: a token bucket per API key.
//!
//! Contract: each key may make `per_second` requests per second on average, with bursts of up to `burst`
//! requests; a request over the limit is refused with 429 `rate_limited` and `Retry-After` (whole seconds
//! until a token is back), before any work is done. Buckets live in the process (one Lambda instance, or
//! the local server), so the limit is per instance: API Gateway's stage throttling (template parameters
//! `ApiThrottlingRateLimit` / `ApiThrottlingBurstLimit`) bounds the whole API. `per_second = 0` turns the
//! in-app limit off.
//!
//! The clock is injected, so tests drive refills without sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use crate::clock::Clock;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: OffsetDateTime,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    clock: Arc<dyn Clock>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `None` when `per_second` is 0 (no in-app limit). `burst` is at least 1.
    pub fn new(per_second: u32, burst: u32, clock: Arc<dyn Clock>) -> Option<Self> {
        (per_second > 0).then(|| Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            clock,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// The configured average rate.
    pub fn per_second(&self) -> u32 {
        self.per_second as u32
    }

    /// Takes a token from `key`'s bucket; `Err(retry_after)` when it is empty.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = self.clock.now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = (now - bucket.updated).as_seconds_f64().max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use time::macros::datetime;

    #[test]
    fn a_key_gets_its_burst_then_one_request_per_refill_and_other_keys_are_unaffected() {
        let clock = Arc::new(FixedClock::new(datetime!(2026-11-26 12:00 UTC)));
        let limiter = RateLimiter::new(2, 3, clock.clone()).expect("enabled");
        let steps: &[(&str, i64, bool)] = &[
            // (key, milliseconds to advance first, allowed?)
            ("a", 0, true),
            ("a", 0, true),
            ("a", 0, true),
            ("a", 0, false),
            ("b", 0, true),
            ("a", 499, false),
            ("a", 1, true),
            ("a", 0, false),
            ("a", 10_000, true),
            ("a", 0, true),
            ("a", 0, true),
            ("a", 0, false),
        ];
        for (i, (key, advance, allowed)) in steps.iter().enumerate() {
            clock.advance(time::Duration::milliseconds(*advance));
            assert_eq!(limiter.check(key).is_ok(), *allowed, "step {i}");
        }
    }

    #[test]
    fn the_wait_is_the_time_until_the_next_token() {
        let clock = Arc::new(FixedClock::new(datetime!(2026-11-26 12:00 UTC)));
        let limiter = RateLimiter::new(4, 1, clock).expect("enabled");
        assert!(limiter.check("k").is_ok());
        let wait = limiter.check("k").expect_err("empty");
        assert_eq!(wait, Duration::from_millis(250));
    }

    #[test]
    fn zero_per_second_disables_the_limit() {
        let clock = Arc::new(FixedClock::new(datetime!(2026-11-26 12:00 UTC)));
        assert!(RateLimiter::new(0, 10, clock).is_none());
    }
}
