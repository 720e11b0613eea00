//! Plan and deploy: every stack in dependency order, independent stacks in parallel.
//! An unchanged stack (same template hash, parameters and tags, and either the
//! LastUpdatedTime the last recorded deploy left it with or, failing that, the same
//! template as CloudFormation returns it) is skipped without a change set; otherwise a
//! change set is computed, shown, checked by the stateful guard, confirmed, and executed
//! with its events streamed until a terminal status. A new stack left in
//! ROLLBACK_COMPLETE is deleted before its create only once confirmed like a change set.
//!
//! Stack tasks run on the runtime; this module's loop owns the [`Reviewer`] (stdout and
//! the terminal), so diffs never interleave and prompts come one at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_cloudformation::types::{
    ChangeSetType, RollbackConfiguration, RollbackTrigger as RollbackTrigger_,
};
use aws_sdk_cloudwatch::types::AlarmType;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::changeset::{self, ChangeSetHandle, ChangeSetState};
use super::clients::AwsClients;
use super::events::{self, EventWatcher};
use super::guard;
use super::interrupt::{Interrupt, Level};
use super::planfile::PlannedChangeSet;
use super::progress::Progress;
use super::report::{Review, Reviewer, RunOutcome, StackOutcome, StackResult, DELETE_REVIEW};
use super::stacks::{self, DeployedStack, SeenStack};
use sha2::{Digest, Sha256};

use super::{DeployError, PollSettings, StackSpec};

/// Compute change sets only, or execute them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plan,
    Deploy,
}

/// Who says yes to executing a change set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmation {
    /// `--yes`: execute without asking.
    Yes,
    /// Ask on the terminal.
    Prompt,
    /// No terminal and no `--yes`: never execute.
    Unavailable,
}

/// How a plan or deploy runs.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub mode: Mode,
    /// The release version tagged on every stack that changes.
    pub release: String,
    /// Logical ids the stateful guard lets through.
    pub allow_replace: BTreeSet<String>,
    pub confirmation: Confirmation,
    pub poll: PollSettings,
    /// The clients talk to an emulator (moto): a new stack's reviewed CREATE change set
    /// is executed as a CreateStack with the same inputs, because moto only wires up
    /// cross-stack exports and imports for stacks created that way.
    pub emulator: bool,
    /// The CloudFormation execution role every change set runs with (the bootstrap
    /// stack's); `None` runs them with the caller's own permissions (bootstrap itself).
    pub role_arn: Option<String>,
    /// The rollback trigger every stack update carries, when the environment has one.
    pub rollback: Option<RollbackTrigger>,
    /// Ctrl-C: start nothing new, then cancel the updates in progress.
    pub interrupt: Interrupt,
    /// Plan: keep the change sets (for a plan file) instead of deleting them.
    pub keep_change_sets: bool,
    /// Deploy a plan file: execute exactly these change sets (by stack name) and leave
    /// every other stack alone.
    pub planned: Option<Arc<BTreeMap<String, PlannedChangeSet>>>,
    /// Per stack name, what the last recorded deploy left the stack with. A stack whose
    /// tags match counts as unchanged without reading its template only when its
    /// LastUpdatedTime is the recorded one; otherwise (no record, changed since, or an
    /// emulator, which never reports LastUpdatedTime) its template decides.
    pub seen: BTreeMap<String, SeenStack>,
}

/// CloudFormation's RollbackConfiguration for a deploy: the environment's deploy-health
/// alarm (by name; its ARN is looked up once, when the first change set is made, and the
/// trigger is left out while the alarm does not exist yet) and the monitoring time.
/// `alarm_name: None` sends an explicitly empty configuration: a rollback must not be
/// undone by the very alarm that made it necessary (CloudFormation otherwise reuses the
/// stack's last rollback configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackTrigger {
    pub alarm_name: Option<String>,
    pub monitoring_minutes: u32,
}

