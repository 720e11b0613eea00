//! `provisioner doctor`: can the credentials in use deploy this environment
//! ([`crate::ops::doctor`])? Exit 0 for a clean bill, 1 when anything is missing.

use std::io::Write;

use crate::cli::{DoctorArgs, OutputFormat};
use crate::deploy::clients::AwsClients;
use crate::deploy::setup::{runtime, target};
use crate::error::Error;
use crate::exit::Exit;
use crate::ops::doctor;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::release::rollout;

pub fn run(
    project: &Project,
    args: &DoctorArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let (renderer, env) = rollout::locate(project, &args.env)?;
    let stack_ids = renderer
        .catalog()
        .ids()
        .iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>();
    let report = runtime()?.block_on(async {
        let clients = AwsClients::connect(&target(&env)).await;
        let iam = aws_sdk_iam::Client::new(&clients.config);
        doctor::run(&clients, &iam, &env, &stack_ids).await
    });
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => write_text(out, report.to_text().trim_end())?,
    }
    Ok(if report.clean() {
        Exit::Success
    } else {
        Exit::Failed
    })
}
