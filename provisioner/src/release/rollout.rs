//! Deploying one release to one environment, the path `deploy`, `promote` and `up`
//! share: the caller's account checked, the environment's lock taken (waiting up to a
//! timeout, heartbeat while held), the release published (from the checkout) or fetched
//! (by id) and checked, older releases refused, every stack handed to the deploy engine
//! with the bootstrap stack's execution role, and the attempt recorded in the history.
//! `plan` takes the same path without the lock and without writing anything.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::bundle::{self, BundleManifest};
use super::deployments::{Deployments, EnvState, HistoryEntry, LockHolder, LockRefused};
use super::id::ReleaseId;
use super::identity::{self, CallerIdentity};
use super::store::{self, Fetched, Published};
use super::ReleaseError;
use crate::cli::OutputFormat;
use crate::config::Environment;
use crate::deploy::clients::AwsClients;
use crate::deploy::engine::{self, Comparison, EngineOptions, Mode, RollbackTrigger};
use crate::deploy::interrupt::{Interrupt, Level};
use crate::deploy::planfile::PlanFile;
use crate::deploy::progress::Progress;
use crate::deploy::report::{ConsoleReviewer, RunOutcome, StackOutcome, StackResult, Verdict};
use crate::deploy::setup::{
    confirmation, poll_settings, prepare_loaded, runtime, stack_specs, target,
    ARTIFACT_BUCKET_PARAMETER, TRAFFIC_STOPPED_PARAMETER,
};
use crate::deploy::stacks;
use crate::error::{Error, ErrorBody, Refusal};
use crate::exit::Exit;
use crate::package::code_key_parameter;
use crate::project::Project;
use crate::render::Renderer;

/// How long a lock lasts without a heartbeat.
pub const LOCK_LEASE: Duration = Duration::from_secs(60);
/// How often the holder extends its lease.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(20);
/// Releases of an environment's history its state remembers.
const KEEP_RECENT: usize = crate::render::bootstrap::KEEP_RELEASES as usize;

/// Which release to deploy.
#[derive(Debug, Clone)]
pub enum Source {
    /// The checkout: assembled from it (and, for a deploy, published first).
    Checkout {
        artifacts_dir: PathBuf,
        allow_dirty: bool,
    },
    /// A published release, taken whole from the bucket.
    Published(ReleaseId),
}

/// What kind of deploy this is, as the history records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Deploy,
    /// The release another environment runs, unchanged.
    Promote {
        from: String,
    },
    /// An earlier release, on purpose: older releases are allowed.
    Rollback,
}

impl Kind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Deploy => "deploy",
            Self::Promote { .. } => "promote",
            Self::Rollback => "rollback",
        }
    }
}

/// One rollout.
#[derive(Debug, Clone)]
pub struct Request {
    pub env: String,
    pub source: Source,
    pub kind: Kind,
    pub mode: Mode,
    pub allow_replace: BTreeSet<String>,
    pub yes: bool,
    pub allow_downgrade: bool,
    /// How long to wait for another deploy's lock (zero: fail at once).
    pub lock_timeout: Duration,
    /// Plan: keep the change sets for a plan file.
    pub keep_change_sets: bool,
    /// Deploy: execute this plan's change sets and nothing else.
    pub planned: Option<Arc<PlanFile>>,
}

/// One function zip as deployed.
#[derive(Debug, Clone, Serialize)]
pub struct DeployedZip {
    pub function: String,
    pub architecture: String,
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

/// A stack as a plan saw it: status, last update, newest event id.
pub type PlannedAgainst = (Option<String>, Option<String>, Option<String>);

/// The JSON document of `plan`, `deploy` and `promote`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub command: &'static str,
    pub env: String,
    pub release: String,
    pub result: Verdict,
    pub caller: String,
    pub artifact_bucket: String,
    /// What publishing did, for a deploy of the checkout.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<Published>,
    /// The release the environment ran before.
    pub previous_release: Option<String>,
    pub artifacts: Vec<DeployedZip>,
    pub stacks: Vec<StackOutcome>,
    /// The history entry of this attempt (deploys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_id: Option<String>,
    /// AWS API requests the command made (every attempt counted).
    pub aws_requests: usize,
    /// Plans only: each existing stack's status and last update when planned.
    #[serde(skip)]
    pub planned_against: BTreeMap<String, PlannedAgainst>,
}