enum Decision {
    Execute,
    Discard,
    Refused,
    NotConfirmed(&'static str),
    Declined,
}

type ReviewRequest = (Review, oneshot::Sender<Decision>);

struct Context {
    clients: AwsClients,
    options: EngineOptions,
    progress: Arc<Progress>,
    /// The resolved rollback configuration (`None` inside: no trigger to set).
    rollback: tokio::sync::OnceCell<Option<RollbackConfiguration>>,
}

impl Context {
    /// The RollbackConfiguration for change sets of this run, looked up once.
    async fn rollback_configuration(&self) -> Result<Option<RollbackConfiguration>, DeployError> {
        let Some(trigger) = &self.options.rollback else {
            return Ok(None);
        };
        let Some(alarm_name) = &trigger.alarm_name else {
            return Ok(Some(
                RollbackConfiguration::builder()
                    .set_rollback_triggers(Some(Vec::new()))
                    .monitoring_time_in_minutes(0)
                    .build(),
            ));
        };
        self.rollback
            .get_or_try_init(|| async {
                let output = self
                    .clients
                    .cloudwatch
                    .describe_alarms()
                    .alarm_names(alarm_name)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .alarm_types(AlarmType::MetricAlarm)
                    .send()
                    .await
                    .map_err(|error| {
                        DeployError::aws(format!("DescribeAlarms {}", alarm_name), &error)
                    })?;
                let composite = output
                    .composite_alarms()
                    .iter()
                    .filter_map(|alarm| alarm.alarm_arn())
                    .map(|arn| (arn, "AWS::CloudWatch::CompositeAlarm"));
                let metric = output
                    .metric_alarms()
                    .iter()
                    .filter_map(|alarm| alarm.alarm_arn())
                    .map(|arn| (arn, "AWS::CloudWatch::Alarm"));
                let arn = composite
                    .chain(metric)
                    .next()
                    .map(|(arn, kind)| (arn.to_string(), kind));
                let Some((arn, kind)) = arn else {
                    tracing::info!(
                        "no rollback trigger: alarm {} does not exist yet (the observability \
                         stack creates it)",
                        alarm_name
                    );
                    return Ok(None);
                };
                Ok(Some(
                    RollbackConfiguration::builder()
                        .rollback_triggers(
                            RollbackTrigger_::builder().arn(arn).r#type(kind).build(),
                        )
                        .monitoring_time_in_minutes(trigger.monitoring_minutes as i32)
                        .build(),
                ))
            })
            .await
            .cloned()
    }
}

/// Checks that dependencies name known stacks and form no cycle.
pub fn check_dependencies(specs: &[StackSpec]) -> Result<(), DeployError> {
    let ids: BTreeSet<&str> = specs.iter().map(|s| s.id.as_str()).collect();
    for spec in specs {
        if let Some(unknown) = spec.depends_on.iter().find(|d| !ids.contains(d.as_str())) {
            return Err(DeployError::UnknownDependency {
                stack: spec.stack_name.clone(),
                dependency: unknown.clone(),
            });
        }
    }
    let mut done: BTreeSet<&str> = BTreeSet::new();
    while done.len() < specs.len() {
        let ready: Vec<&str> = specs
            .iter()
            .filter(|s| {
                !done.contains(s.id.as_str())
                    && s.depends_on.iter().all(|d| done.contains(d.as_str()))
            })
            .map(|s| s.id.as_str())
            .collect();
        if ready.is_empty() {
            let stuck: Vec<&str> = specs
                .iter()
                .map(|s| s.id.as_str())
                .filter(|id| !done.contains(id))
                .collect();
            return Err(DeployError::DependencyCycle {
                stacks: stuck.join(", "),
            });
        }
        done.extend(ready);
    }
    Ok(())
}

/// Plans or deploys `specs`. Errors that concern one stack end up in its outcome; an
/// error is returned only when nothing could be done at all.
pub async fn run(
    clients: &AwsClients,
    specs: &[StackSpec],
    options: EngineOptions,
    progress: Arc<Progress>,
    reviewer: &mut dyn Reviewer,
) -> Result<RunOutcome, DeployError> {
    check_dependencies(specs)?;
    let names: Vec<String> = specs.iter().map(|s| s.stack_name.clone()).collect();
    let deployed = stacks::describe_many(&clients.cloudformation, &names).await?;
    run_on(clients, specs, deployed, options, progress, reviewer).await
}

/// [`run`] over stacks the caller has already described (one DescribeStacks serves
/// the caller's own checks and the engine).
pub async fn run_on(
    clients: &AwsClients,
    specs: &[StackSpec],
    mut deployed: BTreeMap<String, DeployedStack>,
    options: EngineOptions,
    progress: Arc<Progress>,
    reviewer: &mut dyn Reviewer,
) -> Result<RunOutcome, DeployError> {
    check_dependencies(specs)?;
    let stacks: Vec<(&str, &str)> = specs
        .iter()
        .map(|s| (s.id.as_str(), s.stack_name.as_str()))
        .collect();
    guard::check_allowed(&options.allow_replace, &stacks).map_err(|message| {
        DeployError::Invalid {
            message,
            help: "name each resource as <stack>/<LogicalId>, as the refusal printed it".into(),
        }
    })?;
    let index: BTreeMap<&str, usize> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mode = options.mode;
    let confirmation = options.confirmation;
    let interrupt = options.interrupt.clone();
    let context = Arc::new(Context {
        clients: clients.clone(),
        options,
        progress,
        rollback: tokio::sync::OnceCell::new(),
    });
    let (review_tx, mut review_rx) = mpsc::unbounded_channel::<ReviewRequest>();
    let mut results: Vec<Option<StackOutcome>> = vec![None; specs.len()];
    let mut pending: Vec<usize> = (0..specs.len()).collect();
    let mut running = JoinSet::new();

    loop {
        let mut progressed = true;
        while progressed {
            progressed = false;
            let mut still_pending = Vec::new();
            for &i in &pending {
                let spec = &specs[i];
                let upstream: Vec<&StackOutcome> = spec
                    .depends_on
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).and_then(|&j| results[j].as_ref()))
                    .collect();
                if upstream.len() < spec.depends_on.len() {
                    still_pending.push(i);
                    continue;
                }
                progressed = true;
                let not_ok: Vec<&str> = upstream
                    .iter()
                    .filter(|o| !o.result.is_ok())
                    .map(|o| o.stack_name.as_str())
                    .collect();
                if mode == Mode::Deploy && interrupt.is_stopping() {
                    let mut outcome =
                        StackOutcome::new(&spec.id, &spec.stack_name, StackResult::Interrupted);
                    outcome.message = Some("not started: the deploy was interrupted".into());
                    results[i] = Some(outcome);
                    continue;
                }
                if mode == Mode::Deploy && !not_ok.is_empty() {
                    let mut outcome =
                        StackOutcome::new(&spec.id, &spec.stack_name, StackResult::Blocked);
                    outcome.message = Some(format!(
                        "depends on {}, which did not deploy",
                        not_ok.join(", ")
                    ));
                    results[i] = Some(outcome);
                    continue;
                }
                let changed_upstream: Vec<String> = upstream
                    .iter()
                    .filter(|o| o.result.has_changes())
                    .map(|o| o.stack_name.clone())
                    .collect();
                let context = Arc::clone(&context);
                let spec = spec.clone();
                let current = deployed.remove(&spec.stack_name);
                let tx = review_tx.clone();
                running.spawn(async move {
                    let outcome = process(&context, &spec, current, &changed_upstream, &tx).await;
                    (i, outcome)
                });
            }
            pending = still_pending;
        }
        if running.is_empty() {
            break;
        }
        tokio::select! {
            Some((review, reply)) = review_rx.recv() => {
                let decision = decide(mode, confirmation, &review, reviewer, &interrupt);
                let _ = reply.send(decision);
            }
            Some(joined) = running.join_next() => {
                let (i, outcome) = joined.map_err(|error| DeployError::Invalid {
                    message: format!("a stack task stopped unexpectedly: {error}"),
                    help: String::new(),
                })?;
                results[i] = Some(outcome);
            }
        }
    }
    Ok(RunOutcome {
        stacks: results.into_iter().flatten().collect(),
        interrupted: mode == Mode::Deploy && interrupt.is_stopping(),
    })
}

