//! `provisioner deploy` (and the shared half of `plan`): render and check the
//! environment's stacks, publish the function zips to the artifact bucket, then hand
//! every stack to the deploy engine and report what happened to each.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{ChangeArgs, DeployArgs, OutputFormat};
use crate::commands::build::{build_for, resolve};
use crate::config::Environment;
use crate::deploy::artifacts::{self, PublishedArtifact, Upload};
use crate::deploy::clients::{AwsClients, Target};
use crate::deploy::engine::{self, Confirmation, EngineOptions, Mode};
use crate::deploy::progress::Progress;
use crate::deploy::report::{ConsoleReviewer, StackOutcome, Verdict};
use crate::deploy::{PollSettings, StackSpec};
use crate::error::Error;
use crate::exit::Exit;
use crate::output::{write_json, write_text};
use crate::package::code_key_parameter;
use crate::package::index::ArtifactIndex;
use crate::package::release::GitVersion;
use crate::project::Project;
use crate::render::{RenderedEnvironment, Renderer};

/// The template parameter naming the artifact bucket.
pub const ARTIFACT_BUCKET_PARAMETER: &str = "ArtifactBucket";

/// An environment loaded, rendered and checked, with where its clients go.
pub struct Prepared {
    pub env: Environment,
    pub rendered: RenderedEnvironment,
    pub target: Target,
    pub bucket: String,
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
    let rendered = renderer.render(&env)?;
    let findings = &rendered.findings;
    let errors: Vec<_> = findings
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
    let settings = &env.settings;
    let bucket = artifacts::bucket_name(
        settings.app.as_str(),
        &env.name,
        settings.account_id.as_str(),
        settings.region.as_str(),
    )?;
    let target = Target {
        region: settings.region.as_str().to_string(),
        endpoint_url: settings
            .endpoint_url
            .as_ref()
            .map(|url| url.as_str().to_string()),
    };
    Ok(Ok(Prepared {
        env,
        rendered,
        target,
        bucket,
    }))
}

/// The environment's function zips from the artifact index, re-hashed.
pub fn uploads(
    renderer: &Renderer,
    env: &Environment,
    dir: &std::path::Path,
) -> Result<Vec<Upload>, Error> {
    let index = ArtifactIndex::load(dir)?;
    let mut uploads = Vec::new();
    for function in renderer.functions() {
        let architecture = env
            .settings
            .functions
            .iter()
            .into_iter()
            .find(|(name, _)| *name == function.name)
            .map(|(_, settings)| settings.architecture.as_str())
            .unwrap_or("x86_64");
        let located = index.locate(dir, &function.name, architecture)?;
        uploads.push(Upload {
            function: function.name.clone(),
            key: located.artifact.key(),
            sha256: located.artifact.sha256.clone(),
            size: located.artifact.size,
            path: located.path,
        });
    }
    Ok(uploads)
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

/// The JSON document of `plan` and `deploy`.
#[derive(Debug, Serialize)]
pub struct ChangeReport {
    pub command: &'static str,
    pub env: String,
    pub release: String,
    pub result: Verdict,
    pub artifact_bucket: String,
    pub bucket_created: bool,
    pub artifacts: Vec<PublishedArtifact>,
    pub stacks: Vec<StackOutcome>,
}

/// Runs plan or deploy for `args.env`; returns the report (or the exit code of a
/// failed render check).
pub fn plan_or_deploy(
    project: &Project,
    args: &ChangeArgs,
    mode: Mode,
    yes: bool,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Result<ChangeReport, Exit>, Error> {
    let renderer = Renderer::load(project)?;
    let prepared = match prepare(project, &renderer, &args.env, out)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(Err(exit)),
    };
    let artifacts_dir = resolve(project, &args.artifacts);
    if args.build {
        build_for(
            project,
            &renderer,
            std::slice::from_ref(&args.env),
            artifacts_dir.clone(),
        )?;
    }
    let uploads = uploads(&renderer, &prepared.env, &artifacts_dir)?;
    let release = GitVersion::read(project.root())?.label();
    let mut values = BTreeMap::from([(
        ARTIFACT_BUCKET_PARAMETER.to_string(),
        prepared.bucket.clone(),
    )]);
    for upload in &uploads {
        values.insert(code_key_parameter(&upload.function), upload.key.clone());
    }
    let specs = stack_specs(&prepared.rendered, &values)?;
    let options = EngineOptions {
        mode,
        release: release.clone(),
        allow_replace: args.allow_replace.iter().cloned().collect::<BTreeSet<_>>(),
        confirmation: confirmation(yes),
        poll: poll_settings(&prepared.target),
        emulator: prepared.target.endpoint_url.is_some(),
    };
    let progress = Arc::new(Progress::new(std::io::stderr().is_terminal()));
    let colour = format == OutputFormat::Text && std::io::stdout().is_terminal();
    let mut reviewer = ConsoleReviewer {
        out,
        diffs_to_out: format == OutputFormat::Text,
        colour,
    };
    let runtime = runtime()?;
    let (published, outcome, requests) = runtime.block_on(async {
        let clients = AwsClients::connect(&prepared.target).await;
        let published = artifacts::publish(
            &clients.s3,
            &prepared.bucket,
            &prepared.target.region,
            &uploads,
        )
        .await?;
        let outcome = engine::run(&clients, &specs, options, progress, &mut reviewer).await?;
        Ok::<_, Error>((published, outcome, clients.requests.summary()))
    })?;
    tracing::info!("AWS API requests: {requests}");
    Ok(Ok(ChangeReport {
        command: match mode {
            Mode::Plan => "plan",
            Mode::Deploy => "deploy",
        },
        env: prepared.env.name.clone(),
        release,
        result: outcome.verdict(),
        artifact_bucket: published.bucket,
        bucket_created: published.bucket_created,
        artifacts: published.artifacts,
        stacks: outcome.stacks,
    }))
}

/// Writes the report as text or JSON.
pub fn write_report(
    report: &ChangeReport,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), Error> {
    match format {
        OutputFormat::Json => write_json(out, report),
        OutputFormat::Text => {
            let uploaded = report.artifacts.iter().filter(|a| a.uploaded).count();
            write_text(
                out,
                &format!(
                    "{} {} (release {}): artifacts in s3://{}{}, {} of {} uploaded",
                    report.command,
                    report.env,
                    report.release,
                    report.artifact_bucket,
                    if report.bucket_created {
                        " (created)"
                    } else {
                        ""
                    },
                    uploaded,
                    report.artifacts.len()
                ),
            )?;
            let outcome = crate::deploy::report::RunOutcome {
                stacks: report.stacks.clone(),
            };
            write_text(out, outcome.to_text().trim_end())
        }
    }
}

pub fn run(
    project: &Project,
    args: &DeployArgs,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Exit, Error> {
    let report = match plan_or_deploy(project, &args.change, Mode::Deploy, args.yes, format, out)? {
        Ok(report) => report,
        Err(exit) => return Ok(exit),
    };
    write_report(&report, format, out)?;
    Ok(match report.result {
        Verdict::Failed => Exit::Failed,
        Verdict::Refused => Exit::Refused,
        Verdict::ChangesPresent | Verdict::Deployed | Verdict::NoChanges => Exit::Success,
    })
}
