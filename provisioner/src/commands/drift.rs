//! `provisioner drift`: CloudFormation drift detection on every stack of an environment,
//! the drifted resources and properties listed; exit 13 when anything drifted.

use std::io::Write;

use serde::Serialize;

use crate::cli::{DriftArgs, OutputFormat};
use crate::deploy::clients::AwsClients;
use crate::deploy::drift::{self, StackDrift};
use crate::deploy::setup::{poll_settings, prepare, runtime, stack_specs_without_parameters};
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::render::Renderer;

#[derive(Serialize)]
struct DriftReport {
    env: String,
    /// True when any stack or resource drifted (the command then exits 13).
    drifted: bool,
    stacks: Vec<StackDrift>,
}

pub fn run(
    project: &Project,
    args: &DriftArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let renderer = Renderer::load(project)?;
    let prepared = match prepare(project, &renderer, &args.env, out)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(exit),
    };
    let specs = stack_specs_without_parameters(&prepared.rendered);
    let poll = poll_settings(&prepared.target);
    let emulator = prepared.target.endpoint_url.is_some();
    let stacks = runtime()?.block_on(async {
        let clients = AwsClients::connect(&prepared.target).await;
        let stacks = drift::detect(&clients.cloudformation, &specs, poll, emulator).await?;
        tracing::info!("AWS API requests: {}", clients.requests.summary());
        Ok::<_, Error>(stacks)
    })?;
    let drifted = stacks.iter().any(StackDrift::drifted);
    let unchecked: Vec<String> = stacks
        .iter()
        .filter(|s| s.unchecked())
        .map(|s| {
            format!(
                "{} ({})",
                s.stack_name,
                s.reason.as_deref().unwrap_or(s.status.as_str())
            )
        })
        .collect();
    match format {
        OutputFormat::Json => write_json(
            out,
            &DriftReport {
                env: prepared.env.name.clone(),
                drifted,
                stacks,
            },
        )?,
        OutputFormat::Text => write_text(out, drift::to_text(&stacks).trim_end())?,
    }
    if drifted {
        return Ok(Exit::Drifted);
    }
    // CI must not read "no drift" for stacks the detection could not check.
    if !unchecked.is_empty() {
        eprintln!(
            "error: drift detection did not check every stack: {}",
            unchecked.join(", ")
        );
        eprintln!("  help: run `provisioner drift` again; if it fails again, check the stacks' resources in the CloudFormation console");
        return Ok(Exit::Failed);
    }
    Ok(Exit::Success)
}