fn decide(
    mode: Mode,
    confirmation: Confirmation,
    review: &Review,
    reviewer: &mut dyn Reviewer,
    interrupt: &Interrupt,
) -> Decision {
    reviewer.show(review);
    if !review.refusals.is_empty() {
        return Decision::Refused;
    }
    if mode == Mode::Plan {
        return Decision::Discard;
    }
    if interrupt.is_stopping() {
        // Nobody is asked after Ctrl-C: the executing side turns this into "interrupted"
        // and deletes the change set.
        return Decision::Execute;
    }
    match confirmation {
        Confirmation::Yes => Decision::Execute,
        Confirmation::Prompt if reviewer.confirm(review) => Decision::Execute,
        Confirmation::Prompt => Decision::Declined,
        Confirmation::Unavailable => Decision::NotConfirmed(
            "no terminal to confirm on; pass --yes to execute without a prompt",
        ),
    }
}

async fn process(
    context: &Context,
    spec: &StackSpec,
    current: Option<DeployedStack>,
    changed_upstream: &[String],
    reviews: &mpsc::UnboundedSender<ReviewRequest>,
) -> StackOutcome {
    let mut outcome = StackOutcome::new(&spec.id, &spec.stack_name, StackResult::Failed);
    if let Err(error) = process_stack(
        context,
        spec,
        current,
        changed_upstream,
        reviews,
        &mut outcome,
    )
    .await
    {
        outcome.result = StackResult::Failed;
        let help = error.help().map(|h| format!(" ({h})")).unwrap_or_default();
        outcome.message = Some(format!("{error}{help}"));
    }
    context
        .progress
        .finish(&spec.stack_name, &outcome.summary());
    outcome
}

/// The note on a stack whose tags say it runs the wanted template but whose template is
/// another: it was updated outside the provisioner (an update keeps the stack's tags).
pub const CHANGED_OUTSIDE: &str = "changed outside the provisioner: its tags name the template \
     being deployed, but the stack runs another one";