impl Report {
    /// The failure this report ends with under `exit`, as `--output json` adds it
    /// (`error`: kind, message, fix, exit code); `None` when `exit` is not a failure.
    pub fn failure(&self, exit: Exit) -> Option<ErrorBody> {
        if matches!(exit, Exit::Success | Exit::ChangesPresent) {
            return None;
        }
        let message = self
            .stacks
            .iter()
            .filter(|s| !s.result.is_ok() && s.result != StackResult::Planned)
            .map(|s| format!("{}: {}", s.stack_name, s.summary()))
            .collect::<Vec<_>>()
            .join("; ");
        Some(ErrorBody {
            kind: self.result.as_str(),
            message: format!("{} {}: {}", self.command, self.env, message),
            fix: self.result.fix().map(str::to_string),
            exit_code: exit as u8,
        })
    }

    /// Stack names whose resources changed.
    pub fn stacks_changed(&self) -> Vec<String> {
        self.stacks
            .iter()
            .filter(|s| s.result == StackResult::Deployed)
            .map(|s| s.stack_name.clone())
            .collect()
    }

    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{} {} (release {}, as {}): artifacts in s3://{}",
            self.command, self.env, self.release, self.caller, self.artifact_bucket
        );
        if let Some(published) = &self.published {
            text.push_str(&if published.created {
                format!("; published ({} zip(s) uploaded)", published.uploaded.len())
            } else {
                "; already published".to_string()
            });
        }
        text.push('\n');
        let outcome = RunOutcome {
            stacks: self.stacks.clone(),
            interrupted: false,
        };
        text.push_str(&outcome.to_text());
        text.trim_end().to_string()
    }
}

/// Poll settings whose timeout also covers the rollback monitoring time, during which
/// CloudFormation keeps each updated stack in UPDATE_IN_PROGRESS.
fn monitored_poll(
    mut poll: crate::deploy::PollSettings,
    monitoring_minutes: u32,
) -> crate::deploy::PollSettings {
    poll.timeout = poll.timeout.max(Duration::from_secs(
        u64::from(monitoring_minutes) * 60 + 30 * 60,
    ));
    poll
}

/// The exit code of a deploy's verdict.
pub fn deploy_exit(verdict: Verdict) -> Exit {
    verdict.exit(false)
}

/// The history's word for how an attempt ended.
fn history_result(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::ChangesPresent => "not-confirmed",
        other => other.as_str(),
    }
}

/// Loads `name` from the checkout: where the environment is (account, region,
/// endpoint), whichever release is deployed to it.
pub fn locate(project: &Project, name: &str) -> Result<(Renderer, Environment), Error> {
    let renderer = Renderer::load(project)?;
    let env = renderer.load_environment(project, name)?;
    Ok((renderer, env))
}

