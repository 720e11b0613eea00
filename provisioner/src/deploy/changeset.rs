//! Change sets: creating one for a stack, waiting until CloudFormation has computed it,
//! reading its resource changes (the diff a person reviews), executing or deleting it.

use std::time::Instant;

use aws_sdk_cloudformation::types::{
    Capability, ChangeSetType, Parameter, RollbackConfiguration, Tag,
};
use aws_sdk_cloudformation::Client;
use serde::Serialize;

use super::{is_throttling, DeployError, PollSettings, StackSpec, RELEASE_TAG};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Passed as `RetainExceptOnCreate` to every ExecuteChangeSet, CreateStack and
/// UpdateStack: a resource kept by `DeletionPolicy: Retain` (tables, queues, keys, log
/// groups in prod-like environments) is still deleted when the operation that created
/// it rolls back. A failed first create then leaves nothing behind whose explicit name
/// would make the next create fail with AlreadyExists; resources that existed before
/// the operation stay retained as their policy says.
pub const RETAIN_EXCEPT_ON_CREATE: bool = true;

/// One resource's planned change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceChange {
    /// `Add`, `Modify`, `Remove`, `Import` or `Dynamic`.
    pub action: String,
    pub logical_id: String,
    pub resource_type: String,
    /// `True`, `False` or `Conditional` for a modification; absent otherwise.
    pub replacement: Option<String>,
    pub physical_id: Option<String>,
    /// What changes inside the resource (a modification's properties, tags...).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub details: Vec<PropertyChange>,
}

/// One changed attribute of a resource, from the change set's details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertyChange {
    /// `Properties`, `Tags`, `Metadata`...
    pub attribute: String,
    /// The property's name (for `Properties`), or its path when CloudFormation gives one.
    pub name: Option<String>,
    /// `Never`, `Conditionally` or `Always`.
    pub requires_recreation: Option<String>,
    /// The values before and after, when CloudFormation reports them (secrets masked
    /// by CloudFormation itself).
    pub before: Option<String>,
    pub after: Option<String>,
    /// What caused it: `DirectModification`, `ParameterReference`, `ResourceAttribute`...,
    /// with the parameter or resource that did when there is one.
    pub cause: Option<String>,
}

impl PropertyChange {
    /// One line for the diff: `Properties.BillingMode: "A" -> "B" (recreation: Never)`.
    pub fn describe(&self) -> String {
        let mut line = self.attribute.clone();
        if let Some(name) = &self.name {
            line.push('.');
            line.push_str(name);
        }
        match (&self.before, &self.after) {
            (None, None) => {}
            (before, after) => line.push_str(&format!(
                ": {} -> {}",
                shorten(before.as_deref().unwrap_or("(none)")),
                shorten(after.as_deref().unwrap_or("(none)"))
            )),
        }
        let mut notes = Vec::new();
        if let Some(recreation) = &self.requires_recreation {
            notes.push(format!("recreation: {recreation}"));
        }
        if let Some(cause) = &self.cause {
            notes.push(format!("by {cause}"));
        }
        if !notes.is_empty() {
            line.push_str(&format!(" ({})", notes.join(", ")));
        }
        line
    }
}

/// A value cut to a readable length for a one-line diff.
fn shorten(value: &str) -> String {
    const MAX: usize = 60;
    let flat: String = value.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX {
        flat
    } else {
        format!("{}...", flat.chars().take(MAX).collect::<String>())
    }
}

impl ResourceChange {
    /// The resource is (or may be) destroyed and created anew.
    pub fn replaces(&self) -> bool {
        matches!(self.replacement.as_deref(), Some("True" | "Conditional"))
    }
}

/// What CloudFormation made of a change set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeSetState {
    /// Computed and executable, with these resource changes (possibly none, when only
    /// stack-level inputs changed).
    Ready(Vec<ResourceChange>),
    /// The template, parameters and tags produce no change.
    NoChanges,
    /// CloudFormation could not compute it (bad template, missing import...).
    Failed(String),
}

/// A change set that exists in CloudFormation.
#[derive(Debug, Clone)]
pub struct ChangeSetHandle {
    pub id: String,
    pub stack_id: String,
    pub kind: ChangeSetType,
}

/// A change set name unique to this run: `provisioner-<epoch ms>`.
pub fn new_name() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("provisioner-{millis}")
}

