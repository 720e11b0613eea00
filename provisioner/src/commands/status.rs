//! `provisioner status`: each stack of an environment as deployed (status, the release
//! that last changed it, last update, outputs), one DescribeStacks call on a small account.
//! With `--detailed-exitcode` it exits 14 when a stack is missing or not settled and
//! healthy, so CI can gate on it.

use std::io::Write;

use serde::Serialize;

use crate::cli::{OutputFormat, StatusArgs};
use crate::commands::deploy::write_json_with_failure;
use crate::deploy::clients::AwsClients;
use crate::deploy::setup::{prepare, runtime, stack_specs_without_parameters};
use crate::deploy::status::{self, StackStatus};
use crate::error::{Error, ErrorBody};
use crate::exit::Exit;
use crate::output::write_text;
use crate::project::Project;
use crate::release::deployments::Deployments;
use crate::render::Renderer;

#[derive(Serialize)]
struct StatusReport {
    env: String,
    /// The release the environment runs, from the deployments table (`null` before the
    /// first deploy, or when the account is not bootstrapped).
    release: Option<String>,
    release_since: Option<String>,
    /// The deploy lock's holder, when a deploy runs.
    locked_by: Option<String>,
    /// Every stack deployed and settled in a healthy state.
    healthy: bool,
    /// The stacks that are not, each with why.
    unhealthy: Vec<Unhealthy>,
    stacks: Vec<StackStatus>,
    /// Emulated environments only: where the records are.
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<crate::local::counts::RecordCounts>,
}

#[derive(Serialize)]
struct Unhealthy {
    stack_name: String,
    reason: String,
}

pub fn run(
    project: &Project,
    args: &StatusArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let renderer = Renderer::load(project)?;
    let prepared = match prepare(project, &renderer, &args.env, out)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(exit),
    };
    let specs = stack_specs_without_parameters(&prepared.rendered);
    let emulated = prepared.env.settings.endpoint_url.clone();
    let deployments_table = prepared.env.names.bootstrap.deployments_table.clone();
    let env_name = prepared.env.name.clone();
    let (rows, records, requests, state, lock) = runtime()?.block_on(async {
        let clients = AwsClients::connect(&prepared.target).await;
        let mut rows = status::read(&clients, &specs).await?;
        let deployments = Deployments::new(clients.dynamodb.clone(), &deployments_table);
        let state = deployments.state_if_bootstrapped(&env_name).await?;
        if let Some(state) = &state {
            status::mark_changed_outside(
                &clients,
                &mut rows,
                &state.stacks_seen,
                emulated.is_some(),
            )
            .await?;
        }
        let lock = deployments.lock_if_bootstrapped(&env_name).await?;
        let deployed = rows.iter().any(|row| row.deployed);
        let records = match &emulated {
            Some(url) if deployed => {
                Some(crate::local::counts::count(&prepared.env, url.as_str()).await?)
            }
            _ => None,
        };
        Ok::<_, Error>((rows, records, clients.requests.summary(), state, lock))
    })?;
    let release = state.as_ref().and_then(|s| s.release.clone());
    let release_since = state.as_ref().and_then(|s| s.since.clone());
    let locked_by = lock.map(|holder| holder.describe());
    let unhealthy: Vec<Unhealthy> = rows
        .iter()
        .filter_map(|row| {
            row.unhealthy().map(|reason| Unhealthy {
                stack_name: row.stack_name.clone(),
                reason,
            })
        })
        .collect();
    let exit = if args.detailed_exitcode && !unhealthy.is_empty() {
        Exit::Unhealthy
    } else {
        Exit::Success
    };
    let failure = (exit == Exit::Unhealthy).then(|| ErrorBody {
        kind: "unhealthy",
        message: unhealthy
            .iter()
            .map(|u| format!("{}: {}", u.stack_name, u.reason))
            .collect::<Vec<_>>()
            .join("; "),
        fix: Some(format!(
            "deploy the missing stacks, wait for running operations, or follow \
             runbooks/stuck-stack.md (`provisioner recover --env {}`)",
            args.env
        )),
        exit_code: exit as u8,
    });
    tracing::info!("AWS API requests: {requests}");
    match format {
        OutputFormat::Json => write_json_with_failure(
            out,
            &StatusReport {
                env: prepared.env.name.clone(),
                release,
                release_since,
                locked_by,
                healthy: unhealthy.is_empty(),
                unhealthy,
                stacks: rows,
                records,
            },
            failure,
        )?,
        OutputFormat::Text => {
            write_text(
                out,
                &match (&release, &release_since) {
                    (Some(release), since) => format!(
                        "{} runs release {release} since {}",
                        prepared.env.name,
                        since.as_deref().unwrap_or("?")
                    ),
                    (None, _) => format!("{} runs no recorded release", prepared.env.name),
                },
            )?;
            if let Some(holder) = &locked_by {
                write_text(out, &format!("locked: a deploy is running, by {holder}"))?;
            }
            write_text(out, status::to_text(&rows).trim_end())?;
            for stack in &unhealthy {
                write_text(
                    out,
                    &format!("unhealthy: {}: {}", stack.stack_name, stack.reason),
                )?;
            }
            if let Some(records) = &records {
                write_text(out, "")?;
                write_text(out, &crate::local::counts::to_text(records))?;
            }
        }
    }
    Ok(exit)
}