/// Runs `request`. `Err(exit)` when the rendered templates fail their checks.
pub fn run(
    project: &Project,
    request: &Request,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Result<Report, Exit>, Error> {
    let (renderer, checkout_env) = locate(project, &request.env)?;
    runtime()?.block_on(async {
        let clients = AwsClients::connect(&target(&checkout_env)).await;
        let result = run_with(
            project,
            &renderer,
            &checkout_env,
            &clients,
            request,
            format,
            out,
        )
        .await;
        tracing::info!("AWS API requests: {}", clients.requests.summary());
        result.map(|outcome| {
            outcome.map(|mut report| {
                report.aws_requests = clients.requests.total();
                report
            })
        })
    })
}

/// [`run`] with clients the caller made (`promote` also reads the source environment).
pub async fn run_with(
    project: &Project,
    renderer: &Renderer,
    checkout_env: &Environment,
    clients: &AwsClients,
    request: &Request,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Result<Report, Exit>, Error> {
    let assembled = match &request.source {
        Source::Checkout {
            artifacts_dir,
            allow_dirty,
        } => Some(assemble_checked(
            project,
            checkout_env,
            artifacts_dir,
            *allow_dirty,
        )?),
        Source::Published(_) => None,
    };
    let identity = identity::caller_identity(&clients.sts).await?;
    identity::ensure_account(checkout_env, &identity)?;
    let bucket = checkout_env.names.bootstrap.artifact_bucket.clone();
    let id = match (&request.source, &assembled) {
        (_, Some(bundle)) => bundle.manifest.id.clone(),
        (Source::Published(id), None) => id.clone(),
        (Source::Checkout { .. }, None) => unreachable_checkout()?,
    };
    if request.mode == Mode::Plan {
        return plan(
            project,
            renderer,
            checkout_env,
            clients,
            request,
            &identity,
            &id,
            assembled,
            format,
            out,
        )
        .await;
    }

    // From here on Ctrl-C is handled: nothing new starts, the lock is released.
    Interrupt::process();
    let deployments = Deployments::new(
        clients.dynamodb.clone(),
        &checkout_env.names.bootstrap.deployments_table,
    );
    let holder = LockHolder::this_process(
        &identity.arn,
        request.kind.as_str(),
        id.as_str(),
        LOCK_LEASE,
    );
    let mut entry = HistoryEntry::start(
        &request.env,
        request.kind.as_str(),
        Some(id.as_str()),
        &identity.arn,
    );
    if let Kind::Promote { from } = &request.kind {
        entry.source_env = Some(from.clone());
    }
    acquire(
        &deployments,
        checkout_env,
        &holder,
        &mut entry,
        request.lock_timeout,
    )
    .await?;
    let heartbeat = spawn_heartbeat(
        deployments.clone(),
        request.env.clone(),
        holder.owner_id.clone(),
    );

    let state = match deployments.state_and_decommission(&request.env).await {
        Ok((state, decommission)) => {
            refuse_while_decommissioning(&request.env, decommission).map(|()| state)
        }
        Err(error) => Err(error),
    };
    let state = match state {
        Ok(state) => state.unwrap_or_default(),
        Err(error) => {
            heartbeat.abort();
            end(
                &deployments,
                &request.env,
                &holder,
                entry,
                "failed",
                &error.to_string(),
                None,
            )
            .await?;
            return Err(error);
        }
    };
    let outcome = deploy_locked(
        project,
        checkout_env,
        clients,
        request,
        &identity,
        &id,
        assembled,
        &bucket,
        &state,
        format,
        out,
    )
    .await;
    heartbeat.abort();
    // Wait until the heartbeat task is gone, so no lease update races the release.
    let _ = heartbeat.await;
    match outcome {
        Ok(Ok(mut report)) => {
            let result = history_result(report.result);
            entry.stacks_changed = report.stacks_changed();
            entry.result = result.to_string();
            entry.ended_at = Some(super::deployments::now());
            let mut next = state.after(
                id.as_str(),
                result,
                entry.ended_at.as_deref().unwrap_or_default(),
                KEEP_RECENT,
            );
            next.remember_stacks(&report.stacks);
            report.history_id = Some(entry.id.clone());
            deployments
                .finish(&request.env, &holder.owner_id, &entry, Some(&next))
                .await?;
            Ok(Ok(report))
        }
        Ok(Err(exit)) => {
            end(
                &deployments,
                &request.env,
                &holder,
                entry,
                "failed",
                "the rendered templates failed their checks",
                None,
            )
            .await?;
            Ok(Err(exit))
        }
        Err(error) => {
            let result = match &error {
                Error::Refused {
                    refusal: Refusal::OlderRelease,
                    ..
                } => "older-release",
                _ => "failed",
            };
            let next = (result == "failed")
                .then(|| state.after(id.as_str(), result, &super::deployments::now(), KEEP_RECENT));
            end(
                &deployments,
                &request.env,
                &holder,
                entry,
                result,
                &crate::error::report(&error),
                next.as_ref(),
            )
            .await?;
            Err(error)
        }
    }
}

/// The checkout's bundle, refused when the tree is dirty and `env` is a real one.
pub fn assemble_checked(
    project: &Project,
    env: &Environment,
    artifacts_dir: &std::path::Path,
    allow_dirty: bool,
) -> Result<bundle::Bundle, Error> {
    let bundle = bundle::assemble(project, artifacts_dir)?;
    let emulated = env.settings.endpoint_url.is_some();
    if bundle.manifest.git.dirty && !emulated && !allow_dirty {
        return Err(ReleaseError::Dirty {
            env: env.name.clone(),
        }
        .into());
    }
    Ok(bundle)
}

/// `release publish`: the checkout published to `env`'s artifact bucket.
pub fn publish_checkout(
    project: &Project,
    env_name: &str,
    artifacts_dir: &std::path::Path,
    allow_dirty: bool,
) -> Result<(Published, BundleManifest), Error> {
    let (_, env) = locate(project, env_name)?;
    let bundle = assemble_checked(project, &env, artifacts_dir, allow_dirty)?;
    runtime()?.block_on(async {
        let clients = AwsClients::connect(&target(&env)).await;
        let caller = identity::caller_identity(&clients.sts).await?;
        identity::ensure_account(&env, &caller)?;
        let bucket = &env.names.bootstrap.artifact_bucket;
        ensure_bucket(&clients, &env).await?;
        let published = store::publish(&clients.s3, bucket, &bundle).await?;
        store::cache_bundle(project.root(), bucket, &bundle)?;
        Ok((published, bundle.manifest))
    })
}

/// Refuses, naming `provisioner bootstrap`, when `env`'s artifact bucket is missing.
pub async fn ensure_bucket(clients: &AwsClients, env: &Environment) -> Result<(), Error> {
    let bucket = &env.names.bootstrap.artifact_bucket;
    match clients.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(error)
            if error
                .raw_response()
                .is_some_and(|r| r.status().as_u16() == 404) =>
        {
            Err(not_bootstrapped(env))
        }
        Err(error) => {
            Err(crate::deploy::DeployError::aws(format!("HeadBucket s3://{bucket}"), &error).into())
        }
    }
}

fn unreachable_checkout() -> Result<ReleaseId, Error> {
    Err(Error::Other {
        message: "the checkout's release could not be assembled".into(),
        help: String::new(),
    })
}

async fn end(
    deployments: &Deployments,
    env: &str,
    holder: &LockHolder,
    mut entry: HistoryEntry,
    result: &str,
    message: &str,
    state: Option<&EnvState>,
) -> Result<(), Error> {
    entry.result = result.to_string();
    entry.ended_at = Some(super::deployments::now());
    entry.message = Some(message.to_string());
    deployments
        .finish(env, &holder.owner_id, &entry, state)
        .await?;
    Ok(())
}

/// Takes the lock, waiting up to `timeout` for another deploy to finish.
pub async fn acquire(
    deployments: &Deployments,
    env: &Environment,
    holder: &LockHolder,
    entry: &mut HistoryEntry,
    timeout: Duration,
) -> Result<(), Error> {
    let started = Instant::now();
    let mut told = false;
    loop {
        let current = match deployments.acquire(&env.name, holder, entry).await? {
            Ok(()) => return Ok(()),
            Err(LockRefused::NoTable) => return Err(not_bootstrapped(env)),
            Err(LockRefused::JustReleased) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(LockRefused::Held(current)) => current,
        };
        let stale = current.lease_expired() || current.process_gone();
        if stale {
            let error = stale_lock(env, &current);
            record_refusal(deployments, entry, "locked", &error).await;
            return Err(error);
        }
        let waited = started.elapsed();
        if waited >= timeout {
            let error = Error::Refused {
                refusal: Refusal::Locked,
                message: format!(
                    "environment `{}` is being deployed by {}{}",
                    env.name,
                    current.describe(),
                    if timeout.is_zero() {
                        String::new()
                    } else {
                        format!("; gave up after waiting {} s", timeout.as_secs())
                    }
                ),
                help: "wait for that deploy to finish (or pass --lock-timeout <duration> to wait \
                       for it), then run the command again"
                    .into(),
            };
            record_refusal(deployments, entry, "locked", &error).await;
            return Err(error);
        }
        if !told {
            eprintln!(
                "waiting for the lock of `{}`, held by {} (up to {} s)",
                env.name,
                current.describe(),
                timeout.as_secs()
            );
            told = true;
        }
        let left = timeout.saturating_sub(waited);
        let interrupt = Interrupt::process();
        tokio::select! {
            _ = tokio::time::sleep(left.min(Duration::from_millis(500))) => {}
            _ = interrupt.reached(Level::Stopping) => {
                let error = Error::Refused {
                    refusal: Refusal::Interrupted,
                    message: format!(
                        "interrupted while waiting for the lock of `{}`; nothing was deployed",
                        env.name
                    ),
                    help: "run the command again when ready".into(),
                };
                record_refusal(deployments, entry, "interrupted", &error).await;
                return Err(error);
            }
        }
        // A fresh entry id: the refused write never happened, but keep ids unique.
        *entry = HistoryEntry {
            id: HistoryEntry::start(&entry.env, &entry.kind, None, &entry.caller).id,
            ..entry.clone()
        };
    }
}

fn stale_lock(env: &Environment, holder: &LockHolder) -> Error {
    let why = if holder.process_gone() {
        format!(
            "its process ({} on this machine) no longer exists",
            holder.pid
        )
    } else {
        format!(
            "its lease expired at {} without a heartbeat, so the process that took it is gone",
            holder.lease_expires_at
        )
    };
    Error::Refused {
        refusal: Refusal::Locked,
        message: format!(
            "environment `{}` has a stale deploy lock, held by {}: {why}",
            env.name,
            holder.describe()
        ),
        help: format!(
            "check that no deploy of `{0}` is running (its stacks in `provisioner status --env {0}`), \
             then break the lock: provisioner unlock --env {0} --reason \"<why>\"",
            env.name
        ),
    }
}

async fn record_refusal(
    deployments: &Deployments,
    entry: &HistoryEntry,
    result: &str,
    error: &Error,
) {
    let mut refused = entry.clone();
    refused.result = result.to_string();
    refused.ended_at = Some(super::deployments::now());
    refused.message = Some(error.to_string());
    if let Err(record_error) = deployments.record(&refused).await {
        tracing::warn!("could not record the refused attempt in the history: {record_error}");
    }
}

pub fn not_bootstrapped(env: &Environment) -> Error {
    ReleaseError::NotBootstrapped {
        env: env.name.clone(),
        account: env.settings.account_id.as_str().to_string(),
        region: env.settings.region.as_str().to_string(),
        stack: env.names.bootstrap.stack.clone(),
    }
    .into()
}

pub fn spawn_heartbeat(
    deployments: Deployments,
    env: String,
    owner_id: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(HEARTBEAT_EVERY).await;
            match deployments.heartbeat(&env, &owner_id, LOCK_LEASE).await {
                Ok(true) => {}
                Ok(false) => {
                    eprintln!(
                        "warning: the deploy lock of `{env}` was broken while this deploy runs"
                    );
                    return;
                }
                Err(error) => tracing::warn!("lock heartbeat failed: {error}"),
            }
        }
    })
}

