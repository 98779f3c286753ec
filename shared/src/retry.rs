//! Bounded, jittered exponential backoff for transport and 5xx-class failures.
//!
//! Bad data is never retried (callers check `is_retryable` first); this only decides how long to wait.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry. Default 100 ms.
    pub initial: Duration,
    /// Upper bound of any single delay. Default 10 s.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Delay before retry number `attempt` (0-based): `initial · 2^attempt`, capped at `max`, with "equal
    /// jitter" (a uniformly random value between half and all of it) so that many clients do not retry in
    /// lock-step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(self.max);
        let half = base / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::rng().random_range(0..=jitter_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_and_stay_capped() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for (attempt, full_ms) in [
            (0u32, 100u64),
            (1, 200),
            (2, 400),
            (3, 800),
            (4, 1600),
            (5, 2000),
            (30, 2000),
        ] {
            for _ in 0..50 {
                let d = b.delay(attempt).as_millis() as u64;
                assert!(
                    (full_ms / 2..=full_ms).contains(&d),
                    "attempt {attempt}: {d} ms"
                );
            }
        }
    }
}
