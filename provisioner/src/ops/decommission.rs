//! `decommission`: ends an environment in four phases, in order, each gated by a
//! measured condition and recorded in the deployments table, so a run that stops (a gate
//! refusing, `--until`, Ctrl-C, a failure) is resumed by the next one:
//!
//! 1. `stop-traffic`: the compute stack is updated (through the ordinary deploy engine)
//!    with `TrafficStoppedAt` set: ingest answers every request 410 `decommissioned` and
//!    the reconciler's schedule is disabled. Gate: no ingest invocation for the quiet
//!    window, the queue and dead-letter queue empty, no ledger item accepted, in
//!    progress or waiting for a retry.
//! 2. `remove-compute`: the observability and compute stacks are deleted (running compute
//!    without its data would fail in cascade, so data goes last). The hold starts.
//! 3. `hold`: gate: the hold window has passed (or `--force-window --reason`, recorded),
//!    and an export taken after traffic stopped verifies against the live tables.
//! 4. `remove-data`: the data, messaging, security and network stacks are deleted; every
//!    resource a deletion policy keeps is listed with how to delete it, and retained
//!    tables and queues are deleted with `--delete-retained`.
//!
//! Every step appends to the environment's history (who, when, gate values, result).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Select};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sync_core::ledger::{state_shard_value, LedgerState, STATE_SHARDS};

use crate::config::Environment;
use crate::deploy::clients::AwsClients;
use crate::deploy::destroy::{self, FailedDeletion, RetainedResource};
use crate::deploy::engine::{self, Confirmation, EngineOptions, Mode};
use crate::deploy::interrupt::Interrupt;
use crate::deploy::progress::Progress;
use crate::deploy::report::{Review, Reviewer, StackResult};
use crate::deploy::setup::TRAFFIC_STOPPED_PARAMETER;
use crate::deploy::stacks::{self, DeployedStack};
use crate::deploy::{DeployError, PollSettings, StackSpec, RELEASE_TAG};
use crate::error::Error;
use crate::ops::replay::BY_STATE_INDEX;
use crate::release::deployments::{
    format_time, now, parse_time, DecommissionState, Deployments, HistoryEntry, LockHolder,
};
use crate::release::rollout;

/// The phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    StopTraffic,
    RemoveCompute,
    Hold,
    RemoveData,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::StopTraffic,
        Phase::RemoveCompute,
        Phase::Hold,
        Phase::RemoveData,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::StopTraffic => "stop-traffic",
            Phase::RemoveCompute => "remove-compute",
            Phase::Hold => "hold",
            Phase::RemoveData => "remove-data",
        }
    }

    /// What the phase does, for the plan.
    pub fn action(self) -> &'static str {
        match self {
            Phase::StopTraffic => {
                "update the compute stack: ingest answers 410 decommissioned, the reconciler's schedule is disabled"
            }
            Phase::RemoveCompute => "delete the observability and compute stacks (endpoint and functions)",
            Phase::Hold => "keep the data for the hold window; verify an export taken after traffic stopped",
            Phase::RemoveData => {
                "delete the data, messaging, security and network stacks; list what deletion policies keep"
            }
        }
    }

    /// The stacks the phase deletes.
    fn stacks(self) -> &'static [&'static str] {
        match self {
            Phase::RemoveCompute => &["observability", "compute"],
            Phase::RemoveData => &["data", "messaging", "security", "network"],
            _ => &[],
        }
    }

    /// True when `state` records the phase as done.
    fn done(self, state: &DecommissionState) -> bool {
        match self {
            Phase::StopTraffic => state.quiet_at.is_some(),
            Phase::RemoveCompute => state.compute_removed_at.is_some(),
            Phase::Hold => state.export_verified_at.is_some(),
            Phase::RemoveData => state.finished_at.is_some(),
        }
    }
}

/// The first phase `state` has not finished.
pub fn next_phase(state: &DecommissionState) -> Option<Phase> {
    Phase::ALL.into_iter().find(|phase| !phase.done(state))
}

/// One measured condition.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    pub name: &'static str,
    /// What was measured.
    pub value: String,
    /// What the gate needs.
    pub needs: String,
    pub passed: bool,
    /// How to meet it, when it is not met.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Gate {
    fn new(name: &'static str, value: String, needs: &str, passed: bool, fix: String) -> Self {
        Self {
            name,
            value,
            needs: needs.to_string(),
            passed,
            fix: (!passed).then_some(fix),
        }
    }

    /// `name: value (needs ...): passed|REFUSED`, as history records it.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} (needs {}): {}",
            self.name,
            self.value,
            self.needs,
            if self.passed { "passed" } else { "REFUSED" }
        )
    }
}

/// How a phase stands after this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseStatus {
    /// Done by an earlier run.
    Done,
    /// Done by this run.
    Ran,
    /// Its gate refused: nothing after it ran.
    Refused,
    /// A stack could not be deleted.
    Failed,
    /// Not reached (an earlier phase stopped the run, or `--until`).
    Pending,
    /// Dry run: would run next, if its gates pass.
    Next,
}

/// One phase of the report.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    pub phase: Phase,
    pub action: &'static str,
    pub status: PhaseStatus,
    pub gates: Vec<Gate>,
    /// What this run did in the phase.
    pub did: Vec<String>,
}

