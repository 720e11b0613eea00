//! `destroy`: deletes an environment's stacks in reverse dependency order (a stack goes
//! once everything importing from it is gone), refusing while termination protection
//! or retained data would make that a surprise, and saying what is left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::task::JoinSet;

use super::clients::AwsClients;
use super::engine::Confirmation;
use super::events::{self, EventWatcher, StackEvent};
use super::progress::Progress;
use super::stacks::{self, DeployedStack};
use super::{DeployError, PollSettings, StackSpec};

/// Deletion policies that keep a resource (or a snapshot of it) after its stack is gone.
const KEEPING_POLICIES: &[&str] = &["Retain", "RetainExceptOnCreate", "Snapshot"];
/// Metadata key of a resource an emulated environment keeps only because the emulator
/// cannot delete it (it holds no data, so it is not reported as left behind).
pub const EMULATOR_KEEPS: &str = "provisioner:emulator-keeps";

/// How a destroy runs.
#[derive(Debug, Clone)]
pub struct DestroyOptions {
    pub confirmation: Confirmation,
    /// Go ahead although resources with a retaining deletion policy will stay.
    pub accept_retained: bool,
    pub poll: PollSettings,
    /// The environment's artifact bucket, which destroy never deletes.
    pub artifact_bucket: String,
}

/// A resource that outlives its stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetainedResource {
    pub stack_name: String,
    pub logical_id: String,
    pub resource_type: String,
    pub physical_id: Option<String>,
    /// The DeletionPolicy that keeps it.
    pub policy: String,
}

/// How a destroy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DestroyResult {
    Destroyed,
    NothingToDestroy,
    Refused,
    NotConfirmed,
    Declined,
    Failed,
}

/// A stack that could not be deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedDeletion {
    pub stack_name: String,
    pub message: String,
    pub root_cause: Option<StackEvent>,
}

/// What destroy did and what remains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestroyOutcome {
    pub result: DestroyResult,
    pub deleted: Vec<String>,
    pub failed: Vec<FailedDeletion>,
    /// Stacks with termination protection (which refuses the destroy).
    pub protected: Vec<String>,
    pub left_behind: Vec<RetainedResource>,
    pub artifact_bucket: String,
    pub message: String,
}

impl DestroyOutcome {
    /// A readable account for stdout.
    pub fn to_text(&self) -> String {
        let mut text = format!("{}\n", self.message);
        for name in &self.deleted {
            text.push_str(&format!("  deleted {name}\n"));
        }
        for failed in &self.failed {
            text.push_str(&format!(
                "  FAILED {}: {}\n",
                failed.stack_name, failed.message
            ));
        }
        for name in &self.protected {
            text.push_str(&format!(
                "  {name} has termination protection: `aws cloudformation update-termination-protection \
                 --no-enable-termination-protection --stack-name {name}` if it really should go\n"
            ));
        }
        if !self.left_behind.is_empty() {
            text.push_str("left behind (DeletionPolicy keeps them):\n");
            for r in &self.left_behind {
                text.push_str(&format!(
                    "  {} {} ({}) from {}, policy {}\n",
                    r.resource_type,
                    r.physical_id.as_deref().unwrap_or(&r.logical_id),
                    r.logical_id,
                    r.stack_name,
                    r.policy
                ));
            }
        }
        text.push_str(&format!(
            "the artifact bucket s3://{} is kept (other environments' releases may need its zips)\n",
            self.artifact_bucket
        ));
        text
    }
}

