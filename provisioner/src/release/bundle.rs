//! A release bundle: the manifest (id, creation time, git revision, provisioner version,
//! every function zip's sha256/size/key, every source file's digest, every environment's
//! rendered template digests) and the sources of that revision (`stacks/`,
//! `environments/`, `functions/manifest.yaml`) in one deterministic zip, so the release
//! can be rendered for any environment later, from any checkout.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use super::id::ReleaseId;
use super::ReleaseError;
use crate::config;
use crate::package::archive::sha256_hex;
use crate::package::index::ArtifactIndex;
use crate::package::release::{GitVersion, ReleaseFunction, ReleaseStack};
use crate::project::Project;
use crate::render::Renderer;

/// The bundle manifest format this provisioner writes and reads.
pub const BUNDLE_FORMAT: u32 = 2;
/// The manifest's name under `releases/<id>/`.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The sources zip's name under `releases/<id>/`.
pub const SOURCES_FILE: &str = "sources.zip";

/// Key prefix of every release in the artifact bucket.
pub const RELEASES_PREFIX: &str = "releases/";

/// `releases/<id>/<file>`.
pub fn release_key(id: &ReleaseId, file: &str) -> String {
    format!("{RELEASES_PREFIX}{id}/{file}")
}

/// What one release is made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleManifest {
    pub format: u32,
    pub id: ReleaseId,
    /// When it was first published (RFC 3339, UTC).
    pub created_at: String,
    pub git: GitVersion,
    pub provisioner_version: String,
    /// sha256 over the functions, the source files and the rendered templates: two
    /// bundles with the same digest deploy exactly the same thing.
    pub content_sha256: String,
    pub functions: Vec<ReleaseFunction>,
    pub sources: Sources,
    pub environments: BTreeMap<String, BundleEnvironment>,
}

/// The sources zip and the digest of every file in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sources {
    pub key: String,
    pub sha256: String,
    pub size: u64,
    /// Path relative to the repository root -> sha256.
    pub files: BTreeMap<String, String>,
}

/// One environment as the release renders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleEnvironment {
    /// sha256 of `environments/<env>.yaml`.
    pub file_sha256: String,
    /// sha256 of the resolved configuration (after `extends`).
    pub config_sha256: String,
    pub stacks: Vec<ReleaseStack>,
}

impl BundleManifest {
    /// The zip of `function` built for `architecture`.
    pub fn function(&self, function: &str, architecture: &str) -> Option<&ReleaseFunction> {
        self.functions
            .iter()
            .find(|f| f.name == function && f.architecture == architecture)
    }

    /// What differs between two bundles with the same id, for the refusal message.
    pub fn differences(&self, other: &BundleManifest) -> Vec<String> {
        let mut out = Vec::new();
        for mine in &self.functions {
            match other.function(&mine.name, &mine.architecture) {
                Some(theirs) if theirs.sha256 != mine.sha256 => out.push(format!(
                    "function {} ({}): sha256 {} here, {} published",
                    mine.name, mine.architecture, mine.sha256, theirs.sha256
                )),
                None => out.push(format!(
                    "function {} ({}) is not in the published bundle",
                    mine.name, mine.architecture
                )),
                _ => {}
            }
        }
        for (path, digest) in &self.sources.files {
            match other.sources.files.get(path) {
                Some(theirs) if theirs != digest => out.push(format!("{path} differs")),
                None => out.push(format!("{path} is not in the published bundle")),
                _ => {}
            }
        }
        for path in other.sources.files.keys() {
            if !self.sources.files.contains_key(path) {
                out.push(format!("{path} is only in the published bundle"));
            }
        }
        for (env, mine) in &self.environments {
            if other.environments.get(env).map(|e| &e.stacks) != Some(&mine.stacks) {
                out.push(format!("environment {env} renders different templates"));
            }
        }
        if out.is_empty() && self.content_sha256 != other.content_sha256 {
            out.push(format!(
                "content digest {} here, {} published",
                self.content_sha256, other.content_sha256
            ));
        }
        out
    }
}

