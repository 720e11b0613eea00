//! `provisioner bootstrap`: the bootstrap stack of an environment's account and region
//! (artifact bucket, deployments table, execution role), deployed through change sets.

use std::io::Write;

use crate::cli::{BootstrapArgs, OutputFormat};
use crate::deploy::bootstrap;
use crate::deploy::report::RunOutcome;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::release::rollout::deploy_exit;

pub fn run(
    project: &Project,
    args: &BootstrapArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let report = match bootstrap::run(project, &args.env, args.yes, format, out)? {
        Ok(report) => report,
        Err(exit) => return Ok(exit),
    };
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => {
            write_text(
                out,
                &format!(
                    "bootstrap of account {} in {} (for `{}`, as {})",
                    report.account, report.region, report.env, report.caller
                ),
            )?;
            let outcome = RunOutcome {
                stacks: report.stacks.clone(),
                interrupted: false,
            };
            write_text(out, outcome.to_text().trim_end())?;
            for (key, value) in &report.outputs {
                write_text(out, &format!("  {key:<22} {value}"))?;
            }
        }
    }
    Ok(deploy_exit(report.result))
}
