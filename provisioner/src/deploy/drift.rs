//! `drift`: CloudFormation drift detection on every stack of an environment. Starts
//! DetectStackDrift on each deployed stack, waits for each detection to finish, and lists
//! the resources changed outside CloudFormation with their property differences
//! (expected against actual value, property path, kind of difference).

use std::time::Instant;

use aws_sdk_cloudformation::types::StackResourceDriftStatus;
use aws_sdk_cloudformation::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use super::stacks;
use super::{emulator_lacks, is_throttling, DeployError, PollSettings, StackSpec};

/// One property of a drifted resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertyDrift {
    /// `/Properties/VisibilityTimeout`, as CloudFormation names it.
    pub path: String,
    pub expected: Option<String>,
    pub actual: Option<String>,
    /// `ADD`, `REMOVE` or `NOT_EQUAL`.
    pub difference: String,
}

/// One resource whose live configuration differs from its template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceDrift {
    pub logical_id: String,
    pub resource_type: String,
    pub physical_id: Option<String>,
    /// `MODIFIED` or `DELETED`.
    pub drift: String,
    pub properties: Vec<PropertyDrift>,
}

/// One stack's drift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackDrift {
    pub id: String,
    pub stack_name: String,
    /// `DRIFTED`, `IN_SYNC`, `NOT_CHECKED`, `UNKNOWN`, or `NOT_DEPLOYED`.
    pub status: String,
    /// Why the detection could not check everything, when it could not.
    pub reason: Option<String>,
    pub resources: Vec<ResourceDrift>,
}

impl StackDrift {
    pub fn drifted(&self) -> bool {
        self.status == "DRIFTED" || !self.resources.is_empty()
    }

    /// The detection did not check the whole stack (it failed, or the status is
    /// unknown), so "no drift" cannot be said of it.
    pub fn unchecked(&self) -> bool {
        self.reason.is_some() || matches!(self.status.as_str(), "UNKNOWN" | "NOT_CHECKED")
    }
}

