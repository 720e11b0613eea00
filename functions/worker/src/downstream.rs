//! Pushing a record to the downstream target: `PUT {DOWNSTREAM_URL}/records/{id}` under the
//! shared token bucket, retried with backoff (honouring `Retry-After`) for as long as the
//! invocation's deadline allows.

use std::time::{Duration, Instant, SystemTime};

use sync_core::classify::{classify_status, status_class, ErrorClass, Failure};
use sync_core::downstream::{target_body, target_url, CORRELATION_HEADER, IDEMPOTENCY_HEADER};
use sync_core::rate_limit::TokenBucket;
use sync_core::retry::{parse_retry_after, RetryDecision, RetryPolicy};
use sync_core::CanonicalRecord;
use tokio::sync::Mutex;

/// Time kept free before the deadline to record the outcome and answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(1500);

/// The downstream client and its limits, shared by every message of the process.
#[derive(Debug)]
pub struct Downstream {
    /// HTTP client.
    pub http: reqwest::Client,
    /// Base URL of the target.
    pub base_url: String,
    /// Timeout of one call.
    pub timeout: Duration,
    /// Retries within one invocation.
    pub retry: RetryPolicy,
    /// The rate limit, shared by concurrent pushes.
    pub limiter: Mutex<TokenBucket>,
}

/// What the pushes of one record observed, for metrics.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Duration of each call that got an answer, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Status class (`4xx`, `5xx`, `network`) of each failed call.
    pub errors: Vec<String>,
}

impl Downstream {
    /// Waits for a token; refuses when the wait would eat into the time one call needs.
    async fn acquire(&self, deadline: Instant) -> Result<(), Failure> {
        loop {
            let wait = match self.limiter.lock().await.try_acquire(Instant::now()) {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            if wait + self.timeout + DEADLINE_MARGIN > remaining {
                return Err(Failure::retryable(
                    "rate limit: no call slot before the invocation deadline",
                ));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Pushes `record`, retrying retryable failures while the deadline allows.
    pub async fn push(
        &self,
        record: &CanonicalRecord,
        idempotency_key: &str,
        correlation_id: &str,
        deadline: Instant,
        stats: &mut PushStats,
    ) -> Result<(), Failure> {
        let url = target_url(&self.base_url, record);
        let body = target_body(record, idempotency_key);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < self.timeout.min(Duration::from_secs(1)) + DEADLINE_MARGIN {
                return Err(Failure::retryable(
                    "no time left in this invocation for a downstream call",
                ));
            }
            self.acquire(deadline).await?;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = self.timeout.min(remaining.saturating_sub(DEADLINE_MARGIN));
            let started = Instant::now();
            let result = self
                .http
                .put(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(CORRELATION_HEADER, correlation_id)
                .header(IDEMPOTENCY_HEADER, idempotency_key)
                .timeout(timeout)
                .body(body.clone())
                .send()
                .await;
            let failure = match result {
                Ok(response) if response.status().is_success() => {
                    stats
                        .latencies_ms
                        .push(started.elapsed().as_secs_f64() * 1000.0);
                    return Ok(());
                }
                Ok(response) => {
                    stats
                        .latencies_ms
                        .push(started.elapsed().as_secs_f64() * 1000.0);
                    let status = response.status().as_u16();
                    stats.errors.push(status_class(Some(status)));
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    let reason = format!("downstream answered HTTP {status}");
                    match classify_status(status) {
                        ErrorClass::Permanent => return Err(Failure::permanent(reason)),
                        ErrorClass::Retryable => Failure {
                            retry_after,
                            ..Failure::retryable(reason)
                        },
                    }
                }
                Err(error) => {
                    stats.errors.push(status_class(None));
                    let kind = if error.is_timeout() {
                        "timed out"
                    } else if error.is_connect() {
                        "could not connect"
                    } else {
                        "failed"
                    };
                    Failure::retryable(format!("downstream call {kind}"))
                }
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let decision = self.retry.decide(
                attempt,
                failure.retry_after,
                remaining,
                self.timeout + DEADLINE_MARGIN,
                &mut rand::rng(),
            );
            match decision {
                RetryDecision::RetryAfter(wait) => {
                    tracing::info!(attempt, wait_ms = wait.as_millis() as u64, reason = %failure.reason, "retrying downstream call");
                    tokio::time::sleep(wait).await;
                }
                RetryDecision::Exhausted | RetryDecision::DeadlineTooClose => {
                    let why = if decision == RetryDecision::Exhausted {
                        "attempts used up"
                    } else {
                        "deadline too close"
                    };
                    return Err(Failure {
                        reason: format!("{} after {attempt} attempt(s), {why}", failure.reason),
                        ..failure
                    });
                }
            }
        }
    }
}
