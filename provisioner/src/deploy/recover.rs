//! Getting stacks out of stuck CloudFormation states, the logic of `provisioner
//! recover`: an update whose rollback failed (UPDATE_ROLLBACK_FAILED) is rolled back
//! further with ContinueUpdateRollback, after listing the resources that failed and why
//! (`--skip` names those that cannot be rolled back); an operation still running from an
//! interrupted deploy is waited for (or, with `--cancel`, an update is cancelled with
//! CancelUpdateStack); a new stack left in ROLLBACK_COMPLETE by a failed first create is
//! deleted once confirmed, with the resources its create left behind listed. Stacks
//! already settled are said to be so.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use aws_sdk_cloudformation::Client;
use serde::Serialize;

use super::engine::Confirmation;
use super::events::{self, EventWatcher, StackEvent};
use super::progress::Progress;
use super::stacks::{self, DeployedStack, LeftBehind};
use super::{emulator_lacks, DeployError, PollSettings, StackSpec};
use crate::exit::Exit;

/// How `recover` acts.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// `--skip` values as given: `LogicalId` or `stack/LogicalId`.
    pub skip: Vec<String>,
    /// Cancel an update in progress instead of waiting for it.
    pub cancel: bool,
    /// Who confirms deleting a stack left in ROLLBACK_COMPLETE.
    pub confirmation: Confirmation,
    pub poll: PollSettings,
    /// The role ContinueUpdateRollback runs with (the bootstrap stack's execution role).
    pub role_arn: Option<String>,
    /// The clients talk to an emulator (moto), which lacks most recovery APIs.
    pub emulator: bool,
}

/// How one stack ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecoveryResult {
    /// Nothing to do: the stack is in a settled state.
    Settled,
    /// The stack was brought to a settled state (or deleted, to be created again).
    Recovered,
    /// The stack does not exist.
    NotDeployed,
    /// Deleting it needs confirmation: no terminal and no `--yes`.
    NeedsConfirmation,
    /// Deleting it was declined at the prompt.
    Declined,
    /// Recovery failed, or the state needs a person (see the message).
    Failed,
}

/// One stack's recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackRecovery {
    pub id: String,
    pub stack_name: String,
    pub result: RecoveryResult,
    /// The status found, and the status left.
    pub status_before: Option<String>,
    pub status_after: Option<String>,
    /// What was done, in order.
    pub actions: Vec<String>,
    /// UPDATE_ROLLBACK_FAILED: the resources that failed to roll back, and why.
    pub failed_resources: Vec<StackEvent>,
    /// The logical ids passed as ResourcesToSkip.
    pub skipped: Vec<String>,
    /// ROLLBACK_COMPLETE: the resources the failed create left behind.
    pub left_behind: Vec<LeftBehind>,
    pub message: Option<String>,
}

impl StackRecovery {
    fn new(spec: &StackSpec, status: Option<&str>) -> Self {
        Self {
            id: spec.id.clone(),
            stack_name: spec.stack_name.clone(),
            result: RecoveryResult::Settled,
            status_before: status.map(str::to_string),
            status_after: status.map(str::to_string),
            actions: Vec::new(),
            failed_resources: Vec::new(),
            skipped: Vec::new(),
            left_behind: Vec::new(),
            message: None,
        }
    }
}

/// Every stack's recovery, in the environment's stack order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    pub stacks: Vec<StackRecovery>,
}

impl Recovery {
    /// 1 when anything failed, else 10 when a deletion needs confirmation, else 11 when
    /// one was declined, else 0.
    pub fn exit(&self) -> Exit {
        let any = |r: RecoveryResult| self.stacks.iter().any(|s| s.result == r);
        if any(RecoveryResult::Failed) {
            Exit::Failed
        } else if any(RecoveryResult::NeedsConfirmation) {
            Exit::NeedsConfirmation
        } else if any(RecoveryResult::Declined) {
            Exit::Declined
        } else {
            Exit::Success
        }
    }

