//! The artifact index, `build/functions/index.json`: which zip `provisioner build` wrote
//! for each function and architecture, with its sha256 and size. `deploy` and `release`
//! read it back and re-hash each zip, so a stale or edited file is caught.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::archive::sha256_hex;
use super::PackageError;

/// The index file's name inside the artifacts directory.
pub const INDEX_FILE: &str = "index.json";

/// One packaged function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub function: String,
    /// `x86_64` or `arm64`.
    pub architecture: String,
    /// The zip's path relative to the artifacts directory.
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// The newest glibc symbol version the binary needs, if it links glibc.
    pub glibc: Option<String>,
}

impl Artifact {
    /// The content-addressed key the zip is uploaded under.
    pub fn key(&self) -> String {
        format!("functions/{}/{}.zip", self.function, self.sha256)
    }
}

/// Every artifact of one build.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactIndex {
    pub artifacts: Vec<Artifact>,
}

/// A resolved artifact: where its zip is on disk, checked against the index.
#[derive(Debug, Clone)]
pub struct LocatedArtifact {
    pub artifact: Artifact,
    pub path: PathBuf,
}

impl ArtifactIndex {
    /// Reads `<dir>/index.json`.
    pub fn load(dir: &Path) -> Result<Self, PackageError> {
        let path = dir.join(INDEX_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                PackageError::BadIndex {
                    path: path.clone(),
                    reason: "it does not exist (nothing has been built yet)".into(),
                }
            } else {
                PackageError::Io {
                    action: "read",
                    path: path.clone(),
                    source,
                }
            }
        })?;
        serde_json::from_str(&text).map_err(|error| PackageError::BadIndex {
            path,
            reason: error.to_string(),
        })
    }

    /// Writes `<dir>/index.json`.
    pub fn save(&self, dir: &Path) -> Result<(), PackageError> {
        let path = dir.join(INDEX_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|error| PackageError::BadIndex {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        std::fs::write(&path, text + "\n").map_err(|source| PackageError::Io {
            action: "write",
            path,
            source,
        })
    }

    /// Replaces the entry for the same function and architecture, or adds it.
    pub fn upsert(&mut self, artifact: Artifact) {
        self.artifacts.retain(|a| {
            !(a.function == artifact.function && a.architecture == artifact.architecture)
        });
        self.artifacts.push(artifact);
        self.artifacts
            .sort_by(|a, b| (&a.function, &a.architecture).cmp(&(&b.function, &b.architecture)));
    }

    /// The artifact of `function` for `architecture`, its zip re-hashed to prove it is
    /// the one the index describes.
    pub fn locate(
        &self,
        dir: &Path,
        function: &str,
        architecture: &str,
    ) -> Result<LocatedArtifact, PackageError> {
        let artifact = self
            .artifacts
            .iter()
            .find(|a| a.function == function && a.architecture == architecture)
            .ok_or_else(|| PackageError::ArtifactMissing {
                function: function.to_string(),
                architecture: architecture.to_string(),
                index: dir.join(INDEX_FILE),
            })?;
        let path = dir.join(&artifact.file);
        let bytes = std::fs::read(&path).map_err(|source| PackageError::Io {
            action: "read",
            path: path.clone(),
            source,
        })?;
        let actual = sha256_hex(&bytes);
        if actual != artifact.sha256 {
            return Err(PackageError::ArtifactChanged {
                path,
                expected: artifact.sha256.clone(),
                actual,
            });
        }
        Ok(LocatedArtifact {
            artifact: artifact.clone(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zip_edited_after_the_build_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ingest.zip"), b"built").unwrap();
        let mut index = ArtifactIndex::default();
        index.upsert(Artifact {
            function: "ingest".into(),
            architecture: "x86_64".into(),
            file: "ingest.zip".into(),
            sha256: sha256_hex(b"built"),
            size: 5,
            glibc: None,
        });
        index.save(dir.path()).unwrap();
        let index = ArtifactIndex::load(dir.path()).unwrap();
        let located = index.locate(dir.path(), "ingest", "x86_64").unwrap();
        assert_eq!(
            located.artifact.key(),
            format!("functions/ingest/{}.zip", sha256_hex(b"built"))
        );

        std::fs::write(dir.path().join("ingest.zip"), b"edited").unwrap();
        let error = index.locate(dir.path(), "ingest", "x86_64").unwrap_err();
        assert!(
            matches!(error, PackageError::ArtifactChanged { .. }),
            "{error}"
        );
        let missing = index.locate(dir.path(), "ingest", "arm64").unwrap_err();
        assert!(
            missing.to_string().contains("`ingest` (arm64)"),
            "{missing}"
        );
    }
}
