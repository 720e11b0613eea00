//! Releases as first-class, immutable objects: a bundle (function zips, template
//! sources, environment files and a manifest naming every digest) published once to the
//! artifact bucket under `releases/<id>/`, then deployed, promoted and rolled back
//! unchanged. Also what makes a deploy safe when several pipelines run: the caller's
//! account checked first, a per-environment lock with a lease, and a history of every
//! attempt in the bootstrap stack's deployments table.

pub mod bundle;
pub mod deployments;
pub mod id;
pub mod identity;
pub mod retention;
pub mod rollout;
pub mod store;

pub use id::ReleaseId;

/// Everything about releases that can stop a command.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("the checkout has no commit yet; a release is built from a commit")]
    Uncommitted,
    #[error("the checkout has uncommitted changes, and `{env}` is not an emulated environment: its releases are built from commits")]
    Dirty { env: String },
    #[error("{reason}")]
    Bundle { reason: String },
    #[error("release {id}: {what} has sha256 {actual}, but the release says {expected}; it was changed after the release was published")]
    Tampered {
        id: ReleaseId,
        what: String,
        expected: String,
        actual: String,
    },
    #[error("release {id} is not published in s3://{bucket}")]
    NotFound {
        id: ReleaseId,
        bucket: String,
        env: String,
    },
    #[error("release {id} is already published with different content: {}", differences.join("; "))]
    Conflict {
        id: ReleaseId,
        differences: Vec<String>,
    },
    #[error("release {id} has no environment `{env}` (it has {})", available.join(", "))]
    EnvironmentMissing {
        id: ReleaseId,
        env: String,
        available: Vec<String>,
    },
    #[error("environment `{env}` is not bootstrapped: account {account} has no stack {stack} in {region}")]
    NotBootstrapped {
        env: String,
        account: String,
        region: String,
        stack: String,
    },
    #[error("this provisioner ({ours}) renders release {id} for `{env}` differently from the provisioner that published it ({theirs}): {}", stacks.join(", "))]
    RendersDifferently {
        id: ReleaseId,
        env: String,
        stacks: Vec<String>,
        ours: String,
        theirs: String,
    },
    #[error("release {id}'s `{env}` targets {theirs}, but this checkout's `{env}` targets {ours}")]
    TargetMismatch {
        id: ReleaseId,
        env: String,
        ours: String,
        theirs: String,
    },
    #[error("release {id} was published with manifest format {format}; this provisioner reads format {}", bundle::BUNDLE_FORMAT)]
    UnknownFormat { id: ReleaseId, format: u32 },
}

impl ReleaseError {
    /// The next step a person should take.
    pub fn help(&self) -> Option<String> {
        Some(match self {
            Self::Uncommitted => "commit the tree, then publish".into(),
            Self::Dirty { .. } => {
                "commit (or stash) the changes and publish again, or pass --allow-dirty to \
                 publish the tree as it is (its id then ends in -dirty-<digest>)"
                    .into()
            }
            Self::Bundle { .. } => return None,
            Self::Tampered { .. } => {
                "the artifact bucket is versioned: restore the object's earlier version \
                 (`aws s3api list-object-versions --bucket <bucket> --prefix <key>`, then \
                 copy that version back over the key); objects are content-addressed, so \
                 publishing the same build again reuses the changed object"
                    .into()
            }
            Self::NotFound { env, .. } => format!(
                "`provisioner release list --env {env}` lists the published releases; \
                 `provisioner release publish --env {env}` publishes the checkout"
            ),
            Self::Conflict { .. } => {
                "a published release never changes: commit the change and publish it as a \
                 new release (a new commit gives a new id)"
                    .into()
            }
            Self::EnvironmentMissing { env, .. } => format!(
                "deploy a release published after environments/{env}.yaml was committed, \
                 or publish one now with `provisioner release publish --env {env}`"
            ),
            Self::NotBootstrapped { env, .. } => {
                format!("run `provisioner bootstrap --env {env}` first")
            }
            Self::RendersDifferently { theirs, .. } => format!(
                "deploy it with provisioner {theirs}, the version that published it, or \
                 publish the commit again with this provisioner"
            ),
            Self::TargetMismatch { .. } => {
                "a release deploys to the account and region its own environment file \
                 names; check out the release's revision, or fix the environment file and \
                 publish a new release"
                    .into()
            }
            Self::UnknownFormat { .. } => {
                "use the provisioner version that published the release".into()
            }
        })
    }
}

impl From<ReleaseError> for crate::error::Error {
    fn from(error: ReleaseError) -> Self {
        let help = error.help().unwrap_or_default();
        crate::error::Error::Other {
            message: error.to_string(),
            help,
        }
    }
}

impl From<id::InvalidReleaseId> for crate::error::Error {
    fn from(error: id::InvalidReleaseId) -> Self {
        crate::error::Error::Other {
            help: error.help(),
            message: error.to_string(),
        }
    }
}
