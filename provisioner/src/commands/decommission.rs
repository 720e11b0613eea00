//! `provisioner decommission`: the phased end of an environment
//! ([`crate::ops::decommission`]), after the account check; the typed confirmation is
//! asked on the terminal.

use std::io::{BufRead, IsTerminal, Write};

use crate::cli::{DecommissionArgs, OutputFormat};
use crate::deploy::setup::{poll_settings, prepare, runtime, stack_specs_without_parameters};
use crate::error::Error;
use crate::exit::Exit;
use crate::ops::decommission::{self, DecommissionRequest, Outcome, Target};
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::release::identity;
use crate::render::Renderer;

/// Shows `prompt` on a terminal and reads one line; `None` without a terminal.
fn ask(prompt: &str) -> Option<String> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).ok()?;
    Some(line)
}

pub fn run(
    project: &Project,
    args: &DecommissionArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    if let Some(export) = &args.export {
        crate::ops::data::check_id(export)?;
    }
    let renderer = Renderer::load(project)?;
    let prepared = match prepare(project, &renderer, &args.env, out)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(exit),
    };
    let specs = stack_specs_without_parameters(&prepared.rendered);
    let request = DecommissionRequest {
        dry_run: args.dry_run,
        confirm: args.confirm.clone(),
        force_window: args
            .force_window
            .then(|| args.reason.clone().unwrap_or_default()),
        export: args.export.clone(),
        delete_retained: args.delete_retained,
        until: args.until,
        lock_timeout: args.lock_timeout,
    };
    let report = runtime()?.block_on(async {
        let (clients, caller) = identity::connect_checked(&prepared.env, None).await?;
        let target = Target {
            env: &prepared.env,
            clients: &clients,
            caller: &caller.arn,
            specs: &specs,
            poll: poll_settings(&prepared.target),
        };
        decommission::run(&target, &request, &mut ask).await
    })?;
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => write_text(out, report.to_text().trim_end())?,
    }
    Ok(match report.result {
        Outcome::Planned | Outcome::Decommissioned | Outcome::Stopped => Exit::Success,
        Outcome::Refused => Exit::Refused,
        Outcome::Interrupted => Exit::Interrupted,
        Outcome::NotConfirmed => Exit::NeedsConfirmation,
        Outcome::Declined => Exit::Declined,
        Outcome::Failed => Exit::Failed,
    })
}
