//! `recover` on real SDK clients over `aws-smithy-mocks` rules (moto emulates no
//! rollbacks): UPDATE_ROLLBACK_FAILED continued with and without `--skip`, an update in
//! progress waited for or cancelled, a stack in ROLLBACK_COMPLETE deleted only once
//! confirmed, settled stacks left alone, and bad `--skip` values refused before anything
//! is done.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudformation::operation::describe_stack_events::DescribeStackEventsOutput;
use aws_sdk_cloudformation::operation::describe_stack_resources::DescribeStackResourcesOutput;
use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
use aws_sdk_cloudformation::types::{
    ResourceStatus, Stack, StackEvent, StackResource, StackStatus,
};
use aws_sdk_cloudformation::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::DateTime;
use provisioner::deploy::engine::Confirmation;
use provisioner::deploy::progress::Progress;
use provisioner::deploy::recover::{self, RecoverOptions, Recovery, RecoveryResult};
use provisioner::deploy::{PollSettings, StackSpec};
use provisioner::exit::Exit;

const STACK: &str = "datasync-dev-data";
const STACK_ID: &str = "arn:aws:cloudformation:eu-west-1:210987654321:stack/datasync-dev-data/1";

fn specs() -> Vec<StackSpec> {
    ["network", "data"]
        .iter()
        .map(|id| StackSpec {
            id: id.to_string(),
            stack_name: format!("datasync-dev-{id}"),
            depends_on: Vec::new(),
            body: String::new(),
            template_sha256: String::new(),
            parameters: BTreeMap::new(),
            tags: BTreeMap::new(),
        })
        .collect()
}

fn options(skip: &[&str], cancel: bool, confirmation: Confirmation) -> RecoverOptions {
    RecoverOptions {
        skip: skip.iter().map(|s| s.to_string()).collect(),
        cancel,
        confirmation,
        poll: PollSettings {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            timeout: Duration::from_secs(10),
        },
        role_arn: Some("arn:aws:iam::210987654321:role/datasync-cfn-exec".into()),
        emulator: false,
    }
}

fn stack(status: StackStatus) -> Stack {
    Stack::builder()
        .stack_name(STACK)
        .stack_id(STACK_ID)
        .stack_status(status)
        .creation_time(DateTime::from_secs(1_700_000_000))
        .build()
}

/// DescribeStacks answering `statuses` in turn (the first lists the environment's
/// stacks), the last one repeatedly.
fn describe(statuses: &[StackStatus]) -> Rule {
    let mut rule = mock!(Client::describe_stacks).sequence();
    for status in statuses {
        let status = status.clone();
        rule = rule.output(move || {
            DescribeStacksOutput::builder()
                .stacks(stack(status.clone()))
                .build()
        });
    }
    let last = statuses
        .last()
        .cloned()
        .unwrap_or(StackStatus::UpdateComplete);
    rule.output(move || {
        DescribeStacksOutput::builder()
            .stacks(stack(last.clone()))
            .build()
    })
    .repeatedly()
    .build()
}

fn event(
    id: &str,
    logical: &str,
    kind: &str,
    status: ResourceStatus,
    reason: Option<&str>,
) -> StackEvent {
    StackEvent::builder()
        .event_id(id)
        .stack_id(STACK_ID)
        .stack_name(STACK)
        .logical_resource_id(logical)
        .resource_type(kind)
        .resource_status(status)
        .set_resource_status_reason(reason.map(str::to_string))
        .timestamp(DateTime::from(SystemTime::now()))
        .build()
}

/// The events of an update whose rollback failed on the table (newest first).
fn rollback_failed_events() -> Rule {
    mock!(Client::describe_stack_events).then_output(|| {
        DescribeStackEventsOutput::builder()
            .stack_events(event("6", STACK, "AWS::CloudFormation::Stack", ResourceStatus::UpdateRollbackFailed, Some("The following resource(s) failed to update: [Records]")))
            .stack_events(event("5", "Records", "AWS::DynamoDB::Table", ResourceStatus::UpdateFailed, Some("Table datasync-dev-records was modified outside CloudFormation and cannot be rolled back")))
            .stack_events(event("4", "Queue", "AWS::SQS::Queue", ResourceStatus::UpdateComplete, None))
            .stack_events(event("3", STACK, "AWS::CloudFormation::Stack", ResourceStatus::UpdateRollbackInProgress, Some("The following resource(s) failed to update: [Queue]")))
            .stack_events(event("2", "Queue", "AWS::SQS::Queue", ResourceStatus::UpdateFailed, Some("Invalid value for VisibilityTimeout")))
            .stack_events(event("1", STACK, "AWS::CloudFormation::Stack", ResourceStatus::UpdateInProgress, Some("User Initiated")))
            .build()
    })
}

