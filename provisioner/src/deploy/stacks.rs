//! Reading what is deployed: each stack's status, parameters, tags, outputs and
//! protection, fetched with as few DescribeStacks calls as the account allows.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_cloudformation::types::Stack;
use aws_sdk_cloudformation::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use super::{DeployError, RELEASE_TAG, TEMPLATE_HASH_TAG};

/// A stack as CloudFormation reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedStack {
    pub name: String,
    pub stack_id: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub parameters: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
    pub outputs: BTreeMap<String, String>,
    /// Last update, or creation when never updated (RFC 3339).
    pub last_updated: Option<String>,
    pub termination_protection: bool,
}

impl DeployedStack {
    fn from_sdk(stack: &Stack) -> Self {
        let parameters = stack
            .parameters()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_string(),
                    p.parameter_value().unwrap_or_default().to_string(),
                ))
            })
            .collect();
        let tags = stack
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect();
        let outputs = stack
            .outputs()
            .iter()
            .filter_map(|o| {
                Some((
                    o.output_key()?.to_string(),
                    o.output_value().unwrap_or_default().to_string(),
                ))
            })
            .collect();
        let when = stack.last_updated_time().or(stack.creation_time());
        Self {
            name: stack.stack_name().unwrap_or_default().to_string(),
            stack_id: stack.stack_id().unwrap_or_default().to_string(),
            status: stack
                .stack_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            status_reason: stack.stack_status_reason().map(str::to_string),
            parameters,
            tags,
            outputs,
            last_updated: when
                .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
            termination_protection: stack.enable_termination_protection().unwrap_or(false),
        }
    }

    /// The release that last changed the stack, from its tag.
    pub fn release(&self) -> Option<&str> {
        self.tags.get(RELEASE_TAG).map(String::as_str)
    }

    /// The template hash recorded on the stack.
    pub fn template_sha256(&self) -> Option<&str> {
        self.tags.get(TEMPLATE_HASH_TAG).map(String::as_str)
    }

    /// Settled in a state whose template, parameters and tags are the ones applied
    /// last (a rolled-back update restores the previous ones, tags included).
    pub fn is_settled(&self) -> bool {
        matches!(
            self.status.as_str(),
            "CREATE_COMPLETE"
                | "UPDATE_COMPLETE"
                | "UPDATE_ROLLBACK_COMPLETE"
                | "IMPORT_COMPLETE"
                | "IMPORT_ROLLBACK_COMPLETE"
        )
    }

    /// An operation is running on the stack.
    pub fn is_busy(&self) -> bool {
        self.status.ends_with("_IN_PROGRESS") && self.status != "REVIEW_IN_PROGRESS"
    }
}

/// True for a stack status in which no operation is running.
pub fn is_terminal(status: &str) -> bool {
    !status.ends_with("_IN_PROGRESS")
}

/// True for a terminal status that means the last operation succeeded.
pub fn is_success(status: &str) -> bool {
    matches!(
        status,
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE" | "DELETE_COMPLETE"
    )
}

/// The id of the stack's newest event: anything done to the stack (an update from any
/// tool, a rollback) adds events, so a different id means the stack moved on. (Kept
/// beside LastUpdatedTime, which emulators may not maintain.)
pub async fn newest_event_id(client: &Client, stack: &str) -> Result<Option<String>, DeployError> {
    let output = client
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("DescribeStackEvents {stack}"), &error))?;
    Ok(output
        .stack_events()
        .first()
        .and_then(|event| event.event_id())
        .map(str::to_string))
}

/// The newest event id of each of `stacks` (by name), fetched together.
pub async fn newest_event_ids(
    client: &Client,
    stacks: &BTreeMap<String, DeployedStack>,
) -> Result<BTreeMap<String, Option<String>>, DeployError> {
    let fetched = futures_util::future::join_all(stacks.iter().map(|(name, stack)| async move {
        (name.clone(), newest_event_id(client, &stack.stack_id).await)
    }))
    .await;
    fetched
        .into_iter()
        .map(|(name, id)| id.map(|id| (name, id)))
        .collect()
}