/// A resource that stays after its stack, with how to delete it.
#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    #[serde(flatten)]
    pub resource: RetainedResource,
    /// Deleted by this run (`--delete-retained`).
    pub deleted: bool,
    /// The command that deletes it, when it stays.
    pub delete_with: Option<String>,
    /// Why `--delete-retained` could not delete it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// `--dry-run`: nothing changed.
    Planned,
    /// Every phase is done.
    Decommissioned,
    /// Stopped after the phase `--until` named.
    Stopped,
    /// A gate refused; run again once it is met.
    Refused,
    /// Ctrl-C between phases; run again to resume.
    Interrupted,
    /// No terminal to type the environment's name on, and no `--confirm`.
    NotConfirmed,
    /// The name typed (or given to `--confirm`) is not the environment's.
    Declined,
    /// A stack could not be deleted, or traffic could not be stopped.
    Failed,
}

/// What `decommission` reports.
#[derive(Debug, Clone, Serialize)]
pub struct DecommissionReport {
    pub env: String,
    pub dry_run: bool,
    pub result: Outcome,
    pub message: String,
    pub phases: Vec<PhaseReport>,
    pub state: DecommissionState,
    /// Resources deletion policies keep (phase 4).
    pub kept: Vec<Kept>,
    pub failed: Vec<FailedDeletion>,
}

impl DecommissionReport {
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}decommission of {}: {}\n",
            if self.dry_run { "plan: " } else { "" },
            self.env,
            self.message
        );
        for (n, phase) in self.phases.iter().enumerate() {
            let status = match phase.status {
                PhaseStatus::Done => "done",
                PhaseStatus::Ran => "ran",
                PhaseStatus::Refused => "REFUSED",
                PhaseStatus::Failed => "FAILED",
                PhaseStatus::Pending => "pending",
                PhaseStatus::Next => "next",
            };
            let _ = writeln!(
                text,
                "{}. {} [{status}]: {}",
                n + 1,
                phase.phase.as_str(),
                phase.action
            );
            for did in &phase.did {
                let _ = writeln!(text, "     {did}");
            }
            for gate in &phase.gates {
                let _ = writeln!(
                    text,
                    "     gate {}: {} (needs {}) {}",
                    gate.name,
                    gate.value,
                    gate.needs,
                    if gate.passed { "ok" } else { "NOT MET" }
                );
                if let Some(fix) = &gate.fix {
                    let _ = writeln!(text, "       fix: {fix}");
                }
            }
        }
        for failed in &self.failed {
            let _ = writeln!(text, "FAILED {}: {}", failed.stack_name, failed.message);
        }
        if !self.kept.is_empty() {
            text.push_str("kept by deletion policies:\n");
            for kept in &self.kept {
                let r = &kept.resource;
                let name = r.physical_id.as_deref().unwrap_or(&r.logical_id);
                if kept.deleted {
                    let _ = writeln!(
                        text,
                        "  {} {name}: deleted (--delete-retained)",
                        r.resource_type
                    );
                } else {
                    let _ = writeln!(
                        text,
                        "  {} {name} (from {}): delete with `{}`",
                        r.resource_type,
                        r.stack_name,
                        kept.delete_with.as_deref().unwrap_or("the console")
                    );
                }
            }
        }
        text
    }
}

/// What the person asked for.
#[derive(Debug, Clone, Default)]
pub struct DecommissionRequest {
    pub dry_run: bool,
    /// The environment's name, typed back ahead of time (CI).
    pub confirm: Option<String>,
    /// `--force-window --reason`: end the hold now, for this reason.
    pub force_window: Option<String>,
    /// The export to verify (default: the newest one).
    pub export: Option<String>,
    pub delete_retained: bool,
    /// Stop after this phase.
    pub until: Option<Phase>,
    pub lock_timeout: Duration,
}

/// What the run works with.
pub struct Target<'a> {
    pub env: &'a Environment,
    pub clients: &'a AwsClients,
    pub caller: &'a str,
    /// The environment's stacks (for names and dependency order).
    pub specs: &'a [StackSpec],
    pub poll: PollSettings,
}

impl Target<'_> {
    fn deployments(&self) -> Deployments {
        Deployments::new(
            self.clients.dynamodb.clone(),
            &self.env.names.bootstrap.deployments_table,
        )
    }

    fn emulated(&self) -> bool {
        self.env.settings.endpoint_url.is_some()
    }

    fn specs_of(&self, phase: Phase) -> Vec<StackSpec> {
        self.specs
            .iter()
            .filter(|s| phase.stacks().contains(&s.id.as_str()))
            .cloned()
            .collect()
    }

    fn spec(&self, id: &str) -> Option<&StackSpec> {
        self.specs.iter().find(|s| s.id == id)
    }
}