/// Detects drift on every deployed stack of `specs`, all at once.
pub async fn detect(
    client: &Client,
    specs: &[StackSpec],
    poll: PollSettings,
    emulator: bool,
) -> Result<Vec<StackDrift>, DeployError> {
    let names: Vec<String> = specs.iter().map(|s| s.stack_name.clone()).collect();
    let deployed = stacks::describe_many(client, &names).await?;
    let checks = specs.iter().map(|spec| {
        let stack = deployed.get(&spec.stack_name);
        async move {
            match stack {
                None => Ok(StackDrift {
                    id: spec.id.clone(),
                    stack_name: spec.stack_name.clone(),
                    status: "NOT_DEPLOYED".into(),
                    reason: None,
                    resources: Vec::new(),
                }),
                Some(stack) => detect_one(client, &spec.id, stack, poll, emulator).await,
            }
        }
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .collect()
}

async fn detect_one(
    client: &Client,
    id: &str,
    stack: &stacks::DeployedStack,
    poll: PollSettings,
    emulator: bool,
) -> Result<StackDrift, DeployError> {
    let detection = client
        .detect_stack_drift()
        .stack_name(&stack.stack_id)
        .send()
        .await
        .map_err(|error| {
            if emulator && emulator_lacks(&error) {
                DeployError::Invalid {
                    message: "the emulator (moto) does not implement DetectStackDrift, so drift \
                              cannot be detected on an emulated environment"
                        .into(),
                    help: "run `provisioner drift` against an environment in a real AWS account"
                        .into(),
                }
            } else {
                DeployError::aws(format!("DetectStackDrift {}", stack.name), &error)
            }
        })?;
    let detection_id = detection.stack_drift_detection_id().unwrap_or_default();
    let started = Instant::now();
    let mut delay = poll.initial;
    let (status, reason) = loop {
        match client
            .describe_stack_drift_detection_status()
            .stack_drift_detection_id(detection_id)
            .send()
            .await
        {
            Ok(output) => {
                let detection = output
                    .detection_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                if detection != "DETECTION_IN_PROGRESS" {
                    let status = output
                        .stack_drift_status()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_else(|| "UNKNOWN".into());
                    // DETECTION_FAILED still reports the resources it could check.
                    let reason = (detection == "DETECTION_FAILED").then(|| {
                        output
                            .detection_status_reason()
                            .unwrap_or("drift detection failed without a reason")
                            .to_string()
                    });
                    break (status, reason);
                }
            }
            Err(error) if is_throttling(error.code()) => delay = (delay * 2).min(poll.max),
            Err(error) => {
                return Err(DeployError::aws(
                    format!("DescribeStackDriftDetectionStatus {}", stack.name),
                    &error,
                ))
            }
        }
        if started.elapsed() > poll.timeout {
            return Err(DeployError::Timeout {
                what: format!("drift detection on {}", stack.name),
                seconds: poll.timeout.as_secs(),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(poll.max);
    };
    let resources = drifted_resources(client, stack).await?;
    Ok(StackDrift {
        id: id.to_string(),
        stack_name: stack.name.clone(),
        status,
        reason,
        resources,
    })
}

async fn drifted_resources(
    client: &Client,
    stack: &stacks::DeployedStack,
) -> Result<Vec<ResourceDrift>, DeployError> {
    let mut resources = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let output = client
            .describe_stack_resource_drifts()
            .stack_name(&stack.stack_id)
            .stack_resource_drift_status_filters(StackResourceDriftStatus::Modified)
            .stack_resource_drift_status_filters(StackResourceDriftStatus::Deleted)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|error| {
                DeployError::aws(
                    format!("DescribeStackResourceDrifts {}", stack.name),
                    &error,
                )
            })?;
        for drift in output.stack_resource_drifts() {
            let status = drift
                .stack_resource_drift_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default();
            if !matches!(status.as_str(), "MODIFIED" | "DELETED") {
                continue;
            }
            resources.push(ResourceDrift {
                logical_id: drift.logical_resource_id().unwrap_or_default().to_string(),
                resource_type: drift.resource_type().unwrap_or_default().to_string(),
                physical_id: drift.physical_resource_id().map(str::to_string),
                drift: status,
                properties: drift
                    .property_differences()
                    .iter()
                    .map(|p| PropertyDrift {
                        path: p.property_path().unwrap_or_default().to_string(),
                        expected: p.expected_value().map(str::to_string),
                        actual: p.actual_value().map(str::to_string),
                        difference: p
                            .difference_type()
                            .map(|d| d.as_str().to_string())
                            .unwrap_or_default(),
                    })
                    .collect(),
            });
        }
        match output.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    resources.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    Ok(resources)
}

/// Each stack's verdict, its drifted resources and their property differences.
pub fn to_text(stacks: &[StackDrift]) -> String {
    let width = stacks.iter().map(|s| s.stack_name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for stack in stacks {
        let verdict = match stack.status.as_str() {
            "IN_SYNC" if !stack.drifted() => "in sync".to_string(),
            "NOT_DEPLOYED" => "not deployed".to_string(),
            _ if stack.drifted() => format!("DRIFTED ({} resource(s))", stack.resources.len()),
            other => other.to_ascii_lowercase().replace('_', " "),
        };
        text.push_str(&format!("{:<width$}  {verdict}\n", stack.stack_name));
        if let Some(reason) = &stack.reason {
            text.push_str(&format!("{:width$}  note: {reason}\n", ""));
        }
        for resource in &stack.resources {
            text.push_str(&format!(
                "{:width$}  {} {} ({}){}\n",
                "",
                resource.drift,
                resource.logical_id,
                resource.resource_type,
                resource
                    .physical_id
                    .as_deref()
                    .map(|p| format!(" {p}"))
                    .unwrap_or_default()
            ));
            for property in &resource.properties {
                text.push_str(&format!(
                    "{:width$}    {} {}: expected {}, actual {}\n",
                    "",
                    property.difference,
                    property.path,
                    property.expected.as_deref().unwrap_or("(none)"),
                    property.actual.as_deref().unwrap_or("(none)")
                ));
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_each_drifted_property_with_both_values() {
        let stacks = [
            StackDrift {
                id: "messaging".into(),
                stack_name: "app-dev-messaging".into(),
                status: "DRIFTED".into(),
                reason: None,
                resources: vec![ResourceDrift {
                    logical_id: "Queue".into(),
                    resource_type: "AWS::SQS::Queue".into(),
                    physical_id: Some("q".into()),
                    drift: "MODIFIED".into(),
                    properties: vec![PropertyDrift {
                        path: "/VisibilityTimeout".into(),
                        expected: Some("30".into()),
                        actual: Some("120".into()),
                        difference: "NOT_EQUAL".into(),
                    }],
                }],
            },
            StackDrift {
                id: "data".into(),
                stack_name: "app-dev-data".into(),
                status: "IN_SYNC".into(),
                reason: None,
                resources: Vec::new(),
            },
        ];
        let text = to_text(&stacks);
        assert!(
            text.contains("app-dev-messaging  DRIFTED (1 resource(s))"),
            "{text}"
        );
        assert!(
            text.contains("NOT_EQUAL /VisibilityTimeout: expected 30, actual 120"),
            "{text}"
        );
        assert!(text.contains("app-dev-data       in sync"), "{text}");
    }
}
