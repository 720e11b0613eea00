//! The worker handler in-process with real DynamoDB clients against moto (tables with the
//! contract's schemas) and a real HTTP target (wiremock).

mod common;

use std::time::{Duration, Instant};

use common::{deadline, employee, ledger_items, message_body, s, sqs_event, stored_record, worker};
use serde_json::json;
use wiremock::matchers::{header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};
use worker::{handle_batch, MessageOutcome};

async fn target_answering(status: u16) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path_regex("^/records/.+"))
        .respond_with(ResponseTemplate::new(status))
        .mount(&server)
        .await;
    server
}

fn failures(report: &worker::BatchReport) -> Vec<String> {
    report
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn the_same_message_delivered_three_times_gives_one_record_and_one_call() {
    let target = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/records/hris:E1"))
        .and(header("x-correlation-id", "corr-42"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&target)
        .await;
    let worker = worker(&target.uri()).await;
    let body = message_body("hris", employee("E1", "2024-05-01T10:00:00Z"), "corr-42");
    let mut outcomes = Vec::new();
    for delivery in 0..3 {
        let report = handle_batch(
            &worker,
            sqs_event(&[(&format!("m{delivery}"), &body)]),
            deadline(),
        )
        .await;
        assert!(failures(&report).is_empty());
        outcomes.push(report.messages[0].outcome.clone());
    }
    assert_eq!(
        outcomes,
        vec![
            MessageOutcome::Synced,
            MessageOutcome::Duplicate,
            MessageOutcome::Duplicate
        ]
    );
    let record = stored_record(&worker, "hris", "E1", "employee")
        .await
        .expect("record stored");
    assert_eq!(s(&record, "correlation_id"), "corr-42");
    let fields = record["fields"].as_m().unwrap();
    assert_eq!(fields["email"].as_s().unwrap(), "e1@example.com");
    let ledger = ledger_items(&worker).await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(s(&ledger[0], "state"), "COMPLETED");
    assert!(
        !ledger[0].contains_key("body"),
        "a completed item drops its body"
    );
    target.verify().await;
}

#[tokio::test]
async fn duplicates_within_one_batch_are_pushed_once_and_settled_in_that_batch() {
    let target = target_answering(200).await;
    let worker = worker(&target.uri()).await;
    let body = message_body("hris", employee("E1", "2024-05-01T10:00:00Z"), "c");
    let other = message_body("hris", employee("E2", "2024-05-01T10:00:00Z"), "c");
    // Deliveries of one record run in turn: the first syncs it, the others are duplicates
    // at once instead of finding it held and coming back after the visibility timeout.
    let report = handle_batch(
        &worker,
        sqs_event(&[("a", &body), ("x", &other), ("b", &body), ("c", &body)]),
        deadline(),
    )
    .await;
    assert!(failures(&report).is_empty(), "{:?}", report.messages);
    assert_eq!(report.count(|o| *o == MessageOutcome::Synced), 2);
    assert_eq!(report.count(|o| *o == MessageOutcome::Duplicate), 2);
    let mut pushed: Vec<String> = target
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| request.url.path().to_string())
        .collect();
    pushed.sort();
    assert_eq!(pushed, ["/records/hris:E1", "/records/hris:E2"]);
}

#[tokio::test]
async fn the_newest_version_wins_whatever_the_arrival_order() {
    let target = target_answering(200).await;
    let worker = worker(&target.uri()).await;
    let mut newest = employee("E7", "2024-05-03T00:00:00Z");
    newest["department"] = json!("Newest");
    let mut middle = employee("E7", "2024-05-02T00:00:00Z");
    middle["department"] = json!("Middle");
    let mut oldest = employee("E7", "2024-05-01T00:00:00Z");
    oldest["department"] = json!("Oldest");
    let mut outcomes = Vec::new();
    for (id, record) in [("m1", middle), ("m2", newest), ("m3", oldest)] {
        let body = message_body("hris", record, "c");
        let report = handle_batch(&worker, sqs_event(&[(id, &body)]), deadline()).await;
        outcomes.push(report.messages[0].outcome.clone());
    }
    assert_eq!(
        outcomes,
        vec![
            MessageOutcome::Synced,
            MessageOutcome::Synced,
            MessageOutcome::Stale
        ]
    );
    let record = stored_record(&worker, "hris", "E7", "employee")
        .await
        .unwrap();
    assert_eq!(
        record["fields"].as_m().unwrap()["department"]
            .as_s()
            .unwrap(),
        "Newest"
    );
    let stale = ledger_items(&worker)
        .await
        .into_iter()
        .filter(|i| s(i, "outcome") == "stale")
        .count();
    assert_eq!(
        stale, 1,
        "the stale record is completed as stale, not failed"
    );
    let pushed = target.received_requests().await.unwrap().len();
    assert_eq!(pushed, 2, "a stale record is not pushed");
}

#[tokio::test]
async fn a_delete_leaves_a_tombstone_that_a_late_older_upsert_cannot_resurrect() {
    let target = target_answering(200).await;
    let worker = worker(&target.uri()).await;
    let create = message_body("hris", employee("E9", "2024-05-01T00:00:00Z"), "c");
    let delete = message_body(
        "hris",
        json!({"employee_id": "E9", "deleted": true, "updated_at": "2024-05-03T00:00:00Z"}),
        "c",
    );
    let late = message_body("hris", employee("E9", "2024-05-02T00:00:00Z"), "c");
    let report = handle_batch(&worker, sqs_event(&[("m1", &create)]), deadline()).await;
    assert_eq!(report.messages[0].outcome, MessageOutcome::Synced);
    let report = handle_batch(&worker, sqs_event(&[("m2", &delete)]), deadline()).await;
    assert_eq!(report.messages[0].outcome, MessageOutcome::Synced);
    let report = handle_batch(&worker, sqs_event(&[("m3", &late)]), deadline()).await;
    assert_eq!(report.messages[0].outcome, MessageOutcome::Stale);
    let tombstone = stored_record(&worker, "hris", "E9", "employee")
        .await
        .unwrap();
    assert_eq!(tombstone["deleted"].as_bool().unwrap(), &true);
    assert!(
        !tombstone.contains_key("fields"),
        "the record's data is gone"
    );
    assert_eq!(
        tombstone["source_version"].as_n().unwrap(),
        "1714694400000000"
    );
    let requests = target.received_requests().await.unwrap();
    let last: serde_json::Value = serde_json::from_slice(&requests.last().unwrap().body).unwrap();
    assert_eq!(last["operation"], "delete");
}

#[tokio::test]
async fn throttling_then_errors_then_success_is_retried_and_nothing_is_lost() {
    let target = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&target)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(2)
        .mount(&target)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(3)
        .mount(&target)
        .await;
    let worker = worker(&target.uri()).await;
    let body = message_body("hris", employee("E3", "2024-05-01T00:00:00Z"), "c");
    let started = Instant::now();
    let report = handle_batch(&worker, sqs_event(&[("m1", &body)]), deadline()).await;
    assert_eq!(report.messages[0].outcome, MessageOutcome::Synced);
    assert!(failures(&report).is_empty());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let requests = target.received_requests().await.unwrap();
    assert_eq!(requests.len(), 4, "429, 503, 503, 200");
    assert_eq!(report.messages[0].stats.errors, vec!["4xx", "5xx", "5xx"]);
    assert_eq!(s(&ledger_items(&worker).await[0], "state"), "COMPLETED");
}