/// Runs (or with `dry_run` plans) the decommission. `ask` shows a prompt and returns
/// the line typed, or `None` when there is no terminal.
pub async fn run(
    target: &Target<'_>,
    request: &DecommissionRequest,
    ask: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<DecommissionReport, Error> {
    let env = &target.env.name;
    let deployments = target.deployments();
    // The environment's state and its decommission record, in one read.
    let (env_state, decommission) = crate::release::deployments::or_not_bootstrapped(
        deployments.state_and_decommission(env).await,
        target.env,
    )?;
    let running = env_state.and_then(|s| s.release);
    let state = decommission.unwrap_or_default();
    let mut report = DecommissionReport {
        env: env.clone(),
        dry_run: request.dry_run,
        result: Outcome::Planned,
        message: String::new(),
        phases: Phase::ALL
            .into_iter()
            .map(|phase| PhaseReport {
                phase,
                action: phase.action(),
                status: if phase.done(&state) {
                    PhaseStatus::Done
                } else {
                    PhaseStatus::Pending
                },
                gates: Vec::new(),
                did: Vec::new(),
            })
            .collect(),
        state: state.clone(),
        kept: Vec::new(),
        failed: Vec::new(),
    };
    let Some(next) = next_phase(&state) else {
        report.result = Outcome::Decommissioned;
        report.message = format!(
            "already decommissioned (finished {})",
            state.finished_at.as_deref().unwrap_or("?")
        );
        return Ok(report);
    };
    if request.dry_run {
        let gates = measure(target, next, &state, request).await?.0;
        for phase in &mut report.phases {
            if phase.phase == next {
                phase.status = PhaseStatus::Next;
                phase.gates = gates.clone();
            } else if phase.status == PhaseStatus::Pending {
                phase.gates = planned_gates(phase.phase, target.env);
            }
        }
        report.message = format!(
            "nothing changed; a run would start at phase {} ({}), each later phase behind its own gate",
            next as usize + 1,
            next.as_str()
        );
        return Ok(report);
    }
    if let Some(outcome) = confirm(env, request.confirm.as_deref(), ask) {
        report.result = outcome.0;
        report.message = outcome.1;
        return Ok(report);
    }

    // From here on Ctrl-C stops the run between phases; the lock is released.
    let interrupt = Interrupt::process();
    let holder = LockHolder::this_process(
        target.caller,
        "decommission",
        running.as_deref().unwrap_or("-"),
        rollout::LOCK_LEASE,
    );
    let mut entry = HistoryEntry::start(env, "decommission", running.as_deref(), target.caller);
    entry.phase = Some(next.as_str().to_string());
    rollout::acquire(
        &deployments,
        target.env,
        &holder,
        &mut entry,
        request.lock_timeout,
    )
    .await?;
    let heartbeat =
        rollout::spawn_heartbeat(deployments.clone(), env.clone(), holder.owner_id.clone());
    let mut steps = Steps {
        target,
        deployments: &deployments,
        owner_id: &holder.owner_id,
        state,
        running,
    };
    let result = steps.run_phases(request, &interrupt, &mut report).await;
    heartbeat.abort();
    let _ = heartbeat.await;
    report.state = steps.state.clone();
    entry.ended_at = Some(now());
    match &result {
        Ok(()) => {
            entry.result = outcome_str(report.result).to_string();
            entry.message = Some(report.message.clone());
        }
        Err(error) => {
            entry.result = "failed".into();
            entry.message = Some(crate::error::report(error));
        }
    }
    deployments
        .finish(env, &holder.owner_id, &entry, None)
        .await?;
    result.map(|()| report)
}

fn outcome_str(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Planned => "planned",
        Outcome::Decommissioned => "decommissioned",
        Outcome::Stopped => "stopped",
        Outcome::Refused => "gate-refused",
        Outcome::Interrupted => "interrupted",
        Outcome::NotConfirmed => "not-confirmed",
        Outcome::Declined => "declined",
        Outcome::Failed => "failed",
    }
}

/// `None` when the person (or `--confirm`) named the environment; otherwise how the run
/// ends.
fn confirm(
    env: &str,
    given: Option<&str>,
    ask: &mut dyn FnMut(&str) -> Option<String>,
) -> Option<(Outcome, String)> {
    let typed = match given {
        Some(name) => name.to_string(),
        None => match ask(&format!(
            "This decommissions `{env}`: its traffic stops and, phase by phase, its stacks and data are deleted.\n\
             Type the environment's name to go on: "
        )) {
            Some(line) => line.trim().to_string(),
            None => {
                return Some((
                    Outcome::NotConfirmed,
                    format!(
                        "not confirmed: no terminal to type the environment's name on; pass --confirm {env}"
                    ),
                ))
            }
        },
    };
    (typed != env).then(|| {
        (
            Outcome::Declined,
            format!(
                "declined: `{typed}` is not `{env}`; nothing was changed (type the environment's name exactly)"
            ),
        )
    })
}

/// The locked part of a run: each phase's gates and actions, each step recorded.
struct Steps<'a, 'b> {
    target: &'a Target<'b>,
    deployments: &'a Deployments,
    owner_id: &'a str,
    state: DecommissionState,
    running: Option<String>,
}

impl Steps<'_, '_> {
    /// Records a step: the state as it now is, and a history entry.
    async fn record(
        &self,
        phase: Phase,
        result: &str,
        message: &str,
        gates: &[Gate],
    ) -> Result<(), Error> {
        let mut entry = HistoryEntry::start(
            &self.target.env.name,
            "decommission",
            self.running.as_deref(),
            self.target.caller,
        );
        entry.phase = Some(phase.as_str().to_string());
        entry.result = result.to_string();
        entry.ended_at = Some(now());
        entry.message = Some(message.to_string());
        entry.gates = gates.iter().map(Gate::summary).collect();
        self.deployments
            .record_decommission(&self.target.env.name, self.owner_id, &self.state, &entry)
            .await
    }

