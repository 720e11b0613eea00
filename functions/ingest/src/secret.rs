//! The signing secret: read from Secrets Manager or SSM once per cold start (started in
//! the background when the function starts, awaited by the first request that needs it,
//! read again only if that read failed).

use sync_core::signature::SigningKeys;
use tokio::sync::OnceCell;

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

/// The signing keys, read at most once successfully.
#[derive(Debug)]
pub struct SigningSecret {
    store: SecretStore,
    name: String,
    keys: OnceCell<SigningKeys>,
}

impl SigningSecret {
    /// Keys to be read from `name` in `store`.
    pub fn new(store: SecretStore, name: impl Into<String>) -> Self {
        Self {
            store,
            name: name.into(),
            keys: OnceCell::new(),
        }
    }

    /// The keys, reading them on first use.
    pub async fn keys(&self) -> Result<&SigningKeys, SecretError> {
        self.keys
            .get_or_try_init(|| async {
                let value = self.store.read(&self.name).await?;
                SigningKeys::parse(&value).map_err(|source| SecretError::Unusable {
                    name: self.name.clone(),
                    source,
                })
            })
            .await
    }
}
