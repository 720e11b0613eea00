//! The repository the provisioner works on: where environments, stacks and functions live.

use std::path::{Path, PathBuf};

use crate::error::Error;

/// Paths of one checkout of the platform repository.
#[derive(Debug, Clone)]
pub struct Project {
    root: PathBuf,
}

impl Project {
    /// Uses `root` when given, otherwise the nearest ancestor of the current directory
    /// that holds both `environments/` and `stacks/`.
    pub fn locate(root: Option<&Path>) -> Result<Self, Error> {
        if let Some(root) = root {
            let project = Self::at(root);
            if !project.is_platform_repo() {
                return Err(Error::NotARepository {
                    path: root.to_path_buf(),
                });
            }
            return Ok(project);
        }
        let cwd = std::env::current_dir().map_err(|source| Error::Io {
            action: "read the current directory".into(),
            path: PathBuf::from("."),
            source,
        })?;
        cwd.ancestors()
            .map(Self::at)
            .find(Self::is_platform_repo)
            .ok_or(Error::NotARepository { path: cwd })
    }

    /// A project rooted at `root`, without checking that it is one.
    pub fn at(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn is_platform_repo(&self) -> bool {
        self.environments_dir().is_dir() && self.stacks_dir().is_dir()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn environments_dir(&self) -> PathBuf {
        self.root.join("environments")
    }

    pub fn stacks_dir(&self) -> PathBuf {
        self.root.join("stacks")
    }

    pub fn functions_dir(&self) -> PathBuf {
        self.root.join("functions")
    }

    /// A path relative to the root, for messages (`environments/dev.yaml`).
    pub fn display_path(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}
