//! `provisioner release`: describes the release this checkout makes (git revision and
//! dirty flag, each function zip's sha256 and size, each stack template's sha256 per
//! environment, each environment's config digest, the provisioner version) in
//! `build/release.json`; `release publish` uploads it as an immutable bundle, `release
//! list` and `release show` read the published ones.

use std::collections::BTreeMap;
use std::io::Write;

use crate::cli::{OutputFormat, ReleaseArgs, ReleaseCommand};
use crate::commands::build::{build_for, resolve};
use crate::config;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::package::index::ArtifactIndex;
use crate::package::release::{
    GitVersion, ReleaseEnvironment, ReleaseFunction, ReleaseManifest, ReleaseStack, MANIFEST_FORMAT,
};
use crate::project::Project;
use crate::release::bundle::BundleManifest;
use crate::release::{rollout, ReleaseId};
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
    if let Some(command) = &args.command {
        return run_subcommand(project, command, format, out);
    }
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

/// `release publish`, `release list`, `release show`.
pub fn run_subcommand(
    project: &Project,
    command: &ReleaseCommand,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    match command {
        ReleaseCommand::Publish(args) => {
            let renderer = Renderer::load(project)?;
            let artifacts_dir = resolve(project, &args.artifacts);
            if args.build {
                build_for(
                    project,
                    &renderer,
                    std::slice::from_ref(&args.env),
                    artifacts_dir.clone(),
                )?;
            }
            let (published, manifest) =
                rollout::publish_checkout(project, &args.env, &artifacts_dir, args.allow_dirty)?;
            match format {
                OutputFormat::Json => write_json(
                    out,
                    &serde_json::json!({
                        "id": published.id,
                        "bucket": published.bucket,
                        "created": published.created,
                        "uploaded": published.uploaded,
                        "manifest": manifest,
                    }),
                )?,
                OutputFormat::Text => {
                    write_text(
                        out,
                        &if published.created {
                            format!(
                                "published release {} to s3://{}/releases/{}/ ({} zip(s) uploaded)",
                                published.id,
                                published.bucket,
                                published.id,
                                published.uploaded.len()
                            )
                        } else {
                            format!(
                                "release {} is already published in s3://{} with the same content; nothing to do",
                                published.id, published.bucket
                            )
                        },
                    )?;
                    write_manifest_text(&manifest, out)?;
                }
            }
            Ok(Exit::Success)
        }
        ReleaseCommand::List(args) => {
            let ids = rollout::list_releases(project, &args.env)?;
            match format {
                OutputFormat::Json => write_json(out, &serde_json::json!({ "releases": ids }))?,
                OutputFormat::Text => {
                    if ids.is_empty() {
                        write_text(out, "no release is published yet")?;
                    }
                    for id in &ids {
                        write_text(out, id.as_str())?;
                    }
                }
            }
            Ok(Exit::Success)
        }
        ReleaseCommand::Prune(args) => {
            let report =
                crate::release::retention::prune(project, &args.env, args.keep, args.dry_run)?;
            match format {
                OutputFormat::Json => write_json(out, &report)?,
                OutputFormat::Text => {
                    write_text(
                        out,
                        &format!(
                            "s3://{}: keeping {} release(s), {} expirable{}",
                            report.bucket,
                            report.kept.len(),
                            report.expirable.len(),
                            if report.dry_run {
                                " (dry run: nothing tagged)".to_string()
                            } else {
                                format!(" ({} object(s) tagged)", report.objects_tagged)
                            }
                        ),
                    )?;
                    for id in &report.expirable {
                        write_text(out, &format!("  expirable {id}"))?;
                    }
                }
            }
            Ok(Exit::Success)
        }
        ReleaseCommand::Show(args) => {
            let id = ReleaseId::parse(&args.release)?;
            let manifest = rollout::show_release(project, &args.env, &id)?;
            match format {
                OutputFormat::Json => write_json(out, &manifest)?,
                OutputFormat::Text => {
                    write_text(out, &format!("release {}", manifest.id))?;
                    write_manifest_text(&manifest, out)?;
                }
            }
            Ok(Exit::Success)
        }
    }
}

fn write_manifest_text(manifest: &BundleManifest, out: &mut dyn Write) -> Result<(), Error> {
    write_text(
        out,
        &format!(
            "  revision {}{}, published {} by provisioner {}, content {}",
            manifest.git.revision.as_deref().unwrap_or("?"),
            if manifest.git.dirty { " (dirty)" } else { "" },
            manifest.created_at,
            manifest.provisioner_version,
            manifest.content_sha256
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
    write_text(
        out,
        &format!(
            "  sources {} ({} files), environments {}",
            manifest.sources.sha256,
            manifest.sources.files.len(),
            manifest
                .environments
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
}
