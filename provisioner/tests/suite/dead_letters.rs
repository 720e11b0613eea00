//! The dead-letter queue against a moto server, through the CLI: `dlq peek` shows what
//! waits (ledger reason, no payload unless asked) and takes nothing off the queue;
//! `redrive --dry-run` moves nothing; two redrives racing each other (through the
//! one-request-at-a-time proxy, as SQS serializes receives) and a third move every
//! message exactly once, and a fourth finds nothing to do.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};

use crate::deploy_cli::local_fixture;
use crate::releases::{block_on, clients, commit_at, ok, write_zips};

const MESSAGES: usize = 25;

/// Every message of `queue`, with its message attributes, received until two polls in a
/// row come back empty (each kept invisible, so none is received twice).
pub(crate) fn drain(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let batch = block_on(
            sqs.receive_message()
                .queue_url(queue)
                .max_number_of_messages(10)
                .visibility_timeout(300)
                .message_attribute_names("All")
                .wait_time_seconds(1)
                .send(),
        )
        .expect("receive");
        if batch.messages().is_empty() {
            empty += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        all.extend(batch.messages().iter().cloned());
    }
    all
}

fn envelope(i: usize) -> String {
    json!({
        "format": 1,
        "source": "hris",
        "correlation_id": format!("corr-{i}"),
        "batch_id": "batch-1",
        "received_at": "2026-11-01T09:30:01Z",
        "record": {
            "employee_id": format!("E-{:05}", 20_000 + i),
            "email": format!("person{i}@example.com"),
            "first_name": "Ada",
            "last_name": format!("Tester{i}"),
            "department": "Engineering",
            "employment_status": "Active",
            "hire_date": "2010-01-15",
            "updated_at": "2026-11-01T09:30:00Z"
        }
    })
    .to_string()
}

