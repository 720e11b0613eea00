//! The bake after a deploy (`deploy --bake <duration>`): the environment's alarms are
//! watched for that long after the last stack settled (and the end-to-end probe run
//! first, with `--probe`). An alarm that entered ALARM since the deploy started, or a
//! failed probe, rolls the environment back to the release it ran before, through the
//! ordinary rollback path; the command then exits 12 ("rolled back"). Alarms that were
//! already firing before the deploy are reported but do not roll it back.

use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::alarms::{self, FiringAlarm};
use crate::config::Environment;
use crate::deploy::clients::AwsClients;
use crate::deploy::engine::Mode;
use crate::deploy::interrupt::{Interrupt, Level};
use crate::deploy::report::Verdict;
use crate::deploy::setup::{runtime, target};
use crate::error::Error;
use crate::exit::Exit;
use crate::project::Project;
use crate::release::{rollout, ReleaseId};

/// What to watch, for how long.
#[derive(Debug, Clone)]
pub struct BakeRequest {
    pub env: String,
    pub duration: Duration,
    /// Run the end-to-end probe at the start of the bake.
    pub probe: bool,
    pub probe_timeout: Duration,
    /// When the deploy started: alarms that entered ALARM since then count.
    pub deploy_started: SystemTime,
    /// How often to read the alarms.
    pub every: Duration,
}

/// Why a bake failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum BakeFailure {
    /// Alarms entered ALARM during the deploy or the bake.
    Alarms { alarms: Vec<FiringAlarm> },
    /// The probe's record did not make it through.
    Probe { hop: String, detail: String },
}

impl BakeFailure {
    pub fn describe(&self) -> String {
        match self {
            Self::Alarms { alarms } => format!(
                "alarm(s) entered ALARM: {}",
                alarms
                    .iter()
                    .map(|a| format!("{} ({})", a.name, a.reason))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Probe { hop, detail } => format!("the probe failed at {hop}: {detail}"),
        }
    }
}

/// How the bake went.
#[derive(Debug, Clone, Serialize)]
pub struct BakeReport {
    /// Seconds watched.
    pub watched_seconds: u64,
    pub requested_seconds: u64,
    /// Alarms firing since before the deploy (not counted against it).
    pub already_firing: Vec<FiringAlarm>,
    /// The probe's verdict, when one ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_ok: Option<bool>,
    /// What made the bake fail, if anything did.
    pub failure: Option<BakeFailure>,
    /// Ctrl-C ended the bake early (nothing was rolled back).
    pub interrupted: bool,
}

impl BakeReport {
    pub fn to_text(&self) -> String {
        let mut text = match (&self.failure, self.interrupted) {
            (Some(failure), _) => format!(
                "bake FAILED after {} s: {}",
                self.watched_seconds,
                failure.describe()
            ),
            (None, true) => format!(
                "bake interrupted after {} of {} s; nothing was rolled back",
                self.watched_seconds, self.requested_seconds
            ),
            (None, false) => format!(
                "bake passed: no alarm entered ALARM in {} s{}",
                self.watched_seconds,
                if self.probe_ok == Some(true) {
                    "; the probe went through"
                } else {
                    ""
                }
            ),
        };
        for alarm in &self.already_firing {
            text.push_str(&format!(
                "\n  already firing before the deploy (not counted): {} since {}",
                alarm.name,
                alarm.since.as_deref().unwrap_or("?")
            ));
        }
        text
    }
}

/// Splits firing alarms into those that entered ALARM since `since` and the others
/// (heartbeat alarms, which fire on an absence, always count as the others).
pub fn split_by_start(
    firing: Vec<FiringAlarm>,
    since: SystemTime,
) -> (Vec<FiringAlarm>, Vec<FiringAlarm>) {
    let since = since
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    // An alarm without a timestamp is counted as new: better a needless rollback than a
    // broken release left running.
    firing.into_iter().partition(|alarm| {
        !alarms::is_heartbeat(&alarm.name) && alarm.since_epoch.is_none_or(|at| at >= since)
    })
}

/// Watches `env` as `request` says.
pub async fn watch(
    clients: &AwsClients,
    env: &Environment,
    request: &BakeRequest,
    interrupt: &Interrupt,
) -> Result<BakeReport, Error> {
    let started = Instant::now();
    let mut report = BakeReport {
        watched_seconds: 0,
        requested_seconds: request.duration.as_secs(),
        already_firing: Vec::new(),
        probe_ok: None,
        failure: None,
        interrupted: false,
    };
    if request.probe {
        // A probe that cannot even start (no ingest URL, no signing key) is a failed
        // probe too: the new release may be what broke it.
        let failure = match super::probe::probe(clients, env, request.probe_timeout).await {
            Ok(probe) => probe.broken_hop().map(|hop| BakeFailure::Probe {
                hop: hop.hop.to_string(),
                detail: hop.detail.clone(),
            }),
            Err(error) => Some(BakeFailure::Probe {
                hop: "probe".into(),
                detail: crate::error::report(&error),
            }),
        };
        report.probe_ok = Some(failure.is_none());
        if failure.is_some() {
            report.failure = failure;
            report.watched_seconds = started.elapsed().as_secs();
            return Ok(report);
        }
    }
    loop {
        let firing = alarms::firing(&clients.cloudwatch, env).await?;
        let (new, old) = split_by_start(firing, request.deploy_started);
        report.already_firing = old;
        report.watched_seconds = started.elapsed().as_secs();
        if !new.is_empty() {
            report.failure = Some(BakeFailure::Alarms { alarms: new });
            return Ok(report);
        }
        let left = request.duration.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Ok(report);
        }
        tokio::select! {
            _ = tokio::time::sleep(left.min(request.every)) => {}
            _ = interrupt.reached(Level::Stopping) => {
                report.interrupted = true;
                report.watched_seconds = started.elapsed().as_secs();
                return Ok(report);
            }
        }
    }
}

