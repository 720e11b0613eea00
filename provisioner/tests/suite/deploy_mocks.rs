//! What moto cannot produce, on real SDK clients over `aws-smithy-mocks` rules: an
//! update that fails and rolls back, a new stack left in ROLLBACK_COMPLETE (deleted only
//! once confirmed, what it left behind listed), throttled DescribeStackEvents, a change
//! set with no changes, a stateful replacement, a stack updated outside the provisioner
//! whose tags still match, rollback triggers and the alarm that fires one, Ctrl-C before
//! and during an update, a prompt answered no and a run with nobody to ask, the
//! properties a change set changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_cloudformation::operation::describe_stack_events::{
    DescribeStackEventsError, DescribeStackEventsOutput,
};
use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
use aws_sdk_cloudformation::types::{
    Change, ChangeAction, ChangeSetStatus, Replacement, ResourceChange, ResourceStatus, Stack,
    StackEvent, StackStatus, Tag,
};
use aws_sdk_cloudformation::Client;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use aws_smithy_types::error::ErrorMetadata;
use aws_smithy_types::DateTime;
use provisioner::deploy::clients::{AwsClients, RequestCounter};
use provisioner::deploy::engine::{self, Confirmation, EngineOptions, Mode, RollbackTrigger};
use provisioner::deploy::interrupt::Interrupt;
use provisioner::deploy::progress::Progress;
use provisioner::deploy::report::{Review, Reviewer, StackResult, Verdict};
use provisioner::deploy::{PollSettings, StackSpec, TEMPLATE_HASH_TAG};
use provisioner::exit::Exit;

const STACK: &str = "datasync-dev-data";
const STACK_ID: &str = "arn:aws:cloudformation:eu-west-1:210987654321:stack/datasync-dev-data/1";
const CHANGE_SET_ID: &str =
    "arn:aws:cloudformation:eu-west-1:210987654321:changeSet/provisioner-1/1";

struct Recorder(Vec<Review>);

impl Reviewer for Recorder {
    fn show(&mut self, review: &Review) {
        self.0.push(review.clone());
    }
    fn confirm(&mut self, _review: &Review) -> bool {
        false
    }
}

fn spec() -> StackSpec {
    StackSpec {
        id: "data".into(),
        stack_name: STACK.into(),
        depends_on: Vec::new(),
        body: "Resources: {}\n".into(),
        template_sha256: "new-template-hash".into(),
        parameters: BTreeMap::new(),
        tags: BTreeMap::from([("app".to_string(), "datasync".to_string())]),
    }
}

fn options(allow: &[&str]) -> EngineOptions {
    EngineOptions {
        mode: Mode::Deploy,
        release: "rel-2".into(),
        allow_replace: allow.iter().map(|a| a.to_string()).collect::<BTreeSet<_>>(),
        confirmation: Confirmation::Yes,
        poll: PollSettings {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(20),
            timeout: Duration::from_secs(10),
        },
        emulator: false,
        role_arn: None,
        seen: BTreeMap::new(),
        rollback: None,
        interrupt: Default::default(),
        keep_change_sets: false,
        planned: None,
    }
}

fn stack(status: StackStatus, template_hash: &str) -> Stack {
    Stack::builder()
        .stack_name(STACK)
        .stack_id(STACK_ID)
        .stack_status(status)
        .creation_time(DateTime::from_secs(1_700_000_000))
        .tags(Tag::builder().key("app").value("datasync").build())
        .tags(
            Tag::builder()
                .key(TEMPLATE_HASH_TAG)
                .value(template_hash)
                .build(),
        )
        .build()
}

fn stacks_output(stack: Stack) -> DescribeStacksOutput {
    DescribeStacksOutput::builder().stacks(stack).build()
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

fn change(logical: &str, kind: &str, replacement: Replacement) -> Change {
    Change::builder()
        .resource_change(
            ResourceChange::builder()
                .action(ChangeAction::Modify)
                .logical_resource_id(logical)
                .resource_type(kind)
                .replacement(replacement)
                .build(),
        )
        .build()
}

fn create_change_set() -> Rule {
    mock!(Client::create_change_set).then_output(|| {
        aws_sdk_cloudformation::operation::create_change_set::CreateChangeSetOutput::builder()
            .id(CHANGE_SET_ID)
            .stack_id(STACK_ID)
            .build()
    })
}

fn ready_change_set(changes: Vec<Change>) -> Rule {
    mock!(Client::describe_change_set).then_output(move || {
        aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput::builder()
            .status(ChangeSetStatus::CreateComplete)
            .set_changes(Some(changes.clone()))
            .build()
    })
}

fn ok_rule<F, O>(
    rule: aws_smithy_mocks::RuleBuilder<impl std::fmt::Debug + Send + Sync + 'static, O, F>,
    output: impl Fn() -> O + Send + Sync + 'static,
) -> Rule
where
    O: std::fmt::Debug + Send + Sync + 'static,
    F: std::fmt::Debug + Send + Sync + std::error::Error + 'static,
{
    rule.then_output(output)
}

/// The deployed template, which differs from the one being deployed.
fn old_template() -> Rule {
    mock!(Client::get_template).then_output(|| {
        aws_sdk_cloudformation::operation::get_template::GetTemplateOutput::builder()
            .template_body("Resources:\n  Old:\n    Type: AWS::SNS::Topic\n")
            .build()
    })
}

fn clients(rules: &[&Rule]) -> AwsClients {
    clients_with_alarms(rules, &[])
}

/// Clients whose CloudWatch answers from `alarm_rules` too.
fn clients_with_alarms(rules: &[&Rule], alarm_rules: &[&Rule]) -> AwsClients {
    let requests = RequestCounter::default();
    let counter = requests.clone();
    let cloudformation = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, rules, |b| b
        .interceptor(counter.clone()));
    let no_rules: [&Rule; 0] = [];
    let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, &no_rules);
    let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, &no_rules);
    // Never called by these tests: real clients with no endpoint to reach.
    let region = aws_sdk_dynamodb::config::Region::new("eu-west-1");
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version_latest()
            .region(region.clone())
            .build(),
    );
    let cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, alarm_rules);
    drop(region);
    AwsClients {
        cloudformation,
        s3,
        dynamodb,
        sts,
        cloudwatch,
        config: aws_config::SdkConfig::builder().build(),
        requests,
    }
}