    /// True when no stack needed anything.
    pub fn all_settled(&self) -> bool {
        self.stacks.iter().all(|s| {
            matches!(
                s.result,
                RecoveryResult::Settled | RecoveryResult::NotDeployed
            )
        })
    }

    /// Stack names something was done to.
    pub fn acted_on(&self) -> Vec<String> {
        self.stacks
            .iter()
            .filter(|s| !s.actions.is_empty())
            .map(|s| s.stack_name.clone())
            .collect()
    }

    pub fn to_text(&self) -> String {
        let width = self
            .stacks
            .iter()
            .map(|s| s.stack_name.len())
            .max()
            .unwrap_or(0);
        let mut text = String::new();
        for stack in &self.stacks {
            let result = match stack.result {
                RecoveryResult::Settled => "settled, nothing to do",
                RecoveryResult::Recovered => "recovered",
                RecoveryResult::NotDeployed => "not deployed",
                RecoveryResult::NeedsConfirmation => "NOT RECOVERED (needs confirmation)",
                RecoveryResult::Declined => "NOT RECOVERED (declined)",
                RecoveryResult::Failed => "FAILED",
            };
            let status = match (&stack.status_before, &stack.status_after) {
                (Some(before), Some(after)) if before != after => format!(" ({before} -> {after})"),
                (Some(before), None) => format!(" ({before} -> deleted)"),
                (Some(before), _) => format!(" ({before})"),
                (None, _) => String::new(),
            };
            text.push_str(&format!("{:<width$}  {result}{status}\n", stack.stack_name));
            let pad = format!("{:width$}  ", "");
            for event in &stack.failed_resources {
                text.push_str(&format!(
                    "{pad}failed: {} ({}) {}: {}\n",
                    event.logical_id,
                    event.resource_type,
                    event.status,
                    event.reason.as_deref().unwrap_or("no reason given")
                ));
            }
            for resource in &stack.left_behind {
                text.push_str(&format!("{pad}left behind: {}\n", resource.describe()));
            }
            for action in &stack.actions {
                text.push_str(&format!("{pad}done: {action}\n"));
            }
            if let Some(message) = &stack.message {
                text.push_str(&format!("{pad}{message}\n"));
            }
        }
        if self.all_settled() {
            text.push_str("every stack is settled; nothing to recover\n");
        }
        text
    }
}

/// `--skip` resolved to one stack: logical ids by stack name.
type Skips = BTreeMap<String, BTreeSet<String>>;

/// Recovers every stack of `specs`. Bad `--skip` values are refused before anything is
/// done. `ask` puts a question to a person (only with [`Confirmation::Prompt`]).
pub async fn recover(
    client: &Client,
    specs: &[StackSpec],
    options: &RecoverOptions,
    progress: &Progress,
    ask: &mut dyn FnMut(&str) -> bool,
) -> Result<Recovery, DeployError> {
    let names: Vec<String> = specs.iter().map(|s| s.stack_name.clone()).collect();
    let deployed = stacks::describe_many(client, &names).await?;
    let mut failed: BTreeMap<String, Vec<StackEvent>> = BTreeMap::new();
    for stack in deployed.values() {
        if stack.status == "UPDATE_ROLLBACK_FAILED" {
            failed.insert(
                stack.name.clone(),
                failed_to_roll_back(client, stack).await?,
            );
        }
    }
    let skips = resolve_skips(&options.skip, specs, &deployed, &failed)?;
    let mut recovered = Vec::new();
    for spec in specs {
        let current = deployed.get(&spec.stack_name).cloned();
        let mut outcome = StackRecovery::new(spec, current.as_ref().map(|s| s.status.as_str()));
        let Some(stack) = current else {
            outcome.result = RecoveryResult::NotDeployed;
            recovered.push(outcome);
            continue;
        };
        let skip = skips.get(&spec.stack_name).cloned().unwrap_or_default();
        let known_failures = failed.remove(&spec.stack_name);
        if let Err(error) = recover_stack(
            client,
            stack,
            known_failures,
            &skip,
            options,
            progress,
            ask,
            &mut outcome,
        )
        .await
        {
            outcome.result = RecoveryResult::Failed;
            let help = error.help().map(|h| format!(" ({h})")).unwrap_or_default();
            outcome.message = Some(format!("{error}{help}"));
        }
        recovered.push(outcome);
    }
    Ok(Recovery { stacks: recovered })
}

