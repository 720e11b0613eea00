//! The signing secret: read from Secrets Manager or SSM (the first read starts in the
//! background when the function starts and is awaited by the first request that needs
//! it), then read again once its time to live has passed, so a rotated key is picked up
//! without a restart. A failed re-read keeps the keys read before.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sync_core::signature::SigningKeys;
use tokio::sync::Mutex;

use crate::config::SecretStoreKind;

/// Why the signing keys are not available.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The store refused or failed the read.
    #[error("reading signing secret {name} from {store} failed: {message}")]
    Read {
        /// Store name.
        store: &'static str,
        /// Secret or parameter name.
        name: String,
        /// The AWS error.
        message: String,
    },
    /// The value holds no usable key.
    #[error("signing secret {name} is unusable: {source}")]
    Unusable {
        /// Secret or parameter name.
        name: String,
        /// Why.
        #[source]
        source: sync_core::signature::SigningKeysError,
    },
}

/// The client of the store holding the secret.
#[derive(Debug, Clone)]
pub enum SecretStore {
    /// Secrets Manager.
    SecretsManager(aws_sdk_secretsmanager::Client),
    /// SSM Parameter Store.
    Ssm(aws_sdk_ssm::Client),
}

impl SecretStore {
    /// A client for `kind` from the shared SDK configuration.
    pub fn new(kind: SecretStoreKind, sdk: &aws_config::SdkConfig) -> Self {
        match kind {
            SecretStoreKind::SecretsManager => {
                SecretStore::SecretsManager(aws_sdk_secretsmanager::Client::new(sdk))
            }
            SecretStoreKind::Ssm => SecretStore::Ssm(aws_sdk_ssm::Client::new(sdk)),
        }
    }

    async fn read(&self, name: &str) -> Result<String, SecretError> {
        match self {
            SecretStore::SecretsManager(client) => {
                let output = client
                    .get_secret_value()
                    .secret_id(name)
                    .send()
                    .await
                    .map_err(|error| SecretError::Read {
                        store: "Secrets Manager",
                        name: name.to_string(),
                        message: aws_sdk_secretsmanager::error::DisplayErrorContext(error)
                            .to_string(),
                    })?;
                Ok(output.secret_string().unwrap_or_default().to_string())
            }
            SecretStore::Ssm(client) => {
                let output = client
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|error| SecretError::Read {
                        store: "SSM Parameter Store",
                        name: name.to_string(),
                        message: aws_sdk_ssm::error::DisplayErrorContext(error).to_string(),
                    })?;
                Ok(output
                    .parameter()
                    .and_then(|p| p.value())
                    .unwrap_or_default()
                    .to_string())
            }
        }
    }
}

/// The signing keys, cached for a time to live.
#[derive(Debug)]
pub struct SigningSecret {
    store: SecretStore,
    name: String,
    ttl: Duration,
    cached: Mutex<Option<(Instant, Arc<SigningKeys>)>>,
}

/// Default time to live of the cached keys.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);

impl SigningSecret {
    /// Keys to be read from `name` in `store`, kept for [`DEFAULT_SECRET_TTL`].
    pub fn new(store: SecretStore, name: impl Into<String>) -> Self {
        Self::with_ttl(store, name, DEFAULT_SECRET_TTL)
    }

    /// Keys to be read from `name` in `store`, kept for `ttl`.
    pub fn with_ttl(store: SecretStore, name: impl Into<String>, ttl: Duration) -> Self {
        Self {
            store,
            name: name.into(),
            ttl,
            cached: Mutex::new(None),
        }
    }

    /// The keys: cached ones while fresh, else read again. When a re-read fails, the keys
    /// read before are kept (the store being briefly unreachable must not lock every
    /// source out); only without any keys is the error returned.
    pub async fn keys(&self) -> Result<Arc<SigningKeys>, SecretError> {
        let mut cached = self.cached.lock().await;
        if let Some((read_at, keys)) = cached.as_ref() {
            if read_at.elapsed() < self.ttl {
                return Ok(Arc::clone(keys));
            }
        }
        let read = async {
            let value = self.store.read(&self.name).await?;
            SigningKeys::parse(&value).map_err(|source| SecretError::Unusable {
                name: self.name.clone(),
                source,
            })
        }
        .await;
        match (read, cached.as_mut()) {
            (Ok(keys), _) => {
                let keys = Arc::new(keys);
                *cached = Some((Instant::now(), Arc::clone(&keys)));
                Ok(keys)
            }
            (Err(error), Some((read_at, keys))) => {
                tracing::warn!(error = %error, "could not read the signing secret again; keeping the keys read before");
                // Try again after a short pause rather than on every request.
                *read_at = Instant::now() - self.ttl + self.ttl.min(Duration::from_secs(10));
                Ok(Arc::clone(keys))
            }
            (Err(error), None) => Err(error),
        }
    }
}
