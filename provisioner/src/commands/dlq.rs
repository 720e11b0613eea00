//! `provisioner dlq peek` and `provisioner redrive`: the dead-letter queue shown and
//! moved back ([`crate::ops::dlq`]), after the account check.

use std::io::Write;

use crate::cli::{DlqPeekArgs, OutputFormat, RedriveArgs};
use crate::deploy::setup::runtime;
use crate::error::Error;
use crate::exit::Exit;
use crate::ops::dlq;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::release::{identity, rollout};

pub fn peek(
    project: &Project,
    args: &DlqPeekArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let (_, env) = rollout::locate(project, &args.env)?;
    let report = runtime()?.block_on(async {
        let (clients, _) = identity::connect_checked(&env, None).await?;
        dlq::peek(&clients, &env, usize::from(args.limit), args.show_payload).await
    })?;
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => write_text(out, report.to_text().trim_end())?,
    }
    Ok(Exit::Success)
}

pub fn redrive(
    project: &Project,
    args: &RedriveArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let (_, env) = rollout::locate(project, &args.env)?;
    let report = runtime()?.block_on(async {
        let (clients, _) = identity::connect_checked(&env, None).await?;
        dlq::redrive(&clients, &env, args.limit, args.dry_run).await
    })?;
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => write_text(out, report.to_text().trim_end())?,
    }
    if !report.failed.is_empty() {
        eprintln!(
            "error: {} message(s) could not be moved and stay in the dead-letter queue",
            report.failed.len()
        );
        return Ok(Exit::Failed);
    }
    Ok(Exit::Success)
}
