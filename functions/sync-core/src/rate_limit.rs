//! A token-bucket rate limiter. Pure: the caller passes the current instant and sleeps
//! for the wait it is told, so the arithmetic is tested without a clock.

use std::time::{Duration, Instant};

/// Allows `rate_per_second` calls on average and bursts of up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    rate_per_second: f64,
    tokens: f64,
    last_refill: Instant,
}

impl TokenBucket {
    /// A full bucket. A rate or burst of zero is raised to the smallest usable value
    /// (one call per second, a burst of one) so the bucket never blocks forever.
    pub fn new(rate_per_second: f64, burst: u32, now: Instant) -> Self {
        let capacity = f64::from(burst.max(1));
        Self {
            capacity,
            rate_per_second: if rate_per_second.is_finite() && rate_per_second > 0.0 {
                rate_per_second
            } else {
                1.0
            },
            tokens: capacity,
            last_refill: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_second).min(self.capacity);
        self.last_refill = now.max(self.last_refill);
    }

    /// Takes a token now, or says how long to wait until one is available.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - self.tokens;
            Err(Duration::from_secs_f64(missing / self.rate_per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_calls_are_spaced_by_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 3, start);
        for _ in 0..3 {
            assert!(bucket.try_acquire(start).is_ok());
        }
        let wait = bucket.try_acquire(start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert!(bucket
            .try_acquire(start + Duration::from_millis(100))
            .is_ok());
        assert!(bucket
            .try_acquire(start + Duration::from_millis(100))
            .is_err());
    }

    #[test]
    fn over_a_second_at_most_burst_plus_rate_calls_pass() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(20.0, 5, start);
        let passed = (0..1000)
            .filter(|i| {
                bucket
                    .try_acquire(start + Duration::from_millis(*i))
                    .is_ok()
            })
            .count();
        assert!((24..=25).contains(&passed), "{passed}");
    }

    #[test]
    fn an_idle_bucket_does_not_store_more_than_its_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100.0, 2, start);
        let later = start + Duration::from_secs(60);
        assert!(bucket.try_acquire(later).is_ok());
        assert!(bucket.try_acquire(later).is_ok());
        assert!(bucket.try_acquire(later).is_err());
    }

    #[test]
    fn a_zero_rate_still_lets_calls_through_eventually() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(0.0, 0, start);
        assert!(bucket.try_acquire(start).is_ok());
        assert_eq!(
            bucket.try_acquire(start).unwrap_err(),
            Duration::from_secs(1)
        );
    }
}
