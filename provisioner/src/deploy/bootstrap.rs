//! Deploying the bootstrap stack of an environment's account and region through the
//! ordinary change-set path, with the caller's own permissions (the execution role the
//! app's change sets run with is one of the stack's resources). Its outputs name the
//! artifact bucket, the deployments table and the execution role.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::sync::Arc;

use serde::Serialize;

use super::clients::AwsClients;
use super::engine::{self, EngineOptions, Mode};
use super::progress::Progress;
use super::report::{ConsoleReviewer, StackOutcome, Verdict};
use super::setup::{confirmation, poll_settings, prepare, runtime};
use super::{stacks, StackSpec};
use crate::cli::OutputFormat;
use crate::error::Error;
use crate::exit::Exit;
use crate::project::Project;
use crate::release::identity;
use crate::render::Renderer;

/// What `bootstrap` did.
#[derive(Debug, Serialize)]
pub struct BootstrapReport {
    pub env: String,
    pub account: String,
    pub region: String,
    pub caller: String,
    pub stack_name: String,
    pub result: Verdict,
    pub stacks: Vec<StackOutcome>,
    /// The stack's outputs after the deploy (bucket, table, role, key).
    pub outputs: BTreeMap<String, String>,
}

/// Deploys `env_name`'s bootstrap stack. `Err(exit)` when its template fails the checks.
pub fn run(
    project: &Project,
    env_name: &str,
    yes: bool,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Result<BootstrapReport, Exit>, Error> {
    let renderer = Renderer::load(project)?;
    let prepared = match prepare(project, &renderer, env_name, out)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(Err(exit)),
    };
    let stack = &prepared.rendered.bootstrap;
    let spec = StackSpec {
        id: stack.id.clone(),
        stack_name: stack.stack_name.clone(),
        depends_on: Vec::new(),
        body: stack.body.clone(),
        template_sha256: stack.sha256.clone(),
        parameters: BTreeMap::new(),
        tags: stack.tags.clone(),
    };
    let options = EngineOptions {
        mode: Mode::Deploy,
        release: format!("bootstrap-{}", env!("CARGO_PKG_VERSION")),
        allow_replace: BTreeSet::new(),
        confirmation: confirmation(yes),
        poll: poll_settings(&prepared.target),
        emulator: prepared.target.endpoint_url.is_some(),
        role_arn: None,
        rollback: None,
        interrupt: Default::default(),
        keep_change_sets: false,
        planned: None,
        // The bootstrap stack's deploys are not recorded: its template decides.
        seen: BTreeMap::new(),
    };
    runtime()?.block_on(async {
        let clients = AwsClients::connect(&prepared.target).await;
        let caller = identity::caller_identity(&clients.sts).await?;
        identity::ensure_account(&prepared.env, &caller)?;
        let progress = Arc::new(Progress::new(std::io::stderr().is_terminal()));
        let mut reviewer = ConsoleReviewer {
            out,
            diffs_to_out: format == OutputFormat::Text,
            colour: format == OutputFormat::Text && std::io::stdout().is_terminal(),
        };
        let outcome = engine::run(
            &clients,
            std::slice::from_ref(&spec),
            options,
            progress,
            &mut reviewer,
        )
        .await?;
        let outputs = stacks::describe(&clients.cloudformation, &spec.stack_name)
            .await?
            .map(|stack| stack.outputs)
            .unwrap_or_default();
        tracing::info!("AWS API requests: {}", clients.requests.summary());
        Ok(Ok(BootstrapReport {
            env: prepared.env.name.clone(),
            account: prepared.env.settings.account_id.as_str().to_string(),
            region: prepared.env.settings.region.as_str().to_string(),
            caller: caller.arn,
            stack_name: spec.stack_name.clone(),
            result: outcome.verdict(),
            stacks: outcome.stacks,
            outputs,
        }))
    })
}
