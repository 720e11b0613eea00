//! The worker's guarantees, each against moto and a real HTTP target: pushes of a record
//! only move forward across concurrent workers, a changed record under an unchanged
//! version is a conflict, failures are classified by whose fault they are, redirects are
//! not followed, the circuit breaker stops pushing to a failing target, and backoff is
//! honoured by claims and by the queue's visibility.

mod common;

use std::time::{Duration, Instant};

use common::target::{Faults, TargetServer};
use common::{deadline, employee, ledger_items, message_body, s, sqs_event, worker};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};
use worker::{handle_batch, MessageOutcome};

fn outcome(report: &worker::BatchReport) -> &MessageOutcome {
    &report.messages[0].outcome
}

async fn target_answering(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path_regex("^/records/.+"))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn an_older_version_is_never_pushed_after_a_newer_one_by_another_worker() {
    // v1's push is slow at the target; v2 arrives at a second worker meanwhile. Without
    // ordering, v2 would be applied first and v1's late request would try to overwrite it.
    let v1_micros = 1_714_521_600_000_000_u64;
    let target = TargetServer::start(Faults {
        slow_version: Some((v1_micros, Duration::from_millis(700))),
        ..Faults::none()
    })
    .await;
    let first = worker(&target.url()).await;
    let mut second = worker(&target.url()).await;
    second.config.records_table = first.config.records_table.clone();
    second.config.ledger_table = first.config.ledger_table.clone();
    let v1 = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c1");
    let v2 = message_body("hris", employee("E1", "2024-05-02T00:00:00Z"), "c2");
    let slow = handle_batch(&first, sqs_event(&[("m1", &v1)]), deadline());
    let fast = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        handle_batch(&second, sqs_event(&[("m2", &v2)]), deadline()).await
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!(outcome(&slow), &MessageOutcome::Synced);
    assert_eq!(outcome(&fast), &MessageOutcome::Synced);
    let log = target.log();
    let versions: Vec<u64> = log.iter().map(|r| r.version).collect();
    assert_eq!(
        versions,
        vec![v1_micros, v1_micros + 86_400_000_000],
        "{log:?}"
    );
    assert!(log.iter().all(|r| r.status == 200), "{log:?}");
    assert_eq!(
        log.iter().map(|r| r.version_header).collect::<Vec<_>>(),
        versions.iter().map(|v| Some(*v)).collect::<Vec<_>>(),
        "every push carries its version"
    );
    assert_eq!(target.held()["hris:E1"].version, v1_micros + 86_400_000_000);
}

#[tokio::test]
async fn a_version_superseded_before_its_push_is_not_pushed_at_all() {
    let target = TargetServer::start(Faults::none()).await;
    let worker = worker(&target.url()).await;
    let v2 = message_body("hris", employee("E1", "2024-05-02T00:00:00Z"), "c2");
    let v1 = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c1");
    let report = handle_batch(&worker, sqs_event(&[("m2", &v2), ("m1", &v1)]), deadline()).await;
    let outcomes: Vec<&MessageOutcome> = report.messages.iter().map(|m| &m.outcome).collect();
    assert!(outcomes.contains(&&MessageOutcome::Synced), "{outcomes:?}");
    assert!(outcomes.contains(&&MessageOutcome::Stale), "{outcomes:?}");
    assert_eq!(target.log().len(), 1, "only the newest version is pushed");
}

#[tokio::test]
async fn the_same_version_with_changed_content_is_a_conflict_not_a_duplicate() {
    let target = TargetServer::start(Faults::none()).await;
    let worker = worker(&target.url()).await;
    let first = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c1");
    let mut corrected = employee("E1", "2024-05-01T00:00:00Z");
    corrected["department"] = "Research".into();
    let corrected = message_body("hris", corrected, "c2");
    let one = handle_batch(&worker, sqs_event(&[("m1", &first)]), deadline()).await;
    assert_eq!(outcome(&one), &MessageOutcome::Synced);
    let two = handle_batch(&worker, sqs_event(&[("m2", &corrected)]), deadline()).await;
    assert_eq!(outcome(&two), &MessageOutcome::Conflict);
    let again = handle_batch(&worker, sqs_event(&[("m3", &first)]), deadline()).await;
    assert_eq!(
        outcome(&again),
        &MessageOutcome::Duplicate,
        "a true repeat is still a duplicate"
    );
    let items = ledger_items(&worker).await;
    let outcomes: Vec<&str> = items.iter().map(|i| s(i, "outcome")).collect();
    assert_eq!(items.len(), 2);
    assert!(outcomes.contains(&"conflict"), "{outcomes:?}");
    assert_eq!(
        target.log().len(),
        1,
        "the conflicting content is not pushed"
    );
}