async fn run(client: &Client, options: &RecoverOptions, answer: bool) -> (Recovery, Vec<String>) {
    let mut asked = Vec::new();
    let recovery = recover::recover(
        client,
        &specs(),
        options,
        &Progress::hidden(),
        &mut |question: &str| {
            asked.push(question.to_string());
            answer
        },
    )
    .await
    .expect("recovery runs");
    (recovery, asked)
}

fn data(recovery: &Recovery) -> &recover::StackRecovery {
    &recovery.stacks[1]
}

#[tokio::test]
async fn a_failed_rollback_is_continued_and_its_failed_resources_listed() {
    let describe = describe(&[
        StackStatus::UpdateRollbackFailed,
        StackStatus::UpdateRollbackInProgress,
        StackStatus::UpdateRollbackComplete,
    ]);
    let events = rollback_failed_events();
    let resume = mock!(Client::continue_update_rollback)
        .match_requests(|input| {
            input.stack_name() == Some(STACK_ID)
                && input.resources_to_skip().is_empty()
                && input.role_arn() == Some("arn:aws:iam::210987654321:role/datasync-cfn-exec")
        })
        .then_output(|| aws_sdk_cloudformation::operation::continue_update_rollback::ContinueUpdateRollbackOutput::builder().build());
    let client = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        &[&describe, &events, &resume]
    );

    let (recovery, _) = run(
        &client,
        &options(&[], false, Confirmation::Unavailable),
        false,
    )
    .await;
    assert_eq!(resume.num_calls(), 1);
    let stack = data(&recovery);
    assert_eq!(
        stack.result,
        RecoveryResult::Recovered,
        "{}",
        recovery.to_text()
    );
    assert_eq!(
        stack.status_after.as_deref(),
        Some("UPDATE_ROLLBACK_COMPLETE")
    );
    assert_eq!(recovery.stacks[0].result, RecoveryResult::NotDeployed);
    let failed: Vec<&str> = stack
        .failed_resources
        .iter()
        .map(|e| e.logical_id.as_str())
        .collect();
    assert_eq!(
        failed,
        ["Records"],
        "only what failed in the rollback, not in the update"
    );
    assert_eq!(recovery.exit(), Exit::Success);
    let text = recovery.to_text();
    assert!(
        text.contains("recovered (UPDATE_ROLLBACK_FAILED -> UPDATE_ROLLBACK_COMPLETE)")
            && text.contains("failed: Records (AWS::DynamoDB::Table) UPDATE_FAILED: Table datasync-dev-records was modified outside CloudFormation")
            && text.contains("done: continued the rollback (ContinueUpdateRollback)"),
        "{text}"
    );
}

#[tokio::test]
async fn a_resource_that_cannot_be_rolled_back_is_skipped_when_named() {
    for skip in ["Records", "data/Records", "datasync-dev-data/Records"] {
        let describe = describe(&[
            StackStatus::UpdateRollbackFailed,
            StackStatus::UpdateRollbackComplete,
        ]);
        let events = rollback_failed_events();
        let resume = mock!(Client::continue_update_rollback)
            .match_requests(|input| input.resources_to_skip() == ["Records".to_string()])
            .then_output(|| aws_sdk_cloudformation::operation::continue_update_rollback::ContinueUpdateRollbackOutput::builder().build());
        let client = mock_client!(
            aws_sdk_cloudformation,
            RuleMode::MatchAny,
            &[&describe, &events, &resume]
        );
        let (recovery, _) = run(
            &client,
            &options(&[skip], false, Confirmation::Unavailable),
            false,
        )
        .await;
        assert_eq!(resume.num_calls(), 1, "--skip {skip}");
        let stack = data(&recovery);
        assert_eq!(
            stack.result,
            RecoveryResult::Recovered,
            "{}",
            recovery.to_text()
        );
        assert_eq!(stack.skipped, ["Records"]);
        assert!(
            recovery
                .to_text()
                .contains("continued the rollback skipping Records"),
            "{}",
            recovery.to_text()
        );
    }
}

