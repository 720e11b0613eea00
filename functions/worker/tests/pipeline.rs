//! The whole pipeline in-process: signed HTTP requests into the ingest handler, real SQS
//! (moto) between ingest and worker, the worker handler writing DynamoDB (moto) and
//! pushing to a real HTTP target (wiremock), and the reconciler re-driving what got stuck,
//! including records whose messages no worker ever saw.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use common::{deadline, employee, ledger_items, s, stored_record, worker};
use ingest::config::{IngestConfig, SecretStoreKind};
use ingest::{Ingest, SecretStore, SigningSecret};
use serde_json::{json, Value};
use sync_core::signature::{sign, SignedRequest};
use sync_core::Mappings;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};
use worker::{handle_batch, MessageOutcome, Worker};

const KEY: &str = "pipeline-key";
/// Records sent through the pipeline by the conservation test.
/// Records sent through the pipeline by the conservation test.
const TOTAL: usize = 3000;
/// Employees among them (three versions each, some deleted, some sent twice).
const EMPLOYEES: usize = TOTAL / 5;
/// Contacts among them (one version each; every 25th refused by the target).
const CONTACTS: usize = TOTAL * 3 / 10;

/// An ingest function on a new queue, entering accepted records in `worker`'s ledger.
async fn ingest_on_new_queue(worker: &Worker) -> Ingest {
    let sdk = common::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue_url = sqs
        .create_queue()
        .queue_name(common::unique("records"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            "0",
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let secret_name = common::unique("ingest-signing");
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(&secret_name)
        .secret_string(KEY)
        .send()
        .await
        .unwrap();
    Ingest {
        sqs,
        dynamodb: worker.dynamodb.clone(),
        secret: SigningSecret::new(
            SecretStore::new(SecretStoreKind::SecretsManager, &sdk),
            secret_name,
        ),
        mappings: Mappings::builtin().unwrap(),
        config: IngestConfig {
            queue_url,
            ledger_table: worker.config.ledger_table.clone(),
            lease_seconds: 900,
            ledger_ttl_days: 30,
            secret_store: SecretStoreKind::SecretsManager,
            secret_name: String::new(),
            max_records_per_request: 500,
            max_body_bytes: 1024 * 1024,
            metrics_namespace: "datasync/test".into(),
            max_version_ahead_seconds: 300,
            secret_ttl_seconds: 300,
            stopped_since: None,
        },
    }
}

fn request(source: &str, records: &[Value], now: i64) -> ApiGatewayV2httpRequest {
    let fixture = include_str!("../../ingest/tests/fixtures/apigw_v2_post_records.json");
    let mut event: ApiGatewayV2httpRequest = serde_json::from_str(fixture).unwrap();
    let body = json!({ "records": records }).to_string();
    event.path_parameters.insert("source".into(), source.into());
    event.raw_path = Some(format!("/integrations/{source}/records"));
    event
        .headers
        .insert("x-sync-timestamp", now.to_string().parse().unwrap());
    event.headers.insert(
        "x-sync-signature",
        sign(
            KEY.as_bytes(),
            &SignedRequest {
                method: "POST",
                path: &format!("/integrations/{source}/records"),
                source,
            },
            now,
            body.as_bytes(),
        )
        .parse()
        .unwrap(),
    );
    event.headers.insert(
        "x-correlation-id",
        format!("pipeline-{source}-{}", records.len())
            .parse()
            .unwrap(),
    );
    event.body = Some(body);
    event
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Receives everything on the queue and feeds it to the worker until the queue is empty;
/// returns the outcome counts.
async fn drain_through_worker(ingest: &Ingest, worker: &Worker) -> BTreeMap<&'static str, usize> {
    let mut counts = BTreeMap::new();
    let template: SqsEvent = serde_json::from_str(include_str!("fixtures/sqs_batch.json")).unwrap();
    let mut empty_receives = 0;
    while empty_receives < 2 {
        let output = ingest
            .sqs
            .receive_message()
            .queue_url(&ingest.config.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if output.messages().is_empty() {
            empty_receives += 1;
            continue;
        }
        empty_receives = 0;
        let mut event = template.clone();
        event.records = output
            .messages()
            .iter()
            .map(|received| {
                let mut message: SqsMessage = template.records[0].clone();
                message.message_id = received.message_id().map(str::to_string);
                message.receipt_handle = received.receipt_handle().map(str::to_string);
                message.body = received.body().map(str::to_string);
                message
            })
            .collect();
        let handles: BTreeMap<String, String> = event
            .records
            .iter()
            .map(|m| {
                (
                    m.message_id.clone().unwrap(),
                    m.receipt_handle.clone().unwrap(),
                )
            })
            .collect();
        let report = handle_batch(worker, event, deadline()).await;
        let retried: Vec<&String> = report
            .response
            .batch_item_failures
            .iter()
            .map(|f| &f.item_identifier)
            .collect();
        for message in &report.messages {
            let name = match message.outcome {
                MessageOutcome::Synced => "synced",
                MessageOutcome::Duplicate => "duplicate",
                MessageOutcome::Redelivered => "redelivered",
                MessageOutcome::Stale => "stale",
                MessageOutcome::Conflict => "conflict",
                MessageOutcome::Failed(_) => "failed",
                MessageOutcome::Retry(_) => "retried",
            };
            *counts.entry(name).or_default() += 1;
        }
        let done: Vec<_> = handles
            .into_iter()
            .filter(|(id, _)| !retried.contains(&id))
            .map(|(id, handle)| {
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(id)
                    .receipt_handle(handle)
                    .build()
                    .unwrap()
            })
            .collect();
        if !done.is_empty() {
            let deleted = ingest
                .sqs
                .delete_message_batch()
                .queue_url(&ingest.config.queue_url)
                .set_entries(Some(done))
                .send()
                .await
                .unwrap();
            assert!(deleted.failed().is_empty(), "{:?}", deleted.failed());
        }
    }
    counts
}

#[tokio::test]
async fn every_accepted_record_is_synced_duplicate_stale_or_failed_with_a_reason() {
    let started = Instant::now();
    let target = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path_regex("REJECT"))
        .respond_with(ResponseTemplate::new(422))
        .with_priority(1)
        .mount(&target)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&target)
        .await;
    let worker = worker(&target.uri()).await;
    let ingest = ingest_on_new_queue(&worker).await;

    // Employees in three versions sent newest-first for a third of them, every 10th one
    // deleted, every 7th one sent twice; contacts some of which the target refuses; and
    // invalid records that ingest rejects.
    let mut hris = Vec::new();
    let mut newest_version: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..EMPLOYEES {
        let id = format!("E{i}");
        let mut versions: Vec<Value> = (1..=3)
            .map(|day| employee(&id, &format!("2024-05-0{day}T00:00:00Z")))
            .collect();
        if i % 3 == 0 {
            versions.reverse();
        }
        if i % 10 == 0 {
            versions.push(
                json!({"employee_id": id, "deleted": true, "updated_at": "2024-05-04T00:00:00Z"}),
            );
        }
        if i % 7 == 0 {
            versions.push(versions[0].clone());
        }
        newest_version.insert(
            id,
            if i % 10 == 0 {
                "2024-05-04".into()
            } else {
                "2024-05-03".into()
            },
        );
        hris.extend(versions);
    }
    let mut crm = Vec::new();
    for i in 0..CONTACTS {
        let id = if i % 25 == 0 {
            format!("C{i}-REJECT")
        } else {
            format!("C{i}")
        };
        crm.push(json!({
            "id": id, "updatedAt": "2024-05-01T00:00:00Z", "archived": false,
            "properties": {"email": format!("c{i}@example.com"), "phone": "+1 415 555 2671", "lifecyclestage": "lead"}
        }));
    }
    for i in 0..(TOTAL - hris.len() - crm.len()) {
        crm.push(json!({"id": format!("BAD{i}"), "updatedAt": "not a time", "properties": {"email": "x"}}));
    }
    assert_eq!(hris.len() + crm.len(), TOTAL);

    // Each request is drained through the worker before the next one, as the event
    // source mapping would do, which keeps the emulator's queue short.
    let mut accepted = 0;
    let mut rejected = 0;
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (source, records) in [("hris", &hris), ("crm", &crm)] {
        for chunk in records.chunks(200) {
            let response =
                ingest::handle_request(&ingest, request(source, chunk, now()), now()).await;
            let Some(Body::Text(text)) = &response.body else {
                panic!("no body")
            };
            let result: Value = serde_json::from_str(text).unwrap();
            accepted += result["accepted"].as_u64().unwrap();
            rejected += result["rejected"].as_u64().unwrap();
            for (name, count) in drain_through_worker(&ingest, &worker).await {
                *counts.entry(name).or_default() += count;
            }
        }
    }
    assert_eq!(accepted + rejected, TOTAL as u64);
    assert!(
        rejected > 0 && accepted as usize > TOTAL * 4 / 5,
        "accepted {accepted}, rejected {rejected}"
    );

    let count = |name: &str| counts.get(name).copied().unwrap_or(0) as u64;
    assert_eq!(
        accepted,
        count("synced") + count("duplicate") + count("stale") + count("failed"),
        "conservation: {counts:?}"
    );
    assert_eq!(
        count("failed") as usize,
        CONTACTS.div_ceil(25),
        "the contacts the target refused: {counts:?}"
    );
    assert!(count("duplicate") > 0 && count("stale") > 0, "{counts:?}");

    // Every synced or failed record reached the target, and nothing else did (a call
    // repeated after a timeout carries the same idempotency key).
    let pushed: std::collections::BTreeSet<String> = target
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| {
            r.headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .collect();
    assert_eq!(pushed.len() as u64, count("synced") + count("failed"));

    // The stored version of every employee is its newest one.
    for (id, newest) in newest_version.iter().step_by(37) {
        let item = stored_record(&worker, "hris", id, "employee")
            .await
            .unwrap();
        let version: u64 = item["source_version"].as_n().unwrap().parse().unwrap();
        let day = chrono_like_day(version);
        assert_eq!(&day, newest, "{id}");
        assert_eq!(
            item["deleted"].as_bool().unwrap(),
            &newest.ends_with("04"),
            "{id}"
        );
    }
    // The ledger holds no item in flight, and each failure has its reason.
    let ledger = ledger_items(&worker).await;
    assert!(ledger
        .iter()
        .all(|i| matches!(s(i, "state"), "COMPLETED" | "FAILED")));
    assert!(ledger
        .iter()
        .filter(|i| s(i, "state") == "FAILED")
        .all(|i| s(i, "reason").contains("HTTP 422")));
    eprintln!(
        "conservation over {TOTAL} records: {counts:?}, accepted {accepted}, in {:?}",
        started.elapsed()
    );
}

/// The UTC date of a version in microseconds since the epoch.
fn chrono_like_day(version_micros: u64) -> String {
    let days = version_micros / 1_000_000 / 86_400;
    // 2024-05-01 is day 19844 since the epoch.
    format!("2024-05-0{}", days - 19_844 + 1)
}

#[tokio::test]
async fn records_held_back_by_a_down_target_are_redriven_by_the_reconciler_and_synced() {
    let target = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(5)
        .with_priority(1)
        .mount(&target)
        .await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .mount(&target)
        .await;
    let mut worker = worker(&target.uri()).await;
    let ingest = ingest_on_new_queue(&worker).await;
    worker.config.concurrency = 1;
    let records = vec![employee("E1", "2024-05-01T00:00:00Z")];
    let response = ingest::handle_request(&ingest, request("hris", &records, now()), now()).await;
    assert_eq!(response.status_code, 202);

    // The message is lost from the queue after its retry (as if it went to the DLQ).
    let output = ingest
        .sqs
        .receive_message()
        .queue_url(&ingest.config.queue_url)
        .send()
        .await
        .unwrap();
    let received = &output.messages()[0];
    let event = common::sqs_event(&[("m1", received.body().unwrap())]);
    let report = handle_batch(&worker, event, deadline()).await;
    assert_eq!(report.response.batch_item_failures.len(), 1);
    ingest
        .sqs
        .delete_message()
        .queue_url(&ingest.config.queue_url)
        .receipt_handle(received.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(s(&ledger_items(&worker).await[0], "state"), "RETRY");

    let dlq_url = ingest
        .sqs
        .create_queue()
        .queue_name(common::unique("dlq"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let reconciler = reconciler::Reconciler {
        dynamodb: worker.dynamodb.clone(),
        sqs: ingest.sqs.clone(),
        config: reconciler::ReconcilerConfig {
            ledger_table: worker.config.ledger_table.clone(),
            queue_url: ingest.config.queue_url.clone(),
            dlq_url,
            lease_seconds: 900,
            max_redrive_per_run: 10,
            metrics_namespace: "datasync/test".into(),
        },
    };
    // After the backoff has passed, the reconciler sends the item again.
    let later = now() + 3600;
    let run = reconciler::run(&reconciler, later).await.unwrap();
    assert_eq!(run.total_redriven(), 1);
    let counts = drain_through_worker(&ingest, &worker).await;
    assert_eq!(counts.get("synced"), Some(&1), "{counts:?}");
    assert_eq!(s(&ledger_items(&worker).await[0], "state"), "COMPLETED");
    assert!(stored_record(&worker, "hris", "E1", "employee")
        .await
        .is_some());
}

#[tokio::test]
async fn a_record_accepted_but_never_claimed_is_in_the_ledger_and_redriven() {
    let target = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&target)
        .await;
    let worker = worker(&target.uri()).await;
    let ingest = ingest_on_new_queue(&worker).await;
    let records: Vec<Value> = (1..=3)
        .map(|n| employee(&format!("E{n}"), "2024-05-01T00:00:00Z"))
        .collect();
    let accepted_at = now();
    let response =
        ingest::handle_request(&ingest, request("hris", &records, accepted_at), accepted_at).await;
    assert_eq!(response.status_code, 202);

    // From the moment of acceptance, before any worker ran: accepted = in flight.
    let items = ledger_items(&worker).await;
    assert_eq!(items.len(), 3);
    for item in &items {
        assert_eq!(s(item, "state"), "ACCEPTED");
        assert_eq!(s(item, "source"), "hris");
        assert!(!s(item, "body").is_empty());
    }

    // The messages vanish unclaimed (as when every delivery's invocation died before the
    // worker looked, and they went to the DLQ).
    loop {
        let output = ingest
            .sqs
            .receive_message()
            .queue_url(&ingest.config.queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        if output.messages().is_empty() {
            break;
        }
        for message in output.messages() {
            ingest
                .sqs
                .delete_message()
                .queue_url(&ingest.config.queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let dlq_url = ingest
        .sqs
        .create_queue()
        .queue_name(common::unique("dlq"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let reconciler = reconciler::Reconciler {
        dynamodb: worker.dynamodb.clone(),
        sqs: ingest.sqs.clone(),
        config: reconciler::ReconcilerConfig {
            ledger_table: worker.config.ledger_table.clone(),
            queue_url: ingest.config.queue_url.clone(),
            dlq_url,
            lease_seconds: 900,
            max_redrive_per_run: 10,
            metrics_namespace: "datasync/test".into(),
        },
    };
    // Within the lease a worker may still be about to claim them: left alone.
    let early = reconciler::run(&reconciler, accepted_at + 60)
        .await
        .unwrap();
    assert_eq!(early.total_redriven(), 0);
    assert_eq!(
        early
            .ledger_items
            .get(&("hris".to_string(), "ACCEPTED".to_string())),
        Some(&3)
    );
    let run = reconciler::run(&reconciler, accepted_at + 901)
        .await
        .unwrap();
    assert_eq!(run.total_redriven(), 3);
    let counts = drain_through_worker(&ingest, &worker).await;
    assert_eq!(counts.get("synced"), Some(&3), "{counts:?}");
    for item in ledger_items(&worker).await {
        assert_eq!(s(&item, "state"), "COMPLETED");
        assert_eq!(s(&item, "outcome"), "synced");
    }
}

#[tokio::test]
async fn an_integer_beyond_64_bits_reaches_dynamodb_and_the_target_exactly() {
    const BIG: &str = "123456789012345678901234567890";
    let target = MockServer::start().await;
    Mock::given(method("PUT"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&target)
        .await;
    let worker = worker(&target.uri()).await;
    let ingest = ingest_on_new_queue(&worker).await;
    let contact: Value = serde_json::from_str(&format!(
        r#"{{"id": "C-big", "updatedAt": "2024-05-01T12:00:00Z",
            "properties": {{"email": "big@example.com", "account_number": {BIG}}}}}"#
    ))
    .unwrap();
    let too_precise: Value = serde_json::from_str(
        r#"{"id": "C-precise", "updatedAt": "2024-05-01T12:00:00Z",
            "properties": {"email": "p@example.com", "ratio": 0.1234567890123456789012345678901234567891}}"#,
    )
    .unwrap();
    let at = now();
    let response =
        ingest::handle_request(&ingest, request("crm", &[contact, too_precise], at), at).await;
    let answer: Value = match &response.body {
        Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(answer["accepted"], 1, "{answer}");
    let error = &answer["errors"][0]["field_errors"][0];
    assert_eq!(error["field"], "properties.ratio", "{answer}");
    assert_eq!(error["code"], "too_many_digits", "{answer}");

    let counts = drain_through_worker(&ingest, &worker).await;
    assert_eq!(counts.get("synced"), Some(&1), "{counts:?}");
    let stored = stored_record(&worker, "crm", "C-big", "contact")
        .await
        .unwrap();
    let unmapped = stored["unmapped"].as_m().unwrap();
    assert_eq!(
        unmapped["properties.account_number"].as_n().unwrap(),
        BIG,
        "{unmapped:?}"
    );
    let pushed = target.received_requests().await.unwrap();
    let body = String::from_utf8(pushed[0].body.clone()).unwrap();
    assert!(body.contains(&format!(":{BIG}")), "{body}");
}