/// A deploy with its bake, and the rollback the bake caused, if any.
#[derive(Debug, Serialize)]
pub struct BakedDeploy {
    #[serde(flatten)]
    pub deploy: rollout::Report,
    /// `None` when nothing was deployed (nothing changed, or the deploy failed).
    pub bake: Option<BakeReport>,
    /// The rollback to the previous release a failed bake ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<rollout::Report>,
    /// Why a failed bake rolled nothing back (no earlier release, or the environment
    /// runs another release by now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_refused: Option<String>,
}

impl BakedDeploy {
    pub fn to_text(&self) -> String {
        let mut text = self.deploy.to_text();
        match &self.bake {
            Some(bake) => text.push_str(&format!("\n{}", bake.to_text())),
            None => text.push_str("\nno bake: the deploy changed nothing or did not succeed"),
        }
        if let Some(refused) = &self.rollback_refused {
            text.push_str(&format!("\nnot rolled back: {refused}"));
        }
        if let Some(rollback) = &self.rollback {
            text.push_str(&format!(
                "\nrolled back to {}:\n{}",
                rollback.release,
                rollback.to_text()
            ));
        }
        text
    }
}

/// Deploys `deploy`, bakes it as `bake` says when it changed something, and rolls back
/// to the release the environment ran before when the bake fails. Returns the whole
/// story and its exit code: 12 when rolled back, 130 when interrupted.
pub fn deploy_then_bake(
    project: &Project,
    deploy: &rollout::Request,
    bake: &BakeRequest,
    format: crate::cli::OutputFormat,
    out: &mut dyn std::io::Write,
) -> Result<Result<(BakedDeploy, Exit), Exit>, Error> {
    let report = match rollout::run(project, deploy, format, out)? {
        Ok(report) => report,
        Err(exit) => return Ok(Err(exit)),
    };
    let exit = rollout::deploy_exit(report.result);
    if report.result != Verdict::Deployed {
        return Ok(Ok((
            BakedDeploy {
                deploy: report,
                bake: None,
                rollback: None,
                rollback_refused: None,
            },
            exit,
        )));
    }
    let baked = run(project, bake)?;
    if baked.interrupted {
        return Ok(Ok((
            BakedDeploy {
                deploy: report,
                bake: Some(baked),
                rollback: None,
                rollback_refused: None,
            },
            Exit::Interrupted,
        )));
    }
    let Some(failure) = &baked.failure else {
        return Ok(Ok((
            BakedDeploy {
                deploy: report,
                bake: Some(baked),
                rollback: None,
                rollback_refused: None,
            },
            exit,
        )));
    };
    let refuse = |report: rollout::Report, baked: BakeReport, why: String| {
        Ok(Ok((
            BakedDeploy {
                deploy: report,
                bake: Some(baked),
                rollback: None,
                rollback_refused: Some(why),
            },
            Exit::Failed,
        )))
    };
    let Some(previous) = report.previous_release.clone() else {
        let why = format!(
            "{} ran no release before this one: fix forward, or `provisioner destroy --env {}`",
            deploy.env, deploy.env
        );
        return refuse(report, baked, why);
    };
    // The lock was released when the deploy ended: another pipeline may have deployed
    // since, and rolling that back would revert a release nobody baked.
    let running = running_release(project, &deploy.env)?;
    if running.as_deref() != Some(report.release.as_str()) {
        let why = format!(
            "{} runs {} by now, not the baked {}: another deploy came in during the bake",
            deploy.env,
            running.as_deref().unwrap_or("no recorded release"),
            report.release
        );
        return refuse(report, baked, why);
    }
    eprintln!(
        "the bake failed ({}); rolling {} back to {previous}",
        failure.describe(),
        deploy.env
    );
    let rollback = rollout::Request {
        env: deploy.env.clone(),
        source: rollout::Source::Published(ReleaseId::parse(&previous)?),
        kind: rollout::Kind::Rollback,
        mode: Mode::Deploy,
        allow_replace: deploy.allow_replace.clone(),
        yes: true,
        allow_downgrade: true,
        lock_timeout: Duration::from_secs(60),
        keep_change_sets: false,
        planned: None,
    };
    let rolled = match rollout::run(project, &rollback, format, out)? {
        Ok(report) => report,
        Err(exit) => return Ok(Err(exit)),
    };
    // Only a rollback that deployed counts as rolled back; one that failed (or was
    // itself rolled back) leaves the baked release running.
    let exit = match rolled.result {
        Verdict::Deployed | Verdict::NoChanges => Exit::RolledBack,
        Verdict::Interrupted => Exit::Interrupted,
        _ => Exit::Failed,
    };
    Ok(Ok((
        BakedDeploy {
            deploy: report,
            bake: Some(baked),
            rollback: Some(rolled),
            rollback_refused: None,
        },
        exit,
    )))
}