#[tokio::test]
async fn a_failed_update_that_rolls_back_reports_its_root_cause() {
    let describe = mock!(Client::describe_stacks)
        .sequence()
        .output(|| stacks_output(stack(StackStatus::UpdateComplete, "old-template-hash")))
        .output(|| {
            stacks_output(stack(
                StackStatus::UpdateRollbackInProgress,
                "old-template-hash",
            ))
        })
        .output(|| {
            stacks_output(stack(
                StackStatus::UpdateRollbackComplete,
                "old-template-hash",
            ))
        })
        .build();
    let events = mock!(Client::describe_stack_events)
        .sequence()
        .output(|| {
            DescribeStackEventsOutput::builder()
                .stack_events(event(
                    "4",
                    STACK,
                    "AWS::CloudFormation::Stack",
                    ResourceStatus::UpdateRollbackInProgress,
                    Some("The following resource(s) failed to update: [Records]"),
                ))
                .stack_events(event(
                    "3",
                    "Topic",
                    "AWS::SNS::Topic",
                    ResourceStatus::UpdateFailed,
                    Some("Resource update cancelled"),
                ))
                .stack_events(event(
                    "2",
                    "Records",
                    "AWS::DynamoDB::Table",
                    ResourceStatus::UpdateFailed,
                    Some("Cannot update GSI's properties other than Provisioned Throughput"),
                ))
                .stack_events(event(
                    "1",
                    "Records",
                    "AWS::DynamoDB::Table",
                    ResourceStatus::UpdateInProgress,
                    None,
                ))
                .build()
        })
        .output(|| {
            DescribeStackEventsOutput::builder()
                .stack_events(event(
                    "5",
                    STACK,
                    "AWS::CloudFormation::Stack",
                    ResourceStatus::UpdateComplete,
                    None,
                ))
                .stack_events(event(
                    "4",
                    STACK,
                    "AWS::CloudFormation::Stack",
                    ResourceStatus::UpdateRollbackInProgress,
                    None,
                ))
                .build()
        })
        .build();
    let execute = ok_rule(mock!(Client::execute_change_set), || {
        aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
            .build()
    });
    let create = create_change_set();
    let ready = ready_change_set(vec![change(
        "Records",
        "AWS::DynamoDB::Table",
        Replacement::False,
    )]);
    let template = old_template();
    let clients = clients(&[&describe, &template, &create, &ready, &execute, &events]);

    let run = engine::run(
        &clients,
        &[spec()],
        options(&[]),
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(run.verdict(), Verdict::RolledBack);
    assert_eq!(run.verdict().exit(false), Exit::RolledBack);
    let outcome = &run.stacks[0];
    assert_eq!(outcome.result, StackResult::RolledBack);
    assert_eq!(outcome.status.as_deref(), Some("UPDATE_ROLLBACK_COMPLETE"));
    let cause = outcome.root_cause.as_ref().expect("a root cause");
    assert_eq!(cause.logical_id, "Records");
    assert_eq!(
        cause.reason.as_deref(),
        Some("Cannot update GSI's properties other than Provisioned Throughput")
    );
    let text = run.to_text();
    assert!(
        text.contains("root cause: Records (AWS::DynamoDB::Table) UPDATE_FAILED: Cannot update GSI's properties"),
        "{text}"
    );
}

/// The resources of a rolled-back first create: the table was kept by its
/// DeletionPolicy, the queue was deleted.
fn rolled_back_resources() -> Rule {
    mock!(Client::describe_stack_resources).then_output(|| {
        aws_sdk_cloudformation::operation::describe_stack_resources::DescribeStackResourcesOutput::builder()
            .stack_resources(
                aws_sdk_cloudformation::types::StackResource::builder()
                    .logical_resource_id("Records")
                    .physical_resource_id("datasync-dev-records")
                    .resource_type("AWS::DynamoDB::Table")
                    .resource_status(ResourceStatus::DeleteSkipped)
                    .timestamp(DateTime::from_secs(1_700_000_000))
                    .build(),
            )
            .stack_resources(
                aws_sdk_cloudformation::types::StackResource::builder()
                    .logical_resource_id("Queue")
                    .physical_resource_id("https://sqs.eu-west-1.amazonaws.com/210987654321/q")
                    .resource_type("AWS::SQS::Queue")
                    .resource_status(ResourceStatus::DeleteComplete)
                    .timestamp(DateTime::from_secs(1_700_000_000))
                    .build(),
            )
            .build()
    })
}

#[tokio::test]
async fn a_new_stack_left_in_rollback_complete_is_deleted_once_confirmed_and_created_again() {
    let describe = mock!(Client::describe_stacks)
        .sequence()
        .output(|| stacks_output(stack(StackStatus::RollbackComplete, "old-template-hash")))
        .output(|| stacks_output(stack(StackStatus::DeleteComplete, "old-template-hash")))
        .output(|| stacks_output(stack(StackStatus::CreateComplete, "new-template-hash")))
        .build();
    let resources = rolled_back_resources();
    let delete = ok_rule(mock!(Client::delete_stack), || {
        aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput::builder().build()
    });
    let events = ok_rule(mock!(Client::describe_stack_events), || {
        DescribeStackEventsOutput::builder().build()
    });
    // The new stack's resources are deleted if this create rolls back, retained or not.
    let execute = mock!(Client::execute_change_set)
        .match_requests(|input| input.retain_except_on_create() == Some(true))
        .then_output(|| {
            aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
                .build()
        });
    let create = mock!(Client::create_change_set)
        .match_requests(|input| input.change_set_type().map(|t| t.as_str()) == Some("CREATE"))
        .then_output(|| {
            aws_sdk_cloudformation::operation::create_change_set::CreateChangeSetOutput::builder()
                .id(CHANGE_SET_ID)
                .stack_id(STACK_ID)
                .build()
        });
    let ready = ready_change_set(vec![]);
    let clients = clients(&[
        &describe, &resources, &delete, &events, &create, &ready, &execute,
    ]);
    let mut reviews = Recorder(Vec::new());

    let run = engine::run(
        &clients,
        &[spec()],
        options(&[]),
        Arc::new(Progress::hidden()),
        &mut reviews,
    )
    .await
    .expect("the run completes");
    let outcome = &run.stacks[0];
    assert_eq!(outcome.result, StackResult::Deployed, "{}", run.to_text());
    assert_eq!(outcome.change_set_type.as_deref(), Some("CREATE"));
    let deletion = &reviews.0[0];
    assert!(deletion.is_deletion(), "the deletion is reviewed first");
    let shown = deletion.to_text(false);
    assert!(
        shown.contains("1 resource(s) left behind by the failed create")
            && shown.contains("Records  AWS::DynamoDB::Table  datasync-dev-records")
            && !shown.contains("Queue"),
        "{shown}"
    );
    assert_eq!(delete.num_calls(), 1, "the rolled-back stack is deleted");
    assert_eq!(
        create.num_calls(),
        1,
        "then created again through a CREATE change set"
    );
    assert_eq!(execute.num_calls(), 1, "executed with RetainExceptOnCreate");
    let text = run.to_text();
    assert!(
        text.contains("left in ROLLBACK_COMPLETE by a failed first deploy; it was deleted")
            && text.contains("left behind by the failed create: Records (AWS::DynamoDB::Table) datasync-dev-records: DELETE_SKIPPED"),
        "{text}"
    );
}

#[tokio::test]
async fn a_stack_in_rollback_complete_is_never_deleted_without_confirmation() {
    for (confirmation, why, result, verdict) in [
        (
            Confirmation::Unavailable,
            "no terminal to confirm on; pass --yes",
            StackResult::NotConfirmed,
            Verdict::NeedsConfirmation,
        ),
        (
            Confirmation::Prompt,
            "declined at the prompt",
            StackResult::Declined,
            Verdict::Declined,
        ),
    ] {
        let describe = ok_rule(mock!(Client::describe_stacks), || {
            stacks_output(stack(StackStatus::RollbackComplete, "old-template-hash"))
        });
        let resources = rolled_back_resources();
        let delete = ok_rule(mock!(Client::delete_stack), || {
            aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput::builder().build()
        });
        let create = create_change_set();
        let clients = clients(&[&describe, &resources, &delete, &create]);
        let mut reviews = Recorder(Vec::new());
        let run = engine::run(
            &clients,
            &[spec()],
            EngineOptions {
                confirmation,
                ..options(&[])
            },
            Arc::new(Progress::hidden()),
            &mut reviews,
        )
        .await
        .expect("the run completes");
        let outcome = &run.stacks[0];
        assert_eq!(outcome.result, result, "{}", run.to_text());
        assert!(
            outcome
                .message
                .as_deref()
                .is_some_and(|m| m.contains(why) && m.contains("stays in ROLLBACK_COMPLETE")),
            "{:?}",
            outcome.message
        );
        assert_eq!(delete.num_calls(), 0, "nothing is deleted");
        assert_eq!(create.num_calls(), 0, "nothing is created");
        assert_eq!(reviews.0.len(), 1, "the deletion was shown");
        assert_eq!(run.verdict(), verdict);
    }
}

#[tokio::test]
async fn throttled_stack_events_slow_the_polling_down_instead_of_failing() {
    let throttled = mock!(Client::describe_stack_events)
        .sequence()
        .error(|| {
            DescribeStackEventsError::generic(
                ErrorMetadata::builder()
                    .code("Throttling")
                    .message("Rate exceeded")
                    .build(),
            )
        })
        .times(6)
        .build();
    let events = ok_rule(mock!(Client::describe_stack_events), || {
        DescribeStackEventsOutput::builder()
            .stack_events(event(
                "9",
                STACK,
                "AWS::CloudFormation::Stack",
                ResourceStatus::UpdateComplete,
                None,
            ))
            .build()
    });
    let execute = ok_rule(mock!(Client::execute_change_set), || {
        aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
            .build()
    });
    let create = create_change_set();
    let ready = ready_change_set(vec![change("Queue", "AWS::SQS::Queue", Replacement::False)]);
    // DescribeStacks: the first call lists, then IN_PROGRESS while events are throttled.
    let describe_then_done = mock!(Client::describe_stacks)
        .sequence()
        .output(|| stacks_output(stack(StackStatus::UpdateComplete, "old-template-hash")))
        .output(|| stacks_output(stack(StackStatus::UpdateInProgress, "old-template-hash")))
        .times(6)
        .output(|| stacks_output(stack(StackStatus::UpdateComplete, "new-template-hash")))
        .repeatedly()
        .build();
    let template = old_template();
    let clients = clients(&[
        &describe_then_done,
        &template,
        &create,
        &ready,
        &execute,
        &throttled,
        &events,
    ]);

    let run = engine::run(
        &clients,
        &[spec()],
        options(&[]),
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("throttling does not fail the deploy");
    assert_eq!(
        run.stacks[0].result,
        StackResult::Deployed,
        "{}",
        run.to_text()
    );
    assert_eq!(
        throttled.num_calls(),
        6,
        "every throttled answer was met with a later retry"
    );
    assert!(
        events.num_calls() >= 1,
        "events were read once the throttling stopped"
    );
}

#[tokio::test]
async fn a_change_set_without_changes_is_deleted_and_not_executed() {
    let describe = ok_rule(mock!(Client::describe_stacks), || {
        stacks_output(stack(
            StackStatus::UpdateComplete,
            "hash-written-by-another-tool",
        ))
    });
    let template = ok_rule(mock!(Client::get_template), || {
        aws_sdk_cloudformation::operation::get_template::GetTemplateOutput::builder()
            .template_body("Resources: {} # same resources, other bytes\n")
            .build()
    });
    let create = create_change_set();
    let empty = ok_rule(mock!(Client::describe_change_set), || {
        aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput::builder()
            .status(ChangeSetStatus::Failed)
            .status_reason("The submitted information didn't contain changes. Submit different information to create a change set.")
            .build()
    });
    let delete = ok_rule(mock!(Client::delete_change_set), || {
        aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput::builder()
            .build()
    });
    let execute = ok_rule(mock!(Client::execute_change_set), || {
        aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
            .build()
    });
    let clients = clients(&[&describe, &template, &create, &empty, &delete, &execute]);

    let run = engine::run(
        &clients,
        &[spec()],
        options(&[]),
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(
        run.stacks[0].result,
        StackResult::NoChanges,
        "{}",
        run.to_text()
    );
    assert_eq!(run.verdict(), Verdict::NoChanges);
    assert_eq!(delete.num_calls(), 1, "the empty change set is deleted");
    assert_eq!(execute.num_calls(), 0);
}

#[tokio::test]
async fn replacing_a_table_is_refused_unless_it_is_named() {
    let rules = || {
        (
            ok_rule(mock!(Client::describe_stacks), || {
                stacks_output(stack(StackStatus::UpdateComplete, "old-template-hash"))
            }),
            create_change_set(),
            ready_change_set(vec![
                change("Records", "AWS::DynamoDB::Table", Replacement::True),
                change("Role", "AWS::IAM::Role", Replacement::True),
            ]),
            ok_rule(mock!(Client::delete_change_set), || {
                aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput::builder().build()
            }),
            ok_rule(mock!(Client::execute_change_set), || {
                aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder().build()
            }),
            ok_rule(mock!(Client::describe_stack_events), || {
                DescribeStackEventsOutput::builder().build()
            }),
            old_template(),
        )
    };
    let (describe, create, ready, delete, execute, events, template) = rules();
    let clients_refused = clients(&[
        &describe, &create, &ready, &delete, &execute, &events, &template,
    ]);
    let mut reviews = Recorder(Vec::new());
    let run = engine::run(
        &clients_refused,
        &[spec()],
        options(&[]),
        Arc::new(Progress::hidden()),
        &mut reviews,
    )
    .await
    .expect("the run completes");
    assert_eq!(run.verdict(), Verdict::Refused);
    assert_eq!(run.stacks[0].refused.len(), 1);
    assert_eq!(run.stacks[0].refused[0].logical_id, "Records");
    assert_eq!(run.stacks[0].refused[0].effect, "replaced");
    assert_eq!(delete.num_calls(), 1, "the refused change set is deleted");
    assert_eq!(execute.num_calls(), 0);
    assert!(
        reviews.0[0]
            .to_text(false)
            .contains("Records  AWS::DynamoDB::Table  REPLACE"),
        "{}",
        reviews.0[0].to_text(false)
    );

    let (describe, create, ready, delete, execute, events, template) = rules();
    let clients_allowed = clients(&[
        &describe, &create, &ready, &delete, &execute, &events, &template,
    ]);
    let run = engine::run(
        &clients_allowed,
        &[spec()],
        options(&["Records"]),
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(
        execute.num_calls(),
        1,
        "named with --allow-replace, the change set runs: {}",
        run.to_text()
    );
}

/// A stack whose tags say it runs `spec()`'s template, last updated at `updated`.
fn tagged_current(updated: i64) -> Stack {
    Stack::builder()
        .stack_name(STACK)
        .stack_id(STACK_ID)
        .stack_status(StackStatus::UpdateComplete)
        .creation_time(DateTime::from_secs(1_700_000_000))
        .last_updated_time(DateTime::from_secs(updated))
        .tags(Tag::builder().key("app").value("datasync").build())
        .tags(
            Tag::builder()
                .key(TEMPLATE_HASH_TAG)
                .value("new-template-hash")
                .build(),
        )
        .build()
}

fn seen_at(updated: i64) -> BTreeMap<String, provisioner::deploy::stacks::SeenStack> {
    BTreeMap::from([(
        STACK.to_string(),
        provisioner::deploy::stacks::SeenStack {
            last_updated: DateTime::from_secs(updated)
                .fmt(aws_smithy_types::date_time::Format::DateTime)
                .ok(),
            template_sha256: "new-template-hash".into(),
        },
    )])
}

#[tokio::test]
async fn a_stack_updated_outside_the_provisioner_is_not_taken_for_current_by_its_tags() {
    // As the last recorded deploy left it: skipped on its tags, no template read.
    let describe = ok_rule(mock!(Client::describe_stacks), || {
        stacks_output(tagged_current(1_700_000_500))
    });
    let template = old_template();
    let clients_as_left = clients(&[&describe, &template]);
    let run = engine::run(
        &clients_as_left,
        &[spec()],
        EngineOptions {
            seen: seen_at(1_700_000_500),
            ..options(&[])
        },
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(run.stacks[0].result, StackResult::Unchanged);
    assert_eq!(template.num_calls(), 0, "the record vouches for the stack");
    assert!(run.stacks[0].seen.is_some(), "and is renewed");

    // Updated since (the console keeps the tags): the template decides, and it differs.
    let describe = ok_rule(mock!(Client::describe_stacks), || {
        stacks_output(tagged_current(1_700_009_999))
    });
    let template = old_template();
    let create = create_change_set();
    let ready = ready_change_set(vec![change("Topic", "AWS::SNS::Topic", Replacement::False)]);
    let delete = ok_rule(mock!(Client::delete_change_set), || {
        aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput::builder()
            .build()
    });
    let clients_changed = clients(&[&describe, &template, &create, &ready, &delete]);
    let mut plan = options(&[]);
    plan.mode = Mode::Plan;
    plan.seen = seen_at(1_700_000_500);
    let run = engine::run(
        &clients_changed,
        &[spec()],
        plan,
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(template.num_calls(), 1, "the deployed template is read");
    assert_eq!(
        run.stacks[0].result,
        StackResult::Planned,
        "{}",
        run.to_text()
    );
    assert!(
        run.to_text().contains("changed outside the provisioner"),
        "{}",
        run.to_text()
    );
    assert!(run.stacks[0].seen.is_none(), "nothing is vouched for");

    // No record at all (the first deploy that keeps one): the template decides too.
    let body = "Resources: {}\n";
    let hash = provisioner::render::sha256_hex(body.as_bytes());
    let tag = hash.clone();
    let describe = ok_rule(mock!(Client::describe_stacks), move || {
        let mut stack = tagged_current(1_700_000_500);
        stack.tags = Some(vec![
            Tag::builder().key("app").value("datasync").build(),
            Tag::builder()
                .key(TEMPLATE_HASH_TAG)
                .value(tag.clone())
                .build(),
        ]);
        stacks_output(stack)
    });
    let same = ok_rule(mock!(Client::get_template), move || {
        aws_sdk_cloudformation::operation::get_template::GetTemplateOutput::builder()
            .template_body(body)
            .build()
    });
    let clients_unrecorded = clients(&[&describe, &same]);
    let mut wanted = spec();
    wanted.template_sha256 = hash;
    let run = engine::run(
        &clients_unrecorded,
        &[wanted],
        options(&[]),
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(
        run.stacks[0].result,
        StackResult::Unchanged,
        "{}",
        run.to_text()
    );
    assert_eq!(same.num_calls(), 1, "without a record the template is read");
    assert!(
        run.stacks[0].seen.is_some(),
        "and the stack is recorded from now on"
    );
}

#[tokio::test]
async fn the_emulators_create_stack_carries_retain_except_on_create_too() {
    // A new stack on the emulator: the reviewed CREATE change set becomes a CreateStack.
    let describe = mock!(Client::describe_stacks)
        .sequence()
        .output(|| DescribeStacksOutput::builder().build())
        .output(|| stacks_output(stack(StackStatus::CreateComplete, "new-template-hash")))
        .repeatedly()
        .build();
    let create = create_change_set();
    let ready = ready_change_set(vec![change(
        "Records",
        "AWS::DynamoDB::Table",
        Replacement::False,
    )]);
    let delete_change_set = ok_rule(mock!(Client::delete_change_set), || {
        aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput::builder()
            .build()
    });
    let delete_stack = ok_rule(mock!(Client::delete_stack), || {
        aws_sdk_cloudformation::operation::delete_stack::DeleteStackOutput::builder().build()
    });
    let create_stack = mock!(Client::create_stack)
        .match_requests(|input| input.retain_except_on_create() == Some(true))
        .then_output(|| {
            aws_sdk_cloudformation::operation::create_stack::CreateStackOutput::builder()
                .stack_id(STACK_ID)
                .build()
        });
    let events = ok_rule(mock!(Client::describe_stack_events), || {
        DescribeStackEventsOutput::builder().build()
    });
    let clients = clients(&[
        &describe,
        &create,
        &ready,
        &delete_change_set,
        &delete_stack,
        &create_stack,
        &events,
    ]);
    let run = engine::run(
        &clients,
        &[spec()],
        EngineOptions {
            emulator: true,
            ..options(&[])
        },
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(
        run.stacks[0].result,
        StackResult::Deployed,
        "{}",
        run.to_text()
    );
    assert_eq!(
        create_stack.num_calls(),
        1,
        "CreateStack with RetainExceptOnCreate"
    );
}

const HEALTH_ALARM: &str = "datasync-dev-deploy-health";
const HEALTH_ALARM_ARN: &str =
    "arn:aws:cloudwatch:eu-west-1:210987654321:alarm:datasync-dev-deploy-health";

fn health_alarm(exists: bool) -> Rule {
    mock!(aws_sdk_cloudwatch::Client::describe_alarms)
        .match_requests(|input| input.alarm_names() == [HEALTH_ALARM.to_string()])
        .then_output(move || {
            let mut output =
                aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput::builder();
            if exists {
                output = output.composite_alarms(
                    aws_sdk_cloudwatch::types::CompositeAlarm::builder()
                        .alarm_name(HEALTH_ALARM)
                        .alarm_arn(HEALTH_ALARM_ARN)
                        .build(),
                );
            }
            output.build()
        })
}

fn with_rollback(mut options: EngineOptions) -> EngineOptions {
    options.rollback = Some(RollbackTrigger {
        alarm_name: Some(HEALTH_ALARM.into()),
        monitoring_minutes: 7,
    });
    options
}

#[tokio::test]
async fn an_update_carries_the_health_alarm_as_rollback_trigger_and_its_firing_rolls_back() {
    let describe = mock!(Client::describe_stacks)
        .sequence()
        .output(|| stacks_output(stack(StackStatus::UpdateComplete, "old-template-hash")))
        .output(|| stacks_output(stack(StackStatus::UpdateInProgress, "old-template-hash")))
        .output(|| {
            stacks_output(stack(
                StackStatus::UpdateRollbackComplete,
                "old-template-hash",
            ))
        })
        .build();
    let trigger_reason =
        format!("The following rollback trigger was activated: {HEALTH_ALARM_ARN}");
    let reason = trigger_reason.clone();
    let events = mock!(Client::describe_stack_events).then_output(move || {
        DescribeStackEventsOutput::builder()
            .stack_events(event(
                "2",
                STACK,
                "AWS::CloudFormation::Stack",
                ResourceStatus::UpdateRollbackInProgress,
                Some(&reason),
            ))
            .build()
    });
    // Only a change set carrying the trigger and the monitoring time is answered.
    let create = mock!(Client::create_change_set)
        .match_requests(|input| {
            input.rollback_configuration().is_some_and(|config| {
                config.monitoring_time_in_minutes() == Some(7)
                    && config.rollback_triggers().len() == 1
                    && config.rollback_triggers()[0].arn() == Some(HEALTH_ALARM_ARN)
                    && config.rollback_triggers()[0].r#type()
                        == Some("AWS::CloudWatch::CompositeAlarm")
            })
        })
        .then_output(|| {
            aws_sdk_cloudformation::operation::create_change_set::CreateChangeSetOutput::builder()
                .id(CHANGE_SET_ID)
                .stack_id(STACK_ID)
                .build()
        });
    let ready = ready_change_set(vec![change(
        "Records",
        "AWS::DynamoDB::Table",
        Replacement::False,
    )]);
    let execute = ok_rule(mock!(Client::execute_change_set), || {
        aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
            .build()
    });
    let template = old_template();
    let alarm = health_alarm(true);
    let clients = clients_with_alarms(
        &[&describe, &template, &create, &ready, &execute, &events],
        &[&alarm],
    );

    let run = engine::run(
        &clients,
        &[spec()],
        with_rollback(options(&[])),
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(create.num_calls(), 1, "{}", run.to_text());
    assert_eq!(alarm.num_calls(), 1);
    assert_eq!(run.verdict(), Verdict::RolledBack, "{}", run.to_text());
    assert_eq!(run.verdict().exit(false), Exit::RolledBack);
    let outcome = &run.stacks[0];
    assert_eq!(outcome.result, StackResult::RolledBack);
    assert_eq!(outcome.message.as_deref(), Some(trigger_reason.as_str()));
}

#[tokio::test]
async fn no_trigger_is_set_while_the_health_alarm_does_not_exist() {
    let describe = mock!(Client::describe_stacks)
        .sequence()
        .output(|| stacks_output(stack(StackStatus::UpdateComplete, "old-template-hash")))
        .output(|| stacks_output(stack(StackStatus::UpdateComplete, "new-template-hash")))
        .build();
    let create = mock!(Client::create_change_set)
        .match_requests(|input| input.rollback_configuration().is_none())
        .then_output(|| {
            aws_sdk_cloudformation::operation::create_change_set::CreateChangeSetOutput::builder()
                .id(CHANGE_SET_ID)
                .stack_id(STACK_ID)
                .build()
        });
    let ready = ready_change_set(vec![change("Topic", "AWS::SNS::Topic", Replacement::False)]);
    let execute = ok_rule(mock!(Client::execute_change_set), || {
        aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
            .build()
    });
    let events = ok_rule(mock!(Client::describe_stack_events), || {
        DescribeStackEventsOutput::builder().build()
    });
    let template = old_template();
    let alarm = health_alarm(false);
    let clients = clients_with_alarms(
        &[&describe, &template, &create, &ready, &execute, &events],
        &[&alarm],
    );
    let run = engine::run(
        &clients,
        &[spec()],
        with_rollback(options(&[])),
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(create.num_calls(), 1, "{}", run.to_text());
    assert_eq!(run.verdict(), Verdict::Deployed, "{}", run.to_text());
}

#[tokio::test]
async fn an_interrupted_run_starts_nothing() {
    let describe = mock!(Client::describe_stacks)
        .then_output(|| stacks_output(stack(StackStatus::UpdateComplete, "old-template-hash")));
    let create = create_change_set();
    let clients = clients(&[&describe, &create]);
    let mut options = options(&[]);
    options.interrupt = Interrupt::new();
    options.interrupt.raise();
    let run = engine::run(
        &clients,
        &[spec()],
        options,
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(create.num_calls(), 0, "no change set once interrupted");
    assert_eq!(run.stacks[0].result, StackResult::Interrupted);
    assert_eq!(run.verdict(), Verdict::Interrupted);
    assert_eq!(run.verdict().exit(false), Exit::Interrupted);
    assert!(run.to_text().contains("not started"), "{}", run.to_text());
}

#[tokio::test]
async fn a_second_interrupt_cancels_the_update_in_progress() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let interrupt = Interrupt::new();
    let cancelled = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let describe = {
        let (cancelled, calls) = (cancelled.clone(), calls.clone());
        mock!(Client::describe_stacks).then_output(move || {
            let status = if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                StackStatus::UpdateComplete
            } else if cancelled.load(Ordering::SeqCst) {
                StackStatus::UpdateRollbackComplete
            } else {
                StackStatus::UpdateInProgress
            };
            stacks_output(stack(status, "old-template-hash"))
        })
    };
    let cancel = {
        let cancelled = cancelled.clone();
        mock!(Client::cancel_update_stack).then_output(move || {
            cancelled.store(true, Ordering::SeqCst);
            aws_sdk_cloudformation::operation::cancel_update_stack::CancelUpdateStackOutput::builder()
                .build()
        })
    };
    // The person presses Ctrl-C twice once the update runs.
    let execute = {
        let interrupt = interrupt.clone();
        mock!(Client::execute_change_set).then_output(move || {
            interrupt.raise();
            interrupt.raise();
            aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
                .build()
        })
    };
    let events = ok_rule(mock!(Client::describe_stack_events), || {
        DescribeStackEventsOutput::builder().build()
    });
    let create = create_change_set();
    let ready = ready_change_set(vec![change("Topic", "AWS::SNS::Topic", Replacement::False)]);
    let template = old_template();
    let clients = clients(&[
        &describe, &cancel, &execute, &events, &create, &ready, &template,
    ]);
    let mut options = options(&[]);
    options.interrupt = interrupt;
    let run = engine::run(
        &clients,
        &[spec()],
        options,
        Arc::new(Progress::hidden()),
        &mut Recorder(Vec::new()),
    )
    .await
    .expect("the run completes");
    assert_eq!(cancel.num_calls(), 1, "{}", run.to_text());
    let outcome = &run.stacks[0];
    assert_eq!(
        outcome.result,
        StackResult::Interrupted,
        "{}",
        run.to_text()
    );
    assert_eq!(outcome.status.as_deref(), Some("UPDATE_ROLLBACK_COMPLETE"));
    assert_eq!(run.verdict().exit(false), Exit::Interrupted);
}

#[tokio::test]
async fn a_prompt_answered_no_and_a_run_with_nobody_to_ask_have_exit_codes_of_their_own() {
    for (confirmation, result, exit) in [
        (Confirmation::Prompt, StackResult::Declined, Exit::Declined),
        (
            Confirmation::Unavailable,
            StackResult::NotConfirmed,
            Exit::NeedsConfirmation,
        ),
    ] {
        let describe = mock!(Client::describe_stacks)
            .then_output(|| stacks_output(stack(StackStatus::UpdateComplete, "old-template-hash")));
        let create = create_change_set();
        let ready = ready_change_set(vec![change("Topic", "AWS::SNS::Topic", Replacement::False)]);
        let delete = ok_rule(mock!(Client::delete_change_set), || {
            aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput::builder()
                .build()
        });
        let execute = ok_rule(mock!(Client::execute_change_set), || {
            aws_sdk_cloudformation::operation::execute_change_set::ExecuteChangeSetOutput::builder()
                .build()
        });
        let template = old_template();
        let clients = clients(&[&describe, &create, &ready, &delete, &execute, &template]);
        let mut options = options(&[]);
        options.confirmation = confirmation;
        let run = engine::run(
            &clients,
            &[spec()],
            options,
            Arc::new(Progress::hidden()),
            &mut Recorder(Vec::new()),
        )
        .await
        .expect("the run completes");
        assert_eq!(run.stacks[0].result, result, "{}", run.to_text());
        assert_eq!(run.verdict().exit(false), exit);
        assert_eq!(execute.num_calls(), 0);
        assert_eq!(delete.num_calls(), 1, "the change set is deleted");
    }
}

#[tokio::test]
async fn the_plan_shows_which_properties_change_from_the_change_sets_details() {
    use aws_sdk_cloudformation::types::{
        ChangeSource, RequiresRecreation, ResourceAttribute, ResourceChangeDetail,
        ResourceTargetDefinition,
    };
    let describe = mock!(Client::describe_stacks)
        .then_output(|| stacks_output(stack(StackStatus::UpdateComplete, "old-template-hash")));
    let detailed = Change::builder()
        .resource_change(
            ResourceChange::builder()
                .action(ChangeAction::Modify)
                .logical_resource_id("Records")
                .resource_type("AWS::DynamoDB::Table")
                .replacement(Replacement::False)
                .details(
                    ResourceChangeDetail::builder()
                        .target(
                            ResourceTargetDefinition::builder()
                                .attribute(ResourceAttribute::Properties)
                                .name("BillingMode")
                                .requires_recreation(RequiresRecreation::Never)
                                .before_value("PAY_PER_REQUEST")
                                .after_value("PROVISIONED")
                                .build(),
                        )
                        .change_source(ChangeSource::DirectModification)
                        .build(),
                )
                .build(),
        )
        .build();
    let ready = mock!(Client::describe_change_set)
        .match_requests(|input| input.include_property_values() == Some(true))
        .then_output(move || {
            aws_sdk_cloudformation::operation::describe_change_set::DescribeChangeSetOutput::builder()
                .status(ChangeSetStatus::CreateComplete)
                .changes(detailed.clone())
                .build()
        });
    let delete = ok_rule(mock!(Client::delete_change_set), || {
        aws_sdk_cloudformation::operation::delete_change_set::DeleteChangeSetOutput::builder()
            .build()
    });
    let create = create_change_set();
    let template = old_template();
    let clients = clients(&[&describe, &create, &ready, &delete, &template]);
    let mut options = options(&[]);
    options.mode = Mode::Plan;
    let mut reviews = Recorder(Vec::new());
    let run = engine::run(
        &clients,
        &[spec()],
        options,
        Arc::new(Progress::hidden()),
        &mut reviews,
    )
    .await
    .expect("the run completes");
    let change = &run.stacks[0].changes[0];
    assert_eq!(change.details.len(), 1, "{}", run.to_text());
    assert_eq!(change.details[0].name.as_deref(), Some("BillingMode"));
    let diff = provisioner::deploy::changeset::format_changes(&reviews.0[0].changes, false);
    assert!(
        diff.contains(
            "Properties.BillingMode: PAY_PER_REQUEST -> PROVISIONED (recreation: Never, by DirectModification)"
        ),
        "{diff}"
    );
}
