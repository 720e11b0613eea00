//! `provisioner destroy`: deletes an environment's stacks in reverse dependency order,
//! refusing while termination protection or retained data would make that a surprise,
//! and saying what is left behind (retained resources, the artifact bucket).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use crate::cli::{DestroyArgs, OutputFormat};
use crate::deploy::clients::AwsClients;
use crate::deploy::destroy::{self, DestroyOptions, DestroyResult};
use crate::deploy::progress::Progress;
use crate::deploy::setup::{
    confirmation, poll_settings, prepare, runtime, stack_specs_without_parameters,
};
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::render::Renderer;

fn ask(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok()
        && matches!(answer.trim(), "y" | "Y" | "yes")
}

pub fn run(
    project: &Project,
    args: &DestroyArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let renderer = Renderer::load(project)?;
    let prepared = match prepare(project, &renderer, &args.env, out)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(exit),
    };
    let specs = stack_specs_without_parameters(&prepared.rendered);
    let options = DestroyOptions {
        confirmation: confirmation(args.yes),
        accept_retained: args.accept_retained,
        poll: poll_settings(&prepared.target),
        artifact_bucket: prepared.bucket.clone(),
    };
    let progress = Arc::new(Progress::new(std::io::stderr().is_terminal()));
    let (outcome, requests) = runtime()?.block_on(async {
        let clients = AwsClients::connect(&prepared.target).await;
        let identity = crate::release::identity::caller_identity(&clients.sts).await?;
        crate::release::identity::ensure_account(&prepared.env, &identity)?;
        let outcome = destroy::destroy(&clients, &specs, &options, progress, &mut ask).await?;
        Ok::<_, Error>((outcome, clients.requests.summary()))
    })?;
    tracing::info!("AWS API requests: {requests}");
    match format {
        OutputFormat::Json => write_json(out, &outcome)?,
        OutputFormat::Text => write_text(out, outcome.to_text().trim_end())?,
    }
    Ok(match outcome.result {
        DestroyResult::Destroyed | DestroyResult::NothingToDestroy => Exit::Success,
        DestroyResult::Refused => Exit::Refused,
        DestroyResult::NotConfirmed => Exit::NeedsConfirmation,
        DestroyResult::Declined => Exit::Declined,
        DestroyResult::Failed => Exit::Failed,
    })
}