#[allow(clippy::too_many_arguments)]
async fn recover_stack(
    client: &Client,
    mut stack: DeployedStack,
    mut known_failures: Option<Vec<StackEvent>>,
    skip: &BTreeSet<String>,
    options: &RecoverOptions,
    progress: &Progress,
    ask: &mut dyn FnMut(&str) -> bool,
    outcome: &mut StackRecovery,
) -> Result<(), DeployError> {
    // Each pass moves the stack on by one operation; a wait can end in a state that
    // needs another (an update that rolls back and fails to, say).
    for _ in 0..4 {
        outcome.status_after = Some(stack.status.clone());
        let acted = !outcome.actions.is_empty();
        let done = if acted {
            RecoveryResult::Recovered
        } else {
            RecoveryResult::Settled
        };
        if stack.is_busy() {
            if options.cancel && stack.status == "UPDATE_IN_PROGRESS" {
                cancel_update(client, &stack, options).await?;
                outcome
                    .actions
                    .push("cancelled the update in progress (CancelUpdateStack)".into());
            } else if options.cancel {
                progress.note(
                    &stack.name,
                    &format!(
                        "{} cannot be cancelled (only UPDATE_IN_PROGRESS can); waiting for it",
                        stack.status
                    ),
                );
            }
            let before = stack.status.clone();
            let finished = wait(client, &stack, None, options, progress).await?;
            outcome.actions.push(format!(
                "waited for {before} to finish: {}",
                finished.status
            ));
            match finished.stack {
                Some(next) => stack = next,
                None => {
                    outcome.status_after = None;
                    outcome.result = RecoveryResult::Recovered;
                    return Ok(());
                }
            }
            continue;
        }
        match stack.status.as_str() {
            "UPDATE_ROLLBACK_FAILED" => {
                let failures = match known_failures.take() {
                    Some(failures) => failures,
                    None => failed_to_roll_back(client, &stack).await?,
                };
                outcome.failed_resources = failures;
                outcome.skipped = skip.iter().cloned().collect();
                let token = request_token(&stack.name);
                let mut request = client
                    .continue_update_rollback()
                    .stack_name(&stack.stack_id)
                    .set_role_arn(options.role_arn.clone())
                    .client_request_token(&token);
                for logical_id in skip {
                    request = request.resources_to_skip(logical_id);
                }
                let since = SystemTime::now();
                request.send().await.map_err(|error| {
                    lacking(options, &error, "ContinueUpdateRollback").unwrap_or_else(|| {
                        DeployError::aws(format!("ContinueUpdateRollback {}", stack.name), &error)
                    })
                })?;
                outcome.actions.push(if skip.is_empty() {
                    "continued the rollback (ContinueUpdateRollback)".to_string()
                } else {
                    format!(
                        "continued the rollback skipping {} (ContinueUpdateRollback)",
                        outcome.skipped.join(", ")
                    )
                });
                let finished =
                    wait(client, &stack, Some((token, since)), options, progress).await?;
                outcome.status_after = Some(finished.status.clone());
                if finished.status == "UPDATE_ROLLBACK_COMPLETE" {
                    outcome.result = RecoveryResult::Recovered;
                    outcome.message = Some(if skip.is_empty() {
                        "the stack is back on its previous template".to_string()
                    } else {
                        "the stack is back on its previous template; the skipped resources are \
                         marked UPDATE_COMPLETE although they were not rolled back: check them \
                         against the template and fix them by hand or with the next deploy"
                            .to_string()
                    });
                    return Ok(());
                }
                if let Some(next) = &finished.stack {
                    outcome.failed_resources = failed_to_roll_back(client, next).await?;
                }
                outcome.result = RecoveryResult::Failed;
                outcome.message = Some(format!(
                    "the rollback ended in {}; fix what the failed resources name, or pass \
                     --skip {}/<LogicalId> for a resource that cannot be rolled back, then run \
                     `provisioner recover` again",
                    finished.status, outcome.id
                ));
                return Ok(());
            }
            "ROLLBACK_COMPLETE" => {
                outcome.left_behind = stacks::left_behind(client, &stack.stack_id).await?;
                let decision = match options.confirmation {
                    Confirmation::Yes => Ok(()),
                    Confirmation::Unavailable => Err(RecoveryResult::NeedsConfirmation),
                    Confirmation::Prompt => {
                        if ask(&deletion_question(&stack.name, &outcome.left_behind)) {
                            Ok(())
                        } else {
                            Err(RecoveryResult::Declined)
                        }
                    }
                };
                if let Err(result) = decision {
                    outcome.result = result;
                    outcome.message = Some(match result {
                        RecoveryResult::NeedsConfirmation => {
                            "a failed first create left the stack in ROLLBACK_COMPLETE; no \
                             terminal to confirm its deletion on: pass --yes to delete it"
                                .to_string()
                        }
                        _ => "declined: the stack stays in ROLLBACK_COMPLETE".to_string(),
                    });
                    return Ok(());
                }
                let token = request_token(&stack.name);
                let since = SystemTime::now();
                client
                    .delete_stack()
                    .stack_name(&stack.stack_id)
                    .client_request_token(&token)
                    .send()
                    .await
                    .map_err(|error| {
                        DeployError::aws(format!("DeleteStack {}", stack.name), &error)
                    })?;
                outcome
                    .actions
                    .push("deleted the stack left in ROLLBACK_COMPLETE".into());
                let finished =
                    wait(client, &stack, Some((token, since)), options, progress).await?;
                if finished.status != "DELETE_COMPLETE" {
                    outcome.status_after = Some(finished.status.clone());
                    outcome.result = RecoveryResult::Failed;
                    outcome.message = Some(format!(
                        "deleting the stack ended in {}; see its events in the CloudFormation \
                         console",
                        finished.status
                    ));
                    return Ok(());
                }
                outcome.status_after = None;
                outcome.result = RecoveryResult::Recovered;
                outcome.message = Some(if outcome.left_behind.is_empty() {
                    format!("the next `provisioner deploy` creates {} again", stack.name)
                } else {
                    format!(
                        "the resources left behind still exist: delete them (or their data is \
                         wanted: import them) before `provisioner deploy` creates {} again, or \
                         that create fails with AlreadyExists",
                        stack.name
                    )
                });
                return Ok(());
            }
            _ if stack.is_settled() || stack.status == "REVIEW_IN_PROGRESS" => {
                outcome.result = done;
                return Ok(());
            }
            other => {
                outcome.result = RecoveryResult::Failed;
                outcome.message = Some(match other {
                    "DELETE_FAILED" => "a deletion failed: remove what blocked it (see the \
                                        stack's events), then run `provisioner destroy` again"
                        .to_string(),
                    "ROLLBACK_FAILED" => "the rollback of a failed create failed: delete the \
                                          stack in the CloudFormation console, retaining the \
                                          resources that cannot be deleted"
                        .to_string(),
                    _ => format!(
                        "{other} is not a state `recover` handles; inspect the stack's events \
                         in the CloudFormation console"
                    ),
                });
                return Ok(());
            }
        }
    }
    outcome.result = RecoveryResult::Failed;
    outcome.message = Some(format!(
        "the stack is still in {} after recovering it; run `provisioner recover` again",
        stack.status
    ));
    Ok(())
}

