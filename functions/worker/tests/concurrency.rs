//! Several workers at once against one queue: four worker instances (each with its own
//! rate limiter and circuit breaker, as four Lambda instances would have) poll the same
//! moto queue at the same time and push to a real local target that answers with random
//! latency, 429s, 5xx, lost answers and, whenever it is offered a version that is not
//! newer than the one it holds, 409. Thousands of deliveries: many versions per record,
//! repeats, conflicting re-sends, deletes, all in shuffled order.
//!
//! Asserted per record over every request the target received: the versions only move
//! forward (a version is offered again only after its answer was lost, and never an older
//! one after a newer), no version is applied twice, and the target ends on the record's
//! newest version (its fields, or its delete). And the accounting identity, exactly:
//! deliveries = synced + duplicate + stale + conflict + failed, matching the ledger.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, QueueAttributeName, SendMessageBatchRequestEntry,
};
use common::target::{Faults, TargetServer};
use common::{employee, ledger_items, message_body, s, worker};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sync_core::{normalize_record, Mappings};
use worker::{handle_batch, MessageOutcome, Worker};

/// Worker instances polling the queue at once.
const WORKERS: usize = 4;
/// Distinct records (`CONCURRENCY_TEST_RECORDS` overrides it).
fn records() -> usize {
    std::env::var("CONCURRENCY_TEST_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(250)
}

/// One record's planned versions: `(version day, delete?)`, ascending.
fn plan(rng: &mut impl Rng) -> Vec<(u32, bool)> {
    let versions = rng.random_range(3..=9);
    let mut day = 0;
    (0..versions)
        .map(|index| {
            day += rng.random_range(1..=3);
            let last = index == versions - 1;
            // Deletes in the middle (later re-created) and as the final version.
            let delete = if last {
                rng.random_bool(0.25)
            } else {
                rng.random_bool(0.1)
            };
            (day, delete)
        })
        .collect()
}

fn record_at(id: &str, day: u32, delete: bool, variant: u32) -> Value {
    let updated_at = format!("2024-{:02}-{:02}T00:00:00Z", 1 + day / 28, 1 + day % 28);
    if delete {
        return serde_json::json!({"employee_id": id, "updated_at": updated_at, "deleted": true});
    }
    let mut record = employee(id, &updated_at);
    record["department"] = format!("Dept-{day}-{variant}").into();
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_on_one_queue_keep_every_record_moving_forward() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let target = TargetServer::start(Faults {
        latency_ms: (0, 25),
        slow_version: None,
        p_throttle: 0.05,
        p_server_error: 0.05,
        p_lost_answer: 0.02,
        seed: 12,
    })
    .await;
    let serial = common::serial::start(&common::moto_endpoint()).await;
    let first = instance(&target, None, &serial).await;
    let queue_url = first
        .sqs
        .create_queue()
        .queue_name(common::unique("records"))
        .attributes(QueueAttributeName::VisibilityTimeout, "60")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = first
        .sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();

    // The deliveries: every version of every record, some twice, a few re-sent with other
    // content under the same version, shuffled.
    let mappings = Mappings::builtin().unwrap();
    let hris = mappings.get("hris").unwrap();
    let mut bodies = Vec::new();
    let mut newest: BTreeMap<String, Value> = BTreeMap::new();
    for index in 0..records() {
        let id = format!("E{index}");
        for (day, delete) in plan(&mut rng) {
            let record = record_at(&id, day, delete, 0);
            bodies.push(message_body(
                "hris",
                record.clone(),
                &format!("c-{id}-{day}"),
            ));
            if rng.random_bool(0.15) {
                bodies.push(message_body(
                    "hris",
                    record.clone(),
                    &format!("c-{id}-{day}-again"),
                ));
            }
            if !delete && rng.random_bool(0.05) {
                let variant = record_at(&id, day, false, 1);
                bodies.push(message_body("hris", variant, &format!("c-{id}-{day}-v")));
            }
            newest.insert(format!("hris:{id}"), record);
        }
    }
    // A conflicting variant of a final version would make "newest" depend on the race.
    bodies.retain(|body| {
        let message: Value = serde_json::from_str(body).unwrap();
        let id = format!(
            "hris:{}",
            message["record"]["employee_id"].as_str().unwrap()
        );
        let final_version = &newest[&id]["updated_at"];
        !(message["record"]["updated_at"] == *final_version && message["record"] != newest[&id])
    });
    bodies.shuffle(&mut rng);
    let deliveries = bodies.len();
    assert!(deliveries >= records() * 4, "{deliveries}");
    for chunk in bodies.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .unwrap()
            })
            .collect();
        let sent = first
            .sqs
            .send_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(sent.failed().is_empty());
    }

    // Four instances on the same tables, polling at once.
    let mut workers = vec![Arc::new(first)];
    for _ in 1..WORKERS {
        let tables = (
            workers[0].config.records_table.clone(),
            workers[0].config.ledger_table.clone(),
        );
        let other = instance(&target, Some((&tables.0, &tables.1)), &serial).await;
        workers.push(Arc::new(other));
    }
    let settled = Arc::new(AtomicUsize::new(0));
    let settlements: Arc<Mutex<HashMap<String, Vec<&'static str>>>> = Arc::default();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    let outcomes: Arc<Mutex<BTreeMap<&'static str, usize>>> = Arc::default();
    let started = Instant::now();
    let give_up = started + Duration::from_secs(420);
    let mut tasks = Vec::new();
    for worker in &workers {
        let worker = Arc::clone(worker);
        let (queue_url, queue_arn) = (queue_url.clone(), queue_arn.clone());
        let settlements = Arc::clone(&settlements);
        let (settled, in_flight, most_in_flight, outcomes) = (
            Arc::clone(&settled),
            Arc::clone(&in_flight),
            Arc::clone(&most_in_flight),
            Arc::clone(&outcomes),
        );
        tasks.push(tokio::spawn(async move {
            while settled.load(Ordering::SeqCst) < deliveries && Instant::now() < give_up {
                let received = worker
                    .sqs
                    .receive_message()
                    .queue_url(&queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .unwrap();
                if received.messages().is_empty() {
                    continue;
                }
                let now_in_flight = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                most_in_flight.fetch_max(now_in_flight, Ordering::SeqCst);
                let report = handle_batch(
                    &worker,
                    event(received.messages(), &queue_arn),
                    Instant::now() + Duration::from_secs(30),
                )
                .await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let mut done = Vec::new();
                let handles: HashMap<&str, &str> = received
                    .messages()
                    .iter()
                    .map(|m| (m.message_id().unwrap(), m.receipt_handle().unwrap()))
                    .collect();
                assert_eq!(report.messages.len(), handles.len());
                for message in &report.messages {
                    let name = match &message.outcome {
                        MessageOutcome::Synced => "synced",
                        MessageOutcome::Duplicate => "duplicate",
                        MessageOutcome::Redelivered => "redelivered",
                        MessageOutcome::Stale => "stale",
                        MessageOutcome::Conflict => "conflict",
                        MessageOutcome::Failed(reason) => {
                            panic!("nothing should fail here: {reason}")
                        }
                        MessageOutcome::Retry(_) => {
                            *outcomes.lock().unwrap().entry("retried").or_default() += 1;
                            continue;
                        }
                    };
                    // Deliveries are at least once: a message may be delivered again,
                    // even while it is being processed. Its settlements are judged at
                    // the end.
                    let mut all = settlements.lock().unwrap();
                    let entry = all.entry(message.message_id.clone()).or_default();
                    if entry.is_empty() {
                        settled.fetch_add(1, Ordering::SeqCst);
                    }
                    entry.push(name);
                    drop(all);
                    done.push(
                        DeleteMessageBatchRequestEntry::builder()
                            .id(done.len().to_string())
                            .receipt_handle(handles[message.message_id.as_str()])
                            .build()
                            .unwrap(),
                    );
                }
                for chunk in done.chunks(10) {
                    worker
                        .sqs
                        .delete_message_batch()
                        .queue_url(&queue_url)
                        .set_entries(Some(chunk.to_vec()))
                        .send()
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let mut outcomes = outcomes.lock().unwrap().clone();
    let mut redelivered = 0;
    for (message_id, names) in settlements.lock().unwrap().iter() {
        let settling: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| matches!(*n, "synced" | "stale" | "conflict"))
            .collect();
        assert!(
            settling.len() <= 1,
            "message {message_id} settled its record more than once: {names:?}"
        );
        assert!(
            names.iter().any(|n| *n != "redelivered"),
            "message {message_id} was only ever a redelivery: {names:?}"
        );
        let name = settling.first().copied().unwrap_or("duplicate");
        *outcomes.entry(name).or_default() += 1;
        redelivered += names.len() - 1;
    }
    eprintln!("{redelivered} deliveries of messages that were settled already");
    eprintln!("{deliveries} deliveries, {WORKERS} workers, {elapsed:?}: {outcomes:?}, at most {} batches at once", most_in_flight.load(Ordering::SeqCst));
    assert_eq!(
        settled.load(Ordering::SeqCst),
        deliveries,
        "every delivery settled: {outcomes:?}"
    );
    assert!(
        most_in_flight.load(Ordering::SeqCst) >= 2,
        "the workers really ran at the same time"
    );

    // Per record, over every request the target received.
    let log = target.log();
    let mut by_record: HashMap<&str, Vec<&common::target::Received>> = HashMap::new();
    for received in &log {
        by_record
            .entry(received.record.as_str())
            .or_default()
            .push(received);
    }
    for (record, requests) in &by_record {
        let looked_at: Vec<_> = requests.iter().filter(|r| !r.faulted).collect();
        for pair in looked_at.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            let repeat_after_lost_answer =
                after.version == before.version && before.applied && before.status == 500;
            assert!(
                after.version > before.version || repeat_after_lost_answer,
                "{record}: version {} offered after {} ({before:?} then {after:?})",
                after.version,
                before.version
            );
            assert_eq!(after.version_header, Some(after.version));
        }
        let mut applied: HashMap<u64, usize> = HashMap::new();
        for request in requests.iter().filter(|r| r.applied) {
            *applied.entry(request.version).or_default() += 1;
        }
        assert!(
            applied.values().all(|n| *n == 1),
            "{record}: a version applied twice"
        );
        assert!(
            requests.iter().all(|r| r.status != 409
                || looked_at
                    .iter()
                    .any(|b| b.version == r.version && b.applied && b.status == 500)),
            "{record}: the target had to refuse an old version"
        );
    }
    let held = target.held();
    for (record, expected) in &newest {
        let canonical = normalize_record(hris, expected).unwrap();
        let Some(state) = held.get(record) else {
            panic!("{record} never reached the target");
        };
        assert_eq!(
            state.version, canonical.source_version,
            "{record}: not the newest version"
        );
        assert_eq!(
            state.deleted,
            canonical.operation == sync_core::Operation::Delete,
            "{record}"
        );
        if !state.deleted {
            assert_eq!(
                state.fields,
                serde_json::to_value(&canonical.fields).unwrap(),
                "{record}: not the newest content"
            );
        }
    }
    assert_eq!(held.len(), newest.len());

    // The accounting identity, from the reports and from the ledger.
    let count = |name: &str| outcomes.get(name).copied().unwrap_or(0);
    assert_eq!(
        deliveries,
        count("synced") + count("duplicate") + count("stale") + count("conflict"),
        "{outcomes:?}"
    );
    let items = ledger_items(&workers[0]).await;
    let mut ledger: BTreeMap<String, usize> = BTreeMap::new();
    for item in &items {
        assert_eq!(s(item, "state"), "COMPLETED", "{item:?}");
        *ledger.entry(s(item, "outcome").to_string()).or_default() += 1;
    }
    assert_eq!(
        ledger.get("synced").copied().unwrap_or(0),
        count("synced"),
        "{ledger:?}"
    );
    assert_eq!(
        ledger.get("stale").copied().unwrap_or(0),
        count("stale"),
        "{ledger:?}"
    );
    assert_eq!(
        ledger.get("conflict").copied().unwrap_or(0),
        count("conflict"),
        "{ledger:?}"
    );
    assert_eq!(
        items.len() + count("duplicate"),
        deliveries,
        "every repeat is one duplicate"
    );
}

fn event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> SqsEvent {
    let template: SqsEvent = serde_json::from_str(include_str!("fixtures/sqs_batch.json")).unwrap();
    let mut event = template.clone();
    event.records = messages
        .iter()
        .map(|received| {
            let mut message: SqsMessage = template.records[0].clone();
            message.message_id = received.message_id().map(str::to_string);
            message.receipt_handle = received.receipt_handle().map(str::to_string);
            message.body = received.body().map(str::to_string);
            message.event_source_arn = Some(queue_arn.to_string());
            message
        })
        .collect();
    event
}

/// A worker instance on `tables` (or new ones) with short backoffs and a breaker that
/// opens after five consecutive target failures for a second; its DynamoDB calls go
/// through `serial` (see `common::serial`).
async fn instance(target: &TargetServer, tables: Option<(&str, &str)>, serial: &str) -> Worker {
    let base = worker(&target.url()).await;
    let sdk = common::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(serial)
            .build(),
    );
    let mut config = base.config.clone();
    if let Some((records, ledger)) = tables {
        config.records_table = records.to_string();
        config.ledger_table = ledger.to_string();
    }
    config.backoff = sync_core::retry::RedriveBackoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(2),
    };
    config.breaker_threshold = 5;
    config.breaker_cooldown = Duration::from_secs(1);
    Worker::new(dynamodb, base.sqs.clone(), base.mappings.clone(), config).unwrap()
}