/// A zip of the bundle, on this machine.
#[derive(Debug, Clone)]
pub struct LocalZip {
    pub function: String,
    pub key: String,
    pub sha256: String,
    pub size: u64,
    pub path: PathBuf,
}

/// A bundle assembled from a checkout, ready to publish.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub manifest: BundleManifest,
    pub sources_zip: Vec<u8>,
    pub zips: Vec<LocalZip>,
}

/// Assembles the release `project` makes with the zips in `artifacts_dir`.
pub fn assemble(project: &Project, artifacts_dir: &Path) -> Result<Bundle, crate::error::Error> {
    let renderer = Renderer::load(project)?;
    let index = ArtifactIndex::load(artifacts_dir)?;
    let git = GitVersion::read(project.root())?;
    let (Some(revision), Some(commit_time)) = (git.revision.clone(), git.commit_time) else {
        return Err(ReleaseError::Uncommitted.into());
    };
    let mut functions = Vec::new();
    let mut zips = Vec::new();
    for artifact in &index.artifacts {
        let located = index.locate(artifacts_dir, &artifact.function, &artifact.architecture)?;
        let key = located.artifact.key();
        functions.push(ReleaseFunction {
            name: located.artifact.function.clone(),
            architecture: located.artifact.architecture.clone(),
            key: key.clone(),
            sha256: located.artifact.sha256.clone(),
            size: located.artifact.size,
        });
        zips.push(LocalZip {
            function: located.artifact.function.clone(),
            key,
            sha256: located.artifact.sha256.clone(),
            size: located.artifact.size,
            path: located.path,
        });
    }
    functions.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    let sources = collect_sources(project)?;
    let mut environments = BTreeMap::new();
    for name in config::list(project)? {
        let env = renderer.load_environment(project, &name)?;
        let rendered = renderer.render(&env)?;
        let file = format!("environments/{name}.yaml");
        environments.insert(
            name,
            BundleEnvironment {
                file_sha256: sources
                    .get(&file)
                    .map(|b| sha256_hex(b))
                    .unwrap_or_default(),
                config_sha256: rendered.config_sha256.clone(),
                stacks: rendered
                    .stacks
                    .iter()
                    .map(|stack| ReleaseStack {
                        id: stack.id.clone(),
                        stack_name: stack.stack_name.clone(),
                        template_sha256: stack.sha256.clone(),
                    })
                    .collect(),
            },
        );
    }
    let files: BTreeMap<String, String> = sources
        .iter()
        .map(|(path, bytes)| (path.clone(), sha256_hex(bytes)))
        .collect();
    let content_sha256 = content_digest(&functions, &files, &environments);
    let sources_zip = zip_sources(&sources)?;
    let id = ReleaseId::new(
        commit_time,
        &revision,
        git.dirty.then_some(content_sha256.as_str()),
    );
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT,
        sources: Sources {
            key: release_key(&id, SOURCES_FILE),
            sha256: sha256_hex(&sources_zip),
            size: sources_zip.len() as u64,
            files,
        },
        id,
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        git,
        provisioner_version: env!("CARGO_PKG_VERSION").to_string(),
        content_sha256,
        functions,
        environments,
    };
    Ok(Bundle {
        manifest,
        sources_zip,
        zips,
    })
}

/// The digest over what a release deploys: its zips, its source files and the templates
/// every environment renders. Recomputed whenever a manifest is read back.
pub fn content_digest(
    functions: &[ReleaseFunction],
    files: &BTreeMap<String, String>,
    environments: &BTreeMap<String, BundleEnvironment>,
) -> String {
    #[derive(Serialize)]
    struct Content<'a> {
        functions: Vec<(&'a str, &'a str, &'a str, u64)>,
        files: &'a BTreeMap<String, String>,
        templates: BTreeMap<&'a str, &'a [ReleaseStack]>,
    }
    let content = Content {
        functions: functions
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.architecture.as_str(),
                    f.sha256.as_str(),
                    f.size,
                )
            })
            .collect(),
        files,
        templates: environments
            .iter()
            .map(|(name, env)| (name.as_str(), env.stacks.as_slice()))
            .collect(),
    };
    sha256_hex(&serde_json::to_vec(&content).unwrap_or_default())
}

