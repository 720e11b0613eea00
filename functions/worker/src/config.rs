//! Settings of the worker function, read once at cold start from its environment.

use std::time::Duration;

use sync_core::retry::RetryPolicy;
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
    /// `DOWNSTREAM_RATE_LIMIT_PER_SECOND` (default 10).
    pub rate_limit_per_second: f64,
    /// `DOWNSTREAM_BURST` (default 10).
    pub burst: u32,
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
            retry: RetryPolicy::default(),
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
    fn a_missing_table_names_the_variable() {
        let lookup = |_: &str| None;
        let err = WorkerConfig::from_env(&Env::new(&lookup))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RECORDS_TABLE"), "{err}");
    }
}
