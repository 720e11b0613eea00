//! `provisioner render`: write every stack of one or all environments to files, with a
//! manifest of what was rendered, after checking the output.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::{EnvSelection, OutputFormat, RenderArgs};
use crate::config;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::render::checks::Finding;
use crate::render::{RenderedEnvironment, Renderer};

/// The environments a selection names.
pub fn selected(project: &Project, selection: &EnvSelection) -> Result<Vec<String>, Error> {
    match &selection.env {
        Some(env) => Ok(vec![env.clone()]),
        None => Ok(config::list(project)?),
    }
}

/// Runs `work` for every named environment, in parallel, and returns the results in
/// the order of `names` (or the first error, in that order).
pub fn for_each_environment<T: Send>(
    names: &[String],
    work: impl Fn(&str) -> Result<T, Error> + Sync,
) -> Result<Vec<T>, Error> {
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .iter()
            .map(|name| scope.spawn(move || work(name)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    Err(Error::Other {
                        message: "rendering an environment crashed".into(),
                        help: "run again with -vv and report the output".into(),
                    })
                })
            })
            .collect()
    })
}

/// What `render` wrote for one environment; also written as `manifest.json`.
#[derive(Debug, Serialize)]
pub struct RenderManifest {
    pub env: String,
    pub provisioner_version: &'static str,
    pub config_sha256: String,
    pub directory: String,
    pub stacks: Vec<ManifestStack>,
    /// The account's and region's bootstrap stack (`provisioner bootstrap` deploys it).
    pub bootstrap: ManifestStack,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
pub struct ManifestStack {
    pub id: String,
    pub stack_name: String,
    pub file: String,
    pub sha256: String,
    pub bytes: usize,
    pub depends_on: Vec<String>,
    pub parameters: Vec<String>,
}

/// Writes each stack to `<dir>/<stack>.yaml` and the manifest to `<dir>/manifest.json`.
pub fn write_environment(
    rendered: &RenderedEnvironment,
    findings: Vec<Finding>,
    dir: &Path,
    display_dir: String,
) -> Result<RenderManifest, Error> {
    let io = |action: &str, path: &Path| {
        let action = action.to_string();
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let mut stacks = Vec::new();
    for stack in &rendered.stacks {
        let file = format!("{}.yaml", stack.id);
        let path = dir.join(&file);
        std::fs::write(&path, &stack.body).map_err(io("write", &path))?;
        stacks.push(ManifestStack {
            id: stack.id.clone(),
            stack_name: stack.stack_name.clone(),
            file,
            sha256: stack.sha256.clone(),
            bytes: stack.body.len(),
            depends_on: stack.depends_on.clone(),
            parameters: stack.parameters.clone(),
        });
    }
    let bootstrap = &rendered.bootstrap;
    let file = format!("{}.yaml", bootstrap.id);
    let path = dir.join(&file);
    std::fs::write(&path, &bootstrap.body).map_err(io("write", &path))?;
    let bootstrap = ManifestStack {
        id: bootstrap.id.clone(),
        stack_name: bootstrap.stack_name.clone(),
        file,
        sha256: bootstrap.sha256.clone(),
        bytes: bootstrap.body.len(),
        depends_on: Vec::new(),
        parameters: Vec::new(),
    };
    let manifest = RenderManifest {
        env: rendered.env.clone(),
        provisioner_version: env!("CARGO_PKG_VERSION"),
        config_sha256: rendered.config_sha256.clone(),
        directory: display_dir,
        stacks,
        bootstrap,
        findings,
    };
    let path = dir.join("manifest.json");
    let json = serde_json::to_string_pretty(&manifest).unwrap_or_default();
    std::fs::write(&path, json + "\n").map_err(io("write", &path))?;
    Ok(manifest)
}

pub fn run(
    project: &Project,
    args: &RenderArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let renderer = Renderer::load(project)?;
    let out_dir = if args.out.is_absolute() {
        args.out.clone()
    } else {
        std::env::current_dir().unwrap_or_default().join(&args.out)
    };
    let names = selected(project, &args.selection)?;
    let manifests = for_each_environment(&names, |name| {
        let env = renderer.load_environment(project, name)?;
        let rendered = renderer.render(&env)?;
        let findings = rendered.findings.clone();
        let dir: PathBuf = if args.selection.all {
            out_dir.join(name)
        } else {
            out_dir.clone()
        };
        let display_dir = project.display_path(&dir);
        write_environment(&rendered, findings, &dir, display_dir)
    })?;
    let failed = manifests
        .iter()
        .any(|manifest| !manifest.findings.is_empty());
    match format {
        OutputFormat::Json => write_json(out, &manifests)?,
        OutputFormat::Text => {
            for manifest in &manifests {
                write_text(
                    out,
                    &format!(
                        "{}: {} stacks -> {}",
                        manifest.env,
                        manifest.stacks.len(),
                        manifest.directory
                    ),
                )?;
                for stack in &manifest.stacks {
                    write_text(
                        out,
                        &format!(
                            "  {:<14} {:>7} bytes  sha256 {}",
                            stack.id,
                            stack.bytes,
                            &stack.sha256[..12]
                        ),
                    )?;
                }
                for finding in &manifest.findings {
                    write_text(out, &format!("  {finding}"))?;
                }
            }
        }
    }
    if failed {
        eprintln!("error: rendered templates failed their checks (findings above); the files were written for inspection");
        return Ok(Exit::ValidationFailed);
    }
    Ok(Exit::Success)
}
