//! The reconciler in-process with real DynamoDB and SQS clients against moto.

mod common;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use reconciler::{handle_scheduled, run, Reconciler, ReconcilerConfig};

const NOW: i64 = 1_714_565_100;

async fn reconciler(max_redrive_per_run: usize) -> Reconciler {
    let sdk = common::sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let ledger_table = common::create_ledger(&dynamodb).await;
    let queue_url = common::create_queue(&sqs, "records").await;
    let dlq_url = common::create_queue(&sqs, "records-dlq").await;
    Reconciler {
        dynamodb,
        sqs,
        config: ReconcilerConfig {
            ledger_table,
            queue_url,
            dlq_url,
            lease_seconds: 900,
            max_redrive_per_run,
            metrics_namespace: "datasync/test".into(),
        },
    }
}

async fn seed(reconciler: &Reconciler, key: &str, source: &str, state: &str, next_attempt_at: i64) {
    reconciler
        .dynamodb
        .put_item()
        .table_name(&reconciler.config.ledger_table)
        .item("idempotency_key", AttributeValue::S(key.into()))
        .item("state", AttributeValue::S(state.into()))
        .item(
            "state_shard",
            AttributeValue::S(sync_core::ledger::state_shard(state, key)),
        )
        .item(
            "next_attempt_at",
            AttributeValue::N(next_attempt_at.to_string()),
        )
        .item("source", AttributeValue::S(source.into()))
        .item("attempts", AttributeValue::N("2".into()))
        .item("correlation_id", AttributeValue::S(format!("corr-{key}")))
        .item(
            "body",
            AttributeValue::S(format!("{{\"body-of\":\"{key}\"}}")),
        )
        .send()
        .await
        .unwrap();
}