/// How a deployed stack compares with what would be deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Template hash tag, parameters and tags all match.
    Same,
    /// Parameters or tags differ, or the stack is not in a settled state.
    Differs,
    /// Parameters and tags match but the template hash tag does not: the template
    /// itself decides (a stack last changed by a tool that did not tag it, or an
    /// emulator that keeps a change set's tags only on create).
    TemplateToCheck,
}

/// Compares without any AWS call.
pub fn compare(spec: &StackSpec, deployed: &DeployedStack) -> Comparison {
    let user_tags: BTreeMap<&String, &String> = deployed
        .tags
        .iter()
        .filter(|(key, _)| !key.starts_with("provisioner:"))
        .collect();
    let same_inputs = deployed.is_settled()
        && spec
            .parameters
            .iter()
            .all(|(k, v)| deployed.parameters.get(k) == Some(v))
        && user_tags == spec.tags.iter().collect::<BTreeMap<_, _>>();
    match (
        same_inputs,
        deployed.template_sha256() == Some(spec.template_sha256.as_str()),
    ) {
        (false, _) => Comparison::Differs,
        (true, true) => Comparison::Same,
        (true, false) => Comparison::TemplateToCheck,
    }
}

/// The sha256 of the template the stack runs, as CloudFormation returns it.
async fn deployed_template_sha256(
    context: &Context,
    stack: &DeployedStack,
) -> Result<String, DeployError> {
    let output = context
        .clients
        .cloudformation
        .get_template()
        .stack_name(&stack.stack_id)
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("GetTemplate {}", stack.name), &error))?;
    Ok(hex::encode(Sha256::digest(
        output.template_body().unwrap_or_default().as_bytes(),
    )))
}