/// The release `env_name` runs, from its deployments table.
fn running_release(project: &Project, env_name: &str) -> Result<Option<String>, Error> {
    let (_, env) = rollout::locate(project, env_name)?;
    runtime()?.block_on(async {
        let clients = AwsClients::connect(&target(&env)).await;
        let deployments = crate::release::deployments::Deployments::new(
            clients.dynamodb.clone(),
            &env.names.bootstrap.deployments_table,
        );
        Ok(deployments
            .state_if_bootstrapped(&env.name)
            .await?
            .and_then(|state| state.release))
    })
}

/// [`watch`] on a runtime of its own, for the `deploy` command.
pub fn run(project: &Project, request: &BakeRequest) -> Result<BakeReport, Error> {
    let (_, env) = rollout::locate(project, &request.env)?;
    runtime()?.block_on(async {
        let clients = AwsClients::connect(&target(&env)).await;
        eprintln!(
            "baking {} for {} s: watching its alarms{}",
            env.name,
            request.duration.as_secs(),
            if request.probe { " after a probe" } else { "" }
        );
        watch(&clients, &env, request, &Interrupt::process()).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(name: &str, at: Option<i64>) -> FiringAlarm {
        FiringAlarm {
            name: name.into(),
            reason: "threshold crossed".into(),
            since: None,
            since_epoch: at,
        }
    }

    #[test]
    fn only_alarms_that_fired_since_the_deploy_started_count() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let (new, old) = split_by_start(
            vec![
                alarm("before", Some(999)),
                alarm("at-start", Some(1_000)),
                alarm("after", Some(1_500)),
                alarm("unknown", None),
                alarm("app-dev-reconciler-heartbeat", Some(1_500)),
            ],
            start,
        );
        let names = |v: &[FiringAlarm]| v.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&new), ["at-start", "after", "unknown"]);
        assert_eq!(names(&old), ["before", "app-dev-reconciler-heartbeat"]);
    }

    #[test]
    fn a_failed_bake_says_what_failed() {
        let report = BakeReport {
            watched_seconds: 12,
            requested_seconds: 60,
            already_firing: vec![alarm("app-dev-dlq-depth", Some(1))],
            probe_ok: None,
            failure: Some(BakeFailure::Alarms {
                alarms: vec![alarm("app-dev-worker-errors", Some(2))],
            }),
            interrupted: false,
        };
        let text = report.to_text();
        assert!(text.contains("bake FAILED after 12 s"), "{text}");
        assert!(
            text.contains("app-dev-worker-errors (threshold crossed)"),
            "{text}"
        );
        assert!(text.contains("not counted): app-dev-dlq-depth"), "{text}");
    }
}
