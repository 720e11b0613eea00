//! `provisioner rollback`: the previous successful release (or `--to`) deployed again
//! through the ordinary path ([`crate::ops::rollback`], [`crate::release::rollout`]).

use std::io::Write;

use crate::cli::{OutputFormat, RollbackArgs};
use crate::commands::deploy::write_report;
use crate::deploy::engine::Mode;
use crate::error::Error;
use crate::exit::Exit;
use crate::ops::rollback;
use crate::project::Project;
use crate::release::rollout::{self, Kind, Request, Source};
use crate::release::ReleaseId;

pub fn run(
    project: &Project,
    args: &RollbackArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let to = args.to.as_deref().map(ReleaseId::parse).transpose()?;
    let release = rollback::target_release(project, &args.env, to.as_ref())?;
    let request = Request {
        env: args.env.clone(),
        source: Source::Published(release),
        kind: Kind::Rollback,
        mode: Mode::Deploy,
        allow_replace: args.allow_replace.iter().cloned().collect(),
        yes: args.yes,
        allow_downgrade: true,
        lock_timeout: args.lock_timeout,
        keep_change_sets: false,
        planned: None,
    };
    let report = match rollout::run(project, &request, format, out)? {
        Ok(report) => report,
        Err(exit) => return Ok(exit),
    };
    let exit = rollout::deploy_exit(report.result);
    write_report(&report, exit, format, out)?;
    Ok(exit)
}
