//! AWS clients for an environment: credentials and region from the standard chain
//! (profiles, environment variables, SSO), or every client sent to an emulator when
//! the environment has an `endpoint_url` (with test credentials when none are
//! configured). Every client counts its HTTP requests, so `-v` can report how many
//! AWS calls a command made.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Where the clients go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub region: String,
    /// An emulator's URL; `None` means AWS itself.
    pub endpoint_url: Option<String>,
}

/// The clients the engine uses, sharing one request counter.
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub s3: aws_sdk_s3::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sts: aws_sdk_sts::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// The shared configuration the clients were built from (for clients made later).
    pub config: aws_config::SdkConfig,
    pub requests: RequestCounter,
}

impl AwsClients {
    /// Builds clients for `target` from the standard configuration chain.
    pub async fn connect(target: &Target) -> Self {
        Self::connect_with_profile(target, None).await
    }

    /// [`connect`](Self::connect) with credentials from a named profile of the shared
    /// AWS files (`promote --from-profile`), instead of the default chain's choice.
    pub async fn connect_with_profile(target: &Target, profile: Option<&str>) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(target.region.clone()));
        if let Some(profile) = profile {
            // The profile's own credentials, even when the environment holds others (CI
            // exports the target's credentials as variables, which the default chain
            // would prefer).
            loader = loader.profile_name(profile).credentials_provider(
                aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .profile_name(profile)
                    .build(),
            );
        }
        if let Some(url) = &target.endpoint_url {
            loader = loader.endpoint_url(url);
            if !credentials_configured() {
                loader =
                    loader.credentials_provider(aws_sdk_cloudformation::config::Credentials::new(
                        "test", "test", None, None, "emulator",
                    ));
            }
        }
        let shared = loader.load().await;
        let requests = RequestCounter::default();
        let cloudformation = aws_sdk_cloudformation::Client::from_conf(
            aws_sdk_cloudformation::config::Builder::from(&shared)
                .interceptor(requests.clone())
                .build(),
        );
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(target.endpoint_url.is_some())
                .interceptor(requests.clone())
                .build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&shared)
                .interceptor(requests.clone())
                .build(),
        );
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&shared)
                .interceptor(requests.clone())
                .build(),
        );
        let cloudwatch = aws_sdk_cloudwatch::Client::from_conf(
            aws_sdk_cloudwatch::config::Builder::from(&shared)
                .interceptor(requests.clone())
                .build(),
        );
        Self {
            cloudformation,
            s3,
            dynamodb,
            sts,
            cloudwatch,
            config: shared,
            requests,
        }
    }
}

/// True when the environment or shared files configure AWS credentials.
fn credentials_configured() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    if set("AWS_ACCESS_KEY_ID")
        || set("AWS_PROFILE")
        || set("AWS_WEB_IDENTITY_TOKEN_FILE")
        || set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        || set("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    {
        return true;
    }
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |variable: &str, default: &str| {
        std::env::var_os(variable)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)))
            .is_some_and(|path| path.is_file())
    };
    file("AWS_SHARED_CREDENTIALS_FILE", "credentials") || file("AWS_CONFIG_FILE", "config")
}

/// Counts HTTP requests (every attempt, retries included) per `Service.Operation`.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl RequestCounter {
    /// Requests so far, per operation.
    pub fn snapshot(&self) -> BTreeMap<String, usize> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Requests so far, in total.
    pub fn total(&self) -> usize {
        self.snapshot().values().sum()
    }

    /// Requests so far to one operation (`CloudFormation.CreateChangeSet`).
    pub fn count(&self, operation: &str) -> usize {
        self.snapshot().get(operation).copied().unwrap_or(0)
    }

    /// `7 (CloudFormation.DescribeStacks 1, S3.ListObjectsV2 1, ...)`.
    pub fn summary(&self) -> String {
        let snapshot = self.snapshot();
        let total: usize = snapshot.values().sum();
        let parts: Vec<String> = snapshot.iter().map(|(op, n)| format!("{op} {n}")).collect();
        format!("{total} ({})", parts.join(", "))
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map(|m| format!("{}.{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".to_string());
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(operation).or_default() += 1;
        }
        Ok(())
    }
}
