//! Pushing a record to the downstream target: `PUT {DOWNSTREAM_URL}/records/{id}` with the
//! record's version in `X-Record-Version`, under the instance's share of the rate limit and
//! behind a circuit breaker, retried with backoff (honouring a capped `Retry-After`) for as
//! long as the invocation's deadline allows. Redirects are never followed.

use std::time::{Duration, Instant, SystemTime};

use sync_core::breaker::CircuitBreaker;
use sync_core::classify::{classify_status, status_class, DownstreamVerdict, Failure};
use sync_core::downstream::{
    target_body, target_url, CORRELATION_HEADER, IDEMPOTENCY_HEADER, VERSION_HEADER,
};
use sync_core::rate_limit::TokenBucket;
use sync_core::retry::{parse_retry_after, RetryDecision, RetryPolicy};
use sync_core::CanonicalRecord;
use tokio::sync::Mutex;

/// Time kept free before the deadline to record the outcome and answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(1500);

/// The downstream client and its limits, shared by every message of the process.
#[derive(Debug)]
pub struct Downstream {
    /// HTTP client (built by [`Downstream::client`]: no redirects).
    pub http: reqwest::Client,
    /// Base URL of the target.
    pub base_url: String,
    /// Timeout of one call.
    pub timeout: Duration,
    /// Retries within one invocation.
    pub retry: RetryPolicy,
    /// The rate limit, shared by concurrent pushes.
    pub limiter: Mutex<TokenBucket>,
    /// The circuit breaker, shared by concurrent pushes.
    pub breaker: std::sync::Mutex<CircuitBreaker>,
}

/// How a push ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The target took the record.
    Accepted,
    /// The target holds this version or a newer one (409/412).
    Stale,
}

/// What the pushes of one record observed, for metrics.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Duration of each call that got an answer, in milliseconds.
    pub latencies_ms: Vec<f64>,
    /// Status class (`3xx`, `4xx`, `5xx`, `network`) of each failed call.
    pub errors: Vec<String>,
    /// Whether a push was held back because the circuit breaker was open.
    pub circuit_open: bool,
    /// When the record was handed back: how long until it is due again (the queue
    /// message's visibility is set to it).
    pub retry_in: Option<Duration>,
}

impl Downstream {
    /// The HTTP client for the target: redirects are not followed (a 3xx is reported as a
    /// configuration error), connections time out after `connect_timeout`.
    pub fn client(connect_timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            .build()
    }

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

    fn breaker(&self) -> std::sync::MutexGuard<'_, CircuitBreaker> {
        match self.breaker.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Whether the circuit breaker is open now.
    pub fn circuit_open(&self) -> bool {
        self.breaker().is_open(Instant::now())
    }

    /// Pushes `record`, retrying retryable failures while the deadline allows.
    pub async fn push(
        &self,
        record: &CanonicalRecord,
        idempotency_key: &str,
        correlation_id: &str,
        deadline: Instant,
        stats: &mut PushStats,
    ) -> Result<Pushed, Failure> {
        let url = target_url(&self.base_url, record);
        let body = target_body(record, idempotency_key);
        let version = record.source_version.to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < self.timeout.min(Duration::from_secs(1)) + DEADLINE_MARGIN {
                return Err(Failure::retryable(
                    "no time left in this invocation for a downstream call",
                ));
            }
            if let Err(open_for) = self.breaker().allow(Instant::now()) {
                stats.circuit_open = true;
                return Err(Failure {
                    retry_after: Some(open_for),
                    ..Failure::retryable(
                        "the downstream's circuit breaker is open after repeated failures; \
                         the record is kept and retried",
                    )
                });
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
                .header(VERSION_HEADER, &version)
                .timeout(timeout)
                .body(body.clone())
                .send()
                .await;
            let failure = match result {
                Ok(response) => {
                    stats
                        .latencies_ms
                        .push(started.elapsed().as_secs_f64() * 1000.0);
                    let status = response.status().as_u16();
                    let verdict = classify_status(status);
                    if verdict.is_target_failure() {
                        self.breaker().record_failure(Instant::now());
                    } else {
                        self.breaker().record_success();
                    }
                    let reason = match verdict {
                        DownstreamVerdict::Accepted => return Ok(Pushed::Accepted),
                        DownstreamVerdict::Stale => return Ok(Pushed::Stale),
                        DownstreamVerdict::RecordRefused => {
                            stats.errors.push(status_class(Some(status)));
                            return Err(Failure::permanent(format!(
                                "downstream refused the record with HTTP {status}"
                            )));
                        }
                        DownstreamVerdict::Unavailable => {
                            format!("downstream answered HTTP {status}")
                        }
                        DownstreamVerdict::Misconfigured if (300..400).contains(&status) => {
                            format!("downstream answered HTTP {status} (a redirect, not followed): DOWNSTREAM_URL must be the target's final address")
                        }
                        DownstreamVerdict::Misconfigured => format!(
                            "downstream answered HTTP {status}: check DOWNSTREAM_URL and the target's credentials; the record is kept and retried"
                        ),
                    };
                    stats.errors.push(status_class(Some(status)));
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, SystemTime::now()));
                    Failure {
                        retry_after,
                        ..Failure::retryable(reason)
                    }
                }
                Err(error) => {
                    self.breaker().record_failure(Instant::now());
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