#[tokio::test]
async fn a_rollback_that_fails_again_says_what_to_skip() {
    let describe = describe(&[
        StackStatus::UpdateRollbackFailed,
        StackStatus::UpdateRollbackFailed,
    ]);
    let events = rollback_failed_events();
    let resume = mock!(Client::continue_update_rollback)
        .then_output(|| aws_sdk_cloudformation::operation::continue_update_rollback::ContinueUpdateRollbackOutput::builder().build());
    let client = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        &[&describe, &events, &resume]
    );
    let (recovery, _) = run(
        &client,
        &options(&[], false, Confirmation::Unavailable),
        false,
    )
    .await;
    let stack = data(&recovery);
    assert_eq!(stack.result, RecoveryResult::Failed);
    assert_eq!(recovery.exit(), Exit::Failed);
    assert!(
        stack
            .message
            .as_deref()
            .is_some_and(|m| m.contains("--skip data/<LogicalId>")),
        "{:?}",
        stack.message
    );
}

#[tokio::test]
async fn bad_skip_values_are_refused_before_anything_is_done() {
    let cases: [(&[&str], &str); 5] = [
        (
            &["Tabel"],
            "--skip `Tabel`: no stack has a resource Tabel that failed to roll back",
        ),
        (
            &["compute/Records"],
            "`compute` is not one of the environment's stacks",
        ),
        (
            &["network/Records"],
            "datasync-dev-network is not deployed, not UPDATE_ROLLBACK_FAILED",
        ),
        (
            &["data/Queue"],
            "Queue is not a resource of datasync-dev-data that failed to roll back",
        ),
        (&["data/"], "--skip `data/` names no resource"),
    ];
    for (skip, expected) in cases {
        let describe = describe(&[StackStatus::UpdateRollbackFailed]);
        let events = rollback_failed_events();
        let resume = mock!(Client::continue_update_rollback)
            .then_output(|| aws_sdk_cloudformation::operation::continue_update_rollback::ContinueUpdateRollbackOutput::builder().build());
        let client = mock_client!(
            aws_sdk_cloudformation,
            RuleMode::MatchAny,
            &[&describe, &events, &resume]
        );
        let error = recover::recover(
            &client,
            &specs(),
            &options(skip, false, Confirmation::Unavailable),
            &Progress::hidden(),
            &mut |_: &str| false,
        )
        .await
        .expect_err("refused");
        assert!(error.to_string().contains(expected), "{skip:?}: {error}");
        if expected.contains("Tabel") || expected.contains("Queue") {
            assert!(
                error.help().is_some_and(|h| h.contains("data/Records")),
                "the help lists what can be skipped: {:?}",
                error.help()
            );
        }
        assert_eq!(resume.num_calls(), 0, "nothing is done on a bad --skip");
    }
}

#[tokio::test]
async fn an_update_in_progress_is_cancelled_with_cancel_and_waited_for_without() {
    for cancel in [true, false] {
        let describe = describe(&[
            StackStatus::UpdateInProgress,
            StackStatus::UpdateRollbackInProgress,
            StackStatus::UpdateRollbackComplete,
        ]);
        let events = mock!(Client::describe_stack_events)
            .then_output(|| DescribeStackEventsOutput::builder().build());
        let cancel_rule = mock!(Client::cancel_update_stack)
            .match_requests(|input| input.stack_name() == Some(STACK_ID))
            .then_output(|| aws_sdk_cloudformation::operation::cancel_update_stack::CancelUpdateStackOutput::builder().build());
        let client = mock_client!(
            aws_sdk_cloudformation,
            RuleMode::MatchAny,
            &[&describe, &events, &cancel_rule]
        );
        let (recovery, _) = run(
            &client,
            &options(&[], cancel, Confirmation::Unavailable),
            false,
        )
        .await;
        assert_eq!(
            cancel_rule.num_calls(),
            usize::from(cancel),
            "cancel: {cancel}"
        );
        let stack = data(&recovery);
        assert_eq!(
            stack.result,
            RecoveryResult::Recovered,
            "{}",
            recovery.to_text()
        );
        assert_eq!(
            stack.status_after.as_deref(),
            Some("UPDATE_ROLLBACK_COMPLETE")
        );
        let text = recovery.to_text();
        assert!(
            text.contains("waited for UPDATE_IN_PROGRESS to finish: UPDATE_ROLLBACK_COMPLETE"),
            "{text}"
        );
        assert_eq!(
            text.contains("cancelled the update in progress"),
            cancel,
            "{text}"
        );
        assert_eq!(recovery.exit(), Exit::Success);
    }
}