/// Refuses any deploy to an environment whose decommission has begun: its traffic is
/// stopped on purpose, and a deploy would start it again.
fn refuse_while_decommissioning(
    env: &str,
    decommission: Option<crate::release::deployments::DecommissionState>,
) -> Result<(), Error> {
    let Some(state) = decommission else {
        return Ok(());
    };
    Err(Error::Refused {
        refusal: Refusal::Decommissioning,
        message: format!(
            "`{env}` is being decommissioned (since {}, by {}{}); nothing is deployed to it",
            state.started_at.as_deref().unwrap_or("?"),
            state.started_by.as_deref().unwrap_or("?"),
            state
                .traffic_stopped_at
                .as_deref()
                .map(|t| format!("; traffic stopped at {t}"))
                .unwrap_or_default()
        ),
        help: format!(
            "see `provisioner decommission --env {env} --dry-run` and `provisioner history --env {env}`"
        ),
    })
}

/// Refuses a release older than the one the environment runs, unless allowed.
fn check_order(request: &Request, id: &ReleaseId, state: &EnvState) -> Result<(), Error> {
    if request.allow_downgrade || request.kind == Kind::Rollback {
        return Ok(());
    }
    let Some(running) = state
        .release
        .as_deref()
        .and_then(|r| ReleaseId::parse(r).ok())
    else {
        return Ok(());
    };
    if !id.is_older_than(&running) {
        return Ok(());
    }
    Err(Error::Refused {
        refusal: Refusal::OlderRelease,
        message: format!(
            "release {id} is older than {running}, which `{}` runs since {}",
            request.env,
            state.since.as_deref().unwrap_or("an unknown time")
        ),
        help: format!(
            "a late pipeline of an older commit must not revert a newer release; to go back \
             on purpose use `provisioner rollback --env {0} --to {id}`, or pass --allow-downgrade",
            request.env
        ),
    })
}