    async fn run_phases(
        &mut self,
        request: &DecommissionRequest,
        interrupt: &Interrupt,
        report: &mut DecommissionReport,
    ) -> Result<(), Error> {
        if self.state.started_at.is_none() {
            self.state.started_at = Some(now());
            self.state.started_by = Some(self.target.caller.to_string());
            self.state.release = self.running.clone();
        }
        while let Some(phase) = next_phase(&self.state) {
            let slot = phase as usize;
            let ran = match phase {
                Phase::StopTraffic => self.stop_traffic(request, &mut report.phases[slot]).await?,
                Phase::RemoveCompute | Phase::RemoveData => {
                    self.remove(phase, request, report).await?
                }
                Phase::Hold => self.hold(request, &mut report.phases[slot]).await?,
            };
            report.phases[slot].status = match ran {
                Ran::Done => PhaseStatus::Ran,
                Ran::Refused => PhaseStatus::Refused,
                Ran::Failed => PhaseStatus::Failed,
            };
            match ran {
                Ran::Done => {}
                Ran::Refused => {
                    report.result = Outcome::Refused;
                    report.message = format!(
                        "phase {} ({}) is waiting for its gate (below); run the same command again once it is met",
                        slot + 1,
                        phase.as_str()
                    );
                    return Ok(());
                }
                Ran::Failed => {
                    report.result = Outcome::Failed;
                    report.message = format!(
                        "phase {} ({}) failed (below); fix the cause and run the same command again",
                        slot + 1,
                        phase.as_str()
                    );
                    return Ok(());
                }
            }
            if next_phase(&self.state).is_none() {
                break;
            }
            if request.until == Some(phase) {
                report.result = Outcome::Stopped;
                report.message = format!(
                    "stopped after phase {} ({}) as asked; run again without --until to go on",
                    slot + 1,
                    phase.as_str()
                );
                return Ok(());
            }
            if interrupt.is_stopping() {
                report.result = Outcome::Interrupted;
                report.message = format!(
                    "interrupted after phase {} ({}); run the same command again to resume",
                    slot + 1,
                    phase.as_str()
                );
                return Ok(());
            }
        }
        report.result = Outcome::Decommissioned;
        report.message = format!(
            "`{}` is decommissioned; its history stays in the deployments table",
            self.target.env.name
        );
        Ok(())
    }

    async fn stop_traffic(
        &mut self,
        request: &DecommissionRequest,
        phase: &mut PhaseReport,
    ) -> Result<Ran, Error> {
        if self.state.traffic_stopped_at.is_none() {
            let at = now();
            stop_ingest(self.target, self.running.as_deref(), &at).await?;
            phase.did.push(format!(
                "traffic stopped at {at}: ingest answers 410 decommissioned, the schedule is disabled"
            ));
            self.state.traffic_stopped_at = Some(at);
            self.record(Phase::StopTraffic, "traffic-stopped", &phase.did[0], &[])
                .await?;
        }
        let gates = measure(self.target, Phase::StopTraffic, &self.state, request)
            .await?
            .0;
        phase.gates = gates.clone();
        if gates.iter().all(|g| g.passed) {
            self.state.quiet_at = Some(now());
            self.record(
                Phase::StopTraffic,
                "passed",
                "no traffic, nothing queued or in flight",
                &gates,
            )
            .await?;
            Ok(Ran::Done)
        } else {
            self.record(
                Phase::StopTraffic,
                "gate-refused",
                "waiting for traffic to end",
                &gates,
            )
            .await?;
            Ok(Ran::Refused)
        }
    }

    async fn remove(
        &mut self,
        phase: Phase,
        request: &DecommissionRequest,
        report: &mut DecommissionReport,
    ) -> Result<Ran, Error> {
        let target = self.target;
        let specs = target.specs_of(phase);
        let names: Vec<String> = specs.iter().map(|s| s.stack_name.clone()).collect();
        let existing = stacks::describe_many(&target.clients.cloudformation, &names).await?;
        let mut kept = Vec::new();
        for stack in existing.values() {
            kept.extend(destroy::retained_resources(target.clients, stack).await?);
        }
        let progress = Arc::new(Progress::new(false));
        let (deleted, failed) =
            destroy::delete_stacks(target.clients, &specs, &existing, target.poll, progress)
                .await?;
        let slot = phase as usize;
        for name in &deleted {
            report.phases[slot].did.push(format!("deleted {name}"));
        }
        for name in names.iter().filter(|n| !existing.contains_key(*n)) {
            report.phases[slot]
                .did
                .push(format!("{name} was already gone"));
        }
        if !failed.is_empty() {
            let message = failed
                .iter()
                .map(|f| format!("{}: {}", f.stack_name, f.message))
                .collect::<Vec<_>>()
                .join("; ");
            report.failed.extend(failed);
            self.record(phase, "failed", &message, &[]).await?;
            return Ok(Ran::Failed);
        }
        let at = now();
        // Tables and queues are deleted only after the verified export (the last phase).
        let kept = handle_kept(
            target,
            kept,
            phase == Phase::RemoveData && request.delete_retained,
        )
        .await?;
        for kept in &kept {
            let r = &kept.resource;
            report.phases[slot].did.push(format!(
                "{} {} {}",
                r.resource_type,
                r.physical_id.as_deref().unwrap_or(&r.logical_id),
                if kept.deleted {
                    "deleted (--delete-retained)"
                } else {
                    "kept by its deletion policy"
                }
            ));
        }
        report.kept.extend(kept);
        if phase == Phase::RemoveCompute {
            let hold = target.env.settings.decommission.hold.duration();
            let until = parse_time(&at).unwrap_or_else(chrono::Utc::now)
                + chrono::Duration::from_std(hold).unwrap_or_default();
            self.state.compute_removed_at = Some(at.clone());
            self.state.hold_until = Some(format_time(until));
            report.phases[slot].did.push(format!(
                "the hold of {} runs until {}",
                target.env.settings.decommission.hold,
                format_time(until)
            ));
        } else {
            self.state.finished_at = Some(at);
        }
        let message = report.phases[slot].did.join("; ");
        self.record(phase, "done", &message, &[]).await?;
        Ok(Ran::Done)
    }

