//! The release manifest: what one release is made of (git revision and dirty flag, each
//! function zip's sha256 and size, each stack template's sha256 per environment, each
//! environment's config digest, the provisioner's version). Promotion deploys exactly
//! what a manifest names.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::PackageError;

/// The manifest format this provisioner writes.
pub const MANIFEST_FORMAT: u32 = 1;

/// The source revision a release is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitVersion {
    /// Full commit hash; `None` before the first commit.
    pub revision: Option<String>,
    /// True when tracked or untracked files differ from the commit.
    pub dirty: bool,
    /// The commit's committer time (seconds since the epoch); orders releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_time: Option<i64>,
}

impl GitVersion {
    /// Reads the revision and dirty flag of the repository at `root`.
    pub fn read(root: &Path) -> Result<Self, PackageError> {
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(root)
                .args(args)
                .output()
                .map_err(|error| PackageError::Git {
                    reason: format!("could not run git: {error}"),
                })
        };
        let status = git(&["status", "--porcelain", "--untracked-files=normal"])?;
        if !status.status.success() {
            return Err(PackageError::Git {
                reason: String::from_utf8_lossy(&status.stderr).trim().to_string(),
            });
        }
        let dirty = !status.stdout.is_empty();
        let head = git(&["rev-parse", "--verify", "--quiet", "HEAD"])?;
        let revision = head
            .status
            .success()
            .then(|| String::from_utf8_lossy(&head.stdout).trim().to_string())
            .filter(|rev| !rev.is_empty());
        let commit_time = match &revision {
            Some(_) => {
                let log = git(&["log", "-1", "--format=%ct", "HEAD"])?;
                String::from_utf8_lossy(&log.stdout).trim().parse().ok()
            }
            None => None,
        };
        Ok(Self {
            revision,
            dirty,
            commit_time,
        })
    }

    /// The release version: the short revision, `-dirty` when the tree has changes
    /// (`uncommitted` before the first commit).
    pub fn label(&self) -> String {
        let base = match &self.revision {
            Some(revision) => revision.chars().take(12).collect(),
            None => "uncommitted".to_string(),
        };
        if self.dirty {
            format!("{base}-dirty")
        } else {
            base
        }
    }
}

/// One release, as written to `build/release.json` and the artifact bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    pub format: u32,
    pub version: String,
    pub git: GitVersion,
    pub provisioner_version: String,
    pub functions: Vec<ReleaseFunction>,
    pub environments: BTreeMap<String, ReleaseEnvironment>,
}

/// One function zip of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseFunction {
    pub name: String,
    pub architecture: String,
    /// The content-addressed key in the artifact bucket.
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

/// What a release deploys to one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseEnvironment {
    /// sha256 of the resolved environment configuration (canonical JSON).
    pub config_sha256: String,
    pub stacks: Vec<ReleaseStack>,
}

/// One rendered stack template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseStack {
    pub id: String,
    pub stack_name: String,
    pub template_sha256: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_is_the_short_revision_marked_when_dirty() {
        let clean = GitVersion {
            revision: Some("0123456789abcdef0123".into()),
            dirty: false,
            commit_time: None,
        };
        assert_eq!(clean.label(), "0123456789ab");
        let dirty = GitVersion {
            dirty: true,
            ..clean
        };
        assert_eq!(dirty.label(), "0123456789ab-dirty");
        let unborn = GitVersion {
            revision: None,
            dirty: true,
            commit_time: None,
        };
        assert_eq!(unborn.label(), "uncommitted-dirty");
    }

    #[test]
    fn reads_the_revision_of_a_real_repository() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let status = Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
                .args(args)
                .status()
                .unwrap();
            assert!(status.success());
        };
        git(&["init", "-q"]);
        std::fs::write(dir.path().join("a.txt"), "one").unwrap();
        git(&["add", "a.txt"]);
        git(&["commit", "-q", "-m", "first"]);
        let clean = GitVersion::read(dir.path()).unwrap();
        assert!(!clean.dirty);
        assert_eq!(clean.revision.as_deref().map(str::len), Some(40));
        assert!(clean.commit_time.is_some_and(|t| t > 1_600_000_000));
        std::fs::write(dir.path().join("a.txt"), "two").unwrap();
        assert!(GitVersion::read(dir.path()).unwrap().dirty);
    }
}
