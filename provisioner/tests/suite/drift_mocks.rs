//! `drift` on real SDK clients over `aws-smithy-mocks` rules (moto lacks
//! DetectStackDrift): a drifted stack's resources and properties are listed once the
//! detection finishes, an undeployed stack is said to be so, and an emulator that lacks
//! the API is named as the reason drift cannot be detected.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudformation::operation::describe_stack_drift_detection_status::DescribeStackDriftDetectionStatusOutput;
use aws_sdk_cloudformation::operation::describe_stack_resource_drifts::DescribeStackResourceDriftsOutput;
use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
use aws_sdk_cloudformation::operation::detect_stack_drift::DetectStackDriftOutput;
use aws_sdk_cloudformation::types::{
    DifferenceType, PropertyDifference, Stack, StackDriftDetectionStatus, StackDriftStatus,
    StackResourceDrift, StackResourceDriftStatus, StackStatus,
};
use aws_sdk_cloudformation::Client;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_types::DateTime;
use provisioner::deploy::drift;
use provisioner::deploy::{PollSettings, StackSpec};

const STACK: &str = "datasync-dev-messaging";
const STACK_ID: &str =
    "arn:aws:cloudformation:eu-west-1:210987654321:stack/datasync-dev-messaging/1";

fn spec(id: &str, name: &str) -> StackSpec {
    StackSpec {
        id: id.into(),
        stack_name: name.into(),
        depends_on: Vec::new(),
        body: String::new(),
        template_sha256: String::new(),
        parameters: BTreeMap::new(),
        tags: BTreeMap::new(),
    }
}

fn poll() -> PollSettings {
    PollSettings {
        initial: Duration::from_millis(5),
        max: Duration::from_millis(20),
        timeout: Duration::from_secs(10),
    }
}

fn deployed() -> aws_smithy_mocks::Rule {
    mock!(Client::describe_stacks).then_output(|| {
        DescribeStacksOutput::builder()
            .stacks(
                Stack::builder()
                    .stack_name(STACK)
                    .stack_id(STACK_ID)
                    .stack_status(StackStatus::UpdateComplete)
                    .creation_time(DateTime::from_secs(1_700_000_000))
                    .build(),
            )
            .build()
    })
}

#[tokio::test]
async fn a_drifted_stack_lists_each_changed_property_once_detection_finishes() {
    let describe = deployed();
    let start = mock!(Client::detect_stack_drift)
        .match_requests(|input| input.stack_name() == Some(STACK_ID))
        .then_output(|| {
            DetectStackDriftOutput::builder()
                .stack_drift_detection_id("detection-1")
                .build()
        });
    let status = mock!(Client::describe_stack_drift_detection_status)
        .match_requests(|input| input.stack_drift_detection_id() == Some("detection-1"))
        .sequence()
        .output(|| {
            DescribeStackDriftDetectionStatusOutput::builder()
                .stack_id(STACK_ID)
                .stack_drift_detection_id("detection-1")
                .detection_status(StackDriftDetectionStatus::DetectionInProgress)
                .timestamp(DateTime::from_secs(1_700_000_100))
                .build()
        })
        .times(2)
        .output(|| {
            DescribeStackDriftDetectionStatusOutput::builder()
                .stack_id(STACK_ID)
                .stack_drift_detection_id("detection-1")
                .detection_status(StackDriftDetectionStatus::DetectionComplete)
                .stack_drift_status(StackDriftStatus::Drifted)
                .drifted_stack_resource_count(1)
                .timestamp(DateTime::from_secs(1_700_000_100))
                .build()
        })
        .build();
    let drifts = mock!(Client::describe_stack_resource_drifts)
        .match_requests(|input| {
            input.stack_resource_drift_status_filters()
                == [
                    StackResourceDriftStatus::Modified,
                    StackResourceDriftStatus::Deleted,
                ]
        })
        .then_output(|| {
            DescribeStackResourceDriftsOutput::builder()
                .stack_resource_drifts(
                    StackResourceDrift::builder()
                        .stack_id(STACK_ID)
                        .logical_resource_id("WorkQueue")
                        .physical_resource_id(
                            "https://sqs.eu-west-1.amazonaws.com/210987654321/work",
                        )
                        .resource_type("AWS::SQS::Queue")
                        .stack_resource_drift_status(StackResourceDriftStatus::Modified)
                        .property_differences(
                            PropertyDifference::builder()
                                .property_path("/VisibilityTimeout")
                                .expected_value("180")
                                .actual_value("30")
                                .difference_type(DifferenceType::NotEqual)
                                .build(),
                        )
                        .timestamp(DateTime::from_secs(1_700_000_100))
                        .build(),
                )
                .build()
        });
    let client = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        &[&describe, &start, &status, &drifts]
    );

    let stacks = drift::detect(
        &client,
        &[
            spec("messaging", STACK),
            spec("compute", "datasync-dev-compute"),
        ],
        poll(),
        false,
    )
    .await
    .expect("drift is detected");
    assert_eq!(status.num_calls(), 3, "polled until the detection finished");
    let messaging = &stacks[0];
    assert!(messaging.drifted());
    assert_eq!(messaging.status, "DRIFTED");
    let queue = &messaging.resources[0];
    assert_eq!(
        (queue.logical_id.as_str(), queue.drift.as_str()),
        ("WorkQueue", "MODIFIED")
    );
    let property = &queue.properties[0];
    assert_eq!(property.path, "/VisibilityTimeout");
    assert_eq!(property.expected.as_deref(), Some("180"));
    assert_eq!(property.actual.as_deref(), Some("30"));
    assert_eq!(property.difference, "NOT_EQUAL");
    assert_eq!(stacks[1].status, "NOT_DEPLOYED");
    assert!(!stacks[1].drifted());
    let text = drift::to_text(&stacks);
    assert!(
        text.contains("MODIFIED WorkQueue (AWS::SQS::Queue)")
            && text.contains("NOT_EQUAL /VisibilityTimeout: expected 180, actual 30")
            && text.contains("datasync-dev-compute    not deployed"),
        "{text}"
    );
}

