//! Promotion: the release one environment runs (or a named one that ran there) deployed
//! to another environment unchanged, never rebuilt. The source must be healthy first:
//! every stack settled and not rolled back, the release's last deploy there successful,
//! run there for at least the soak time, and none of its alarms firing. Across accounts
//! (or regions) the release is copied into the target's artifact bucket, every digest
//! checked on the way and again after the copy.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::cli::OutputFormat;
use crate::config::Environment;
use crate::deploy::clients::AwsClients;
use crate::deploy::engine::Mode;
use crate::deploy::setup::{runtime, target};
use crate::deploy::stacks;
use crate::error::{Error, Refusal};
use crate::exit::Exit;
use crate::project::Project;
use crate::release::deployments::{or_not_bootstrapped, parse_time, Deployments, EnvState};
use crate::release::rollout::{self, Kind, Report, Request, Source};
use crate::release::store::{self, Copied};
use crate::release::{identity, ReleaseError, ReleaseId};
use crate::render::Renderer;

/// What to promote, from where, to where.
#[derive(Debug, Clone)]
pub struct PromoteRequest {
    pub from: String,
    pub to: String,
    pub release: Option<ReleaseId>,
    pub soak: Duration,
    /// A profile of the shared AWS files for reading the source (another account).
    pub from_profile: Option<String>,
    /// Probe the source before promoting.
    pub probe: bool,
    pub probe_timeout: Duration,
    pub allow_replace: Vec<String>,
    pub yes: bool,
    pub lock_timeout: Duration,
}

/// One health condition of the source.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheck {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// A function's zip in the source and in the target, side by side.
#[derive(Debug, Clone, Serialize)]
pub struct DigestPair {
    pub function: String,
    pub architecture: String,
    pub source_sha256: String,
    pub target_sha256: String,
}

/// The JSON document of `promote`.
#[derive(Debug, Serialize)]
pub struct PromoteReport {
    pub from: String,
    pub to: String,
    pub release: String,
    pub checks: Vec<HealthCheck>,
    /// The copy into the target's bucket, when the buckets differ.
    pub copy: Option<Copied>,
    pub digests: Vec<DigestPair>,
    pub deploy: Report,
}

impl PromoteReport {
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "promote release {} from {} to {}\n",
            self.release, self.from, self.to
        );
        for check in &self.checks {
            text.push_str(&format!(
                "  [{}] {:<14} {}\n",
                if check.ok { "ok" } else { "FAILED" },
                check.check,
                check.detail
            ));
        }
        match &self.copy {
            Some(copy) if copy.copied => text.push_str(&format!(
                "  copied {} object(s) into the target's bucket, each verified after the copy\n",
                copy.objects.len()
            )),
            Some(_) => text.push_str("  the target's bucket already holds the release\n"),
            None => {}
        }
        text.push_str("  function      source sha256                                                     target sha256\n");
        for pair in &self.digests {
            text.push_str(&format!(
                "  {:<12}  {}  {}{}\n",
                pair.function,
                pair.source_sha256,
                pair.target_sha256,
                if pair.source_sha256 == pair.target_sha256 {
                    ""
                } else {
                    "  DIFFERENT"
                }
            ));
        }
        text.push_str(&self.deploy.to_text());
        text
    }
}

