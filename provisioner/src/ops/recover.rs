//! `recover` for one environment: the caller's account checked, the environment's deploy
//! lock held (so no deploy starts while stacks are being recovered), every stack of the
//! environment handed to [`crate::deploy::recover`], and the attempt recorded in the
//! history as a `recover`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crate::deploy::clients::AwsClients;
use crate::deploy::progress::Progress;
use crate::deploy::recover::{self, RecoverOptions, Recovery};
use crate::deploy::setup::{
    confirmation, poll_settings, prepare, runtime, stack_specs_without_parameters,
};
use crate::error::Error;
use crate::exit::Exit;
use crate::project::Project;
use crate::release::deployments::{self, Deployments, HistoryEntry, LockHolder};
use crate::release::{identity, rollout};
use crate::render::Renderer;

/// One `recover` run.
#[derive(Debug, Clone)]
pub struct Request {
    pub env: String,
    pub skip: Vec<String>,
    pub cancel: bool,
    pub yes: bool,
    /// How long to wait for another deploy's lock (zero: fail at once).
    pub lock_timeout: Duration,
}

/// Recovers `request.env`'s stacks under its lock. `Err(exit)` when the rendered
/// templates (which name the stacks) fail their checks.
pub fn run(
    project: &Project,
    request: &Request,
    out: &mut dyn Write,
    ask: &mut dyn FnMut(&str) -> bool,
) -> Result<Result<Recovery, Exit>, Error> {
    let renderer = Renderer::load(project)?;
    let prepared = match prepare(project, &renderer, &request.env, out)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(Err(exit)),
    };
    let specs = stack_specs_without_parameters(&prepared.rendered);
    let options = RecoverOptions {
        skip: request.skip.clone(),
        cancel: request.cancel,
        confirmation: confirmation(request.yes),
        poll: poll_settings(&prepared.target),
        role_arn: Some(prepared.env.names.bootstrap.execution_role_arn.clone()),
        emulator: prepared.target.endpoint_url.is_some(),
    };
    let env = prepared.env;
    runtime()?.block_on(async {
        let clients = AwsClients::connect(&prepared.target).await;
        let caller = identity::caller_identity(&clients.sts).await?;
        identity::ensure_account(&env, &caller)?;
        let deployments = Deployments::new(
            clients.dynamodb.clone(),
            &env.names.bootstrap.deployments_table,
        );
        let running = deployments
            .state_if_bootstrapped(&env.name)
            .await?
            .and_then(|state| state.release);
        let holder = LockHolder::this_process(
            &caller.arn,
            "recover",
            running.as_deref().unwrap_or("-"),
            rollout::LOCK_LEASE,
        );
        let mut entry = HistoryEntry::start(&env.name, "recover", running.as_deref(), &caller.arn);
        rollout::acquire(
            &deployments,
            &env,
            &holder,
            &mut entry,
            request.lock_timeout,
        )
        .await?;
        let heartbeat = rollout::spawn_heartbeat(
            deployments.clone(),
            env.name.clone(),
            holder.owner_id.clone(),
        );
        let progress = Progress::new(std::io::stderr().is_terminal());
        let outcome =
            recover::recover(&clients.cloudformation, &specs, &options, &progress, ask).await;
        heartbeat.abort();
        let _ = heartbeat.await;
        tracing::info!("AWS API requests: {}", clients.requests.summary());
        entry.ended_at = Some(deployments::now());
        match &outcome {
            Ok(recovery) => {
                entry.stacks_changed = recovery.acted_on();
                entry.result = match recovery.exit() {
                    Exit::Success if recovery.all_settled() => "no-changes",
                    Exit::Success => "recovered",
                    Exit::NeedsConfirmation => "not-confirmed",
                    Exit::Declined => "declined",
                    _ => "failed",
                }
                .to_string();
            }
            Err(error) => {
                entry.result = "failed".into();
                entry.message = Some(error.to_string());
            }
        }
        deployments
            .finish(&env.name, &holder.owner_id, &entry, None)
            .await?;
        Ok(Ok(outcome?))
    })
}