fn deletion_question(stack: &str, left: &[LeftBehind]) -> String {
    let mut text = format!(
        "{stack} was left in ROLLBACK_COMPLETE by a failed first create and must be deleted \
         before it can be created again.\n"
    );
    if left.is_empty() {
        text.push_str("  The failed create left no resources behind.\n");
    } else {
        text.push_str(
            "  Left behind by the failed create (deleting the stack does not remove them):\n",
        );
        for resource in left {
            text.push_str(&format!("    {}\n", resource.describe()));
        }
    }
    text.push_str(&format!("Delete the stack {stack}?"));
    text
}

async fn cancel_update(
    client: &Client,
    stack: &DeployedStack,
    options: &RecoverOptions,
) -> Result<(), DeployError> {
    client
        .cancel_update_stack()
        .stack_name(&stack.stack_id)
        .send()
        .await
        .map_err(|error| {
            lacking(options, &error, "CancelUpdateStack").unwrap_or_else(|| {
                DeployError::aws(format!("CancelUpdateStack {}", stack.name), &error)
            })
        })?;
    Ok(())
}

fn lacking<E>(
    options: &RecoverOptions,
    error: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
    api: &str,
) -> Option<DeployError>
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata,
{
    (options.emulator && emulator_lacks(error)).then(|| DeployError::Invalid {
        message: format!("the emulator (moto) does not implement {api}"),
        help: "reset the emulated environment instead (`provisioner local down`, then \
               `provisioner up`)"
            .into(),
    })
}