/// The release's bundle on this machine, and the environment as the release defines it.
async fn release_environment(
    project: &Project,
    clients: &AwsClients,
    checkout_env: &Environment,
    id: &ReleaseId,
    bucket: &str,
    assembled: Option<&bundle::Bundle>,
) -> Result<(Fetched, Renderer, Environment), Error> {
    let fetched = match assembled {
        Some(bundle) => store::cache_bundle(project.root(), bucket, bundle)?,
        None => store::fetch(&clients.s3, project.root(), bucket, id, &checkout_env.name).await?,
    };
    let release_project = Project::at(&fetched.dir);
    if !fetched
        .manifest
        .environments
        .contains_key(&checkout_env.name)
    {
        return Err(ReleaseError::EnvironmentMissing {
            id: id.clone(),
            env: checkout_env.name.clone(),
            available: fetched.manifest.environments.keys().cloned().collect(),
        }
        .into());
    }
    let renderer = Renderer::load(&release_project)?;
    let env = renderer.load_environment(&release_project, &checkout_env.name)?;
    let where_ = |e: &Environment| {
        format!(
            "account {} in {} (app {})",
            e.settings.account_id.as_str(),
            e.settings.region.as_str(),
            e.settings.app.as_str()
        )
    };
    if where_(&env) != where_(checkout_env) {
        return Err(ReleaseError::TargetMismatch {
            id: id.clone(),
            env: env.name.clone(),
            ours: where_(checkout_env),
            theirs: where_(&env),
        }
        .into());
    }
    Ok((fetched, renderer, env))
}