    async fn hold(
        &mut self,
        request: &DecommissionRequest,
        phase: &mut PhaseReport,
    ) -> Result<Ran, Error> {
        let (mut gates, verified) = measure(self.target, Phase::Hold, &self.state, request).await?;
        let window_open = gates.iter().any(|g| g.name == "hold-window" && !g.passed);
        if window_open {
            if let Some(reason) = &request.force_window {
                let forced = format!("by {} at {}: {reason}", self.target.caller, now());
                for gate in gates.iter_mut().filter(|g| g.name == "hold-window") {
                    gate.value = format!("{} (window forced {forced})", gate.value);
                    gate.passed = true;
                    gate.fix = None;
                }
                phase.did.push(format!("hold window ended early {forced}"));
                self.state.window_forced = Some(forced);
            }
        }
        phase.gates = gates.clone();
        if gates.iter().all(|g| g.passed) {
            self.state.export_id = verified;
            self.state.export_verified_at = Some(now());
            self.record(Phase::Hold, "passed", "hold over; export verified", &gates)
                .await?;
            Ok(Ran::Done)
        } else {
            self.record(Phase::Hold, "gate-refused", "holding the data", &gates)
                .await?;
            Ok(Ran::Refused)
        }
    }
}

enum Ran {
    Done,
    Refused,
    Failed,
}

/// Updates the compute stack as deployed, with only `TrafficStoppedAt` changed (to
/// `at`), through the deploy engine (change set, rollback configuration, events).
async fn stop_ingest(target: &Target<'_>, running: Option<&str>, at: &str) -> Result<(), Error> {
    let Some(spec) = target.spec("compute") else {
        return Err(Error::Other {
            message: "the environment has no compute stack to stop traffic on".into(),
            help: "check stacks/stacks.yaml".into(),
        });
    };
    let cfn = &target.clients.cloudformation;
    let Some(deployed) = stacks::describe(cfn, &spec.stack_name).await? else {
        // Nothing runs: there is no traffic to stop.
        return Ok(());
    };
    if !deployed.parameters.contains_key(TRAFFIC_STOPPED_PARAMETER) {
        return Err(Error::Other {
            message: format!(
                "stack {} has no {TRAFFIC_STOPPED_PARAMETER} parameter: the release it runs ({}) cannot stop its traffic",
                spec.stack_name,
                deployed.release().unwrap_or("unknown")
            ),
            help: format!(
                "deploy a current release to `{}` first (`provisioner deploy --env {0}`), then decommission",
                target.env.name
            ),
        });
    }
    let body = cfn
        .get_template()
        .stack_name(&deployed.stack_id)
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("GetTemplate {}", spec.stack_name), &error))?
        .template_body()
        .unwrap_or_default()
        .to_string();
    let stopped = stopped_spec(spec, &deployed, body, at);
    let release = deployed
        .release()
        .or(running)
        .unwrap_or("decommission")
        .to_string();
    let options = EngineOptions {
        mode: Mode::Deploy,
        release,
        allow_replace: Default::default(),
        confirmation: Confirmation::Yes,
        poll: target.poll,
        emulator: target.emulated(),
        role_arn: Some(target.env.names.bootstrap.execution_role_arn.clone()),
        // Nothing healthy is left to watch for: traffic is what stops.
        rollback: Some(engine::RollbackTrigger {
            alarm_name: None,
            monitoring_minutes: 0,
        }),
        interrupt: Interrupt::new(),
        keep_change_sets: false,
        planned: None,
        seen: BTreeMap::new(),
    };
    let deployed_map = BTreeMap::from([(spec.stack_name.clone(), deployed)]);
    let outcome = engine::run_on(
        target.clients,
        std::slice::from_ref(&stopped),
        deployed_map,
        options,
        Arc::new(Progress::new(false)),
        &mut Quiet,
    )
    .await?;
    match outcome.stacks.first() {
        Some(stack) if matches!(stack.result, StackResult::Deployed | StackResult::NoChanges) => {
            Ok(())
        }
        Some(stack) => Err(Error::Other {
            message: format!(
                "traffic could not be stopped: updating {} ended {:?}{}",
                stack.stack_name,
                stack.result,
                stack
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
            help: format!(
                "see `provisioner status --env {}`; the run can be repeated once the stack is settled",
                target.env.name
            ),
        }),
        None => Ok(()),
    }
}

