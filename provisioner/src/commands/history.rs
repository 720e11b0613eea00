//! `provisioner history`: an environment's deployment history from the deployments
//! table, newest first, and the release it runs.

use std::io::Write;

use serde::Serialize;

use crate::cli::{HistoryArgs, OutputFormat};
use crate::deploy::clients::AwsClients;
use crate::deploy::setup::{runtime, target};
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::project::Project;
use crate::release::deployments::{or_not_bootstrapped, Deployments, EnvState, HistoryEntry};
use crate::release::{identity, rollout};

#[derive(Serialize)]
struct HistoryReport {
    env: String,
    state: Option<EnvState>,
    entries: Vec<HistoryEntry>,
}

pub fn run(
    project: &Project,
    args: &HistoryArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let (_, env) = rollout::locate(project, &args.env)?;
    let report = runtime()?.block_on(async {
        let clients = AwsClients::connect(&target(&env)).await;
        identity::caller_identity(&clients.sts).await?;
        let deployments = Deployments::new(
            clients.dynamodb.clone(),
            &env.names.bootstrap.deployments_table,
        );
        let state = or_not_bootstrapped(deployments.state(&env.name).await, &env)?;
        let entries = deployments.history(&env.name, args.limit as usize).await?;
        Ok::<_, Error>(HistoryReport {
            env: env.name.clone(),
            state,
            entries,
        })
    })?;
    match format {
        OutputFormat::Json => write_json(out, &report)?,
        OutputFormat::Text => {
            match report
                .state
                .as_ref()
                .and_then(|s| s.release.as_ref().map(|r| (r, s)))
            {
                Some((release, state)) => write_text(
                    out,
                    &format!(
                        "{} runs release {release} since {}",
                        report.env,
                        state.since.as_deref().unwrap_or("?")
                    ),
                )?,
                None => write_text(out, &format!("{} runs no release yet", report.env))?,
            }
            if report.entries.is_empty() {
                write_text(out, "no deployment recorded")?;
            }
            for entry in &report.entries {
                write_text(
                    out,
                    &format!(
                        "{}  {:<8} {:<14} {:<44} {}{}",
                        entry.started_at,
                        entry.kind,
                        entry.result,
                        entry.release.as_deref().unwrap_or("-"),
                        entry.caller,
                        entry
                            .ci_run
                            .as_deref()
                            .map(|r| format!(" (CI run {r})"))
                            .unwrap_or_default()
                    ),
                )?;
                if !entry.stacks_changed.is_empty() {
                    write_text(
                        out,
                        &format!("    changed: {}", entry.stacks_changed.join(", ")),
                    )?;
                }
                if let Some(from) = &entry.source_env {
                    write_text(out, &format!("    promoted from {from}"))?;
                }
                if let Some(message) = &entry.message {
                    write_text(
                        out,
                        &format!("    {}", message.lines().next().unwrap_or_default()),
                    )?;
                }
            }
        }
    }
    Ok(Exit::Success)
}