fn left_behind_resources() -> Rule {
    mock!(Client::describe_stack_resources).then_output(|| {
        DescribeStackResourcesOutput::builder()
            .stack_resources(
                StackResource::builder()
                    .logical_resource_id("Records")
                    .physical_resource_id("datasync-dev-records")
                    .resource_type("AWS::DynamoDB::Table")
                    .resource_status(ResourceStatus::DeleteSkipped)
                    .timestamp(DateTime::from_secs(1_700_000_000))
                    .build(),
            )
            .build()
    })
}

#[tokio::test]
async fn a_stack_in_rollback_complete_is_deleted_only_once_confirmed() {
    let cases = [
        (
            Confirmation::Prompt,
            true,
            RecoveryResult::Recovered,
            Exit::Success,
            1,
        ),
        (
            Confirmation::Prompt,
            false,
            RecoveryResult::Declined,
            Exit::Declined,
            0,
        ),
        (
            Confirmation::Unavailable,
            true,
            RecoveryResult::NeedsConfirmation,
            Exit::NeedsConfirmation,
            0,
        ),
        (
            Confirmation::Yes,
            false,
            RecoveryResult::Recovered,
            Exit::Success,
            1,
        ),
    ];
    for (confirmation, answer, result, exit, deletes) in cases {
        let describe = describe(&[StackStatus::RollbackComplete, StackStatus::DeleteComplete]);
        let resources = left_behind_resources();
        let events = mock!(Client::describe_stack_events)
            .then_output(|| DescribeStackEventsOutput::builder().build());
        let delete = mock!(Client::delete_stack)
            .match_requests(|input| input.stack_name() == Some(STACK_ID))
            .then_output(|| {
                aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput::builder()
                    .build()
            });
        let client = mock_client!(
            aws_sdk_cloudformation,
            RuleMode::MatchAny,
            &[&describe, &resources, &events, &delete]
        );
        let (recovery, asked) = run(&client, &options(&[], false, confirmation), answer).await;
        let stack = data(&recovery);
        assert_eq!(
            stack.result,
            result,
            "{confirmation:?}: {}",
            recovery.to_text()
        );
        assert_eq!(recovery.exit(), exit);
        assert_eq!(
            delete.num_calls(),
            deletes,
            "{confirmation:?} answered {answer}"
        );
        assert_eq!(stack.left_behind.len(), 1);
        if confirmation == Confirmation::Prompt {
            assert!(
                asked[0].contains(
                    "Records (AWS::DynamoDB::Table) datasync-dev-records: DELETE_SKIPPED"
                ) && asked[0].contains("Delete the stack datasync-dev-data?"),
                "the question lists what was left behind: {}",
                asked[0]
            );
        } else {
            assert!(
                asked.is_empty(),
                "no question without a terminal or with --yes"
            );
        }
        let text = recovery.to_text();
        assert!(
            text.contains("left behind: Records (AWS::DynamoDB::Table) datasync-dev-records"),
            "{text}"
        );
        if deletes == 1 {
            assert!(
                text.contains("(ROLLBACK_COMPLETE -> deleted)")
                    && text.contains("resources left behind still exist"),
                "{text}"
            );
        }
    }
}

#[tokio::test]
async fn settled_stacks_are_left_alone() {
    let describe = describe(&[StackStatus::UpdateComplete]);
    let client = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &[&describe]);
    let (recovery, _) = run(&client, &options(&[], true, Confirmation::Yes), true).await;
    assert!(recovery.all_settled());
    assert_eq!(data(&recovery).result, RecoveryResult::Settled);
    assert_eq!(recovery.exit(), Exit::Success);
    assert!(recovery
        .to_text()
        .contains("every stack is settled; nothing to recover"));
    assert!(recovery.acted_on().is_empty());
}