/// Deletes the stacks of `specs` that exist. `confirm` asks a person (terminal only).
pub async fn destroy(
    clients: &AwsClients,
    specs: &[StackSpec],
    options: &DestroyOptions,
    progress: Arc<Progress>,
    confirm: &mut dyn FnMut(&str) -> bool,
) -> Result<DestroyOutcome, DeployError> {
    super::engine::check_dependencies(specs)?;
    let cfn = &clients.cloudformation;
    let names: Vec<String> = specs.iter().map(|s| s.stack_name.clone()).collect();
    let existing = stacks::describe_many(cfn, &names).await?;
    let mut outcome = DestroyOutcome {
        result: DestroyResult::NothingToDestroy,
        deleted: Vec::new(),
        failed: Vec::new(),
        protected: Vec::new(),
        left_behind: Vec::new(),
        artifact_bucket: options.artifact_bucket.clone(),
        message: "no stack of this environment exists; nothing to destroy".into(),
    };
    if existing.is_empty() {
        return Ok(outcome);
    }
    outcome.protected = existing
        .values()
        .filter(|s| s.termination_protection)
        .map(|s| s.name.clone())
        .collect();
    let retained =
        futures_util::future::join_all(existing.values().map(|s| retained_resources(clients, s)))
            .await;
    for found in retained {
        outcome.left_behind.extend(found?);
    }
    if !outcome.protected.is_empty() {
        outcome.result = DestroyResult::Refused;
        outcome.message = format!(
            "refused: {} ha{} termination protection; nothing was deleted",
            outcome.protected.join(", "),
            if outcome.protected.len() == 1 {
                "s"
            } else {
                "ve"
            }
        );
        return Ok(outcome);
    }
    if !outcome.left_behind.is_empty() && !options.accept_retained {
        outcome.result = DestroyResult::Refused;
        outcome.message = format!(
            "refused: {} resource(s) holding data would outlive their stacks (listed below); \
             nothing was deleted. Pass --accept-retained to delete the stacks and keep them",
            outcome.left_behind.len()
        );
        return Ok(outcome);
    }
    let question = format!(
        "Delete {} stack(s): {}?",
        existing.len(),
        existing.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    let go = match options.confirmation {
        Confirmation::Yes => true,
        Confirmation::Prompt => confirm(&question),
        Confirmation::Unavailable => {
            outcome.result = DestroyResult::NotConfirmed;
            outcome.message =
                "not confirmed: no terminal to confirm on; pass --yes to destroy without a prompt"
                    .into();
            return Ok(outcome);
        }
    };
    if !go {
        outcome.result = DestroyResult::Declined;
        outcome.message = "declined at the prompt; nothing was deleted".into();
        return Ok(outcome);
    }
    let (deleted, failed) =
        delete_stacks(clients, specs, &existing, options.poll, progress).await?;
    outcome.deleted = deleted;
    outcome.failed = failed;
    outcome.result = if outcome.failed.is_empty() {
        DestroyResult::Destroyed
    } else {
        DestroyResult::Failed
    };
    outcome.message = match outcome.result {
        DestroyResult::Destroyed => format!("destroyed {} stack(s)", outcome.deleted.len()),
        _ => format!("{} stack(s) could not be deleted", outcome.failed.len()),
    };
    Ok(outcome)
}

/// Deletes the stacks of `specs` that `existing` holds, each once every stack of
/// `specs` importing from it is gone (stacks outside `specs` are not waited for: the
/// caller deletes them first). Returns the stacks deleted and those that were not.
pub async fn delete_stacks(
    clients: &AwsClients,
    specs: &[StackSpec],
    existing: &BTreeMap<String, DeployedStack>,
    poll: PollSettings,
    progress: Arc<Progress>,
) -> Result<(Vec<String>, Vec<FailedDeletion>), DeployError> {
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    let mut remaining: BTreeSet<usize> = (0..specs.len())
        .filter(|&i| existing.contains_key(&specs[i].stack_name))
        .collect();
    let mut gone: BTreeSet<String> = specs
        .iter()
        .filter(|s| !existing.contains_key(&s.stack_name))
        .map(|s| s.id.clone())
        .collect();
    let mut stuck: BTreeSet<String> = BTreeSet::new();
    let mut running = JoinSet::new();
    loop {
        let ready: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|&i| {
                specs
                    .iter()
                    .filter(|s| s.depends_on.contains(&specs[i].id))
                    .all(|dependent| gone.contains(&dependent.id))
            })
            .collect();
        for i in ready {
            remaining.remove(&i);
            let spec = specs[i].clone();
            let stack_id = existing
                .get(&spec.stack_name)
                .map(|s| s.stack_id.clone())
                .unwrap_or_default();
            let clients = clients.clone();
            let progress = Arc::clone(&progress);
            running.spawn(async move {
                let result =
                    delete_one(&clients, &spec.stack_name, &stack_id, poll, &progress).await;
                (spec, result)
            });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (spec, result) = joined.map_err(|error| DeployError::Invalid {
            message: format!("a deletion task stopped unexpectedly: {error}"),
            help: String::new(),
        })?;
        match result {
            Ok(()) => {
                gone.insert(spec.id.clone());
                deleted.push(spec.stack_name.clone());
            }
            Err(failure) => {
                stuck.insert(spec.id.clone());
                failed.push(failure);
            }
        }
    }
    for i in remaining {
        failed.push(FailedDeletion {
            stack_name: specs[i].stack_name.clone(),
            message: "not attempted: a stack that imports from it could not be deleted".into(),
            root_cause: None,
        });
    }
    Ok((deleted, failed))
}

async fn delete_one(
    clients: &AwsClients,
    name: &str,
    stack_id: &str,
    poll: PollSettings,
    progress: &Progress,
) -> Result<(), FailedDeletion> {
    let cfn = &clients.cloudformation;
    let fail = |message: String, root_cause: Option<StackEvent>| FailedDeletion {
        stack_name: name.to_string(),
        message,
        root_cause,
    };
    let token = format!(
        "provisioner-destroy-{}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let since = SystemTime::now();
    progress.step(name, "deleting");
    cfn.delete_stack()
        .stack_name(stack_id)
        .client_request_token(&token)
        .send()
        .await
        .map_err(|error| fail(DeployError::aws("DeleteStack", &error).to_string(), None))?;
    let mut watcher = EventWatcher::new(stack_id, Some(token), since);
    // moto answers DescribeStacks on a deleted stack's id with a 500 when the stack had
    // outputs (it re-creates their resources to render them); by name, a deleted stack
    // is simply gone, as on AWS.
    let describe_as = if clients.config.endpoint_url().is_some() {
        name
    } else {
        stack_id
    };
    let finished = events::wait_for_terminal(cfn, name, describe_as, &mut watcher, poll, progress)
        .await
        .map_err(|error| fail(error.to_string(), None))?;
    if finished.status == "DELETE_COMPLETE" {
        progress.finish(name, "deleted");
        Ok(())
    } else {
        let cause = events::root_cause(&finished.events, name);
        progress.finish(name, &format!("deletion ended in {}", finished.status));
        Err(fail(
            format!(
                "deletion ended in {}{}",
                finished.status,
                finished
                    .reason
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            cause,
        ))
    }
}

/// Resources of a deployed stack whose DeletionPolicy keeps them, with physical ids.
pub async fn retained_resources(
    clients: &AwsClients,
    stack: &DeployedStack,
) -> Result<Vec<RetainedResource>, DeployError> {
    let cfn = &clients.cloudformation;
    let template = cfn
        .get_template()
        .stack_name(&stack.stack_id)
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("GetTemplate {}", stack.name), &error))?;
    let body = template.template_body().unwrap_or_default();
    let keeping = keeping_resources(body);
    if keeping.is_empty() {
        return Ok(Vec::new());
    }
    let resources = cfn
        .describe_stack_resources()
        .stack_name(&stack.stack_id)
        .send()
        .await
        .map_err(|error| {
            DeployError::aws(format!("DescribeStackResources {}", stack.name), &error)
        })?;
    let physical: BTreeMap<String, String> = resources
        .stack_resources()
        .iter()
        .filter_map(|r| {
            Some((
                r.logical_resource_id()?.to_string(),
                r.physical_resource_id()?.to_string(),
            ))
        })
        .collect();
    Ok(keeping
        .into_iter()
        .map(|(logical_id, resource_type, policy)| RetainedResource {
            stack_name: stack.name.clone(),
            physical_id: physical.get(&logical_id).cloned(),
            logical_id,
            resource_type,
            policy,
        })
        .collect())
}

/// `(logical id, type, policy)` of each resource whose DeletionPolicy keeps it.
pub fn keeping_resources(template: &str) -> Vec<(String, String, String)> {
    let Ok(parsed) = serde_yaml::from_str::<serde_yaml::Value>(template) else {
        return Vec::new();
    };
    let Some(resources) = parsed.get("Resources").and_then(|r| r.as_mapping()) else {
        return Vec::new();
    };
    resources
        .iter()
        .filter_map(|(id, resource)| {
            if resource
                .get("Metadata")
                .and_then(|m| m.get(EMULATOR_KEEPS))
                .is_some()
            {
                return None;
            }
            let policy = resource.get("DeletionPolicy")?.as_str()?;
            KEEPING_POLICIES.contains(&policy).then(|| {
                (
                    id.as_str().unwrap_or_default().to_string(),
                    resource
                        .get("Type")
                        .and_then(|t| t.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    policy.to_string(),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_resources_a_deletion_policy_keeps_in_a_yaml_template() {
        let template = "Resources:\n  Records:\n    Type: AWS::DynamoDB::Table\n    DeletionPolicy: Retain\n    Properties:\n      TableName: !Sub '${AWS::StackName}-records'\n  Topic:\n    Type: AWS::SNS::Topic\n  Ledger:\n    Type: AWS::DynamoDB::Table\n    DeletionPolicy: Delete\n";
        assert_eq!(
            keeping_resources(template),
            [(
                "Records".to_string(),
                "AWS::DynamoDB::Table".to_string(),
                "Retain".to_string()
            )]
        );
    }
}