/// Describes one stack by name or id; `None` when it does not exist.
pub async fn describe(client: &Client, name: &str) -> Result<Option<DeployedStack>, DeployError> {
    match client.describe_stacks().stack_name(name).send().await {
        Ok(output) => Ok(output
            .stacks()
            .first()
            .map(DeployedStack::from_sdk)
            .filter(|s| s.status != "DELETE_COMPLETE")),
        Err(error)
            if error
                .message()
                .is_some_and(|m| m.contains("does not exist")) =>
        {
            Ok(None)
        }
        Err(error) => Err(DeployError::aws(format!("DescribeStacks {name}"), &error)),
    }
}

/// Describes the named stacks, leaving out those that do not exist. Lists the
/// account's stacks page by page (one call covers a small account) and switches to
/// per-stack calls once that would take fewer requests than listing on.
pub async fn describe_many(
    client: &Client,
    names: &[String],
) -> Result<BTreeMap<String, DeployedStack>, DeployError> {
    let mut wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let mut found = BTreeMap::new();
    let mut token: Option<String> = None;
    let mut pages = 0usize;
    loop {
        let output = client
            .describe_stacks()
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|error| DeployError::aws("DescribeStacks", &error))?;
        pages += 1;
        for stack in output.stacks() {
            let stack = DeployedStack::from_sdk(stack);
            if stack.status != "DELETE_COMPLETE" && wanted.remove(stack.name.as_str()) {
                found.insert(stack.name.clone(), stack);
            }
        }
        token = output.next_token().map(str::to_string);
        if token.is_none() || wanted.is_empty() {
            return Ok(found);
        }
        if pages >= wanted.len() {
            break;
        }
    }
    let remaining: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
    let described =
        futures_util::future::join_all(remaining.iter().map(|name| describe(client, name))).await;
    for stack in described {
        if let Some(stack) = stack? {
            found.insert(stack.name.clone(), stack);
        }
    }
    Ok(found)
}

/// A resource of a stack that still exists although its stack no longer manages it:
/// kept by its DeletionPolicy when a failed create rolled back (DELETE_SKIPPED), or
/// not deleted because its deletion failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeftBehind {
    pub logical_id: String,
    pub resource_type: String,
    pub physical_id: String,
    pub status: String,
    pub reason: Option<String>,
}

impl LeftBehind {
    /// `Records (AWS::DynamoDB::Table) datasync-dev-records: DELETE_SKIPPED`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}) {}: {}{}",
            self.logical_id,
            self.resource_type,
            self.physical_id,
            self.status,
            self.reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )
    }
}

/// The resources a stack in ROLLBACK_COMPLETE (or DELETE_FAILED) left behind: every
/// resource DescribeStackResources reports with a physical id and a status other than
/// DELETE_COMPLETE. Deleting the stack does not remove them; a create of the same
/// stack fails on any of them that has an explicit name.
pub async fn left_behind(client: &Client, stack: &str) -> Result<Vec<LeftBehind>, DeployError> {
    let output = client
        .describe_stack_resources()
        .stack_name(stack)
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("DescribeStackResources {stack}"), &error))?;
    Ok(output
        .stack_resources()
        .iter()
        .filter_map(|resource| {
            let status = resource
                .resource_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            let physical_id = resource.physical_resource_id().unwrap_or_default();
            (status != "DELETE_COMPLETE" && !physical_id.is_empty()).then(|| LeftBehind {
                logical_id: resource
                    .logical_resource_id()
                    .unwrap_or_default()
                    .to_string(),
                resource_type: resource.resource_type().unwrap_or_default().to_string(),
                physical_id: physical_id.to_string(),
                status,
                reason: resource.resource_status_reason().map(str::to_string),
            })
        })
        .collect())
}

/// What the provisioner last left a stack with, kept in the environment's state (the
/// deployments table): the stack's LastUpdatedTime after the deploy that changed or
/// checked it, and the template hash deployed then. CloudFormation moves
/// LastUpdatedTime on every update, stack tags are kept by an update made outside the
/// provisioner: a stack whose LastUpdatedTime is not the recorded one was changed by
/// someone else since, whatever its tags say.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SeenStack {
    pub last_updated: Option<String>,
    pub template_sha256: String,
}