/// The checks a source environment must pass, from its state, stacks and alarms.
pub async fn source_health(
    clients: &AwsClients,
    renderer: &Renderer,
    env: &Environment,
    state: &EnvState,
    release: &ReleaseId,
    soak: Duration,
) -> Result<Vec<HealthCheck>, Error> {
    let mut checks = Vec::new();
    let running = state.release.as_deref() == Some(release.as_str());
    let ran = state.recent.iter().any(|r| r == release.as_str());
    checks.push(HealthCheck {
        check: "ran there",
        ok: ran,
        detail: if running {
            format!("{} runs it", env.name)
        } else if ran {
            format!(
                "{} ran it before {}",
                env.name,
                state.release.as_deref().unwrap_or("?")
            )
        } else {
            format!("{release} never deployed successfully to {}", env.name)
        },
    });
    let last_failed = state.last_release.as_deref() == Some(release.as_str())
        && !matches!(
            state.last_result.as_deref(),
            Some("deployed" | "no-changes")
        );
    checks.push(HealthCheck {
        check: "last deploy",
        ok: !last_failed,
        detail: match (&state.last_release, &state.last_result) {
            (Some(r), Some(result)) => format!("the last deploy to {} was {r}: {result}", env.name),
            _ => "no deploy recorded".into(),
        },
    });
    let soaked = if !running {
        (
            soak.is_zero(),
            if soak.is_zero() {
                "no soak time asked".to_string()
            } else {
                format!(
                    "{release} no longer runs in {}, so its soak time cannot be measured",
                    env.name
                )
            },
        )
    } else {
        let since = state.since.as_deref().and_then(parse_time);
        let ran_for = since
            .map(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default())
            .unwrap_or_default();
        (
            ran_for >= soak,
            format!(
                "running for {} s (since {}), at least {} s asked",
                ran_for.as_secs(),
                state.since.as_deref().unwrap_or("?"),
                soak.as_secs()
            ),
        )
    };
    checks.push(HealthCheck {
        check: "soak",
        ok: soaked.0,
        detail: soaked.1,
    });
    let rendered = renderer.render(env)?;
    let names: Vec<String> = rendered
        .stacks
        .iter()
        .map(|s| s.stack_name.clone())
        .collect();
    let deployed = stacks::describe_many(&clients.cloudformation, &names).await?;
    let unhealthy: Vec<String> = names
        .iter()
        .filter_map(|name| match deployed.get(name) {
            None => Some(format!("{name} is not deployed")),
            Some(stack)
                if !matches!(stack.status.as_str(), "CREATE_COMPLETE" | "UPDATE_COMPLETE") =>
            {
                Some(format!("{name} is {}", stack.status))
            }
            Some(_) => None,
        })
        .collect();
    checks.push(HealthCheck {
        check: "stacks",
        ok: unhealthy.is_empty(),
        detail: if unhealthy.is_empty() {
            format!("all {} stacks settled", names.len())
        } else {
            unhealthy.join("; ")
        },
    });
    let firing = crate::ops::alarms::firing(&clients.cloudwatch, env).await?;
    checks.push(HealthCheck {
        check: "alarms",
        ok: firing.is_empty(),
        detail: if firing.is_empty() {
            "no alarm in ALARM".into()
        } else {
            firing
                .iter()
                .map(|a| format!("{} is in ALARM ({})", a.name, a.reason))
                .collect::<Vec<_>>()
                .join("; ")
        },
    });
    Ok(checks)
}

