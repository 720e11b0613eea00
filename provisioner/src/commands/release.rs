//! `provisioner release`: describes the release this checkout makes (git revision and
//! dirty flag, each function zip's sha256 and size, each stack template's sha256 per
//! environment, each environment's config digest, the provisioner version) in
//! `build/release.json`.

use std::collections::BTreeMap;
use std::io::Write;

use crate::cli::{OutputFormat, ReleaseArgs};
use crate::commands::build::resolve;
use crate::config;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::package::index::ArtifactIndex;
use crate::package::release::{
    GitVersion, ReleaseEnvironment, ReleaseFunction, ReleaseManifest, ReleaseStack, MANIFEST_FORMAT,
};
use crate::project::Project;
use crate::render::Renderer;

/// Builds the manifest from the artifact index in `artifacts_dir` and every environment.
pub fn manifest(
    project: &Project,
    artifacts_dir: &std::path::Path,
) -> Result<ReleaseManifest, Error> {
    let renderer = Renderer::load(project)?;
    let index = ArtifactIndex::load(artifacts_dir)?;
    let mut functions = Vec::new();
    for artifact in &index.artifacts {
        let located = index.locate(artifacts_dir, &artifact.function, &artifact.architecture)?;
        functions.push(ReleaseFunction {
            name: located.artifact.function.clone(),
            architecture: located.artifact.architecture.clone(),
            key: located.artifact.key(),
            sha256: located.artifact.sha256.clone(),
            size: located.artifact.size,
        });
    }
    let mut environments = BTreeMap::new();
    for name in config::list(project)? {
        let env = renderer.load_environment(project, &name)?;
        let rendered = renderer.render(&env)?;
        environments.insert(
            name,
            ReleaseEnvironment {
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
    let git = GitVersion::read(project.root())?;
    Ok(ReleaseManifest {
        format: MANIFEST_FORMAT,
        version: git.label(),
        git,
        provisioner_version: env!("CARGO_PKG_VERSION").to_string(),
        functions,
        environments,
    })
}

pub fn run(
    project: &Project,
    args: &ReleaseArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let manifest = manifest(project, &resolve(project, &args.artifacts))?;
    let path = resolve(project, &args.out);
    let text = serde_json::to_string_pretty(&manifest).map_err(|error| Error::Other {
        message: format!("could not encode the release manifest: {error}"),
        help: String::new(),
    })?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            action: "create".into(),
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(&path, text + "\n").map_err(|source| Error::Io {
        action: "write".into(),
        path: path.clone(),
        source,
    })?;
    match format {
        OutputFormat::Json => write_json(out, &manifest)?,
        OutputFormat::Text => {
            write_text(
                out,
                &format!(
                    "release {} written to {}",
                    manifest.version,
                    project.display_path(&path)
                ),
            )?;
            for function in &manifest.functions {
                write_text(
                    out,
                    &format!(
                        "  function {:<12} {:<7} {} ({} bytes)",
                        function.name, function.architecture, function.sha256, function.size
                    ),
                )?;
            }
            for (env, release) in &manifest.environments {
                write_text(
                    out,
                    &format!("  environment {env}: config {}", release.config_sha256),
                )?;
                for stack in &release.stacks {
                    write_text(
                        out,
                        &format!("    {:<28} {}", stack.stack_name, stack.template_sha256),
                    )?;
                }
            }
        }
    }
    Ok(Exit::Success)
}
