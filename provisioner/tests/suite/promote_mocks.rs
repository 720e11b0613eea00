//! Promotion gates on states moto cannot produce, over `aws-smithy-mocks` rules on real
//! SDK clients: a source stack whose last update rolled back, one still updating.

use aws_sdk_cloudformation::operation::describe_stacks::DescribeStacksOutput;
use aws_sdk_cloudformation::types::{Stack, StackStatus};
use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use aws_smithy_types::DateTime;
use provisioner::deploy::clients::{AwsClients, RequestCounter};
use provisioner::ops::promote::source_health;
use provisioner::project::Project;
use provisioner::release::deployments::{format_time, EnvState};
use provisioner::release::ReleaseId;
use provisioner::render::Renderer;

use crate::common;

const RELEASE: &str = "20261201T100000Z-0123456789ab";

fn clients(compute_status: StackStatus) -> AwsClients {
    let stacks = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_output(move || {
        let mut output = DescribeStacksOutput::builder();
        for id in [
            "network",
            "data",
            "messaging",
            "security",
            "compute",
            "observability",
        ] {
            let status = if id == "compute" {
                compute_status.clone()
            } else {
                StackStatus::UpdateComplete
            };
            output = output.stacks(
                Stack::builder()
                    .stack_name(format!("datasync-staging-{id}"))
                    .stack_id(format!(
                        "arn:aws:cloudformation:eu-west-1:1:stack/datasync-staging-{id}/1"
                    ))
                    .stack_status(status)
                    .creation_time(DateTime::from_secs(1_700_000_000))
                    .build(),
            );
        }
        output.build()
    });
    let alarms = mock!(aws_sdk_cloudwatch::Client::describe_alarms)
        .then_output(|| DescribeAlarmsOutput::builder().build());
    let none: [&aws_smithy_mocks::Rule; 0] = [];
    AwsClients {
        cloudformation: mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &[&stacks]),
        cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, &[&alarms]),
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, &none),
        sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, &none),
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
                .build(),
        ),
        config: aws_config::SdkConfig::builder().build(),
        requests: RequestCounter::default(),
    }
}

async fn failed_checks(compute_status: StackStatus) -> Vec<(String, String)> {
    let project = Project::at(&common::repo_root());
    let renderer = Renderer::load(&project).expect("templates");
    let env = renderer
        .load_environment(&project, "staging")
        .expect("staging loads");
    let state = EnvState {
        release: Some(RELEASE.into()),
        since: Some(format_time(chrono::Utc::now() - chrono::Duration::hours(3))),
        recent: vec![RELEASE.into()],
        last_release: Some(RELEASE.into()),
        last_result: Some("deployed".into()),
        last_ended_at: None,
        ..EnvState::default()
    };
    let checks = source_health(
        &clients(compute_status),
        &renderer,
        &env,
        &state,
        &ReleaseId::parse(RELEASE).expect("id"),
        std::time::Duration::from_secs(3600),
    )
    .await
    .expect("checks run");
    checks
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| (c.check.to_string(), c.detail))
        .collect()
}

#[tokio::test]
async fn a_source_whose_last_update_rolled_back_is_not_promoted_from() {
    assert_eq!(
        failed_checks(StackStatus::UpdateRollbackComplete).await,
        [(
            "stacks".to_string(),
            "datasync-staging-compute is UPDATE_ROLLBACK_COMPLETE".to_string()
        )]
    );
}

#[tokio::test]
async fn a_source_still_updating_is_not_promoted_from() {
    assert_eq!(
        failed_checks(StackStatus::UpdateInProgress).await,
        [(
            "stacks".to_string(),
            "datasync-staging-compute is UPDATE_IN_PROGRESS".to_string()
        )]
    );
    assert!(failed_checks(StackStatus::UpdateComplete).await.is_empty());
}
