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

/// The bootstrap stack holds the deploy role of the environment it is deployed for
/// only: refuses when another environment of the same account and region has a deploy
/// role (`ci.deploy_from`) that this deploy would remove, or would lose its own.
pub fn shares_no_deploy_role(
    project: &Project,
    renderer: &Renderer,
    env: &crate::config::Environment,
) -> Result<(), Error> {
    let has_role = |e: &crate::config::Environment| {
        e.settings
            .ci
            .as_ref()
            .is_some_and(|ci| ci.deploy_from.is_some())
    };
    let mut sharing = Vec::new();
    for name in crate::config::list(project)? {
        if name == env.name {
            continue;
        }
        // An environment that does not load cannot be bootstrapped either.
        let Ok(other) = renderer.load_environment(project, &name) else {
            continue;
        };
        let same_place = other.settings.account_id == env.settings.account_id
            && other.settings.region == env.settings.region;
        if same_place && (has_role(&other) || has_role(env)) {
            sharing.push(name);
        }
    }
    if sharing.is_empty() {
        return Ok(());
    }
    Err(Error::Other {
        message: format!(
            "environment `{}` shares account {} and region {} with {}, and the bootstrap \
             stack there holds the CI deploy role of one environment only: bootstrapping \
             `{}` would remove or replace the other's role",
            env.name,
            env.settings.account_id,
            env.settings.region,
            sharing
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
            env.name
        ),
        help: "give each environment with `ci.deploy_from` its own account or region, or \
               remove `ci.deploy_from` from all but one of them"
            .to_string(),
    })
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
    shares_no_deploy_role(project, &renderer, &prepared.env)?;
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