#[tokio::test]
async fn a_stack_in_sync_is_not_drifted() {
    let describe = deployed();
    let start = mock!(Client::detect_stack_drift).then_output(|| {
        DetectStackDriftOutput::builder()
            .stack_drift_detection_id("detection-2")
            .build()
    });
    let status = mock!(Client::describe_stack_drift_detection_status).then_output(|| {
        DescribeStackDriftDetectionStatusOutput::builder()
            .stack_id(STACK_ID)
            .stack_drift_detection_id("detection-2")
            .detection_status(StackDriftDetectionStatus::DetectionComplete)
            .stack_drift_status(StackDriftStatus::InSync)
            .timestamp(DateTime::from_secs(1_700_000_100))
            .build()
    });
    let drifts = mock!(Client::describe_stack_resource_drifts).then_output(|| {
        DescribeStackResourceDriftsOutput::builder()
            .set_stack_resource_drifts(Some(Vec::new()))
            .build()
    });
    let client = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        &[&describe, &start, &status, &drifts]
    );
    let stacks = drift::detect(&client, &[spec("messaging", STACK)], poll(), false)
        .await
        .expect("drift is detected");
    assert!(!stacks[0].drifted(), "{stacks:?}");
    assert!(drift::to_text(&stacks).contains("in sync"));
}

#[tokio::test]
async fn an_emulator_without_detect_stack_drift_is_named_as_the_reason() {
    let describe = deployed();
    // moto's answer to an action it does not implement: HTTP 500, an HTML page.
    let start = mock!(Client::detect_stack_drift).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(500).expect("status"),
            aws_smithy_types::body::SdkBody::from(
                "<!doctype html><title>500 Internal Server Error</title>",
            ),
        )
    });
    let client = mock_client!(
        aws_sdk_cloudformation,
        RuleMode::MatchAny,
        &[&describe, &start]
    );
    let error = drift::detect(&client, &[spec("messaging", STACK)], poll(), true)
        .await
        .expect_err("the emulator cannot detect drift");
    let text = error.to_string();
    assert!(
        text.contains("the emulator (moto) does not implement DetectStackDrift"),
        "{text}"
    );
    assert!(error.help().is_some_and(|h| h.contains("real AWS account")));
}