/// Every file a release renders from: `stacks/**`, `environments/*.yaml` and
/// `functions/manifest.yaml`, by path relative to the root.
fn collect_sources(project: &Project) -> Result<BTreeMap<String, Vec<u8>>, crate::error::Error> {
    let mut files = BTreeMap::new();
    let root = project.root();
    let mut add = |path: &Path| -> Result<(), crate::error::Error> {
        let bytes = std::fs::read(path).map_err(|source| crate::error::Error::Io {
            action: "read".into(),
            path: path.to_path_buf(),
            source,
        })?;
        let relative = path
            .strip_prefix(root)
            .unwrap_or(path)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        files.insert(relative, bytes);
        Ok(())
    };
    for path in walk(&project.stacks_dir())? {
        add(&path)?;
    }
    for path in walk(&project.environments_dir())? {
        if path.extension().is_some_and(|e| e == "yaml") {
            add(&path)?;
        }
    }
    add(&project.functions_dir().join("manifest.yaml"))?;
    Ok(files)
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>, crate::error::Error> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|source| crate::error::Error::Io {
        action: "read".into(),
        path: dir.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn zip_sources(files: &BTreeMap<String, Vec<u8>>) -> Result<Vec<u8>, ReleaseError> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(9))
        .last_modified_time(DateTime::default())
        .unix_permissions(0o644);
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let failed = |error: zip::result::ZipError| ReleaseError::Bundle {
        reason: format!("could not zip the sources: {error}"),
    };
    for (path, bytes) in files {
        writer.start_file(path.as_str(), options).map_err(failed)?;
        writer
            .write_all(bytes)
            .map_err(|error| ReleaseError::Bundle {
                reason: format!("could not zip {path}: {error}"),
            })?;
    }
    Ok(writer.finish().map_err(failed)?.into_inner())
}

/// Checks `sources_zip` against `manifest` (the zip's digest, then every file's) and
/// writes its files under `dir`.
pub fn extract(
    manifest: &BundleManifest,
    sources_zip: &[u8],
    dir: &Path,
) -> Result<(), ReleaseError> {
    let actual = sha256_hex(sources_zip);
    if actual != manifest.sources.sha256 {
        return Err(ReleaseError::Tampered {
            id: manifest.id.clone(),
            what: manifest.sources.key.clone(),
            expected: manifest.sources.sha256.clone(),
            actual,
        });
    }
    let corrupt = |reason: String| ReleaseError::Bundle {
        reason: format!(
            "the sources of release {} are unreadable: {reason}",
            manifest.id
        ),
    };
    let mut archive =
        zip::ZipArchive::new(Cursor::new(sources_zip)).map_err(|e| corrupt(e.to_string()))?;
    let mut seen = 0usize;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| corrupt(e.to_string()))?;
        let name = entry.name().to_string();
        let relative = Path::new(&name);
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(corrupt(format!(
                "it holds a path outside the bundle: {name}"
            )));
        }
        let Some(expected) = manifest.sources.files.get(&name) else {
            return Err(corrupt(format!("{name} is not listed in the manifest")));
        };
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(e.to_string()))?;
        let actual = sha256_hex(&bytes);
        if &actual != expected {
            return Err(ReleaseError::Tampered {
                id: manifest.id.clone(),
                what: name,
                expected: expected.clone(),
                actual,
            });
        }
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| corrupt(e.to_string()))?;
        }
        std::fs::write(&path, &bytes).map_err(|e| corrupt(format!("{}: {e}", path.display())))?;
        seen += 1;
    }
    if seen != manifest.sources.files.len() {
        return Err(corrupt(format!(
            "the manifest lists {} files, the zip holds {seen}",
            manifest.sources.files.len()
        )));
    }
    Ok(())
}
