//! Settings of the reconciler function, read once at cold start from its environment.

use sync_core::settings::{Env, SettingsError};

/// The reconciler's settings.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    /// `LEDGER_TABLE`.
    pub ledger_table: String,
    /// `QUEUE_URL`: where re-driven items are sent.
    pub queue_url: String,
    /// `DLQ_URL`: whose depth is reported.
    pub dlq_url: String,
    /// `LEASE_SECONDS` (default 900): also the least time before an item is re-driven again.
    pub lease_seconds: i64,
    /// `MAX_REDRIVE_PER_RUN` (default 100).
    pub max_redrive_per_run: usize,
    /// `METRICS_NAMESPACE` (default `datasync/local`).
    pub metrics_namespace: String,
}

impl ReconcilerConfig {
    /// Reads the settings.
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        Ok(Self {
            ledger_table: env.required("LEDGER_TABLE", "set it to the ledger table's name")?,
            queue_url: env.required("QUEUE_URL", "set it to the URL of the records queue")?,
            dlq_url: env.required("DLQ_URL", "set it to the URL of the dead-letter queue")?,
            lease_seconds: env.number("LEASE_SECONDS", 900, "a number of seconds")?,
            max_redrive_per_run: env.number(
                "MAX_REDRIVE_PER_RUN",
                100,
                "a non-negative integer",
            )?,
            metrics_namespace: env.or("METRICS_NAMESPACE", "datasync/local"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dlq_url_names_the_variable() {
        let lookup = |name: &str| (name != "DLQ_URL").then(|| "x".to_string());
        let err = ReconcilerConfig::from_env(&Env::new(&lookup))
            .unwrap_err()
            .to_string();
        assert!(err.contains("DLQ_URL"), "{err}");
    }
}