/// The stack tags a deploy of `spec` puts on: the environment's tags, the template
/// hash and the release.
pub fn stack_tags(spec: &StackSpec, release: &str) -> Vec<Tag> {
    let mut tags: Vec<Tag> = spec
        .identity_tags()
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect();
    tags.push(Tag::builder().key(RELEASE_TAG).value(release).build());
    tags
}

fn stack_parameters(spec: &StackSpec) -> Vec<Parameter> {
    spec.parameters
        .iter()
        .map(|(key, value)| {
            Parameter::builder()
                .parameter_key(key)
                .parameter_value(value)
                .build()
        })
        .collect()
}

/// Creates a change set of `kind` for `spec`, tagging the stack with `release`; an
/// update carries `rollback` (its rollback triggers and monitoring time).
pub async fn create(
    client: &Client,
    spec: &StackSpec,
    kind: ChangeSetType,
    release: &str,
    role_arn: Option<&str>,
    rollback: Option<RollbackConfiguration>,
) -> Result<ChangeSetHandle, DeployError> {
    let output = client
        .create_change_set()
        .set_role_arn(role_arn.map(str::to_string))
        .set_rollback_configuration(rollback)
        .stack_name(&spec.stack_name)
        .change_set_name(new_name())
        .change_set_type(kind.clone())
        .template_body(&spec.body)
        .set_parameters(Some(stack_parameters(spec)))
        .set_tags(Some(stack_tags(spec, release)))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .description(format!("provisioner release {release}"))
        .send()
        .await
        .map_err(|error| {
            DeployError::aws(format!("CreateChangeSet for {}", spec.stack_name), &error)
        })?;
    Ok(ChangeSetHandle {
        id: output.id().unwrap_or_default().to_string(),
        stack_id: output.stack_id().unwrap_or_default().to_string(),
        kind,
    })
}

