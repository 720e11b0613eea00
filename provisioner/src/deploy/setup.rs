//! What every command that talks to an environment's stacks needs first: the
//! environment loaded, rendered and checked, where its clients go, its stacks as the
//! engine takes them, a runtime, polling suited to the target, and who confirms.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::clients::Target;
use super::engine::Confirmation;
use super::{PollSettings, StackSpec};
use crate::config::Environment;
use crate::error::Error;
use crate::exit::Exit;
use crate::output::write_text;
use crate::project::Project;
use crate::render::{RenderedEnvironment, Renderer};

/// The template parameter naming the artifact bucket.
pub const ARTIFACT_BUCKET_PARAMETER: &str = "ArtifactBucket";
/// The compute stack's parameter saying since when traffic is stopped (empty: never);
/// every deploy sets it empty, `decommission` sets it when it stops traffic.
pub const TRAFFIC_STOPPED_PARAMETER: &str = "TrafficStoppedAt";

/// An environment loaded, rendered and checked, with where its clients go.
pub struct Prepared {
    pub env: Environment,
    pub rendered: RenderedEnvironment,
    pub target: Target,
    /// The artifact bucket of the environment's bootstrap stack.
    pub bucket: String,
}

/// Where `env`'s AWS clients go.
pub fn target(env: &Environment) -> Target {
    Target {
        region: env.settings.region.as_str().to_string(),
        endpoint_url: env
            .settings
            .endpoint_url
            .as_ref()
            .map(|url| url.as_str().to_string()),
    }
}

/// Loads and renders `env_name` and runs the render checks. `Err(exit)` when the checks
/// fail (the findings are written to `out`).
pub fn prepare(
    project: &Project,
    renderer: &Renderer,
    env_name: &str,
    out: &mut dyn Write,
) -> Result<Result<Prepared, Exit>, Error> {
    let env = renderer.load_environment(project, env_name)?;
    prepare_loaded(renderer, env, out)
}

/// [`prepare`] for an environment already loaded.
pub fn prepare_loaded(
    renderer: &Renderer,
    env: Environment,
    out: &mut dyn Write,
) -> Result<Result<Prepared, Exit>, Error> {
    let rendered = renderer.render(&env)?;
    let errors: Vec<_> = rendered
        .findings
        .iter()
        .filter(|f| f.severity() == crate::render::checks::Severity::Error)
        .collect();
    if !errors.is_empty() {
        for finding in &errors {
            write_text(out, &finding.to_string())?;
        }
        write_text(
            out,
            &format!(
                "{} error(s) in the rendered templates; nothing was deployed",
                errors.len()
            ),
        )?;
        return Ok(Err(Exit::ValidationFailed));
    }
    let bucket = env.names.bootstrap.artifact_bucket.clone();
    Ok(Ok(Prepared {
        target: target(&env),
        env,
        rendered,
        bucket,
    }))
}

/// Every stack with the parameter values deploy supplies.
pub fn stack_specs(
    rendered: &RenderedEnvironment,
    values: &BTreeMap<String, String>,
) -> Result<Vec<StackSpec>, Error> {
    rendered
        .stacks
        .iter()
        .map(|stack| {
            let mut parameters = BTreeMap::new();
            for name in &stack.parameters {
                let value = values.get(name).ok_or_else(|| Error::Other {
                    message: format!("stack {} declares parameter `{name}`, which deploy has no value for", stack.stack_name),
                    help: format!(
                        "deploy supplies {}; give the parameter a Default or derive it from the environment",
                        values.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                })?;
                parameters.insert(name.clone(), value.clone());
            }
            Ok(StackSpec {
                id: stack.id.clone(),
                stack_name: stack.stack_name.clone(),
                depends_on: stack.depends_on.clone(),
                body: stack.body.clone(),
                template_sha256: stack.sha256.clone(),
                parameters,
                tags: stack.tags.clone(),
            })
        })
        .collect()
}

/// Stacks without parameter values, for reading and deleting.
pub fn stack_specs_without_parameters(rendered: &RenderedEnvironment) -> Vec<StackSpec> {
    rendered
        .stacks
        .iter()
        .map(|stack| StackSpec {
            id: stack.id.clone(),
            stack_name: stack.stack_name.clone(),
            depends_on: stack.depends_on.clone(),
            body: stack.body.clone(),
            template_sha256: stack.sha256.clone(),
            parameters: BTreeMap::new(),
            tags: stack.tags.clone(),
        })
        .collect()
}

/// A runtime for one command; its async work stays inside the command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            action: "start the async runtime for".into(),
            path: "the AWS clients".into(),
            source,
        })
}

/// Polling suited to where the clients go: an emulator answers at once.
pub fn poll_settings(target: &Target) -> PollSettings {
    if target.endpoint_url.is_some() {
        PollSettings {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(500),
            timeout: Duration::from_secs(300),
        }
    } else {
        PollSettings::default()
    }
}

/// `--yes`, a terminal to ask on, or neither.
pub fn confirmation(yes: bool) -> Confirmation {
    if yes {
        Confirmation::Yes
    } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        Confirmation::Prompt
    } else {
        Confirmation::Unavailable
    }
}