async fn drain(reconciler: &Reconciler, queue_url: &str) -> Vec<(String, Option<String>)> {
    let mut all = Vec::new();
    loop {
        let output = reconciler
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        if output.messages().is_empty() {
            return all;
        }
        for message in output.messages() {
            let correlation = message
                .message_attributes()
                .and_then(|a| a.get("correlation_id"))
                .and_then(|a| a.string_value())
                .map(str::to_string);
            all.push((message.body().unwrap_or_default().to_string(), correlation));
            reconciler
                .sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn state_of(reconciler: &Reconciler, key: &str) -> (String, i64) {
    let item = reconciler
        .dynamodb
        .get_item()
        .table_name(&reconciler.config.ledger_table)
        .key("idempotency_key", AttributeValue::S(key.into()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    (
        item["state"].as_s().unwrap().clone(),
        item["next_attempt_at"].as_n().unwrap().parse().unwrap(),
    )
}

#[tokio::test]
async fn stuck_and_due_items_are_redriven_once_and_others_are_left_alone() {
    let reconciler = reconciler(100).await;
    seed(&reconciler, "stuck", "hris", "IN_PROGRESS", NOW - 10).await;
    seed(&reconciler, "due", "crm", "RETRY", NOW - 1).await;
    seed(&reconciler, "leased", "hris", "IN_PROGRESS", NOW + 600).await;
    seed(&reconciler, "backing-off", "crm", "RETRY", NOW + 60).await;
    seed(&reconciler, "done", "hris", "COMPLETED", NOW - 100).await;
    seed(&reconciler, "failed", "hris", "FAILED", NOW - 100).await;

    let event: EventBridgeEvent =
        serde_json::from_str(include_str!("fixtures/eventbridge_scheduled.json")).unwrap();
    let report = handle_scheduled(&reconciler, event, NOW).await.unwrap();
    assert_eq!(report.total_redriven(), 2);
    assert_eq!(report.redriven.get("hris"), Some(&1));
    assert_eq!(report.redriven.get("crm"), Some(&1));
    let mut sent = drain(&reconciler, &reconciler.config.queue_url).await;
    sent.sort();
    assert_eq!(
        sent,
        vec![
            (
                "{\"body-of\":\"due\"}".to_string(),
                Some("corr-due".to_string())
            ),
            (
                "{\"body-of\":\"stuck\"}".to_string(),
                Some("corr-stuck".to_string())
            ),
        ]
    );
    let (state, next) = state_of(&reconciler, "stuck").await;
    assert_eq!(state, "RETRY");
    assert!(next >= NOW + 900, "not due again before a lease has passed");
    assert_eq!(state_of(&reconciler, "leased").await.0, "IN_PROGRESS");
    assert_eq!(
        state_of(&reconciler, "backing-off").await,
        ("RETRY".to_string(), NOW + 60)
    );

    // A second run at the same time re-drives nothing: the run is idempotent.
    let again = run(&reconciler, NOW).await.unwrap();
    assert_eq!(again.total_redriven(), 0);
    assert!(drain(&reconciler, &reconciler.config.queue_url)
        .await
        .is_empty());
}

#[tokio::test]
async fn a_run_redrives_at_most_its_budget() {
    let reconciler = reconciler(2).await;
    for i in 0..5 {
        seed(&reconciler, &format!("due-{i}"), "hris", "RETRY", NOW - 5).await;
    }
    assert_eq!(run(&reconciler, NOW).await.unwrap().total_redriven(), 2);
    assert_eq!(
        drain(&reconciler, &reconciler.config.queue_url).await.len(),
        2
    );
    assert_eq!(run(&reconciler, NOW).await.unwrap().total_redriven(), 2);
    assert_eq!(run(&reconciler, NOW).await.unwrap().total_redriven(), 1);
}

#[tokio::test]
async fn counts_per_source_and_state_and_the_dlq_depth_are_reported() {
    let reconciler = reconciler(0).await;
    seed(&reconciler, "a", "hris", "FAILED", NOW - 10).await;
    seed(&reconciler, "b", "hris", "FAILED", NOW - 20).await;
    seed(&reconciler, "c", "crm", "COMPLETED", NOW - 30).await;
    seed(&reconciler, "old", "crm", "COMPLETED", NOW - 7200).await;
    seed(&reconciler, "d", "crm", "RETRY", NOW + 30).await;
    for i in 0..3 {
        reconciler
            .sqs
            .send_message()
            .queue_url(&reconciler.config.dlq_url)
            .message_body(format!("dead {i}"))
            .send()
            .await
            .unwrap();
    }
    let report = run(&reconciler, NOW).await.unwrap();
    let count = |source: &str, state: &str| {
        report
            .ledger_items
            .get(&(source.to_string(), state.to_string()))
            .copied()
    };
    assert_eq!(count("hris", "FAILED"), Some(2));
    assert_eq!(
        count("crm", "COMPLETED"),
        Some(1),
        "completed items older than an hour are not counted"
    );
    assert_eq!(count("crm", "RETRY"), Some(1));
    assert_eq!(report.dlq_depth, Some(3));
}

#[tokio::test]
async fn the_ledger_index_holds_no_bodies_and_redrives_still_send_them() {
    let reconciler = reconciler(100).await;
    seed(&reconciler, "due", "crm", "RETRY", NOW - 1).await;
    let indexed = reconciler
        .dynamodb
        .query()
        .table_name(&reconciler.config.ledger_table)
        .index_name(reconciler::BY_STATE_INDEX)
        .key_condition_expression("#shard = :shard")
        .expression_attribute_names("#shard", "state_shard")
        .expression_attribute_values(
            ":shard",
            AttributeValue::S(sync_core::ledger::state_shard("RETRY", "due")),
        )
        .send()
        .await
        .unwrap();
    let entry = &indexed.items()[0];
    assert!(
        !entry.contains_key("body"),
        "personal data in the index: {entry:?}"
    );
    assert!(!entry.contains_key("correlation_id"));
    let report = run(&reconciler, NOW).await.unwrap();
    assert_eq!(report.total_redriven(), 1);
    let sent = drain(&reconciler, &reconciler.config.queue_url).await;
    assert_eq!(
        sent,
        vec![(
            "{\"body-of\":\"due\"}".to_string(),
            Some("corr-due".to_string())
        )]
    );
}

#[tokio::test]
async fn the_index_spreads_each_state_over_shards_and_every_shard_is_reconciled() {
    let reconciler = reconciler(100).await;
    let keys: Vec<String> = (0..24).map(|n| format!("spread-{n}")).collect();
    for key in &keys {
        seed(&reconciler, key, "hris", "RETRY", NOW - 10).await;
    }
    let shards: std::collections::BTreeSet<u32> = keys
        .iter()
        .map(|key| sync_core::ledger::shard_of(key))
        .collect();
    assert!(shards.len() > 4, "{shards:?}");
    let report = run(&reconciler, NOW).await.unwrap();
    assert_eq!(report.total_redriven(), 24);
    assert_eq!(
        report
            .ledger_items
            .get(&("hris".to_string(), "RETRY".to_string())),
        Some(&24)
    );
    assert_eq!(
        drain(&reconciler, &reconciler.config.queue_url).await.len(),
        24
    );
}
