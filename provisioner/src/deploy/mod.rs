//! The CloudFormation deploy engine: artifact bucket and uploads, deployed-state reads,
//! change sets and their diff, the stateful-resource guard, live stack events, failure
//! recovery, and the `status` and `destroy` operations.
//!
//! CloudFormation holds the state. What a stack runs is recorded on the stack itself:
//! the tag [`TEMPLATE_HASH_TAG`] carries the sha256 of the template it was deployed
//! from and [`RELEASE_TAG`] the release that last changed it. A stack whose template
//! hash, parameters and tags already match is skipped without a change set.

pub mod artifacts;
pub mod bootstrap;
pub mod changeset;
pub mod clients;
pub mod destroy;
pub mod drift;
pub mod engine;
pub mod events;
pub mod guard;
pub mod interrupt;
pub mod planfile;
pub mod progress;
pub mod recover;
pub mod report;
pub mod setup;
pub mod stacks;
pub mod status;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Tag carrying the release that last changed a stack.
pub const RELEASE_TAG: &str = "provisioner:release";
/// Tag carrying the sha256 of the template a stack was last deployed from.
pub const TEMPLATE_HASH_TAG: &str = "provisioner:template-sha256";

/// One stack as it should be deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSpec {
    /// Short id (`network`, `data`...), used by `depends_on`.
    pub id: String,
    /// CloudFormation stack name (`datasync-dev-network`).
    pub stack_name: String,
    /// Ids of the stacks this one imports from.
    pub depends_on: Vec<String>,
    /// Template body.
    pub body: String,
    /// sha256 of `body`.
    pub template_sha256: String,
    /// Every parameter the template declares, with its value.
    pub parameters: BTreeMap<String, String>,
    /// Tags to put on the stack (the release and template hash tags are added).
    pub tags: BTreeMap<String, String>,
}

impl StackSpec {
    /// The tags a deployed stack must carry to count as unchanged (every tag but
    /// [`RELEASE_TAG`], which only says which release last changed it).
    pub fn identity_tags(&self) -> BTreeMap<String, String> {
        let mut tags = self.tags.clone();
        tags.insert(TEMPLATE_HASH_TAG.to_string(), self.template_sha256.clone());
        tags
    }
}

/// How often and how long to poll CloudFormation while waiting.
#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    /// Delay after the first poll; doubled on each poll that finds nothing new.
    pub initial: Duration,
    /// Longest delay between polls (also the back-off ceiling when throttled).
    pub max: Duration,
    /// Give up waiting after this long.
    pub timeout: Duration,
}

impl Default for PollSettings {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(5),
            timeout: Duration::from_secs(60 * 60),
        }
    }
}

/// Everything that can stop a deploy, plan, status or destroy.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{action} failed{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Aws {
        action: String,
        code: Option<String>,
        message: String,
    },
    #[error("the artifact bucket name `{name}` is {length} characters long; S3 allows at most 63")]
    BucketNameTooLong { name: String, length: usize },
    #[error("could not read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "stack {stack} depends on `{dependency}`, which is not one of the environment's stacks"
    )]
    UnknownDependency { stack: String, dependency: String },
    #[error("the stacks' dependencies form a cycle through {stacks}")]
    DependencyCycle { stacks: String },
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    #[error("{message}")]
    Invalid { message: String, help: String },
}

impl DeployError {
    /// Wraps an SDK error with what was being done, keeping the AWS error code.
    pub fn aws<E>(
        action: impl Into<String>,
        error: &aws_smithy_runtime_api::client::result::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = error.code().map(str::to_string);
        let message = match error.message() {
            Some(message) => message.to_string(),
            None => DisplayErrorContext(error).to_string(),
        };
        Self::Aws {
            action: action.into(),
            code,
            message,
        }
    }

    /// The next step a person should take.
    pub fn help(&self) -> Option<String> {
        match self {
            Self::Aws { code, .. } => match code.as_deref() {
                Some("ExpiredToken" | "ExpiredTokenException" | "InvalidClientTokenId" | "UnrecognizedClientException") => Some(
                    "refresh your AWS credentials (`aws sso login`, or the profile in AWS_PROFILE)".into(),
                ),
                Some("AccessDenied" | "AccessDeniedException") => {
                    Some("the credentials in use lack a permission the deploy needs; check the role's policy".into())
                }
                _ => None,
            },
            Self::Timeout { .. } => Some("check the stack in the CloudFormation console, then run the command again".into()),
            Self::Invalid { help, .. } => Some(help.clone()).filter(|h| !h.is_empty()),
            _ => None,
        }
    }
}

/// True when the emulator answered an API it does not implement: moto fails such a
/// call with an HTTP 500 whose body is no AWS error (so the SDK sees no error code).
pub fn emulator_lacks<E>(
    error: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool
where
    E: ProvideErrorMetadata,
{
    let code = error.code();
    matches!(code, Some("NotImplemented" | "InternalFailure"))
        || error
            .message()
            .is_some_and(|m| m.contains("not been implemented"))
        || (code.is_none()
            && error
                .raw_response()
                .is_some_and(|r| matches!(r.status().as_u16(), 500 | 501)))
}

/// True for AWS error codes that mean "slow down".
pub fn is_throttling(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "Throttling"
                | "ThrottlingException"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "SlowDown"
        )
    )
}

impl From<DeployError> for crate::error::Error {
    fn from(error: DeployError) -> Self {
        let help = error.help().unwrap_or_default();
        crate::error::Error::Other {
            message: crate::package::error_chain(&error),
            help,
        }
    }
}
