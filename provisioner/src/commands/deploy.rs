//! `provisioner deploy`: one release to one environment, under its lock. With
//! `--release <id>` everything comes from the published bundle; without it the checkout
//! is published as a release first (building the functions with `--build`). The
//! rollout itself is [`crate::release::rollout`], shared with `promote` and `up`.

use std::io::Write;

use crate::cli::{ChangeArgs, DeployArgs, OutputFormat};
use crate::commands::build::{build_for, resolve};
use crate::deploy::engine::Mode;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::release::rollout::{self, Kind, Report, Request, Source};
use crate::release::ReleaseId;
use crate::render::Renderer;

/// The rollout `args` ask for.
pub fn request(project: &Project, args: &ChangeArgs, mode: Mode) -> Result<Request, Error> {
    let source = match &args.release {
        Some(id) => Source::Published(ReleaseId::parse(id)?),
        None => {
            let artifacts_dir = resolve(project, &args.artifacts);
            if args.build {
                let renderer = Renderer::load(project)?;
                build_for(
                    project,
                    &renderer,
                    std::slice::from_ref(&args.env),
                    artifacts_dir.clone(),
                )?;
            }
            Source::Checkout {
                artifacts_dir,
                allow_dirty: args.allow_dirty,
            }
        }
    };
    Ok(Request {
        env: args.env.clone(),
        source,
        kind: Kind::Deploy,
        mode,
        allow_replace: args.allow_replace.iter().cloned().collect(),
        yes: false,
        allow_downgrade: false,
        lock_timeout: std::time::Duration::ZERO,
    })
}

/// Writes the report as text or JSON.
pub fn write_report(
    report: &Report,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match format {
        OutputFormat::Json => write_json(out, report),
        OutputFormat::Text => write_text(out, &report.to_text()),
    }
}

pub fn run(
    project: &Project,
    args: &DeployArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let mut request = request(project, &args.change, Mode::Deploy)?;
    request.yes = args.yes;
    request.allow_downgrade = args.allow_downgrade;
    request.lock_timeout = args.lock_timeout;
    let report = match rollout::run(project, &request, format, out)? {
        Ok(report) => report,
        Err(exit) => return Ok(exit),
    };
    write_report(&report, format, out)?;
    Ok(rollout::deploy_exit(report.result))
}
