//! Stack events while an operation runs: polling DescribeStackEvents for what is new,
//! backing off when throttled, waiting for a terminal stack status, and finding the
//! root cause of a failure (the first resource that failed, and why).

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_cloudformation::Client;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde::Serialize;

use super::progress::Progress;
use super::stacks::{self, is_terminal};
use super::{is_throttling, DeployError, PollSettings};

/// One stack event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackEvent {
    pub event_id: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: Option<String>,
    /// RFC 3339.
    pub timestamp: String,
    #[serde(skip)]
    pub at: SystemTime,
    #[serde(skip)]
    pub request_token: Option<String>,
}

/// Reads the events of one operation on one stack, each once.
#[derive(Debug)]
pub struct EventWatcher {
    stack: String,
    token: Option<String>,
    since: SystemTime,
    seen: HashSet<String>,
    /// Every event of the operation so far, oldest first.
    pub events: Vec<StackEvent>,
}

/// Clock skew tolerated between this machine and CloudFormation, for events that do
/// not carry the operation's request token.
const CLOCK_SKEW: Duration = Duration::from_secs(10);

impl EventWatcher {
    /// Watches `stack` (name or id) for events of the operation started with `token`
    /// (or, for events without a token, at or after `since`).
    pub fn new(stack: &str, token: Option<String>, since: SystemTime) -> Self {
        Self {
            stack: stack.to_string(),
            token,
            since: since.checked_sub(CLOCK_SKEW).unwrap_or(since),
            seen: HashSet::new(),
            events: Vec::new(),
        }
    }

    fn belongs(&self, event: &StackEvent) -> bool {
        match (&self.token, &event.request_token) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => event.at >= self.since,
        }
    }

    /// Fetches the events not seen yet, oldest first. Pages back only until it meets
    /// an event it has seen or one older than the operation.
    pub async fn poll(
        &mut self,
        client: &Client,
    ) -> Result<Vec<StackEvent>, aws_sdk_cloudformation::Error> {
        let mut fresh = Vec::new();
        let mut next: Option<String> = None;
        'pages: loop {
            let output = client
                .describe_stack_events()
                .stack_name(&self.stack)
                .set_next_token(next.take())
                .send()
                .await?;
            for event in output.stack_events() {
                let event = convert(event);
                if self.seen.contains(&event.event_id) || event.at < self.since {
                    break 'pages;
                }
                if self.belongs(&event) {
                    fresh.push(event);
                }
            }
            match output.next_token() {
                Some(token) => next = Some(token.to_string()),
                None => break,
            }
        }
        fresh.reverse();
        for event in &fresh {
            self.seen.insert(event.event_id.clone());
        }
        self.events.extend(fresh.iter().cloned());
        Ok(fresh)
    }
}

fn convert(event: &aws_sdk_cloudformation::types::StackEvent) -> StackEvent {
    let at = event
        .timestamp()
        .and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    StackEvent {
        event_id: event.event_id().unwrap_or_default().to_string(),
        logical_id: event.logical_resource_id().unwrap_or_default().to_string(),
        resource_type: event.resource_type().unwrap_or_default().to_string(),
        status: event
            .resource_status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        reason: event.resource_status_reason().map(str::to_string),
        timestamp: event
            .timestamp()
            .and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok())
            .unwrap_or_default(),
        at,
        request_token: event.client_request_token().map(str::to_string),
    }
}

/// The event that explains a failure: the first resource (not the stack itself) that
/// failed, preferring one with a reason other than a cancellation.
pub fn root_cause(events: &[StackEvent], stack_name: &str) -> Option<StackEvent> {
    let failed: Vec<&StackEvent> = events
        .iter()
        .filter(|e| e.status.ends_with("_FAILED") && e.logical_id != stack_name)
        .collect();
    let cancelled = |e: &&StackEvent| {
        e.reason
            .as_deref()
            .is_some_and(|r| r.to_ascii_lowercase().contains("cancelled"))
    };
    failed
        .iter()
        .find(|e| !cancelled(e))
        .or_else(|| failed.first())
        .map(|e| (*e).clone())
}

/// How an operation ended.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: String,
    pub reason: Option<String>,
    pub events: Vec<StackEvent>,
    /// The stack as last described (`None` once deleted).
    pub stack: Option<stacks::DeployedStack>,
}

/// Streams the operation's events to `progress` until the stack reaches a terminal
/// status. Throttling on either call slows the polling down instead of failing.
pub async fn wait_for_terminal(
    client: &Client,
    stack_name: &str,
    stack_id: &str,
    watcher: &mut EventWatcher,
    poll: PollSettings,
    progress: &Progress,
) -> Result<Finished, DeployError> {
    let started = Instant::now();
    let mut delay = poll.initial;
    loop {
        let status = match stacks::describe(client, stack_id).await {
            Ok(Some(stack)) => Some((
                stack.status.clone(),
                stack.status_reason.clone(),
                Some(stack),
            )),
            Ok(None) => Some(("DELETE_COMPLETE".to_string(), None, None)),
            Err(DeployError::Aws { code, .. }) if is_throttling(code.as_deref()) => None,
            Err(error) => return Err(error),
        };
        match watcher.poll(client).await {
            Ok(fresh) => {
                for event in &fresh {
                    progress.event(stack_name, event);
                }
            }
            Err(error) if is_throttling(error.code()) => {
                progress.note(
                    stack_name,
                    "DescribeStackEvents throttled; polling less often",
                );
                delay = (delay * 2).min(poll.max);
            }
            Err(error) => {
                return Err(DeployError::Aws {
                    action: format!("DescribeStackEvents {stack_name}"),
                    code: error.code().map(str::to_string),
                    message: error.message().unwrap_or("no message").to_string(),
                })
            }
        }
        if let Some((status, reason, stack)) = status {
            progress.status(stack_name, &status);
            if is_terminal(&status) {
                return Ok(Finished {
                    status,
                    reason,
                    events: watcher.events.clone(),
                    stack,
                });
            }
        }
        if started.elapsed() > poll.timeout {
            return Err(DeployError::Timeout {
                what: format!("stack {stack_name} to finish"),
                seconds: poll.timeout.as_secs(),
            });
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(poll.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, status: &str, reason: Option<&str>) -> StackEvent {
        StackEvent {
            event_id: format!("{id}-{status}"),
            logical_id: id.into(),
            resource_type: "AWS::SQS::Queue".into(),
            status: status.into(),
            reason: reason.map(str::to_string),
            timestamp: String::new(),
            at: SystemTime::UNIX_EPOCH,
            request_token: None,
        }
    }

    #[test]
    fn the_root_cause_is_the_first_real_failure_not_a_cancellation() {
        let events = [
            event("Queue", "UPDATE_IN_PROGRESS", None),
            event("Topic", "UPDATE_FAILED", Some("Resource update cancelled")),
            event(
                "Queue",
                "UPDATE_FAILED",
                Some("Invalid value for VisibilityTimeout"),
            ),
            event(
                "stack",
                "UPDATE_ROLLBACK_IN_PROGRESS",
                Some("The following resource(s) failed to update: [Queue]"),
            ),
            event("stack", "UPDATE_ROLLBACK_FAILED", None),
        ];
        let cause = root_cause(&events, "stack").unwrap();
        assert_eq!(cause.logical_id, "Queue");
        assert_eq!(
            cause.reason.as_deref(),
            Some("Invalid value for VisibilityTimeout")
        );
    }
}