async fn process_stack(
    context: &Context,
    spec: &StackSpec,
    current: Option<DeployedStack>,
    changed_upstream: &[String],
    reviews: &mpsc::UnboundedSender<ReviewRequest>,
    outcome: &mut StackOutcome,
) -> Result<(), DeployError> {
    if let Some(planned) = &context.options.planned {
        return process_planned(
            context,
            spec,
            planned.get(&spec.stack_name),
            reviews,
            outcome,
        )
        .await;
    }
    let cfn = &context.clients.cloudformation;
    let progress = &context.progress;
    let mode = context.options.mode;
    let parameters_differ = current.as_ref().is_some_and(|stack| {
        stack.is_settled()
            && spec
                .parameters
                .iter()
                .any(|(k, v)| stack.parameters.get(k) != Some(v))
    });
    let kind = match &current {
        None => ChangeSetType::Create,
        Some(stack) if stack.status == "REVIEW_IN_PROGRESS" => ChangeSetType::Create,
        Some(stack) if stack.status == "ROLLBACK_COMPLETE" => {
            let note = "was left in ROLLBACK_COMPLETE by a failed first deploy";
            let left = stacks::left_behind(cfn, &stack.stack_id).await?;
            for resource in &left {
                outcome.notes.push(format!(
                    "left behind by the failed create: {}",
                    resource.describe()
                ));
            }
            if mode == Mode::Plan {
                outcome.result = StackResult::Planned;
                outcome.change_set_type = Some("CREATE".into());
                outcome.notes.push(format!(
                    "{note}; deploy will ask to delete it and create it again"
                ));
                return Ok(());
            }
            let review = Review {
                stack_name: spec.stack_name.clone(),
                change_set_type: DELETE_REVIEW.to_string(),
                changes: left.iter().map(retained_change).collect(),
                refusals: Vec::new(),
            };
            match ask(reviews, review).await {
                Decision::Execute if context.options.interrupt.is_stopping() => {
                    outcome.result = StackResult::Interrupted;
                    outcome.message = Some("not deleted: the deploy was interrupted".into());
                    return Ok(());
                }
                Decision::Execute => {}
                Decision::NotConfirmed(why) => {
                    outcome.result = StackResult::NotConfirmed;
                    outcome.message = Some(format!(
                        "{why}; the stack stays in ROLLBACK_COMPLETE (`provisioner recover` deletes it too)"
                    ));
                    return Ok(());
                }
                Decision::Declined => {
                    outcome.result = StackResult::Declined;
                    outcome.message = Some(
                        "declined at the prompt; the stack stays in ROLLBACK_COMPLETE (`provisioner recover` deletes it too)".into(),
                    );
                    return Ok(());
                }
                Decision::Discard | Decision::Refused => {
                    outcome.result = StackResult::NotConfirmed;
                    outcome.message = Some("the stack stays in ROLLBACK_COMPLETE".into());
                    return Ok(());
                }
            }
            progress.note(
                &spec.stack_name,
                &format!("{note}; deleting it before creating it again"),
            );
            outcome
                .notes
                .push(format!("{note}; it was deleted before creating it again"));
            delete_and_wait(context, spec, &stack.stack_id).await?;
            ChangeSetType::Create
        }
        Some(stack) if stack.is_busy() => {
            return Err(DeployError::Invalid {
                message: format!("the stack is busy ({})", stack.status),
                help: "wait for the running operation to finish, then run the command again".into(),
            })
        }
        Some(stack) if !stack.is_settled() => return Err(unsettled(stack)),
        Some(stack) => {
            let comparison = compare(spec, stack);
            let seen = SeenStack {
                last_updated: stack.last_updated.clone(),
                template_sha256: spec.template_sha256.clone(),
            };
            let vouched = !context.options.emulator
                && context
                    .options
                    .seen
                    .get(&spec.stack_name)
                    .is_some_and(|recorded| {
                        recorded.last_updated == stack.last_updated
                            && recorded.template_sha256 == spec.template_sha256
                    });
            match comparison {
                Comparison::Same if vouched => {
                    outcome.result = StackResult::Unchanged;
                    outcome.seen = Some(seen);
                    return Ok(());
                }
                Comparison::Same | Comparison::TemplateToCheck
                    if deployed_template_sha256(context, stack).await? == spec.template_sha256 =>
                {
                    outcome.result = StackResult::Unchanged;
                    outcome.seen = Some(seen);
                    return Ok(());
                }
                Comparison::Same => {
                    outcome.notes.push(CHANGED_OUTSIDE.into());
                    ChangeSetType::Update
                }
                _ => ChangeSetType::Update,
            }
        }
    };
    outcome.change_set_type = Some(kind.as_str().to_string());
    progress.step(
        &spec.stack_name,
        &format!("creating {} change set", kind.as_str()),
    );
    let rollback = if (mode == Mode::Deploy || context.options.keep_change_sets)
        && kind == ChangeSetType::Update
    {
        context.rollback_configuration().await?
    } else {
        None
    };
    let handle = match changeset::create(
        cfn,
        spec,
        kind.clone(),
        &context.options.release,
        context.options.role_arn.as_deref(),
        rollback,
    )
    .await
    {
        Ok(handle) => handle,
        Err(error) if mode == Mode::Plan && !changed_upstream.is_empty() => {
            pending_upstream(outcome, changed_upstream, &error.to_string());
            return Ok(());
        }
        Err(error) => return Err(error),
    };
    let state = match changeset::wait(cfn, &handle, context.options.poll).await {
        Ok(state) => state,
        Err(error) => {
            let _ = changeset::discard(cfn, &handle).await;
            return Err(error);
        }
    };
    let changes = match state {
        ChangeSetState::Ready(changes) => changes,
        // moto computes a change set against the parameters a stack was created with,
        // so one that only changes parameter values comes back empty after an update:
        // on the emulator, apply such inputs with UpdateStack.
        ChangeSetState::NoChanges
            if context.options.emulator
                && mode == Mode::Deploy
                && kind == ChangeSetType::Update
                && parameters_differ =>
        {
            changeset::discard(cfn, &handle).await?;
            return execute_update_directly(context, spec, outcome).await;
        }
        ChangeSetState::NoChanges => {
            changeset::discard(cfn, &handle).await?;
            outcome.result = StackResult::NoChanges;
            return Ok(());
        }
        ChangeSetState::Failed(reason) => {
            changeset::discard(cfn, &handle).await?;
            if mode == Mode::Plan && !changed_upstream.is_empty() {
                pending_upstream(outcome, changed_upstream, &reason);
                return Ok(());
            }
            return Err(DeployError::Invalid {
                message: format!("CloudFormation could not compute the change set: {reason}"),
                help: "fix the template or parameters it names; `provisioner lint` checks templates locally"
                    .into(),
            });
        }
    };
    if mode == Mode::Plan && !changed_upstream.is_empty() {
        outcome.notes.push(format!(
            "computed against the deployed {}; it may differ once that is updated",
            changed_upstream.join(", ")
        ));
    }
    review_and_execute(context, spec, &handle, &kind, changes, reviews, outcome).await
}

/// Deploy from a plan file: executes the change set the plan recorded for this stack
/// (after the same review, guard and confirmation as any), or leaves the stack alone
/// when the plan found nothing to change in it.
async fn process_planned(
    context: &Context,
    spec: &StackSpec,
    planned: Option<&PlannedChangeSet>,
    reviews: &mpsc::UnboundedSender<ReviewRequest>,
    outcome: &mut StackOutcome,
) -> Result<(), DeployError> {
    let Some(planned) = planned else {
        outcome.result = StackResult::Unchanged;
        outcome.notes.push("nothing to change in the plan".into());
        return Ok(());
    };
    let kind = ChangeSetType::from(planned.kind.as_str());
    outcome.change_set_type = Some(kind.as_str().to_string());
    outcome.change_set_id = Some(planned.id.clone());
    let handle = ChangeSetHandle {
        id: planned.id.clone(),
        stack_id: planned.stack_id.clone(),
        kind: kind.clone(),
    };
    let stale = |reason: String| DeployError::Invalid {
        message: format!(
            "the planned change set of {} can no longer be executed: {reason}",
            spec.stack_name
        ),
        help: "run `provisioner plan --out <file>` again, review it, and deploy that plan".into(),
    };
    let state = changeset::wait(
        &context.clients.cloudformation,
        &handle,
        context.options.poll,
    )
    .await
    .map_err(|error| stale(error.to_string()))?;
    match state {
        ChangeSetState::Ready(changes) => {
            review_and_execute(context, spec, &handle, &kind, changes, reviews, outcome).await
        }
        ChangeSetState::NoChanges => Err(stale("it has no changes any more".into())),
        ChangeSetState::Failed(reason) => Err(stale(reason)),
    }
}

