//! Settings of the ingest function, read once at cold start from its environment.

use sync_core::settings::{Env, SettingsError};

/// Where the signing secret is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretStoreKind {
    /// AWS Secrets Manager (`GetSecretValue`).
    SecretsManager,
    /// SSM Parameter Store (`GetParameter`, decrypted).
    Ssm,
}

/// The ingest function's settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// `QUEUE_URL`: the main queue.
    pub queue_url: String,
    /// `LEDGER_TABLE`: where accepted records are entered before they are queued.
    pub ledger_table: String,
    /// `LEASE_SECONDS` (default 900): how long after acceptance the reconciler looks at a
    /// record no worker claimed (the worker's lease length, longer than its timeout).
    pub lease_seconds: i64,
    /// `LEDGER_TTL_DAYS` (default 30): when ledger items expire.
    pub ledger_ttl_days: i64,
    /// `SIGNING_SECRET_STORE`: `secretsmanager` or `ssm`.
    pub secret_store: SecretStoreKind,
    /// `SIGNING_SECRET_NAME`: secret name or parameter name.
    pub secret_name: String,
    /// `MAX_RECORDS_PER_REQUEST` (default 500).
    pub max_records_per_request: usize,
    /// `MAX_BODY_BYTES` (default 1 MiB).
    pub max_body_bytes: usize,
    /// `METRICS_NAMESPACE` (default `datasync/local`).
    pub metrics_namespace: String,
    /// `MAX_VERSION_AHEAD_SECONDS` (default 300): how far in the future a timestamp
    /// version may lie (clock differences between the source and AWS).
    pub max_version_ahead_seconds: i64,
    /// `SIGNING_SECRET_TTL_SECONDS` (default 300): how long the signing keys are used
    /// before the secret is read again (a rotated key is picked up within this time).
    pub secret_ttl_seconds: u64,
    /// `STOPPED_SINCE` (empty or unset: open): when `provisioner decommission` stopped
    /// this environment's traffic; every request is then answered 410 `decommissioned`.
    pub stopped_since: Option<String>,
}

/// Default of `MAX_RECORDS_PER_REQUEST`.
pub const DEFAULT_MAX_RECORDS: usize = 500;
/// Default of `MAX_BODY_BYTES`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

impl IngestConfig {
    /// Reads the settings.
    pub fn from_env(env: &Env<'_>) -> Result<Self, SettingsError> {
        let secret_store = match env.or("SIGNING_SECRET_STORE", "secretsmanager").as_str() {
            "secretsmanager" => SecretStoreKind::SecretsManager,
            "ssm" => SecretStoreKind::Ssm,
            other => {
                return Err(SettingsError::Invalid {
                    name: "SIGNING_SECRET_STORE".into(),
                    value: other.into(),
                    expected: "`secretsmanager` or `ssm`".into(),
                })
            }
        };
        Ok(Self {
            queue_url: env.required("QUEUE_URL", "set it to the URL of the records queue")?,
            ledger_table: env.required("LEDGER_TABLE", "set it to the ledger table's name")?,
            lease_seconds: env.number("LEASE_SECONDS", 900, "a number of seconds")?,
            ledger_ttl_days: env.number("LEDGER_TTL_DAYS", 30, "a number of days")?,
            secret_store,
            secret_name: env.required(
                "SIGNING_SECRET_NAME",
                "set it to the signing secret's name (or SSM parameter name)",
            )?,
            max_records_per_request: env
                .number(
                    "MAX_RECORDS_PER_REQUEST",
                    DEFAULT_MAX_RECORDS,
                    "a positive integer",
                )?
                .max(1),
            max_body_bytes: env
                .number(
                    "MAX_BODY_BYTES",
                    DEFAULT_MAX_BODY_BYTES,
                    "a positive integer (bytes)",
                )?
                .max(1),
            metrics_namespace: env.or("METRICS_NAMESPACE", "datasync/local"),
            max_version_ahead_seconds: env.number(
                "MAX_VERSION_AHEAD_SECONDS",
                300,
                "a number of seconds",
            )?,
            secret_ttl_seconds: env.number(
                "SIGNING_SECRET_TTL_SECONDS",
                300,
                "a number of seconds",
            )?,
            stopped_since: Some(env.or("STOPPED_SINCE", "")).filter(|v| !v.is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_secret_store_names_the_choices() {
        let lookup = |name: &str| match name {
            "QUEUE_URL" => Some("http://q".to_string()),
            "LEDGER_TABLE" => Some("ledger".to_string()),
            "SIGNING_SECRET_NAME" => Some("s".to_string()),
            "SIGNING_SECRET_STORE" => Some("vault".to_string()),
            _ => None,
        };
        let err = IngestConfig::from_env(&Env::new(&lookup))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SIGNING_SECRET_STORE") && err.contains("`ssm`"),
            "{err}"
        );
    }

    #[test]
    fn limits_default_when_unset() {
        let lookup = |name: &str| match name {
            "QUEUE_URL" => Some("http://q".to_string()),
            "LEDGER_TABLE" => Some("ledger".to_string()),
            "SIGNING_SECRET_NAME" => Some("s".to_string()),
            _ => None,
        };
        let config = IngestConfig::from_env(&Env::new(&lookup)).unwrap();
        assert_eq!(config.max_records_per_request, DEFAULT_MAX_RECORDS);
        assert_eq!(config.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(config.secret_store, SecretStoreKind::SecretsManager);
        assert_eq!(config.lease_seconds, 900);
        assert_eq!(config.stopped_since, None);
    }

    #[test]
    fn the_ledger_table_is_required() {
        let lookup = |name: &str| match name {
            "QUEUE_URL" => Some("http://q".to_string()),
            "SIGNING_SECRET_NAME" => Some("s".to_string()),
            _ => None,
        };
        let err = IngestConfig::from_env(&Env::new(&lookup))
            .unwrap_err()
            .to_string();
        assert!(err.contains("LEDGER_TABLE"), "{err}");
    }
}
