//! `provisioner promote`: the source environment's release deployed to the target,
//! unchanged, once the source is healthy ([`crate::ops::promote`]).

use std::io::Write;

use crate::cli::{OutputFormat, PromoteArgs};
use crate::commands::deploy::write_json_with_failure;
use crate::error::Error;
use crate::exit::Exit;
use crate::ops::promote::{self, PromoteRequest};
use crate::output::write_text;
use crate::project::Project;
use crate::release::rollout::deploy_exit;
use crate::release::ReleaseId;

pub fn run(
    project: &Project,
    args: &PromoteArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let request = PromoteRequest {
        from: args.from.clone(),
        to: args.to.clone(),
        release: args.release.as_deref().map(ReleaseId::parse).transpose()?,
        soak: args.soak,
        from_profile: args.from_profile.clone(),
        probe: args.probe,
        probe_timeout: args.probe_timeout,
        allow_replace: args.allow_replace.clone(),
        yes: args.yes,
        lock_timeout: args.lock_timeout,
    };
    let report = match promote::run(project, &request, format, out)? {
        Ok(report) => report,
        Err(exit) => return Ok(exit),
    };
    let exit = deploy_exit(report.deploy.result);
    match format {
        OutputFormat::Json => write_json_with_failure(out, &report, report.deploy.failure(exit))?,
        OutputFormat::Text => write_text(out, report.to_text().trim_end())?,
    }
    Ok(exit)
}