/// Shows a computed change set, lets the guard and the person decide, and executes or
/// deletes it (a plan that writes a plan file keeps it).
async fn review_and_execute(
    context: &Context,
    spec: &StackSpec,
    handle: &ChangeSetHandle,
    kind: &ChangeSetType,
    changes: Vec<changeset::ResourceChange>,
    reviews: &mpsc::UnboundedSender<ReviewRequest>,
    outcome: &mut StackOutcome,
) -> Result<(), DeployError> {
    let cfn = &context.clients.cloudformation;
    let progress = &context.progress;
    let refusals = guard::refusals(
        &changes,
        &context.options.allow_replace,
        &spec.id,
        &spec.stack_name,
    );
    outcome.changes = changes.clone();
    outcome.refused = refusals.clone();
    let review = Review {
        stack_name: spec.stack_name.clone(),
        change_set_type: kind.as_str().to_string(),
        changes,
        refusals,
    };
    progress.step(&spec.stack_name, "change set ready");
    match ask(reviews, review).await {
        Decision::Execute if context.options.interrupt.is_stopping() => {
            changeset::discard(cfn, handle).await?;
            outcome.result = StackResult::Interrupted;
            outcome.message =
                Some("not executed: the deploy was interrupted; change set deleted".into());
            Ok(())
        }
        Decision::Execute => execute(context, spec, handle, outcome).await,
        Decision::Discard if context.options.keep_change_sets => {
            outcome.result = StackResult::Planned;
            outcome.change_set_id = Some(handle.id.clone());
            outcome.stack_id = Some(handle.stack_id.clone());
            Ok(())
        }
        Decision::Discard => {
            changeset::discard(cfn, handle).await?;
            outcome.result = StackResult::Planned;
            Ok(())
        }
        Decision::Refused => {
            changeset::discard(cfn, handle).await?;
            outcome.result = StackResult::Refused;
            outcome.message =
                Some("a stateful resource would be removed or replaced; change set deleted".into());
            Ok(())
        }
        Decision::NotConfirmed(why) => {
            changeset::discard(cfn, handle).await?;
            outcome.result = StackResult::NotConfirmed;
            outcome.message = Some(format!("{why}; change set deleted"));
            Ok(())
        }
        Decision::Declined => {
            changeset::discard(cfn, handle).await?;
            outcome.result = StackResult::Declined;
            outcome.message = Some("declined at the prompt; change set deleted".into());
            Ok(())
        }
    }
}

/// Hands `review` to the loop that owns the reviewer and waits for its decision.
async fn ask(reviews: &mpsc::UnboundedSender<ReviewRequest>, review: Review) -> Decision {
    let (reply_tx, reply_rx) = oneshot::channel();
    if reviews.send((review, reply_tx)).is_ok() {
        reply_rx
            .await
            .unwrap_or(Decision::NotConfirmed("the review was interrupted"))
    } else {
        Decision::NotConfirmed("the review was interrupted")
    }
}

/// A resource a failed create left behind, as a line of a deletion review.
fn retained_change(resource: &stacks::LeftBehind) -> changeset::ResourceChange {
    changeset::ResourceChange {
        action: "Retained".into(),
        logical_id: resource.logical_id.clone(),
        resource_type: resource.resource_type.clone(),
        replacement: None,
        physical_id: Some(resource.physical_id.clone()),
        details: Vec::new(),
    }
}

fn pending_upstream(outcome: &mut StackOutcome, changed_upstream: &[String], reason: &str) {
    outcome.result = StackResult::PendingUpstream;
    outcome.message = Some(format!(
        "its change set can be computed once {} is deployed ({reason})",
        changed_upstream.join(", ")
    ));
}