/// Checks that this provisioner renders the release as the one that published it.
fn check_rendering(
    manifest: &BundleManifest,
    env: &str,
    rendered: &crate::render::RenderedEnvironment,
) -> Result<(), Error> {
    let Some(published) = manifest.environments.get(env) else {
        return Ok(());
    };
    let differing: Vec<String> = rendered
        .stacks
        .iter()
        .filter(|stack| {
            published
                .stacks
                .iter()
                .find(|p| p.id == stack.id)
                .is_none_or(|p| p.template_sha256 != stack.sha256)
        })
        .map(|stack| stack.stack_name.clone())
        .chain(
            published
                .stacks
                .iter()
                .filter(|p| !rendered.stacks.iter().any(|s| s.id == p.id))
                .map(|p| format!("{} (no longer rendered)", p.stack_name)),
        )
        .collect();
    if differing.is_empty() {
        return Ok(());
    }
    Err(ReleaseError::RendersDifferently {
        id: manifest.id.clone(),
        env: env.to_string(),
        stacks: differing,
        ours: env!("CARGO_PKG_VERSION").to_string(),
        theirs: manifest.provisioner_version.clone(),
    }
    .into())
}

/// The zips of the release that `env` runs, by function.
fn zips_for(
    manifest: &BundleManifest,
    renderer: &Renderer,
    env: &Environment,
) -> Result<Vec<DeployedZip>, Error> {
    renderer
        .functions()
        .iter()
        .map(|function| {
            let architecture = env
                .settings
                .functions
                .iter()
                .iter()
                .find(|(name, _)| *name == function.name)
                .map(|(_, settings)| settings.architecture.as_str())
                .unwrap_or("x86_64");
            let zip = manifest
                .function(&function.name, architecture)
                .ok_or_else(|| {
                    Error::from(ReleaseError::Bundle {
                        reason: format!(
                        "release {} has no {architecture} build of function {}, which `{}` needs",
                        manifest.id, function.name, env.name
                    ),
                    })
                })?;
            Ok(DeployedZip {
                function: zip.name.clone(),
                architecture: zip.architecture.clone(),
                key: zip.key.clone(),
                sha256: zip.sha256.clone(),
                size: zip.size,
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn deploy_locked(
    project: &Project,
    checkout_env: &Environment,
    clients: &AwsClients,
    request: &Request,
    identity: &CallerIdentity,
    id: &ReleaseId,
    assembled: Option<bundle::Bundle>,
    bucket: &str,
    state: &EnvState,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Result<Report, Exit>, Error> {
    let published = match &assembled {
        Some(bundle) => Some(store::publish(&clients.s3, bucket, bundle).await?),
        None => None,
    };
    let (fetched, renderer, env) = release_environment(
        project,
        clients,
        checkout_env,
        id,
        bucket,
        assembled.as_ref(),
    )
    .await?;
    check_order(request, id, state)?;
    let prepared = match prepare_loaded(&renderer, env, out)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(Err(exit)),
    };
    check_rendering(&fetched.manifest, &prepared.env.name, &prepared.rendered)?;
    let zips = zips_for(&fetched.manifest, &renderer, &prepared.env)?;
    let (specs, deployed) =
        specs_and_deployed(clients, checkout_env, &prepared, &zips, bucket).await?;
    let changes_ahead = specs.iter().any(|spec| {
        deployed
            .get(&spec.stack_name)
            .is_none_or(|stack| engine::compare(spec, stack) != Comparison::Same)
    });
    if changes_ahead {
        let used: Vec<_> = zips
            .iter()
            .filter_map(|z| fetched.manifest.function(&z.function, &z.architecture))
            .collect();
        store::verify_zips(&clients.s3, bucket, id, &used).await?;
        // A release being deployed is kept, whatever an earlier prune decided.
        store::keep(&clients.s3, bucket, &fetched.manifest).await?;
    }
    let options = EngineOptions {
        mode: Mode::Deploy,
        release: id.to_string(),
        allow_replace: request.allow_replace.clone(),
        confirmation: confirmation(request.yes),
        poll: monitored_poll(
            poll_settings(&prepared.target),
            prepared.env.settings.alarms.rollback_monitoring_minutes,
        ),
        emulator: prepared.target.endpoint_url.is_some(),
        role_arn: Some(checkout_env.names.bootstrap.execution_role_arn.clone()),
        rollback: Some(RollbackTrigger {
            alarm_name: (request.kind != Kind::Rollback)
                .then(|| prepared.env.names.deploy_health_alarm.clone()),
            monitoring_minutes: prepared.env.settings.alarms.rollback_monitoring_minutes,
        }),
        interrupt: Interrupt::process(),
        keep_change_sets: false,
        planned: match &request.planned {
            Some(plan) => {
                let events = stacks::newest_event_ids(&clients.cloudformation, &deployed).await?;
                plan.check(&request.env, &deployed, &events)?;
                Some(Arc::new(plan.change_sets()))
            }
            None => None,
        },
        seen: state.stacks_seen.clone(),
    };
    let outcome = run_engine(clients, &specs, deployed, options, format, out).await?;
    Ok(Ok(Report {
        command: request.kind.as_str(),
        env: prepared.env.name.clone(),
        release: id.to_string(),
        result: outcome.verdict(),
        caller: identity.arn.clone(),
        artifact_bucket: bucket.to_string(),
        published,
        previous_release: state.release.clone(),
        artifacts: zips,
        stacks: outcome.stacks,
        history_id: None,
        aws_requests: 0,
        planned_against: BTreeMap::new(),
    }))
}

/// The stacks as the engine takes them (bucket and zip keys as parameters), and what is
/// deployed of them, read with the one DescribeStacks that also proves the account and
/// region are bootstrapped.
async fn specs_and_deployed(
    clients: &AwsClients,
    checkout_env: &Environment,
    prepared: &crate::deploy::setup::Prepared,
    zips: &[DeployedZip],
    bucket: &str,
) -> Result<
    (
        Vec<crate::deploy::StackSpec>,
        BTreeMap<String, stacks::DeployedStack>,
    ),
    Error,
> {
    let mut values = BTreeMap::from([
        (ARTIFACT_BUCKET_PARAMETER.to_string(), bucket.to_string()),
        (TRAFFIC_STOPPED_PARAMETER.to_string(), String::new()),
    ]);
    for zip in zips {
        values.insert(code_key_parameter(&zip.function), zip.key.clone());
    }
    let specs = stack_specs(&prepared.rendered, &values)?;
    let bootstrap_stack = checkout_env.names.bootstrap.stack.clone();
    let mut names: Vec<String> = specs.iter().map(|s| s.stack_name.clone()).collect();
    names.push(bootstrap_stack.clone());
    let mut deployed = stacks::describe_many(&clients.cloudformation, &names).await?;
    if deployed.remove(&bootstrap_stack).is_none() {
        return Err(not_bootstrapped(checkout_env));
    }
    Ok((specs, deployed))
}

async fn run_engine(
    clients: &AwsClients,
    specs: &[crate::deploy::StackSpec],
    deployed: BTreeMap<String, stacks::DeployedStack>,
    options: EngineOptions,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<RunOutcome, Error> {
    let progress = Arc::new(Progress::new(std::io::stderr().is_terminal()));
    let mut reviewer = ConsoleReviewer {
        out,
        diffs_to_out: format == OutputFormat::Text,
        colour: format == OutputFormat::Text && std::io::stdout().is_terminal(),
    };
    Ok(engine::run_on(clients, specs, deployed, options, progress, &mut reviewer).await?)
}

/// `plan`: the release rendered (from the checkout, or the published bundle), change
/// sets computed and deleted; nothing uploaded, no lock, no history.
#[allow(clippy::too_many_arguments)]
async fn plan(
    project: &Project,
    renderer: &Renderer,
    checkout_env: &Environment,
    clients: &AwsClients,
    request: &Request,
    identity: &CallerIdentity,
    id: &ReleaseId,
    assembled: Option<bundle::Bundle>,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Result<Report, Exit>, Error> {
    let bucket = checkout_env.names.bootstrap.artifact_bucket.clone();
    let release_renderer;
    let (manifest, renderer, env) = match &assembled {
        Some(bundle) => (bundle.manifest.clone(), renderer, checkout_env.clone()),
        None => {
            let (fetched, loaded, env) =
                release_environment(project, clients, checkout_env, id, &bucket, None).await?;
            release_renderer = loaded;
            (fetched.manifest, &release_renderer, env)
        }
    };
    let prepared = match prepare_loaded(renderer, env, out)? {
        Ok(prepared) => prepared,
        Err(exit) => return Ok(Err(exit)),
    };
    if assembled.is_none() {
        check_rendering(&manifest, &prepared.env.name, &prepared.rendered)?;
    }
    let zips = zips_for(&manifest, renderer, &prepared.env)?;
    let (specs, deployed) =
        specs_and_deployed(clients, checkout_env, &prepared, &zips, &bucket).await?;
    let deployments = Deployments::new(
        clients.dynamodb.clone(),
        &checkout_env.names.bootstrap.deployments_table,
    );
    let state = deployments
        .state_if_bootstrapped(&request.env)
        .await?
        .unwrap_or_default();
    let previous = state.release.clone();
    let options = EngineOptions {
        mode: Mode::Plan,
        release: id.to_string(),
        allow_replace: request.allow_replace.clone(),
        confirmation: confirmation(false),
        poll: poll_settings(&prepared.target),
        emulator: prepared.target.endpoint_url.is_some(),
        role_arn: Some(checkout_env.names.bootstrap.execution_role_arn.clone()),
        // A kept change set is executed later by `deploy --plan`: it carries the
        // trigger as any deploy's does.
        rollback: request.keep_change_sets.then(|| RollbackTrigger {
            alarm_name: Some(prepared.env.names.deploy_health_alarm.clone()),
            monitoring_minutes: prepared.env.settings.alarms.rollback_monitoring_minutes,
        }),
        interrupt: Interrupt::default(),
        keep_change_sets: request.keep_change_sets,
        planned: None,
        seen: state.stacks_seen,
    };
    let mut events = if request.keep_change_sets {
        stacks::newest_event_ids(&clients.cloudformation, &deployed).await?
    } else {
        BTreeMap::new()
    };
    let planned_against = deployed
        .iter()
        .map(|(name, stack)| {
            (
                name.clone(),
                (
                    Some(stack.status.clone()),
                    stack.last_updated.clone(),
                    events.remove(name).flatten(),
                ),
            )
        })
        .collect();
    let outcome = run_engine(clients, &specs, deployed, options, format, out).await?;
    Ok(Ok(Report {
        command: "plan",
        env: prepared.env.name.clone(),
        release: id.to_string(),
        result: outcome.verdict(),
        caller: identity.arn.clone(),
        artifact_bucket: bucket,
        published: None,
        previous_release: previous,
        artifacts: zips,
        stacks: outcome.stacks,
        history_id: None,
        aws_requests: 0,
        planned_against,
    }))
}

/// `release list`: the releases published to `env_name`'s artifact bucket.
pub fn list_releases(project: &Project, env_name: &str) -> Result<Vec<ReleaseId>, Error> {
    let (_, env) = locate(project, env_name)?;
    runtime()?.block_on(async {
        let clients = AwsClients::connect(&target(&env)).await;
        identity::caller_identity(&clients.sts).await?;
        ensure_bucket(&clients, &env).await?;
        store::list(&clients.s3, &env.names.bootstrap.artifact_bucket).await
    })
}

/// `release show`: one published release's manifest.
pub fn show_release(
    project: &Project,
    env_name: &str,
    id: &ReleaseId,
) -> Result<BundleManifest, Error> {
    let (_, env) = locate(project, env_name)?;
    runtime()?.block_on(async {
        let clients = AwsClients::connect(&target(&env)).await;
        identity::caller_identity(&clients.sts).await?;
        ensure_bucket(&clients, &env).await?;
        let bucket = &env.names.bootstrap.artifact_bucket;
        store::read_manifest(&clients.s3, bucket, id)
            .await?
            .ok_or_else(|| {
                ReleaseError::NotFound {
                    id: id.clone(),
                    bucket: bucket.clone(),
                    env: env.name.clone(),
                }
                .into()
            })
    })
}