async fn wait(
    client: &Client,
    stack: &DeployedStack,
    operation: Option<(String, SystemTime)>,
    options: &RecoverOptions,
    progress: &Progress,
) -> Result<events::Finished, DeployError> {
    let (token, since) = match operation {
        Some((token, since)) => (Some(token), since),
        None => (None, SystemTime::now()),
    };
    let mut watcher = EventWatcher::new(&stack.stack_id, token, since);
    events::wait_for_terminal(
        client,
        &stack.name,
        &stack.stack_id,
        &mut watcher,
        options.poll,
        progress,
    )
    .await
}

/// The resources whose rollback failed in the stack's latest rollback, newest status
/// first per resource: read from the stack's events back to the stack's own latest
/// UPDATE_ROLLBACK_IN_PROGRESS event.
pub async fn failed_to_roll_back(
    client: &Client,
    stack: &DeployedStack,
) -> Result<Vec<StackEvent>, DeployError> {
    let mut latest: BTreeMap<String, StackEvent> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    'pages: for _ in 0..10 {
        let output = client
            .describe_stack_events()
            .stack_name(&stack.stack_id)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|error| {
                DeployError::aws(format!("DescribeStackEvents {}", stack.name), &error)
            })?;
        for event in output.stack_events() {
            let logical = event.logical_resource_id().unwrap_or_default();
            let status = event
                .resource_status()
                .map(|s| s.as_str())
                .unwrap_or_default();
            if logical == stack.name {
                if status == "UPDATE_ROLLBACK_IN_PROGRESS" {
                    break 'pages;
                }
                continue;
            }
            if latest.contains_key(logical) {
                continue;
            }
            order.push(logical.to_string());
            latest.insert(
                logical.to_string(),
                StackEvent {
                    event_id: event.event_id().unwrap_or_default().to_string(),
                    logical_id: logical.to_string(),
                    resource_type: event.resource_type().unwrap_or_default().to_string(),
                    status: status.to_string(),
                    reason: event.resource_status_reason().map(str::to_string),
                    timestamp: event
                        .timestamp()
                        .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
                        .unwrap_or_default(),
                    at: event
                        .timestamp()
                        .and_then(|t| SystemTime::try_from(*t).ok())
                        .unwrap_or(SystemTime::UNIX_EPOCH),
                    request_token: event.client_request_token().map(str::to_string),
                },
            );
        }
        match output.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|logical| latest.remove(&logical))
        .filter(|event| event.status.ends_with("_FAILED"))
        .collect())
}