fn unsettled(stack: &DeployedStack) -> DeployError {
    let help = match stack.status.as_str() {
        "UPDATE_ROLLBACK_FAILED" => format!(
            "fix what blocked the rollback, then `aws cloudformation continue-update-rollback --stack-name {}`",
            stack.name
        ),
        "DELETE_FAILED" => "remove what blocked the deletion and run `provisioner destroy` again".to_string(),
        _ => "inspect the stack's events in the CloudFormation console".to_string(),
    };
    DeployError::Invalid {
        message: format!(
            "the stack is in {}{} and cannot be updated",
            stack.status,
            stack
                .status_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        help,
    }
}

async fn delete_and_wait(
    context: &Context,
    spec: &StackSpec,
    stack_id: &str,
) -> Result<(), DeployError> {
    let cfn = &context.clients.cloudformation;
    let token = request_token(&spec.id);
    let since = SystemTime::now();
    cfn.delete_stack()
        .stack_name(stack_id)
        .client_request_token(&token)
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("DeleteStack {}", spec.stack_name), &error))?;
    let mut watcher = EventWatcher::new(stack_id, Some(token), since);
    let finished = events::wait_for_terminal(
        cfn,
        &spec.stack_name,
        stack_id,
        &mut watcher,
        context.options.poll,
        &context.progress,
    )
    .await?;
    if finished.status != "DELETE_COMPLETE" {
        return Err(DeployError::Invalid {
            message: format!(
                "deleting the ROLLBACK_COMPLETE stack ended in {}",
                finished.status
            ),
            help: "delete it in the CloudFormation console, then deploy again".into(),
        });
    }
    Ok(())
}

/// The emulator's path for parameter-only updates: UpdateStack with the same inputs the
/// change set had, watched to its end like an executed change set.
async fn execute_update_directly(
    context: &Context,
    spec: &StackSpec,
    outcome: &mut StackOutcome,
) -> Result<(), DeployError> {
    let cfn = &context.clients.cloudformation;
    let token = request_token(&spec.id);
    let since = SystemTime::now();
    context
        .progress
        .step(&spec.stack_name, "updating the stack's parameters");
    let stack_id = changeset::update_stack_like(
        cfn,
        spec,
        &context.options.release,
        context.options.role_arn.as_deref(),
        &token,
    )
    .await?;
    finish_execution(context, spec, &stack_id, token, since, outcome).await
}

async fn execute(
    context: &Context,
    spec: &StackSpec,
    handle: &ChangeSetHandle,
    outcome: &mut StackOutcome,
) -> Result<(), DeployError> {
    let cfn = &context.clients.cloudformation;
    let token = request_token(&spec.id);
    let since = SystemTime::now();
    context
        .progress
        .step(&spec.stack_name, "executing change set");
    let created_id;
    let stack_ref = if context.options.emulator && handle.kind == ChangeSetType::Create {
        changeset::discard(cfn, handle).await?;
        created_id = changeset::create_stack_like(
            cfn,
            spec,
            &context.options.release,
            context.options.role_arn.as_deref(),
            &token,
        )
        .await?;
        created_id.as_str()
    } else {
        changeset::execute(cfn, handle, &token).await?;
        if handle.stack_id.is_empty() {
            spec.stack_name.as_str()
        } else {
            handle.stack_id.as_str()
        }
    };
    let stack_ref = stack_ref.to_string();
    finish_execution(context, spec, &stack_ref, token, since, outcome).await
}

async fn finish_execution(
    context: &Context,
    spec: &StackSpec,
    stack_ref: &str,
    token: String,
    since: SystemTime,
    outcome: &mut StackOutcome,
) -> Result<(), DeployError> {
    let cfn = &context.clients.cloudformation;
    let mut watcher = EventWatcher::new(stack_ref, Some(token), since);
    let interrupt = &context.options.interrupt;
    let wait = events::wait_for_terminal(
        cfn,
        &spec.stack_name,
        stack_ref,
        &mut watcher,
        context.options.poll,
        &context.progress,
    );
    tokio::pin!(wait);
    let mut cancelled = false;
    let finished = loop {
        tokio::select! {
            finished = &mut wait => break finished?,
            _ = interrupt.reached(Level::Cancelling), if !cancelled => {
                cancelled = true;
                cancel_update(context, spec, stack_ref, outcome).await;
            }
        }
    };
    outcome.status = Some(finished.status.clone());
    if stacks::is_success(&finished.status) {
        outcome.result = StackResult::Deployed;
        outcome.seen = finished.stack.as_ref().map(|stack| SeenStack {
            last_updated: stack.last_updated.clone(),
            template_sha256: spec.template_sha256.clone(),
        });
        return Ok(());
    }
    outcome.result = match finished.status.as_str() {
        "UPDATE_ROLLBACK_COMPLETE" if cancelled => StackResult::Interrupted,
        "UPDATE_ROLLBACK_COMPLETE" => StackResult::RolledBack,
        _ => StackResult::Failed,
    };
    if cancelled && outcome.result == StackResult::Interrupted {
        outcome.message = Some("the update was cancelled and rolled back".into());
        return Ok(());
    }
    outcome.root_cause = events::root_cause(&finished.events, &spec.stack_name);
    outcome.message = Some(match (&outcome.root_cause, &finished.reason) {
        (Some(cause), _) => format!(
            "{} ({}) {}: {}",
            cause.logical_id,
            cause.resource_type,
            cause.status,
            cause.reason.as_deref().unwrap_or("no reason given")
        ),
        (None, Some(reason)) => reason.clone(),
        (None, None) => finished
            .events
            .iter()
            .filter(|e| {
                e.logical_id == spec.stack_name && e.status.ends_with("ROLLBACK_IN_PROGRESS")
            })
            .find_map(|e| e.reason.clone())
            .unwrap_or_else(|| "the stack did not reach a successful state".into()),
    });
    if finished.status == "ROLLBACK_COMPLETE" {
        outcome.notes.push(
            "the new stack rolled back; the next deploy (or `provisioner recover`) asks to delete it before creating it again".into(),
        );
    }
    Ok(())
}

