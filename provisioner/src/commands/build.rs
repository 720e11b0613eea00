//! `provisioner build`: builds every function of `functions/manifest.yaml` for the
//! architectures the environments use, checks each binary's glibc floor and writes
//! deterministic zips plus the artifact index under `build/functions/`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::{BuildArgs, OutputFormat};
use crate::config;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::package::build::{build_all, Arch, BuildPlan};
use crate::package::index::Artifact;
use crate::project::Project;
use crate::render::Renderer;

/// A path from the command line: relative ones are relative to the repository root.
pub fn resolve(project: &Project, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        project.root().join(path)
    }
}

/// The architectures the named environments run their functions on.
pub fn architectures(
    project: &Project,
    renderer: &Renderer,
    envs: &[String],
) -> Result<BTreeSet<Arch>, Error> {
    let mut architectures = BTreeSet::new();
    for name in envs {
        let env = renderer.load_environment(project, name)?;
        for (_, function) in env.settings.functions.iter() {
            architectures.insert(Arch::from(function.architecture));
        }
    }
    Ok(architectures)
}

/// Builds the functions for `envs`' architectures into `out_dir`.
pub fn build_for(
    project: &Project,
    renderer: &Renderer,
    envs: &[String],
    out_dir: PathBuf,
) -> Result<Vec<Artifact>, Error> {
    let plan = BuildPlan {
        root: project.root().to_path_buf(),
        functions: renderer.functions().to_vec(),
        architectures: architectures(project, renderer, envs)?,
        out_dir,
    };
    let index = build_all(&plan)?;
    let built: BTreeSet<&str> = plan.architectures.iter().map(|a| a.as_str()).collect();
    Ok(index
        .artifacts
        .into_iter()
        .filter(|a| built.contains(a.architecture.as_str()))
        .collect())
}

#[derive(Serialize)]
struct BuildReport<'a> {
    directory: String,
    artifacts: &'a [Artifact],
}

pub fn run(
    project: &Project,
    args: &BuildArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let renderer = Renderer::load(project)?;
    let envs = match &args.env {
        Some(env) => vec![env.clone()],
        None => config::list(project)?,
    };
    let out_dir = resolve(project, &args.out);
    let artifacts = build_for(project, &renderer, &envs, out_dir.clone())?;
    match format {
        OutputFormat::Json => write_json(
            out,
            &BuildReport {
                directory: project.display_path(&out_dir),
                artifacts: &artifacts,
            },
        )?,
        OutputFormat::Text => {
            for artifact in &artifacts {
                write_text(
                    out,
                    &format!(
                        "{:<12} {:<7} {}  {:>10} bytes  {}  {}",
                        artifact.function,
                        artifact.architecture,
                        artifact.sha256,
                        artifact.size,
                        artifact.glibc.as_deref().unwrap_or("static"),
                        project.display_path(&out_dir.join(&artifact.file)),
                    ),
                )?;
            }
        }
    }
    Ok(Exit::Success)
}