#[test]
fn dead_letters_are_peeked_without_being_taken_and_redriven_exactly_once() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let serial = emulator::serial::SerialProxy::start(&moto.endpoint_url()).expect("proxy");
    let fixture = local_fixture(&serial.endpoint_url());
    write_zips(&fixture, "first");
    commit_at(&fixture, "2026-11-01T10:00:00Z");
    ok(&fixture, &["bootstrap", "--env", "local", "--yes"]);
    ok(&fixture, &["deploy", "--env", "local", "--yes"]);

    let aws = block_on(clients(&moto, "us-east-1"));
    let sqs = aws_sdk_sqs::Client::new(&aws.config);
    let url = |name: &str| {
        block_on(sqs.get_queue_url().queue_name(name).send())
            .expect("queue")
            .queue_url()
            .unwrap_or_default()
            .to_string()
    };
    let dlq = url("datasync-local-records-dlq");
    let queue = url("datasync-local-records");
    let bodies: Vec<String> = (0..MESSAGES).map(envelope).collect();
    for body in &bodies {
        block_on(
            sqs.send_message()
                .queue_url(&dlq)
                .message_body(body)
                .message_attributes(
                    "source",
                    aws_sdk_sqs::types::MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value("hris")
                        .build()
                        .expect("attribute"),
                )
                .send(),
        )
        .expect("send to the dead-letter queue");
    }
    // The ledger gave up on the first one, with a reason.
    let mappings = sync_core::mapping::Mappings::builtin().expect("mappings");
    let key = sync_core::envelope::read_message(&mappings, &bodies[0])
        .expect("a readable message")
        .idempotency_key;
    block_on(
        aws.dynamodb
            .put_item()
            .table_name("datasync-local-ledger")
            .item("idempotency_key", AttributeValue::S(key))
            .item("state", AttributeValue::S("FAILED".into()))
            .item(
                "reason",
                AttributeValue::S("downstream answered 422: email rejected".into()),
            )
            .send(),
    )
    .expect("ledger item");

    let peeked = ok(
        &fixture,
        &["dlq", "peek", "--env", "local", "--limit", "25"],
    );
    assert_eq!(peeked["dead_letter_queue"]["waiting"], MESSAGES as u64);
    let messages = peeked["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), MESSAGES, "{peeked}");
    assert!(messages.iter().all(|m| m.get("payload").is_none()
        && m["source"] == "hris"
        && m["record_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("E-2"))
        && m["version"].as_u64().is_some()));
    let failed = messages
        .iter()
        .find(|m| m["record_id"] == "E-20000")
        .expect("the first record");
    assert_eq!(failed["ledger_state"], "FAILED");
    assert_eq!(
        failed["ledger_reason"],
        "downstream answered 422: email rejected"
    );
    let again = ok(
        &fixture,
        &[
            "dlq",
            "peek",
            "--env",
            "local",
            "--limit",
            "1",
            "--show-payload",
        ],
    );
    assert_eq!(
        again["dead_letter_queue"]["waiting"], MESSAGES as u64,
        "peeking took nothing off the queue: {again}"
    );
    assert_eq!(again["messages"][0]["payload"]["source"], "hris");

    let dry = ok(&fixture, &["redrive", "--env", "local", "--dry-run"]);
    assert_eq!(dry["moved"], MESSAGES as u64);
    assert_eq!(
        dry["after"]["dead_letter_queue"]["waiting"],
        MESSAGES as u64
    );

    // Two operators redrive ten each at the same time.
    let racing: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| ok(&fixture, &["redrive", "--env", "local", "--limit", "10"])))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("redrive"))
            .collect()
    });
    let moved: u64 = racing
        .iter()
        .map(|r| r["moved"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(moved, 20, "{racing:?}");
    let rest = ok(&fixture, &["redrive", "--env", "local"]);
    assert_eq!(rest["method"], "loop", "the emulator moves with the loop");
    assert_eq!(rest["moved"], (MESSAGES - 20) as u64, "{rest}");
    assert_eq!(rest["after"]["dead_letter_queue"]["waiting"], 0);
    let nothing = ok(&fixture, &["redrive", "--env", "local"]);
    assert_eq!(nothing["moved"], 0);

    // Every body is in the records queue exactly once, with its attributes.
    let mut found: BTreeMap<String, usize> = BTreeMap::new();
    for message in drain(&sqs, &queue) {
        assert_eq!(
            message
                .message_attributes()
                .and_then(|a| a.get("source"))
                .and_then(|v| v.string_value()),
            Some("hris")
        );
        *found
            .entry(message.body().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    assert_eq!(found.len(), MESSAGES);
    assert!(found.values().all(|&n| n == 1), "{found:?}");
    for body in &bodies {
        assert!(found.contains_key(body));
    }
}

#[test]
fn dlq_commands_refuse_bad_input_and_name_the_fix() {
    let moto = emulator::MotoServer::start().expect("moto starts");
    let fixture = local_fixture(&moto.endpoint_url());
    // Not deployed: the queues do not exist.
    let missing = crate::releases::run(&fixture, &["dlq", "peek", "--env", "local"]);
    assert_eq!(missing.exit, provisioner::exit::Exit::Failed);
    assert!(
        missing.error().contains("datasync-local-records")
            && missing.error().contains("provisioner deploy --env local"),
        "{}",
        missing.error()
    );
    use clap::Parser;
    for bad in [
        &[
            "provisioner",
            "dlq",
            "peek",
            "--env",
            "local",
            "--limit",
            "0",
        ][..],
        &[
            "provisioner",
            "dlq",
            "peek",
            "--env",
            "local",
            "--limit",
            "5000",
        ][..],
        &["provisioner", "redrive", "--env", "local", "--limit", "0"][..],
        &[
            "provisioner",
            "redrive",
            "--env",
            "local",
            "--limit",
            "many",
        ][..],
    ] {
        let error = provisioner::cli::Cli::try_parse_from(bad).expect_err("refused");
        assert!(error.to_string().contains("--limit"), "{bad:?}: {error}");
    }
}

#[tokio::test]
async fn on_aws_a_redrive_without_limit_uses_sqs_message_move_task_and_waits_for_it() {
    use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
    use aws_sdk_sqs::types::{ListMessageMoveTasksResultEntry, QueueAttributeName};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    let fixture = crate::common::Fixture::new();
    let (_, env) = provisioner::release::rollout::locate(&fixture.project(), "dev").expect("dev");
    let dlq_arn = "arn:aws:sqs:eu-west-1:210987654321:datasync-dev-records-dlq";
    let url = mock!(aws_sdk_sqs::Client::get_queue_url).then_output(|| {
        aws_sdk_sqs::operation::get_queue_url::GetQueueUrlOutput::builder()
            .queue_url("https://sqs.eu-west-1.amazonaws.com/210987654321/q")
            .build()
    });
    let attributes = mock!(aws_sdk_sqs::Client::get_queue_attributes).then_output(move || {
        GetQueueAttributesOutput::builder()
            .attributes(QueueAttributeName::QueueArn, dlq_arn)
            .attributes(QueueAttributeName::ApproximateNumberOfMessages, "7")
            .attributes(
                QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
                "0",
            )
            .build()
    });
    let start = mock!(aws_sdk_sqs::Client::start_message_move_task)
        .match_requests(move |input| input.source_arn() == Some(dlq_arn))
        .then_output(|| {
            aws_sdk_sqs::operation::start_message_move_task::StartMessageMoveTaskOutput::builder()
                .task_handle("task-1")
                .build()
        });
    let task = |status: &str, moved: i64| {
        aws_sdk_sqs::operation::list_message_move_tasks::ListMessageMoveTasksOutput::builder()
            .results(
                ListMessageMoveTasksResultEntry::builder()
                    .task_handle("task-1")
                    .status(status)
                    .approximate_number_of_messages_moved(moved)
                    .build(),
            )
            .build()
    };
    let list = mock!(aws_sdk_sqs::Client::list_message_move_tasks)
        .sequence()
        .output(move || task("RUNNING", 3))
        .output(move || task("COMPLETED", 7))
        .build();
    let sqs = mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        &[&url, &attributes, &start, &list]
    );
    let report =
        provisioner::ops::dlq::redrive_on(&sqs, &env, None, false, Some(Duration::from_millis(5)))
            .await
            .expect("redrive");
    assert_eq!(report.method, "move-task");
    assert_eq!(report.moved, 7);
    assert_eq!(start.num_calls(), 1);
    assert_eq!(list.num_calls(), 2, "polled until COMPLETED");

    // A task that fails says so, with what to do.
    let failing = mock!(aws_sdk_sqs::Client::list_message_move_tasks).then_output(|| {
        aws_sdk_sqs::operation::list_message_move_tasks::ListMessageMoveTasksOutput::builder()
            .results(
                ListMessageMoveTasksResultEntry::builder()
                    .task_handle("task-1")
                    .status("FAILED")
                    .failure_reason("AccessDenied on the destination queue")
                    .build(),
            )
            .build()
    });
    let sqs = mock_client!(
        aws_sdk_sqs,
        RuleMode::MatchAny,
        &[&url, &attributes, &start, &failing]
    );
    let error =
        provisioner::ops::dlq::redrive_on(&sqs, &env, None, false, Some(Duration::from_millis(5)))
            .await
            .expect_err("a failed task is an error");
    let text = provisioner::error::report(&error);
    assert!(
        text.contains("ended FAILED: AccessDenied on the destination queue")
            && text.contains("--limit"),
        "{text}"
    );
}
