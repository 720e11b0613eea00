//! Settings of the worker function, read once at cold start from its environment.

use std::time::Duration;

use sync_core::retry::{RedriveBackoff, RetryPolicy};
use sync_core::settings::{Env, SettingsError};

/// The worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `RECORDS_TABLE`.
    pub records_table: String,
    /// `LEDGER_TABLE`.
    pub ledger_table: String,
    /// `DOWNSTREAM_URL`: base URL of the target (`PUT {url}/records/{id}`).
    pub downstream_url: String,
    /// `DOWNSTREAM_RATE_LIMIT_PER_SECOND` (default 10): the downstream's limit for every
    /// instance together.
    pub rate_limit_per_second: f64,
    /// `DOWNSTREAM_BURST` (default 10): for every instance together.
    pub burst: u32,
    /// `MAX_INSTANCES` (default 1): the event source's maximum concurrency, how many
    /// instances run at once. Each takes this share of the rate limit and burst.
    pub max_instances: u32,
    /// `DOWNSTREAM_TIMEOUT_MS` (default 5000): one downstream call.
    pub downstream_timeout: Duration,
    /// `LEASE_SECONDS` (default 900): how long a claim holds a ledger item; keep it
    /// longer than the function timeout.
    pub lease_seconds: i64,
    /// `LEDGER_TTL_DAYS` (default 30): when ledger items expire.
    pub ledger_ttl_days: i64,
    /// `METRICS_NAMESPACE` (default `datasync/local`).
    pub metrics_namespace: String,
    /// `DOWNSTREAM_CONCURRENCY` (default 4): messages of a batch processed at once.
    pub concurrency: usize,
    /// Retries of one downstream call within an invocation.
    pub retry: RetryPolicy,
    /// `REDRIVE_BACKOFF_BASE_SECONDS` (default 30) and `REDRIVE_BACKOFF_MAX_SECONDS`
    /// (default 3600): the backoff between deliveries of a record that failed retryably.
    pub backoff: RedriveBackoff,
    /// `CIRCUIT_BREAKER_THRESHOLD` (default 5): consecutive target failures that open the
    /// circuit.
    pub breaker_threshold: u32,
    /// `CIRCUIT_BREAKER_COOLDOWN_SECONDS` (default 30): how long an open circuit stays
    /// open before one push probes the target.
    pub breaker_cooldown: Duration,
}

impl WorkerConfig {
    /// This instance's share of the rate limit: calls per second and burst.
    pub fn instance_rate_limit(&self) -> (f64, u32) {
        let instances = self.max_instances.max(1);
        (
            self.rate_limit_per_second / f64::from(instances),
            (self.burst / instances).max(1),
        )
    }
}

impl WorkerConfig {
    /// Reads the settings.
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        let timeout_ms: u64 =
            env.number("DOWNSTREAM_TIMEOUT_MS", 5000, "a number of milliseconds")?;
        Ok(Self {
            records_table: env.required("RECORDS_TABLE", "set it to the records table's name")?,
            ledger_table: env.required("LEDGER_TABLE", "set it to the ledger table's name")?,
            downstream_url: env.required(
                "DOWNSTREAM_URL",
                "set it to the target's base URL, e.g. https://target.example.com",
            )?,
            rate_limit_per_second: env.number(
                "DOWNSTREAM_RATE_LIMIT_PER_SECOND",
                10.0,
                "a positive number of calls per second",
            )?,
            burst: env.number("DOWNSTREAM_BURST", 10, "a positive integer")?,
            downstream_timeout: Duration::from_millis(timeout_ms.max(1)),
            lease_seconds: env.number("LEASE_SECONDS", 900, "a number of seconds")?,
            ledger_ttl_days: env.number("LEDGER_TTL_DAYS", 30, "a number of days")?,
            metrics_namespace: env.or("METRICS_NAMESPACE", "datasync/local"),
            concurrency: env
                .number::<usize>("DOWNSTREAM_CONCURRENCY", 4, "a positive integer")?
                .max(1),
            max_instances: env
                .number::<u32>("MAX_INSTANCES", 1, "a positive integer")?
                .max(1),
            retry: RetryPolicy::default(),
            backoff: RedriveBackoff {
                base: Duration::from_secs(
                    env.number::<u64>("REDRIVE_BACKOFF_BASE_SECONDS", 30, "a number of seconds")?
                        .max(1),
                ),
                max: Duration::from_secs(
                    env.number::<u64>("REDRIVE_BACKOFF_MAX_SECONDS", 3600, "a number of seconds")?
                        .clamp(1, 43_200),
                ),
            },
            breaker_threshold: env.number("CIRCUIT_BREAKER_THRESHOLD", 5, "a positive integer")?,
            breaker_cooldown: Duration::from_secs(env.number(
                "CIRCUIT_BREAKER_COOLDOWN_SECONDS",
                30,
                "a number of seconds",
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_numeric_rate_names_the_variable() {
        let lookup = |name: &str| match name {
            "RECORDS_TABLE" | "LEDGER_TABLE" => Some("t".to_string()),
            "DOWNSTREAM_URL" => Some("http://target".to_string()),
            "DOWNSTREAM_RATE_LIMIT_PER_SECOND" => Some("fast".to_string()),
            _ => None,
        };
        let err = WorkerConfig::from_env(&Env::new(&lookup))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DOWNSTREAM_RATE_LIMIT_PER_SECOND") && err.contains("fast"),
            "{err}"
        );
    }

    #[test]
    fn the_rate_limit_is_shared_by_the_instances() {
        let lookup = |name: &str| match name {
            "RECORDS_TABLE" | "LEDGER_TABLE" => Some("t".to_string()),
            "DOWNSTREAM_URL" => Some("http://target".to_string()),
            "DOWNSTREAM_RATE_LIMIT_PER_SECOND" => Some("50".to_string()),
            "DOWNSTREAM_BURST" => Some("20".to_string()),
            "MAX_INSTANCES" => Some("25".to_string()),
            _ => None,
        };
        let config = WorkerConfig::from_env(&Env::new(&lookup)).unwrap();
        assert_eq!(config.instance_rate_limit(), (2.0, 1));
    }

    #[test]
    fn a_missing_table_names_the_variable() {
        let lookup = |_: &str| None;
        let err = WorkerConfig::from_env(&Env::new(&lookup))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RECORDS_TABLE"), "{err}");
    }
}