#[tokio::test]
async fn when_one_delivery_of_a_record_is_handed_back_its_repeats_in_the_batch_are_too() {
    let target = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&target)
        .await;
    let worker = worker(&target.uri()).await;
    let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
    let report = handle_batch(
        &worker,
        sqs_event(&[("m1", &body), ("m2", &body), ("m3", &body)]),
        deadline(),
    )
    .await;
    let mut handed_back = failures(&report);
    handed_back.sort();
    assert_eq!(handed_back, vec!["m1", "m2", "m3"]);
    let reasons: Vec<String> = report
        .messages
        .iter()
        .filter_map(|m| match &m.outcome {
            MessageOutcome::Retry(reason) => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.starts_with("another delivery of this record"))
            .count(),
        2,
        "{reasons:?}"
    );
    // Only the first delivery called the target (with its retries); the ledger holds one
    // item waiting for a retry.
    let calls = target.received_requests().await.unwrap().len();
    assert!(
        calls >= 1 && calls <= worker.config.retry.max_attempts as usize,
        "{calls} calls"
    );
    let ledger = ledger_items(&worker).await;
    assert_eq!(ledger.len(), 1);
    assert_eq!(s(&ledger[0], "state"), "RETRY");
}

#[tokio::test]
async fn a_target_that_is_down_hands_items_back_and_completes_nothing() {
    // A port nothing listens on.
    let closed = format!("http://127.0.0.1:{}", emulator::free_port().unwrap());
    let worker = worker(&closed).await;
    let first = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
    let second = message_body(
        "crm",
        json!({"id": "C1", "updatedAt": "2024-05-01T00:00:00Z", "properties": {"email": "c@example.com"}}),
        "c",
    );
    let report = handle_batch(
        &worker,
        sqs_event(&[("m1", &first), ("m2", &second)]),
        deadline(),
    )
    .await;
    let mut handed_back = failures(&report);
    handed_back.sort();
    assert_eq!(handed_back, vec!["m1", "m2"]);
    let ledger = ledger_items(&worker).await;
    assert_eq!(ledger.len(), 2);
    for item in &ledger {
        assert_eq!(s(item, "state"), "RETRY");
        assert!(
            s(item, "reason").contains("could not connect"),
            "{}",
            s(item, "reason")
        );
        assert!(
            item.contains_key("body"),
            "the body stays for the reconciler"
        );
    }
}