/// The compute stack as deployed, with `TrafficStoppedAt` set to `at`.
fn stopped_spec(spec: &StackSpec, deployed: &DeployedStack, body: String, at: &str) -> StackSpec {
    let mut parameters = deployed.parameters.clone();
    parameters.insert(TRAFFIC_STOPPED_PARAMETER.to_string(), at.to_string());
    StackSpec {
        id: spec.id.clone(),
        stack_name: spec.stack_name.clone(),
        depends_on: Vec::new(),
        template_sha256: hex::encode(Sha256::digest(body.as_bytes())),
        body,
        parameters,
        tags: deployed
            .tags
            .iter()
            .filter(|(k, _)| !k.starts_with("provisioner:") && k.as_str() != RELEASE_TAG)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// A reviewer for the stop-traffic update: the typed confirmation covered it.
struct Quiet;

impl Reviewer for Quiet {
    fn show(&mut self, review: &Review) {
        tracing::info!("{}", review.to_text(false));
    }

    fn confirm(&mut self, _: &Review) -> bool {
        true
    }
}

/// The gates of a phase not reached yet, as a plan shows them.
fn planned_gates(phase: Phase, env: &Environment) -> Vec<Gate> {
    let d = &env.settings.decommission;
    let needs: Vec<(&'static str, String)> = match phase {
        Phase::StopTraffic => vec![
            (
                "quiet-window",
                format!(">= {} since traffic stopped", d.quiet_window),
            ),
            ("ingest-invocations", "0 over the quiet window".into()),
            ("queue", "0".into()),
            ("dead-letter-queue", "0".into()),
            (
                "ledger-in-flight",
                "0 accepted, in progress or waiting for a retry".into(),
            ),
        ],
        Phase::RemoveCompute => vec![("traffic-ended", "phase 1 passed".into())],
        Phase::Hold => vec![
            (
                "hold-window",
                format!("{} after compute was removed", d.hold),
            ),
            (
                "verified-export",
                "an export taken after traffic stopped, matching the live tables".into(),
            ),
        ],
        Phase::RemoveData => vec![("verified-export", "phase 3 passed".into())],
    };
    needs
        .into_iter()
        .map(|(name, needs)| Gate {
            name,
            value: "measured when the phase is reached".into(),
            needs,
            passed: false,
            fix: None,
        })
        .collect()
}

/// The gates of `phase`, and for the hold the export they verified.
async fn measure(
    target: &Target<'_>,
    phase: Phase,
    state: &DecommissionState,
    request: &DecommissionRequest,
) -> Result<(Vec<Gate>, Option<String>), Error> {
    let gates = match phase {
        Phase::StopTraffic => traffic_gates(target, state).await?,
        Phase::Hold => return hold_gates(target, state, request).await,
        Phase::RemoveCompute => vec![Gate::new(
            "traffic-ended",
            state
                .quiet_at
                .as_deref()
                .map(|t| format!("since {t}"))
                .unwrap_or_else(|| "not yet".into()),
            "phase 1 passed",
            state.quiet_at.is_some(),
            "run phase 1 first".into(),
        )],
        Phase::RemoveData => vec![Gate::new(
            "verified-export",
            state.export_id.clone().unwrap_or_else(|| "none".into()),
            "phase 3 passed",
            state.export_verified_at.is_some(),
            "run phase 3 first".into(),
        )],
    };
    Ok((gates, None))
}

async fn traffic_gates(target: &Target<'_>, state: &DecommissionState) -> Result<Vec<Gate>, Error> {
    let env = target.env;
    let name = &env.name;
    let quiet = env.settings.decommission.quiet_window.duration();
    let now = chrono::Utc::now();
    let stopped = state.traffic_stopped_at.as_deref().and_then(parse_time);
    let mut gates = Vec::new();
    let quiet_for = stopped.map(|t| (now - t).to_std().unwrap_or_default());
    let invocations = match stopped {
        Some(stopped) => {
            let from = stopped.max(now - chrono::Duration::from_std(quiet).unwrap_or_default());
            Some(ingest_invocations(target, from, now).await?)
        }
        None => None,
    };
    gates.push(Gate::new(
        "quiet-window",
        match quiet_for {
            Some(d) => format!("traffic stopped {}s ago", d.as_secs()),
            None => "traffic not stopped yet".into(),
        },
        &format!(">= {}", env.settings.decommission.quiet_window),
        quiet_for.is_some_and(|d| d >= quiet),
        format!(
            "wait until the quiet window ({}) has passed since traffic stopped",
            env.settings.decommission.quiet_window
        ),
    ));
    gates.push(Gate::new(
        "ingest-invocations",
        match invocations {
            Some(n) if target.emulated() => format!(
                "{n} (the emulator records no Lambda metrics, so it cannot show senders still calling)"
            ),
            Some(n) => n.to_string(),
            None => "not measured (traffic not stopped yet)".into(),
        },
        "0 over the quiet window",
        invocations == Some(0),
        "senders still call the endpoint (answered 410): tell them to send to the environment that replaces this one".into(),
    ));
    let sqs = crate::ops::dlq::sqs(target.clients);
    let queues = crate::ops::dlq::queues(&sqs, env).await?;
    let queue = crate::ops::dlq::depth(&sqs, &queues.queue_url).await?;
    gates.push(Gate::new(
        "queue",
        format!("{} waiting, {} in flight", queue.waiting, queue.in_flight),
        "0",
        queue.waiting + queue.in_flight == 0,
        "wait for the workers to drain it (`provisioner status --env ...`)".into(),
    ));
    let dlq = crate::ops::dlq::depth(&sqs, &queues.dlq_url).await?;
    gates.push(Gate::new(
        "dead-letter-queue",
        format!("{} waiting, {} in flight", dlq.waiting, dlq.in_flight),
        "0",
        dlq.waiting + dlq.in_flight == 0,
        format!(
            "look with `provisioner dlq peek --env {name}`, then `provisioner redrive --env {name}` once the cause is fixed"
        ),
    ));
    let mut counts = Vec::new();
    for ledger_state in [
        LedgerState::Accepted,
        LedgerState::InProgress,
        LedgerState::Retry,
    ] {
        counts.push((
            ledger_state.as_str(),
            count_ledger(target, ledger_state).await?,
        ));
    }
    gates.push(Gate::new(
        "ledger-in-flight",
        counts
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        "0 of each",
        counts.iter().all(|(_, n)| *n == 0),
        format!(
            "wait for the workers; items waiting for a retry are sent again by `provisioner replay --env {name} --state RETRY` (the reconciler's schedule is stopped)"
        ),
    ));
    Ok(gates)
}

/// Sum of the ingest function's Invocations metric between `from` and `to`.
async fn ingest_invocations(
    target: &Target<'_>,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<u64, Error> {
    use aws_sdk_cloudwatch::types::{Dimension, Statistic};
    let function = target.env.names.function("ingest");
    let output = target
        .clients
        .cloudwatch
        .get_metric_statistics()
        .namespace("AWS/Lambda")
        .metric_name("Invocations")
        .dimensions(
            Dimension::builder()
                .name("FunctionName")
                .value(&function)
                .build(),
        )
        .start_time(aws_smithy_types::DateTime::from_secs(from.timestamp()))
        .end_time(aws_smithy_types::DateTime::from_secs(to.timestamp() + 1))
        .period(60)
        .statistics(Statistic::Sum)
        .send()
        .await
        .map_err(|error| DeployError::aws("GetMetricStatistics AWS/Lambda Invocations", &error))?;
    Ok(output
        .datapoints()
        .iter()
        .filter_map(|d| d.sum())
        .map(|sum| sum.max(0.0) as u64)
        .sum())
}

/// Ledger items in `state`, counted over every shard of the state index.
async fn count_ledger(target: &Target<'_>, state: LedgerState) -> Result<u64, Error> {
    let table = &target.env.names.ledger_table;
    let mut total = 0u64;
    for shard in 0..STATE_SHARDS {
        let mut start = None;
        loop {
            let page = target
                .clients
                .dynamodb
                .query()
                .table_name(table)
                .index_name(BY_STATE_INDEX)
                .key_condition_expression("#shard = :shard")
                .expression_attribute_names("#shard", "state_shard")
                .expression_attribute_values(
                    ":shard",
                    AttributeValue::S(state_shard_value(state.as_str(), shard)),
                )
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| {
                    DeployError::aws(format!("Query {table} index {BY_STATE_INDEX}"), &error)
                })?;
            total += u64::try_from(page.count()).unwrap_or(0);
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
    }
    Ok(total)
}

async fn hold_gates(
    target: &Target<'_>,
    state: &DecommissionState,
    request: &DecommissionRequest,
) -> Result<(Vec<Gate>, Option<String>), Error> {
    let env = target.env;
    let name = &env.name;
    let now = chrono::Utc::now();
    let until = state.hold_until.as_deref().and_then(parse_time);
    let window = Gate::new(
        "hold-window",
        match until {
            Some(until) if until <= now => format!("ended {}", format_time(until)),
            Some(until) => format!(
                "ends {} (in {})",
                format_time(until),
                human((until - now).to_std().unwrap_or_default())
            ),
            None => "not started (compute not removed yet)".into(),
        },
        &format!("{} after compute was removed", env.settings.decommission.hold),
        until.is_some_and(|u| u <= now),
        format!(
            "wait, or end it now with `--force-window --reason \"...\"` (recorded in `provisioner history --env {name}`)"
        ),
    );
    let bucket = &env.names.bootstrap.artifact_bucket;
    let id = match &request.export {
        Some(id) => Some(id.clone()),
        None => crate::ops::data::list_exports(target.clients, bucket, name)
            .await?
            .pop(),
    };
    let take = format!(
        "take one with `provisioner data export --env {name}` (after traffic stopped), then run this again"
    );
    let mut verified = None;
    let export = match id {
        None => Gate::new(
            "verified-export",
            "no export of this environment".into(),
            "an export taken after traffic stopped, matching the live tables",
            false,
            take,
        ),
        Some(id) => {
            let manifest =
                crate::ops::data::read_manifest(target.clients, bucket, name, &id).await?;
            let quiet = state.quiet_at.as_deref().and_then(parse_time);
            let taken = parse_time(&manifest.created_at);
            if quiet.is_none() || taken.is_none() || taken < quiet {
                Gate::new(
                    "verified-export",
                    format!(
                        "export {id} was taken at {}, before traffic ended ({})",
                        manifest.created_at,
                        state.quiet_at.as_deref().unwrap_or("not yet")
                    ),
                    "an export taken after traffic stopped, matching the live tables",
                    false,
                    take,
                )
            } else {
                match crate::ops::data::verify(target.clients, &manifest, target.clients, env).await
                {
                    Ok(report) if report.differing.is_empty() => {
                        verified = Some(id.clone());
                        Gate::new(
                            "verified-export",
                            format!("export {id} matches the live tables"),
                            "an export taken after traffic stopped, matching the live tables",
                            true,
                            String::new(),
                        )
                    }
                    Ok(report) => Gate::new(
                        "verified-export",
                        format!(
                            "export {id} differs from the live tables in {}",
                            report.differing.join(", ")
                        ),
                        "an export taken after traffic stopped, matching the live tables",
                        false,
                        format!("something wrote to the tables after the export: {take}"),
                    ),
                    Err(error) => Gate::new(
                        "verified-export",
                        format!("export {id} cannot be verified: {error}"),
                        "an export taken after traffic stopped, matching the live tables",
                        false,
                        take,
                    ),
                }
            }
        }
    };
    Ok((vec![window, export], verified))
}

/// `6d 23h`, `4m 10s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// Deletes retained tables and queues when asked; says how to delete the rest.
async fn handle_kept(
    target: &Target<'_>,
    kept: Vec<RetainedResource>,
    delete_retained: bool,
) -> Result<Vec<Kept>, Error> {
    let sqs = crate::ops::dlq::sqs(target.clients);
    let mut out = Vec::new();
    for resource in kept {
        let id = resource
            .physical_id
            .clone()
            .unwrap_or_else(|| resource.logical_id.clone());
        // Only tables and queues are deleted here; a failure is reported, not fatal
        // (the stacks are gone: this list is the only record of what is left).
        let attempt = match resource.resource_type.as_str() {
            "AWS::DynamoDB::Table" if delete_retained => Some(delete_table(target, &id).await),
            "AWS::SQS::Queue" if delete_retained => Some(
                sqs.delete_queue()
                    .queue_url(&id)
                    .send()
                    .await
                    .map(drop)
                    .map_err(|error| DeployError::aws(format!("DeleteQueue {id}"), &error)),
            ),
            _ => None,
        };
        let deleted = matches!(attempt, Some(Ok(())));
        let error = match attempt {
            Some(Err(error)) => Some(error.to_string()),
            _ => None,
        };
        let delete_with = (!deleted).then(|| delete_command(&resource.resource_type, &id));
        out.push(Kept {
            resource,
            deleted,
            delete_with,
            error,
        });
    }
    Ok(out)
}

/// Deletes a retained table: its deletion protection (set on retained tables) first.
async fn delete_table(target: &Target<'_>, name: &str) -> Result<(), DeployError> {
    let dynamodb = &target.clients.dynamodb;
    dynamodb
        .update_table()
        .table_name(name)
        .deletion_protection_enabled(false)
        .send()
        .await
        .map_err(|error| {
            DeployError::aws(
                format!("UpdateTable {name} (deletion protection off)"),
                &error,
            )
        })?;
    dynamodb
        .delete_table()
        .table_name(name)
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("DeleteTable {name}"), &error))?;
    Ok(())
}