/// Runs a promotion. `Err(exit)` when the release's templates fail their checks.
pub fn run(
    project: &Project,
    request: &PromoteRequest,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<Result<PromoteReport, Exit>, Error> {
    if request.from == request.to {
        return Err(Error::Other {
            message: format!("--from and --to are both `{}`", request.from),
            help: "promote from one environment to another, e.g. --from staging --to prod".into(),
        });
    }
    let (renderer, source_env) = rollout::locate(project, &request.from)?;
    let target_env = renderer.load_environment(project, &request.to)?;
    runtime()?.block_on(async {
        let source_clients =
            AwsClients::connect_with_profile(&target(&source_env), request.from_profile.as_deref())
                .await;
        let target_clients = AwsClients::connect(&target(&target_env)).await;
        let caller = identity::caller_identity(&source_clients.sts).await?;
        identity::ensure_account(&source_env, &caller)?;
        let deployments = Deployments::new(
            source_clients.dynamodb.clone(),
            &source_env.names.bootstrap.deployments_table,
        );
        let state = or_not_bootstrapped(deployments.state(&source_env.name).await, &source_env)?
            .unwrap_or_default();
        let release = match (&request.release, &state.release) {
            (Some(id), _) => id.clone(),
            (None, Some(running)) => ReleaseId::parse(running)?,
            (None, None) => {
                return Err(Error::Refused {
                    refusal: Refusal::PromotionRefused,
                    message: format!("{} runs no release: nothing to promote", source_env.name),
                    help: format!("deploy a release to {} first", source_env.name),
                })
            }
        };
        let mut checks = source_health(
            &source_clients,
            &renderer,
            &source_env,
            &state,
            &release,
            request.soak,
        )
        .await?;
        if request.probe {
            let probe = crate::ops::probe::probe(&source_clients, &source_env, request.probe_timeout).await?;
            checks.push(HealthCheck {
                check: "probe",
                ok: probe.ok,
                detail: match probe.broken_hop() {
                    None => format!(
                        "a synthetic record went through in {} ms",
                        probe.hops.iter().filter_map(|h| h.millis).sum::<u64>()
                    ),
                    Some(hop) => format!("{}: {}", hop.hop, hop.detail),
                },
            });
        }
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.check, c.detail))
            .collect();
        if !failed.is_empty() {
            return Err(Error::Refused {
                refusal: Refusal::PromotionRefused,
                message: format!(
                    "release {release} cannot be promoted from {} to {}: {}",
                    source_env.name,
                    target_env.name,
                    failed.join("; ")
                ),
                help: format!(
                    "fix what the failed checks name in {} (or wait out the soak time), then \
                     promote again; `provisioner status --env {}` and `provisioner history --env {}` \
                     show its stacks and deploys",
                    source_env.name, source_env.name, source_env.name
                ),
            });
        }
        let source_bucket = &source_env.names.bootstrap.artifact_bucket;
        let target_bucket = &target_env.names.bootstrap.artifact_bucket;
        let manifest = store::read_manifest(&source_clients.s3, source_bucket, &release)
            .await?
            .ok_or_else(|| ReleaseError::NotFound {
                id: release.clone(),
                bucket: source_bucket.clone(),
                env: source_env.name.clone(),
            })?;
        let same_bucket = source_bucket == target_bucket
            && source_env.settings.endpoint_url == target_env.settings.endpoint_url;
        // The target's account is checked before anything is written to it.
        let target_caller = identity::caller_identity(&target_clients.sts).await?;
        identity::ensure_account(&target_env, &target_caller)?;
        let copy = if same_bucket {
            None
        } else {
            rollout::ensure_bucket(&target_clients, &target_env).await?;
            Some(
                store::copy_release(
                    &source_clients.s3,
                    source_bucket,
                    &target_clients.s3,
                    target_bucket,
                    &manifest,
                )
                .await?,
            )
        };
        let rollout_request = Request {
            env: target_env.name.clone(),
            source: Source::Published(release.clone()),
            kind: Kind::Promote {
                from: source_env.name.clone(),
            },
            mode: Mode::Deploy,
            allow_replace: request.allow_replace.iter().cloned().collect(),
            yes: request.yes,
            allow_downgrade: false,
            lock_timeout: request.lock_timeout,
            keep_change_sets: false,
            planned: None,
        };
        let deploy = match rollout::run_with(
            project,
            &renderer,
            &target_env,
            &target_clients,
            &rollout_request,
            format,
            out,
        )
        .await?
        {
            Ok(report) => report,
            Err(exit) => return Ok(Err(exit)),
        };
        let target_manifest = store::read_manifest(&target_clients.s3, target_bucket, &release)
            .await?
            .unwrap_or_else(|| manifest.clone());
        let digests = deploy
            .artifacts
            .iter()
            .map(|zip| DigestPair {
                function: zip.function.clone(),
                architecture: zip.architecture.clone(),
                source_sha256: manifest
                    .function(&zip.function, &zip.architecture)
                    .map(|f| f.sha256.clone())
                    .unwrap_or_default(),
                target_sha256: target_manifest
                    .function(&zip.function, &zip.architecture)
                    .map(|f| f.sha256.clone())
                    .unwrap_or_default(),
            })
            .collect();
        tracing::info!(
            "AWS API requests: source {}, target {}",
            source_clients.requests.summary(),
            target_clients.requests.summary()
        );
        Ok(Ok(PromoteReport {
            from: source_env.name.clone(),
            to: target_env.name.clone(),
            release: release.to_string(),
            checks,
            copy,
            digests,
            deploy,
        }))
    })
}
