//! A circuit breaker for the downstream target. Pure: the caller passes the current
//! instant. After `threshold` consecutive failures that are the target's fault (it is
//! down, overloaded or misconfigured) the circuit opens and no push starts for
//! `cooldown`; then one push at a time probes it (half-open): a success closes the
//! circuit, a failure opens it again for another cooldown. Records are not failed while
//! the circuit is open: they are handed back and retried after their backoff.

use std::time::{Duration, Instant};

/// The breaker's state, shared by the pushes of one worker instance.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    threshold: u32,
    cooldown: Duration,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

impl CircuitBreaker {
    /// A closed breaker opening after `threshold` (at least 1) consecutive failures.
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            consecutive_failures: 0,
            open_until: None,
            probing: false,
        }
    }

    /// Whether a push may start now; when not, how long the circuit stays open.
    pub fn allow(&mut self, now: Instant) -> Result<(), Duration> {
        match self.open_until {
            None => Ok(()),
            Some(until) if now < until => Err(until - now),
            Some(_) if self.probing => Err(self.cooldown.min(Duration::from_secs(1))),
            Some(_) => {
                self.probing = true;
                Ok(())
            }
        }
    }

    /// The target answered well: the circuit closes.
    pub fn record_success(&mut self) {
        self.consecutive_failures = 0;
        self.open_until = None;
        self.probing = false;
    }

    /// The target failed (its fault, not the record's): counts towards opening.
    pub fn record_failure(&mut self, now: Instant) {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.probing || self.consecutive_failures >= self.threshold {
            self.open_until = Some(now + self.cooldown);
            self.probing = false;
        }
    }

    /// Whether the circuit is open (or half-open) now.
    pub fn is_open(&self, now: Instant) -> bool {
        self.open_until.is_some_and(|until| now < until) || self.probing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cooldown() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(breaker.allow(start).is_ok());
            breaker.record_failure(start);
        }
        assert!(breaker.allow(start).is_ok());
        breaker.record_failure(start);
        assert_eq!(breaker.allow(start), Err(Duration::from_secs(10)));
        assert!(breaker.is_open(start));
        let later = start + Duration::from_secs(10);
        assert!(breaker.allow(later).is_ok(), "one probe after the cooldown");
        assert!(breaker.allow(later).is_err(), "only one probe at a time");
        breaker.record_failure(later);
        assert_eq!(breaker.allow(later), Err(Duration::from_secs(10)));
        let much_later = later + Duration::from_secs(10);
        assert!(breaker.allow(much_later).is_ok());
        breaker.record_success();
        assert!(!breaker.is_open(much_later));
        assert!(breaker.allow(much_later).is_ok());
    }

    #[test]
    fn a_success_resets_the_count() {
        let now = Instant::now();
        let mut breaker = CircuitBreaker::new(2, Duration::from_secs(5));
        breaker.record_failure(now);
        breaker.record_success();
        breaker.record_failure(now);
        assert!(breaker.allow(now).is_ok());
    }
}