/// Resolves `--skip` values against the stacks whose rollback failed. Refuses, naming
/// the fix, a value that names no such stack or no resource that failed to roll back.
fn resolve_skips(
    raw: &[String],
    specs: &[StackSpec],
    deployed: &BTreeMap<String, DeployedStack>,
    failed: &BTreeMap<String, Vec<StackEvent>>,
) -> Result<Skips, DeployError> {
    let mut skips = Skips::new();
    let failed_list = || {
        let all: Vec<String> = failed
            .iter()
            .flat_map(|(stack, events)| {
                let id = specs
                    .iter()
                    .find(|s| &s.stack_name == stack)
                    .map_or(stack.as_str(), |s| s.id.as_str());
                events.iter().map(move |e| format!("{id}/{}", e.logical_id))
            })
            .collect();
        if all.is_empty() {
            "no stack of the environment is in UPDATE_ROLLBACK_FAILED".to_string()
        } else {
            format!("the resources that failed to roll back: {}", all.join(", "))
        }
    };
    for value in raw {
        let value = value.trim();
        let (stack_part, logical) = match value.split_once('/') {
            Some((stack, logical)) => (Some(stack), logical),
            None => (None, value),
        };
        if logical.is_empty() || stack_part.is_some_and(str::is_empty) {
            return Err(DeployError::Invalid {
                message: format!("--skip `{value}` names no resource"),
                help: "give the logical id of a resource that failed to roll back, e.g. \
                       --skip Records or --skip data/Records"
                    .into(),
            });
        }
        let stack_name = match stack_part {
            Some(stack) => {
                let spec = specs
                    .iter()
                    .find(|s| s.id == stack || s.stack_name == stack)
                    .ok_or_else(|| DeployError::Invalid {
                        message: format!(
                            "--skip `{value}`: `{stack}` is not one of the environment's stacks"
                        ),
                        help: format!(
                            "name the stack by id or name: {}",
                            specs
                                .iter()
                                .map(|s| s.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })?;
                let status = deployed
                    .get(&spec.stack_name)
                    .map_or("not deployed", |s| s.status.as_str());
                let Some(events) = failed.get(&spec.stack_name) else {
                    return Err(DeployError::Invalid {
                        message: format!(
                            "--skip `{value}`: {} is {status}, not UPDATE_ROLLBACK_FAILED; \
                             resources can be skipped only in a rollback that failed",
                            spec.stack_name
                        ),
                        help: failed_list(),
                    });
                };
                if !events.iter().any(|e| e.logical_id == logical) {
                    return Err(DeployError::Invalid {
                        message: format!(
                            "--skip `{value}`: {logical} is not a resource of {} that failed to \
                             roll back",
                            spec.stack_name
                        ),
                        help: failed_list(),
                    });
                }
                spec.stack_name.clone()
            }
            None => {
                let matching: Vec<&String> = failed
                    .iter()
                    .filter(|(_, events)| events.iter().any(|e| e.logical_id == logical))
                    .map(|(stack, _)| stack)
                    .collect();
                match matching.as_slice() {
                    [one] => (*one).clone(),
                    [] => {
                        return Err(DeployError::Invalid {
                            message: format!(
                                "--skip `{value}`: no stack has a resource {logical} that failed \
                                 to roll back"
                            ),
                            help: failed_list(),
                        })
                    }
                    several => {
                        return Err(DeployError::Invalid {
                            message: format!(
                                "--skip `{value}`: {logical} failed to roll back in several \
                                 stacks ({})",
                                several
                                    .iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            help: "name one as <stack>/<LogicalId>".into(),
                        })
                    }
                }
            }
        };
        skips
            .entry(stack_name)
            .or_default()
            .insert(logical.to_string());
    }
    Ok(skips)
}

fn request_token(stack: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let safe: String = stack
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("provisioner-recover-{safe}-{nanos}")
}