#[tokio::test]
async fn a_target_answering_409_or_412_makes_the_record_stale_not_failed() {
    for status in [409, 412] {
        let target = target_answering(ResponseTemplate::new(status)).await;
        let worker = worker(&target.uri()).await;
        let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
        let report = handle_batch(&worker, sqs_event(&[("m1", &body)]), deadline()).await;
        assert_eq!(outcome(&report), &MessageOutcome::Stale, "{status}");
        assert!(report.response.batch_item_failures.is_empty());
        let item = &ledger_items(&worker).await[0];
        assert_eq!(
            (s(item, "state"), s(item, "outcome")),
            ("COMPLETED", "stale")
        );
    }
}

#[tokio::test]
async fn configuration_errors_keep_the_record_for_a_retry() {
    for status in [401, 403, 404, 405, 410] {
        let target = target_answering(ResponseTemplate::new(status)).await;
        let worker = worker(&target.uri()).await;
        let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
        let report = handle_batch(&worker, sqs_event(&[("m1", &body)]), deadline()).await;
        assert!(
            matches!(outcome(&report), MessageOutcome::Retry(reason) if reason.contains("DOWNSTREAM_URL")),
            "{status}: {:?}",
            outcome(&report)
        );
        assert_eq!(report.response.batch_item_failures.len(), 1, "{status}");
        assert_eq!(
            s(&ledger_items(&worker).await[0], "state"),
            "RETRY",
            "{status}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_the_record_is_kept() {
    let elsewhere = target_answering(ResponseTemplate::new(200)).await;
    for status in [303, 307, 308] {
        let target = target_answering(ResponseTemplate::new(status).insert_header(
            "Location",
            format!("{}/records/x", elsewhere.uri()).as_str(),
        ))
        .await;
        let worker = worker(&target.uri()).await;
        let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
        let report = handle_batch(&worker, sqs_event(&[("m1", &body)]), deadline()).await;
        assert!(
            matches!(outcome(&report), MessageOutcome::Retry(reason) if reason.contains("redirect")),
            "{status}: {:?}",
            outcome(&report)
        );
    }
    assert!(
        elsewhere.received_requests().await.unwrap().is_empty(),
        "nothing reached the host a redirect named"
    );
}

#[tokio::test]
async fn an_open_circuit_stops_pushing_to_a_failing_target() {
    let target = target_answering(ResponseTemplate::new(503)).await;
    let mut worker = worker(&target.uri()).await;
    worker.config.breaker_threshold = 3;
    let worker = worker::Worker::new(
        worker.dynamodb.clone(),
        worker.sqs.clone(),
        worker.mappings.clone(),
        worker.config.clone(),
    )
    .unwrap();
    let bodies: Vec<String> = (0..10)
        .map(|i| {
            message_body(
                "hris",
                employee(&format!("E{i}"), "2024-05-01T00:00:00Z"),
                "c",
            )
        })
        .collect();
    let messages: Vec<(String, &str)> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("m{i}"), b.as_str()))
        .collect();
    let messages: Vec<(&str, &str)> = messages.iter().map(|(i, b)| (i.as_str(), *b)).collect();
    let report = handle_batch(&worker, sqs_event(&messages), deadline()).await;
    assert_eq!(
        report.response.batch_item_failures.len(),
        10,
        "nothing is dropped"
    );
    let calls = target.received_requests().await.unwrap().len();
    assert!(
        calls <= 3 + 4,
        "at most the threshold plus the pushes already in flight: {calls}"
    );
    assert!(report.messages.iter().any(|m| m.stats.circuit_open));
    assert!(worker.downstream.circuit_open());
}