/// Polls until CloudFormation has computed the change set, then reads all its changes.
pub async fn wait(
    client: &Client,
    handle: &ChangeSetHandle,
    poll: PollSettings,
) -> Result<ChangeSetState, DeployError> {
    let started = Instant::now();
    let mut delay = poll.initial;
    loop {
        let result = client
            .describe_change_set()
            .change_set_name(&handle.id)
            .include_property_values(true)
            .send()
            .await;
        match result {
            Ok(first) => {
                let status = first
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                match status.as_str() {
                    "CREATE_COMPLETE" => {
                        let mut changes = collect_changes(first.changes());
                        let mut token = first.next_token().map(str::to_string);
                        while let Some(next) = token.take() {
                            let page = client
                                .describe_change_set()
                                .change_set_name(&handle.id)
                                .include_property_values(true)
                                .next_token(next)
                                .send()
                                .await
                                .map_err(|error| DeployError::aws("DescribeChangeSet", &error))?;
                            changes.extend(collect_changes(page.changes()));
                            token = page.next_token().map(str::to_string);
                        }
                        // Executable even without resource changes: stack-level inputs
                        // such as tags or parameters only some resources read changed.
                        return Ok(ChangeSetState::Ready(changes));
                    }
                    "FAILED" => {
                        let reason = first
                            .status_reason()
                            .unwrap_or("no reason given")
                            .to_string();
                        return Ok(if means_no_changes(&reason) {
                            ChangeSetState::NoChanges
                        } else {
                            ChangeSetState::Failed(reason)
                        });
                    }
                    _ => {}
                }
            }
            Err(error) if is_throttling(error.code()) => {
                tracing::warn!("DescribeChangeSet throttled; polling less often");
                delay = (delay * 2).min(poll.max);
            }
            Err(error) => return Err(DeployError::aws("DescribeChangeSet", &error)),
        }
        if started.elapsed() > poll.timeout {
            return Err(DeployError::Timeout {
                what: format!("change set {}", handle.id),
                seconds: poll.timeout.as_secs(),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(poll.max);
    }
}

/// CloudFormation's way of saying a change set would change nothing.
pub fn means_no_changes(reason: &str) -> bool {
    reason.contains("didn't contain changes") || reason.contains("No updates are to be performed")
}

fn collect_changes(changes: &[aws_sdk_cloudformation::types::Change]) -> Vec<ResourceChange> {
    changes
        .iter()
        .filter_map(|change| change.resource_change())
        .map(|rc| ResourceChange {
            action: rc
                .action()
                .map(|a| a.as_str().to_string())
                .unwrap_or_default(),
            logical_id: rc.logical_resource_id().unwrap_or_default().to_string(),
            resource_type: rc.resource_type().unwrap_or_default().to_string(),
            replacement: rc.replacement().map(|r| r.as_str().to_string()),
            physical_id: rc.physical_resource_id().map(str::to_string),
            details: rc
                .details()
                .iter()
                .filter_map(|detail| {
                    let target = detail.target()?;
                    let cause = match (
                        detail.change_source().map(|c| c.as_str().to_string()),
                        detail.causing_entity(),
                    ) {
                        (Some(source), Some(entity)) => Some(format!("{source} {entity}")),
                        (Some(source), None) => Some(source),
                        (None, Some(entity)) => Some(entity.to_string()),
                        (None, None) => None,
                    };
                    Some(PropertyChange {
                        attribute: target
                            .attribute()
                            .map(|a| a.as_str().to_string())
                            .unwrap_or_default(),
                        name: target.name().or(target.path()).map(str::to_string),
                        requires_recreation: target
                            .requires_recreation()
                            .map(|r| r.as_str().to_string()),
                        before: target.before_value().map(str::to_string),
                        after: target.after_value().map(str::to_string),
                        cause,
                    })
                })
                .collect(),
        })
        .collect()
}

/// Starts executing the change set; stack events carry `token`.
pub async fn execute(
    client: &Client,
    handle: &ChangeSetHandle,
    token: &str,
) -> Result<(), DeployError> {
    client
        .execute_change_set()
        .change_set_name(&handle.id)
        .client_request_token(token)
        .retain_except_on_create(RETAIN_EXCEPT_ON_CREATE)
        .send()
        .await
        .map_err(|error| DeployError::aws("ExecuteChangeSet", &error))?;
    Ok(())
}

/// Creates a new stack from its reviewed CREATE change set's inputs with CreateStack.
/// Only for emulators: moto registers a stack's exports (and resolves its imports)
/// only for stacks created this way, not for stacks created by a change set.
pub async fn create_stack_like(
    client: &Client,
    spec: &StackSpec,
    release: &str,
    role_arn: Option<&str>,
    token: &str,
) -> Result<String, DeployError> {
    let output = client
        .create_stack()
        .set_role_arn(role_arn.map(str::to_string))
        .stack_name(&spec.stack_name)
        .template_body(&spec.body)
        .set_parameters(Some(stack_parameters(spec)))
        .set_tags(Some(stack_tags(spec, release)))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .client_request_token(token)
        .retain_except_on_create(RETAIN_EXCEPT_ON_CREATE)
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("CreateStack {}", spec.stack_name), &error))?;
    Ok(output.stack_id().unwrap_or_default().to_string())
}

/// UpdateStack with the inputs a change set of `spec` would have; for the emulator's
/// parameter-only updates (see the engine). Returns the stack id.
pub async fn update_stack_like(
    client: &Client,
    spec: &StackSpec,
    release: &str,
    role_arn: Option<&str>,
    token: &str,
) -> Result<String, DeployError> {
    let output = client
        .update_stack()
        .stack_name(&spec.stack_name)
        .set_role_arn(role_arn.map(str::to_string))
        .template_body(&spec.body)
        .set_parameters(Some(stack_parameters(spec)))
        .set_tags(Some(stack_tags(spec, release)))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .client_request_token(token)
        .retain_except_on_create(RETAIN_EXCEPT_ON_CREATE)
        .send()
        .await
        .map_err(|error| DeployError::aws(format!("UpdateStack {}", spec.stack_name), &error))?;
    Ok(output
        .stack_id()
        .map(str::to_string)
        .unwrap_or_else(|| spec.stack_name.clone()))
}

/// Deletes a change set that will not be executed. For a CREATE change set the stack
/// it brought into being (REVIEW_IN_PROGRESS, no resources) is deleted too, so that a
/// plan leaves nothing behind.
pub async fn discard(client: &Client, handle: &ChangeSetHandle) -> Result<(), DeployError> {
    client
        .delete_change_set()
        .change_set_name(&handle.id)
        .send()
        .await
        .map_err(|error| DeployError::aws("DeleteChangeSet", &error))?;
    if handle.kind == ChangeSetType::Create && !handle.stack_id.is_empty() {
        client
            .delete_stack()
            .stack_name(&handle.stack_id)
            .send()
            .await
            .map_err(|error| {
                DeployError::aws(
                    "DeleteStack (empty stack of a discarded change set)",
                    &error,
                )
            })?;
    }
    Ok(())
}

/// The diff as text: one line per resource, replacements marked (in colour when
/// `colour` is set).
pub fn format_changes(changes: &[ResourceChange], colour: bool) -> String {
    let id_width = changes
        .iter()
        .map(|c| c.logical_id.len())
        .max()
        .unwrap_or(0);
    let type_width = changes
        .iter()
        .map(|c| c.resource_type.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for change in changes {
        let sign = match change.action.as_str() {
            "Add" => "+",
            "Remove" => "-",
            "Modify" => "~",
            _ => "*",
        };
        let replacement = match change.replacement.as_deref() {
            Some("True") => paint("REPLACE", "1;31", colour),
            Some("Conditional") => paint("MAY REPLACE (Conditional)", "1;33", colour),
            _ => String::new(),
        };
        let line = format!(
            "  {sign} {:<7} {:<id_width$}  {:<type_width$}  {replacement}",
            change.action, change.logical_id, change.resource_type
        );
        text.push_str(line.trim_end());
        text.push('\n');
        // Several details often name one property (once per cause): show each once.
        let mut shown = std::collections::BTreeSet::new();
        for detail in &change.details {
            let described = detail.describe();
            if shown.insert(described.clone()) {
                text.push_str(&format!("      {described}\n"));
            }
        }
    }
    text
}

fn paint(text: &str, code: &str, colour: bool) -> String {
    if colour {
        format!("\u{1b}[{code}m{text}\u{1b}[0m")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(action: &str, id: &str, kind: &str, replacement: Option<&str>) -> ResourceChange {
        ResourceChange {
            action: action.into(),
            logical_id: id.into(),
            resource_type: kind.into(),
            replacement: replacement.map(str::to_string),
            physical_id: None,
            details: Vec::new(),
        }
    }

    #[test]
    fn the_diff_names_action_resource_type_and_replacement() {
        let text = format_changes(
            &[
                change(
                    "Modify",
                    "RecordsTable",
                    "AWS::DynamoDB::Table",
                    Some("True"),
                ),
                change("Modify", "Queue", "AWS::SQS::Queue", Some("Conditional")),
                change("Add", "Topic", "AWS::SNS::Topic", None),
            ],
            false,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "  ~ Modify  RecordsTable  AWS::DynamoDB::Table  REPLACE"
        );
        assert!(lines[1].ends_with("MAY REPLACE (Conditional)"), "{text}");
        assert_eq!(lines[2], "  + Add     Topic         AWS::SNS::Topic");
        let coloured = format_changes(
            &[change("Modify", "T", "AWS::DynamoDB::Table", Some("True"))],
            true,
        );
        assert!(coloured.contains("\u{1b}[1;31mREPLACE"), "{coloured}");
    }

    #[test]
    fn the_diff_lists_each_changed_property_once_with_its_values() {
        let mut table = change(
            "Modify",
            "RecordsTable",
            "AWS::DynamoDB::Table",
            Some("False"),
        );
        let billing = PropertyChange {
            attribute: "Properties".into(),
            name: Some("BillingMode".into()),
            requires_recreation: Some("Never".into()),
            before: Some("PAY_PER_REQUEST".into()),
            after: Some("PROVISIONED".into()),
            cause: Some("DirectModification".into()),
        };
        let tags = PropertyChange {
            attribute: "Tags".into(),
            name: None,
            requires_recreation: Some("Never".into()),
            before: None,
            after: None,
            cause: None,
        };
        let long = PropertyChange {
            attribute: "Properties".into(),
            name: Some("Policy".into()),
            requires_recreation: None,
            before: None,
            after: Some("x".repeat(200)),
            cause: Some("ParameterReference Release".into()),
        };
        table.details = vec![billing.clone(), billing, tags, long];
        let text = format_changes(&[table], false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(
            lines[1],
            "      Properties.BillingMode: PAY_PER_REQUEST -> PROVISIONED (recreation: Never, by DirectModification)"
        );
        assert_eq!(lines[2], "      Tags (recreation: Never)");
        assert!(
            lines[3].starts_with("      Properties.Policy: (none) -> xxx")
                && lines[3].contains("...")
                && lines[3].ends_with("(by ParameterReference Release)"),
            "{text}"
        );
    }

    #[test]
    fn recognises_cloudformations_no_change_messages() {
        assert!(means_no_changes(
            "The submitted information didn't contain changes. Submit different information to create a change set."
        ));
        assert!(means_no_changes("No updates are to be performed."));
        assert!(!means_no_changes(
            "Template format error: Unresolved resource dependencies [Vpc]"
        ));
    }
}