#[tokio::test]
async fn a_poison_message_is_recorded_failed_and_the_rest_of_the_batch_succeeds() {
    let target = target_answering(200).await;
    let worker = worker(&target.uri()).await;
    let good = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
    let invalid = message_body(
        "hris",
        json!({"employee_id": "E2", "email": "nope"}),
        "c-poison",
    );
    let report = handle_batch(
        &worker,
        sqs_event(&[
            ("good", &good),
            ("garbage", "this is not json"),
            ("invalid", &invalid),
        ]),
        deadline(),
    )
    .await;
    assert!(
        failures(&report).is_empty(),
        "poison messages are not handed back to loop"
    );
    assert_eq!(report.count(|o| *o == MessageOutcome::Synced), 1);
    assert_eq!(report.count(|o| matches!(o, MessageOutcome::Failed(_))), 2);
    let failed: Vec<_> = ledger_items(&worker)
        .await
        .into_iter()
        .filter(|i| s(i, "state") == "FAILED")
        .collect();
    assert_eq!(failed.len(), 2);
    let reasons: Vec<&str> = failed.iter().map(|i| s(i, "reason")).collect();
    assert!(
        reasons.iter().any(|r| r.contains("invalid JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("email") && r.contains("updated_at")),
        "{reasons:?}"
    );
    assert!(failed.iter().all(|i| i.contains_key("body")));
    // Delivered again, the poison message is a duplicate, not a second failure.
    let again = handle_batch(
        &worker,
        sqs_event(&[("garbage", "this is not json")]),
        deadline(),
    )
    .await;
    assert_eq!(again.messages[0].outcome, MessageOutcome::Duplicate);
}

#[tokio::test]
async fn a_target_refusing_the_record_fails_it_for_good_with_the_reason() {
    let target = target_answering(422).await;
    let worker = worker(&target.uri()).await;
    let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
    let report = handle_batch(&worker, sqs_event(&[("m1", &body)]), deadline()).await;
    assert!(failures(&report).is_empty());
    assert!(matches!(&report.messages[0].outcome, MessageOutcome::Failed(r) if r.contains("422")));
    assert_eq!(
        target.received_requests().await.unwrap().len(),
        1,
        "a 422 is not retried"
    );
    let item = &ledger_items(&worker).await[0];
    assert_eq!(s(item, "state"), "FAILED");
    assert!(s(item, "reason").contains("HTTP 422"));
}

#[tokio::test]
async fn an_item_held_by_another_invocation_is_handed_back() {
    let target = target_answering(200).await;
    let worker = worker(&target.uri()).await;
    let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
    let read = sync_core::envelope::read_message(&worker.mappings, &body).unwrap();
    let now = chrono_now();
    let claim = sync_core::ledger::claim(&sync_core::ledger::ClaimRequest {
        key: &read.idempotency_key,
        source: "hris",
        external_id: "E1",
        source_version: read.record.source_version,
        operation: "upsert",
        correlation_id: "other",
        body: &body,
        claim_token: "someone-else",
        message_id: "m0",
        now,
        lease_seconds: 600,
        expires_at: now + 86_400,
    });
    worker::dynamo::update(&worker.dynamodb, &worker.config.ledger_table, claim)
        .await
        .unwrap();
    let report = handle_batch(&worker, sqs_event(&[("m1", &body)]), deadline()).await;
    assert_eq!(failures(&report), vec!["m1"]);
    assert!(target.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_deadline_too_close_hands_the_item_back_instead_of_retrying() {
    let target = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", "30"))
        .mount(&target)
        .await;
    let worker = worker(&target.uri()).await;
    let body = message_body("hris", employee("E1", "2024-05-01T00:00:00Z"), "c");
    let started = Instant::now();
    let report = handle_batch(
        &worker,
        sqs_event(&[("m1", &body)]),
        Instant::now() + Duration::from_secs(8),
    )
    .await;
    assert_eq!(failures(&report), vec!["m1"]);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "it did not sleep past the deadline"
    );
    let item = &ledger_items(&worker).await[0];
    assert_eq!(s(item, "state"), "RETRY");
    assert!(
        s(item, "reason").contains("deadline too close"),
        "{}",
        s(item, "reason")
    );
    let next: i64 = item["next_attempt_at"].as_n().unwrap().parse().unwrap();
    assert!(
        next >= chrono_now() + 29,
        "the ledger backoff honours Retry-After"
    );
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