#[tokio::test]
async fn a_retry_is_not_claimed_again_before_its_backoff_ends() {
    let target = target_answering(ResponseTemplate::new(503)).await;
    let worker = worker(&target.uri()).await;
    let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
    let first = handle_batch(&worker, sqs_event(&[("m1", &body)]), deadline()).await;
    assert!(matches!(outcome(&first), MessageOutcome::Retry(_)));
    let calls = target.received_requests().await.unwrap().len();
    let early = handle_batch(&worker, sqs_event(&[("m1", &body)]), deadline()).await;
    assert!(
        matches!(outcome(&early), MessageOutcome::Retry(reason) if reason.contains("backoff")),
        "{:?}",
        outcome(&early)
    );
    assert_eq!(
        target.received_requests().await.unwrap().len(),
        calls,
        "no push before the backoff"
    );
    let retry_in = early.messages[0].stats.retry_in.unwrap();
    assert!(retry_in > Duration::from_secs(20), "{retry_in:?}");
    // The reconciler looks at it only once the queue had its chance to redeliver it.
    let item = &ledger_items(&worker).await[0];
    let number = |name: &str| -> i64 { item[name].as_n().unwrap().parse().unwrap() };
    assert_eq!(
        number("next_attempt_at") - number("not_before"),
        worker.config.lease_seconds
    );
}

#[tokio::test]
async fn a_handed_back_message_stays_invisible_for_its_backoff() {
    let target = target_answering(ResponseTemplate::new(503)).await;
    let worker = worker(&target.uri()).await;
    let queue = worker
        .sqs
        .create_queue()
        .queue_name(common::unique("records"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "1",
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
    worker
        .sqs
        .send_message()
        .queue_url(&queue)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let received = worker
        .sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .unwrap();
    let message = &received.messages()[0];
    let arn = worker
        .sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let mut event = sqs_event(&[("m1", &body)]);
    event.records[0].receipt_handle = message.receipt_handle().map(str::to_string);
    event.records[0].event_source_arn = Some(arn);
    let report = handle_batch(&worker, event, deadline()).await;
    assert!(matches!(outcome(&report), MessageOutcome::Retry(_)));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = worker
        .sqs
        .receive_message()
        .queue_url(&queue)
        .send()
        .await
        .unwrap();
    assert!(
        again.messages().is_empty(),
        "the queue's 1 s visibility timeout was replaced by the record's backoff"
    );
}

#[tokio::test]
async fn a_message_never_claimed_is_still_entered_in_the_ledger() {
    let target = target_answering(ResponseTemplate::new(200)).await;
    let worker = worker(&target.uri()).await;
    let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
    let report = handle_batch(
        &worker,
        sqs_event(&[("m1", &body)]),
        Instant::now() + Duration::from_millis(500),
    )
    .await;
    assert!(matches!(outcome(&report), MessageOutcome::Retry(r) if r.contains("no time left")));
    let items = ledger_items(&worker).await;
    assert_eq!(
        items.len(),
        1,
        "the reconciler can find it even if it reaches the DLQ"
    );
    assert_eq!(s(&items[0], "state"), "RETRY");
    assert_eq!(s(&items[0], "body"), body);
}

#[tokio::test]
async fn a_message_delivered_again_is_a_redelivery_not_a_duplicate_record() {
    let target = TargetServer::start(Faults::none()).await;
    let worker = worker(&target.url()).await;
    let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c1");
    let first = handle_batch(&worker, sqs_event(&[("m1", &body)]), deadline()).await;
    assert_eq!(outcome(&first), &MessageOutcome::Synced);
    let again = handle_batch(&worker, sqs_event(&[("m1", &body)]), deadline()).await;
    assert_eq!(outcome(&again), &MessageOutcome::Redelivered);
    let resent = handle_batch(&worker, sqs_event(&[("m2", &body)]), deadline()).await;
    assert_eq!(
        outcome(&resent),
        &MessageOutcome::Duplicate,
        "a record sent twice is one duplicate"
    );
    assert_eq!(target.log().len(), 1);
}
