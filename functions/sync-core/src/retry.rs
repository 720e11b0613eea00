//! Retry policy: exponential backoff with full jitter, honouring a `Retry-After` the other
//! side sends, and never planning a retry that cannot finish before the deadline.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// How often and how patiently a call is retried within one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First backoff ceiling; doubles with every attempt.
    pub base_delay: Duration,
    /// Largest backoff ceiling.
    pub max_delay: Duration,
    /// Total attempts, the first one included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            max_attempts: 5,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Every attempt is used up.
    Exhausted,
    /// The wait plus another attempt would not finish before the deadline.
    DeadlineTooClose,
}

impl RetryPolicy {
    /// The backoff ceiling before attempt `attempt + 1` (`attempt` counts from 1).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 2_u32.saturating_pow(attempt.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Full jitter: a uniformly random wait between zero and the ceiling.
    pub fn jittered(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt).as_secs_f64();
        Duration::from_secs_f64(rng.random_range(0.0..=ceiling))
    }

    /// Decides after failed attempt number `attempt` (from 1). The wait is the jittered
    /// backoff, or the `retry_after` the other side asked for when that is longer.
    /// `remaining` is the time left before the deadline and `attempt_budget` what one more
    /// attempt may take (its timeout plus a safety margin).
    pub fn decide(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        remaining: Duration,
        attempt_budget: Duration,
        rng: &mut impl Rng,
    ) -> RetryDecision {
        if attempt >= self.max_attempts {
            return RetryDecision::Exhausted;
        }
        let backoff = self.jittered(attempt, rng);
        let wait = retry_after.map_or(backoff, |asked| asked.max(backoff));
        if wait.saturating_add(attempt_budget) > remaining {
            RetryDecision::DeadlineTooClose
        } else {
            RetryDecision::RetryAfter(wait)
        }
    }
}

/// The longest `Retry-After` honoured: a target asking for more is waited for this long,
/// so a wild value can neither park a record for days nor overflow a time computation.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Reads a `Retry-After` header: delay-seconds (`120`) or an HTTP date; capped at
/// [`MAX_RETRY_AFTER`].
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let asked = if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        // More digits than a u64 holds is still "a very long time".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(asked.min(MAX_RETRY_AFTER))
}

/// The backoff between deliveries of an item that failed retryably: the queue message's
/// visibility and the ledger's `not_before` are set to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedriveBackoff {
    /// After the first failure; doubles with every further one.
    pub base: Duration,
    /// The largest backoff.
    pub max: Duration,
}

impl Default for RedriveBackoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            max: Duration::from_secs(3600),
        }
    }
}

impl RedriveBackoff {
    /// The backoff after the `attempts`-th failure, or longer if the target asked for it
    /// (capped at [`MAX_RETRY_AFTER`]).
    pub fn delay(&self, attempts: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .base
            .saturating_mul(2_u32.saturating_pow(attempts.saturating_sub(1).min(16)))
            .min(self.max);
        retry_after.map_or(backoff, |asked| asked.min(MAX_RETRY_AFTER).max(backoff))
    }
}

/// When the ledger schedules the next attempt of an item that failed retryably for the
/// `attempts`-th time: 30 s, 60 s, 120 s... capped at one hour, or later if the target
/// asked for it.
pub fn redrive_delay(attempts: u32, retry_after: Option<Duration>) -> Duration {
    RedriveBackoff::default().delay(attempts, retry_after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            max_attempts: 6,
        }
    }

    #[test]
    fn the_ceiling_doubles_and_is_capped() {
        let policy = policy();
        let ceilings: Vec<u128> = (1..=7).map(|a| policy.ceiling(a).as_millis()).collect();
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn full_jitter_spreads_waits_between_zero_and_the_ceiling() {
        let policy = policy();
        let mut rng = StdRng::seed_from_u64(7);
        let waits: Vec<Duration> = (0..500).map(|_| policy.jittered(3, &mut rng)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(400)));
        assert!(waits.iter().any(|w| *w < Duration::from_millis(100)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(300)));
    }

    #[test]
    fn retry_after_is_honoured_when_longer_than_the_backoff() {
        let mut rng = StdRng::seed_from_u64(1);
        let decision = policy().decide(
            1,
            Some(Duration::from_secs(1)),
            Duration::from_secs(60),
            Duration::from_secs(1),
            &mut rng,
        );
        assert_eq!(decision, RetryDecision::RetryAfter(Duration::from_secs(1)));
    }

    #[test]
    fn no_retry_is_planned_past_the_deadline_or_the_attempt_limit() {
        let mut rng = StdRng::seed_from_u64(1);
        let too_close = policy().decide(
            1,
            Some(Duration::from_secs(10)),
            Duration::from_secs(5),
            Duration::from_secs(1),
            &mut rng,
        );
        assert_eq!(too_close, RetryDecision::DeadlineTooClose);
        let exhausted =
            policy().decide(6, None, Duration::from_secs(600), Duration::ZERO, &mut rng);
        assert_eq!(exhausted, RetryDecision::Exhausted);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after(" 3 ", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_is_capped_and_cannot_overflow() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470);
        assert_eq!(parse_retry_after("86400", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            redrive_delay(1, Some(Duration::from_secs(u64::MAX))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn the_ledger_backoff_grows_to_an_hour() {
        assert_eq!(redrive_delay(1, None), Duration::from_secs(30));
        assert_eq!(redrive_delay(3, None), Duration::from_secs(120));
        assert_eq!(redrive_delay(40, None), Duration::from_secs(3600));
        assert_eq!(
            redrive_delay(1, Some(Duration::from_secs(90))),
            Duration::from_secs(90)
        );
    }
}
