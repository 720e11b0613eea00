//! Test support: one moto server per test binary, SDK configuration pointed at it, the
//! tables of the deployment contract, and workers and SQS events built from fixtures.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::config::Credentials;
use emulator::MotoServer;
use serde_json::{json, Value};
use sync_core::envelope::{QueueMessage, MESSAGE_FORMAT};
use sync_core::retry::{RedriveBackoff, RetryPolicy};
use sync_core::Mappings;
use worker::{Worker, WorkerConfig};

pub mod serial;
pub mod target;

static MOTO: OnceLock<MotoServer> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The endpoint of this test binary's moto server (started on first use).
pub fn moto_endpoint() -> String {
    MOTO.get_or_init(|| {
        MotoServer::start().expect("moto_server starts (run scripts/bootstrap to install it)")
    })
    .endpoint_url()
}

/// SDK configuration for moto with test credentials.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto_endpoint())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .load()
        .await
}

/// A name no other test in this binary uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn attribute(name: &str, kind: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .unwrap()
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .unwrap()
}

fn index(name: &str, hash: &str, range: &str, projection: Projection) -> GlobalSecondaryIndex {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash))
        .key_schema(key(range, KeyType::Range))
        .projection(projection)
        .build()
        .unwrap()
}

/// Creates the records and ledger tables with the contract's schemas; returns their names.
pub async fn create_tables(client: &aws_sdk_dynamodb::Client) -> (String, String) {
    let records = unique("datasync-local-records");
    client
        .create_table()
        .table_name(&records)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk", ScalarAttributeType::S))
        .attribute_definitions(attribute("sk", ScalarAttributeType::S))
        .attribute_definitions(attribute("source", ScalarAttributeType::S))
        .attribute_definitions(attribute("external_id", ScalarAttributeType::S))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(index(
            "by-source",
            "source",
            "external_id",
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        ))
        .send()
        .await
        .unwrap();
    let ledger = unique("datasync-local-ledger");
    client
        .create_table()
        .table_name(&ledger)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("idempotency_key", ScalarAttributeType::S))
        .attribute_definitions(attribute("state_shard", ScalarAttributeType::S))
        .attribute_definitions(attribute("next_attempt_at", ScalarAttributeType::N))
        .key_schema(key("idempotency_key", KeyType::Hash))
        // As the data stack declares it: no bodies in the index.
        .global_secondary_indexes(index(
            "by-state-shard",
            "state_shard",
            "next_attempt_at",
            Projection::builder()
                .projection_type(ProjectionType::Include)
                .non_key_attributes("source")
                .non_key_attributes("attempts")
                .build(),
        ))
        .send()
        .await
        .unwrap();
    for table in [&records, &ledger] {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    (records, ledger)
}

/// A worker against moto and `downstream_url`, with fast retries. Its DynamoDB calls go
/// through a [`serial`] proxy: the worker writes concurrently, and moto's conditional
/// writes are only atomic when it is handed one request at a time.
pub async fn worker(downstream_url: &str) -> Worker {
    let sdk = sdk_config().await;
    let proxy = serial::start(&moto_endpoint()).await;
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(proxy)
            .build(),
    );
    let (records_table, ledger_table) = create_tables(&dynamodb).await;
    let config = WorkerConfig {
        records_table,
        ledger_table,
        downstream_url: downstream_url.to_string(),
        rate_limit_per_second: 1000.0,
        burst: 100,
        downstream_timeout: Duration::from_millis(2000),
        lease_seconds: 900,
        ledger_ttl_days: 30,
        metrics_namespace: "datasync/test".into(),
        concurrency: 4,
        max_instances: 1,
        retry: RetryPolicy {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
            max_attempts: 5,
        },
        backoff: RedriveBackoff::default(),
        breaker_threshold: 1000,
        breaker_cooldown: Duration::from_secs(30),
    };
    Worker::new(
        dynamodb,
        aws_sdk_sqs::Client::new(&sdk),
        Mappings::builtin().unwrap(),
        config,
    )
    .unwrap()
}

/// An HRIS employee record at `updated_at`.
pub fn employee(id: &str, updated_at: &str) -> Value {
    json!({
        "employee_id": id, "email": format!("{id}@Example.com"), "first_name": "Grace",
        "last_name": "Hopper", "department": "Engineering", "employment_status": "active",
        "hire_date": "2019-07-15", "updated_at": updated_at
    })
}

/// A queue message body carrying `record` of `source`.
pub fn message_body(source: &str, record: Value, correlation_id: &str) -> String {
    serde_json::to_string(&QueueMessage {
        format: MESSAGE_FORMAT,
        source: source.into(),
        correlation_id: correlation_id.into(),
        batch_id: "batch-1".into(),
        received_at: "2024-05-01T12:00:00Z".into(),
        record,
    })
    .unwrap()
}

/// An SQS event (from the fixture) with one message per `(message id, body)`.
pub fn sqs_event(messages: &[(&str, &str)]) -> SqsEvent {
    let mut event: SqsEvent =
        serde_json::from_str(include_str!("../fixtures/sqs_batch.json")).unwrap();
    let template: SqsMessage = event.records[0].clone();
    event.records = messages
        .iter()
        .map(|(id, body)| {
            let mut message = template.clone();
            message.message_id = Some((*id).to_string());
            message.body = Some((*body).to_string());
            message
        })
        .collect();
    event
}

/// A deadline far enough away for any test.
pub fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

/// The records-table item of `source`/`external_id`, if any.
pub async fn stored_record(
    worker: &Worker,
    source: &str,
    external_id: &str,
    entity: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    worker
        .dynamodb
        .get_item()
        .table_name(&worker.config.records_table)
        .key("pk", AttributeValue::S(format!("{source}#{external_id}")))
        .key("sk", AttributeValue::S(entity.to_string()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

/// Every ledger item.
pub async fn ledger_items(
    worker: &Worker,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let output = worker
            .dynamodb
            .scan()
            .table_name(&worker.config.ledger_table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(output.items().iter().cloned());
        start = output.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

/// A string attribute.
pub fn s<'a>(item: &'a std::collections::HashMap<String, AttributeValue>, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .unwrap_or("")
}