/// The AWS CLI command that deletes a kept resource of `kind` named `id`.
pub fn delete_command(kind: &str, id: &str) -> String {
    match kind {
        "AWS::DynamoDB::Table" => format!(
            "aws dynamodb update-table --table-name {id} --no-deletion-protection-enabled && aws dynamodb delete-table --table-name {id}"
        ),
        "AWS::SQS::Queue" => format!("aws sqs delete-queue --queue-url {id}"),
        "AWS::KMS::Key" => {
            format!("aws kms schedule-key-deletion --key-id {id} --pending-window-in-days 30")
        }
        "AWS::Logs::LogGroup" => format!("aws logs delete-log-group --log-group-name {id}"),
        "AWS::S3::Bucket" => format!("aws s3 rb s3://{id} --force"),
        "AWS::SecretsManager::Secret" => {
            format!("aws secretsmanager delete-secret --secret-id {id}")
        }
        "AWS::SSM::Parameter" => format!("aws ssm delete-parameter --name {id}"),
        "AWS::SNS::Topic" => format!("aws sns delete-topic --topic-arn {id}"),
        other => format!("delete {other} {id} in the console or with the AWS CLI"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_resume_at_the_first_unfinished_one() {
        let mut state = DecommissionState::default();
        assert_eq!(next_phase(&state), Some(Phase::StopTraffic));
        state.traffic_stopped_at = Some("t".into());
        assert_eq!(
            next_phase(&state),
            Some(Phase::StopTraffic),
            "stopped, gate not passed"
        );
        state.quiet_at = Some("t".into());
        assert_eq!(next_phase(&state), Some(Phase::RemoveCompute));
        state.compute_removed_at = Some("t".into());
        assert_eq!(next_phase(&state), Some(Phase::Hold));
        state.export_verified_at = Some("t".into());
        assert_eq!(next_phase(&state), Some(Phase::RemoveData));
        state.finished_at = Some("t".into());
        assert_eq!(next_phase(&state), None);
    }

    #[test]
    fn a_confirmation_must_name_the_environment_exactly() {
        let mut never = |_: &str| -> Option<String> { panic!("no prompt with --confirm") };
        assert!(confirm("prod", Some("prod"), &mut never).is_none());
        let (outcome, message) = confirm("prod", Some("staging"), &mut never).unwrap();
        assert_eq!(outcome, Outcome::Declined);
        assert!(message.contains("`staging` is not `prod`"), "{message}");
        let mut typed = |_: &str| Some("prod\n".to_string());
        assert!(confirm("prod", None, &mut typed).is_none());
        let mut typo = |_: &str| Some("prdo".to_string());
        assert_eq!(
            confirm("prod", None, &mut typo).unwrap().0,
            Outcome::Declined
        );
        let mut no_terminal = |_: &str| None;
        let (outcome, message) = confirm("prod", None, &mut no_terminal).unwrap();
        assert_eq!(outcome, Outcome::NotConfirmed);
        assert!(message.contains("--confirm prod"), "{message}");
    }

    #[test]
    fn kept_resources_come_with_the_command_that_deletes_them() {
        assert!(
            delete_command("AWS::DynamoDB::Table", "datasync-prod-records")
                .ends_with("aws dynamodb delete-table --table-name datasync-prod-records")
        );
        assert!(delete_command("AWS::KMS::Key", "k").contains("schedule-key-deletion"));
        assert!(delete_command("AWS::Foo::Bar", "x").contains("AWS::Foo::Bar x"));
    }

    #[test]
    fn the_stopped_compute_stack_keeps_everything_but_the_stop_time() {
        let spec = StackSpec {
            id: "compute".into(),
            stack_name: "app-dev-compute".into(),
            depends_on: vec!["data".into()],
            body: "rendered".into(),
            template_sha256: "x".into(),
            parameters: BTreeMap::new(),
            tags: BTreeMap::new(),
        };
        let deployed = DeployedStack {
            name: "app-dev-compute".into(),
            stack_id: "arn:stack".into(),
            status: "UPDATE_COMPLETE".into(),
            status_reason: None,
            parameters: BTreeMap::from([
                ("ArtifactBucket".into(), "b".into()),
                (TRAFFIC_STOPPED_PARAMETER.into(), String::new()),
            ]),
            tags: BTreeMap::from([
                ("team".into(), "platform".into()),
                (RELEASE_TAG.into(), "r1".into()),
                ("provisioner:template-sha256".into(), "h".into()),
            ]),
            outputs: BTreeMap::new(),
            last_updated: None,
            termination_protection: false,
        };
        let stopped = stopped_spec(&spec, &deployed, "deployed body".into(), "T");
        assert_eq!(stopped.parameters["ArtifactBucket"], "b");
        assert_eq!(stopped.parameters[TRAFFIC_STOPPED_PARAMETER], "T");
        assert_eq!(stopped.body, "deployed body");
        assert_eq!(
            stopped.template_sha256,
            hex::encode(Sha256::digest(b"deployed body"))
        );
        assert_eq!(
            stopped.tags,
            BTreeMap::from([("team".to_string(), "platform".to_string())])
        );
    }
}
