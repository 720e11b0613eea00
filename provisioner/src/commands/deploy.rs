//! `provisioner deploy`: one release to one environment, under its lock. With
//! `--release <id>` everything comes from the published bundle; without it the checkout
//! is published as a release first (building the functions with `--build`). The
//! rollout itself is [`crate::release::rollout`], shared with `promote` and `up`.

use std::io::Write;
use std::time::{Duration, SystemTime};

use crate::cli::{ChangeArgs, DeployArgs, OutputFormat};
use crate::commands::build::{build_for, resolve};
use crate::deploy::engine::Mode;
use crate::deploy::planfile::PlanFile;
use crate::error::{Error, ErrorBody};
use crate::exit::Exit;
use crate::ops::bake::{deploy_then_bake, BakeRequest};
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
        keep_change_sets: false,
        planned: None,
    })
}

/// Writes the report as text or JSON; a JSON report of a run that ends with a failing
/// `exit` also carries the failure's `error` document.
pub fn write_report(
    report: &Report,
    exit: Exit,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match format {
        OutputFormat::Json => write_json_with_failure(out, report, report.failure(exit)),
        OutputFormat::Text => write_text(out, &report.to_text()),
    }
}

/// What made a bake fail, in a few words.
fn bake_failure(baked: &crate::ops::bake::BakedDeploy) -> String {
    baked
        .bake
        .as_ref()
        .and_then(|b| b.failure.as_ref())
        .map(|f| f.describe())
        .unwrap_or_default()
}

/// Writes `document` as JSON with `failure`, when there is one, as its `error` key.
pub fn write_json_with_failure(
    out: &mut dyn Write,
    document: &impl serde::Serialize,
    failure: Option<ErrorBody>,
) -> Result<(), Error> {
    let mut document = serde_json::to_value(document).map_err(|error| Error::Other {
        message: format!("could not encode the report as JSON: {error}"),
        help: String::new(),
    })?;
    if let (Some(failure), Some(object)) = (failure, document.as_object_mut()) {
        object.insert(
            "error".into(),
            serde_json::to_value(failure).unwrap_or_default(),
        );
    }
    write_json(out, &document)
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
    if let Some(path) = &args.plan {
        let plan = PlanFile::load(path)?;
        request.source = Source::Published(ReleaseId::parse(&plan.release)?);
        request.planned = Some(std::sync::Arc::new(plan));
    }
    if let Some(duration) = args.bake {
        let bake = BakeRequest {
            env: args.change.env.clone(),
            duration,
            probe: args.probe,
            probe_timeout: args.probe_timeout,
            deploy_started: SystemTime::now(),
            every: (duration / 10).clamp(Duration::from_secs(1), Duration::from_secs(15)),
        };
        let (baked, exit) = match deploy_then_bake(project, &request, &bake, format, out)? {
            Ok(done) => done,
            Err(exit) => return Ok(exit),
        };
        let failure = match (&baked.rollback, exit) {
            (Some(rollback), Exit::RolledBack) => Some(ErrorBody {
                kind: "rolled-back",
                message: format!(
                    "the bake of {} failed ({}); rolled back to {}",
                    baked.deploy.env,
                    baked
                        .bake
                        .as_ref()
                        .and_then(|b| b.failure.as_ref())
                        .map(|f| f.describe())
                        .unwrap_or_default(),
                    rollback.release
                ),
                fix: Some(
                    "the environment runs the previous release again; find out why (the alarm's \
                     history, runbooks/rollback.md), fix it and deploy again"
                        .into(),
                ),
                exit_code: exit as u8,
            }),
            (Some(rollback), exit) => Some(ErrorBody {
                kind: "failed",
                message: format!(
                    "the bake of {} failed ({}) and the rollback to {} did not complete ({}); \
                     {} still runs {}",
                    baked.deploy.env,
                    bake_failure(&baked),
                    rollback.release,
                    rollback
                        .failure(Exit::Failed)
                        .map(|f| f.message)
                        .unwrap_or_else(|| rollback.result.as_str().to_string()),
                    baked.deploy.env,
                    baked.deploy.release
                ),
                fix: Some(format!(
                    "read the rollback's stacks above, fix what failed, then `provisioner \
                     rollback --env {}`",
                    baked.deploy.env
                )),
                exit_code: exit as u8,
            }),
            (None, Exit::Failed) if baked.rollback_refused.is_some() => Some(ErrorBody {
                kind: "failed",
                message: format!(
                    "the bake of {} failed ({}); not rolled back: {}",
                    baked.deploy.env,
                    bake_failure(&baked),
                    baked.rollback_refused.as_deref().unwrap_or_default()
                ),
                fix: Some(format!(
                    "decide by hand: `provisioner status --env {0}`, then `provisioner rollback \
                     --env {0}` if the running release must go",
                    baked.deploy.env
                )),
                exit_code: exit as u8,
            }),
            (None, Exit::Interrupted) => Some(ErrorBody {
                kind: "interrupted",
                message: format!(
                    "the bake of {} was interrupted; the new release stays deployed",
                    baked.deploy.env
                ),
                fix: Some(format!(
                    "watch its alarms by hand, or roll back with `provisioner rollback --env {}`",
                    baked.deploy.env
                )),
                exit_code: exit as u8,
            }),
            (None, exit) => baked.deploy.failure(exit),
        };
        match format {
            OutputFormat::Json => write_json_with_failure(out, &baked, failure)?,
            OutputFormat::Text => write_text(out, &baked.to_text())?,
        }
        return Ok(exit);
    }
    let report = match rollout::run(project, &request, format, out)? {
        Ok(report) => report,
        Err(exit) => return Ok(exit),
    };
    let exit = rollout::deploy_exit(report.result);
    write_report(&report, exit, format, out)?;
    Ok(exit)
}