/// The second Ctrl-C: CancelUpdateStack for an update in progress. A create cannot be
/// cancelled; it is left to finish (or fail and roll back) on its own.
async fn cancel_update(
    context: &Context,
    spec: &StackSpec,
    stack_ref: &str,
    outcome: &mut StackOutcome,
) {
    let cfn = &context.clients.cloudformation;
    let busy_updating = stacks::describe(cfn, stack_ref)
        .await
        .ok()
        .flatten()
        .is_some_and(|stack| stack.status == "UPDATE_IN_PROGRESS");
    if !busy_updating {
        let note =
            "not cancelled: only an update in progress can be cancelled; waiting for it to end";
        context.progress.note(&spec.stack_name, note);
        outcome.notes.push(note.into());
        return;
    }
    context
        .progress
        .note(&spec.stack_name, "cancelling the update in progress");
    match cfn.cancel_update_stack().stack_name(stack_ref).send().await {
        Ok(_) => outcome
            .notes
            .push("the update in progress was cancelled (CancelUpdateStack)".into()),
        Err(error) => {
            let error = DeployError::aws(format!("CancelUpdateStack {}", spec.stack_name), &error);
            context.progress.note(&spec.stack_name, &error.to_string());
            outcome.notes.push(error.to_string());
        }
    }
}

/// A token unique to one operation, carried by all of its stack events.
fn request_token(stack_id: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let safe: String = stack_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("provisioner-{safe}-{nanos}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(id: &str, deps: &[&str]) -> StackSpec {
        StackSpec {
            id: id.into(),
            stack_name: format!("app-env-{id}"),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            body: String::new(),
            template_sha256: "abc".into(),
            parameters: BTreeMap::new(),
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn unknown_dependencies_and_cycles_are_reported_by_name() {
        let error = check_dependencies(&[spec("compute", &["data"])]).unwrap_err();
        assert!(error.to_string().contains("`data`"), "{error}");
        let error = check_dependencies(&[spec("a", &["b"]), spec("b", &["a"]), spec("c", &[])])
            .unwrap_err();
        assert!(error.to_string().contains("a, b"), "{error}");
        assert!(check_dependencies(&[spec("a", &[]), spec("b", &["a"])]).is_ok());
    }

    #[test]
    fn a_stack_is_the_same_only_when_hash_parameters_and_tags_match() {
        let mut wanted = spec("data", &[]);
        wanted.parameters.insert("Key".into(), "v1".into());
        wanted.tags.insert("team".into(), "platform".into());
        let mut deployed = DeployedStack {
            name: wanted.stack_name.clone(),
            stack_id: "id".into(),
            status: "UPDATE_COMPLETE".into(),
            status_reason: None,
            parameters: wanted.parameters.clone(),
            tags: wanted.identity_tags(),
            outputs: BTreeMap::new(),
            last_updated: None,
            termination_protection: false,
        };
        deployed
            .tags
            .insert(crate::deploy::RELEASE_TAG.into(), "older-release".into());
        assert_eq!(compare(&wanted, &deployed), Comparison::Same);
        let mut other = deployed.clone();
        other.parameters.insert("Key".into(), "v2".into());
        assert_eq!(compare(&wanted, &other), Comparison::Differs);
        let mut other = deployed.clone();
        other.tags.insert("team".into(), "data".into());
        assert_eq!(compare(&wanted, &other), Comparison::Differs);
        let mut other = deployed.clone();
        other.status = "UPDATE_ROLLBACK_FAILED".into();
        assert_eq!(compare(&wanted, &other), Comparison::Differs);
        let mut other = deployed.clone();
        other.tags.insert(
            crate::deploy::TEMPLATE_HASH_TAG.into(),
            "older-template".into(),
        );
        assert_eq!(compare(&wanted, &other), Comparison::TemplateToCheck);
    }
}
