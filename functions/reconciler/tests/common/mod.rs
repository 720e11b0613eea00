//! Test support: one moto server per test binary, SDK configuration pointed at it, and
//! the ledger table and queues of the deployment contract.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::config::Credentials;
use emulator::MotoServer;

static MOTO: OnceLock<MotoServer> = OnceLock::new();
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// SDK configuration for this binary's moto server (started on first use).
pub async fn sdk_config() -> SdkConfig {
    let endpoint = MOTO
        .get_or_init(|| {
            MotoServer::start().expect("moto_server starts (run scripts/bootstrap to install it)")
        })
        .endpoint_url();
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
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

/// Creates a ledger table with the contract's schema.
pub async fn create_ledger(client: &aws_sdk_dynamodb::Client) -> String {
    let name = unique("datasync-local-ledger");
    let attribute = |n: &str, t: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(t)
            .build()
            .unwrap()
    };
    let key = |n: &str, t: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("idempotency_key", ScalarAttributeType::S))
        .attribute_definitions(attribute("state_shard", ScalarAttributeType::S))
        .attribute_definitions(attribute("next_attempt_at", ScalarAttributeType::N))
        .key_schema(key("idempotency_key", KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("by-state-shard")
                .key_schema(key("state_shard", KeyType::Hash))
                .key_schema(key("next_attempt_at", KeyType::Range))
                // As the data stack declares it: no bodies in the index.
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes("source")
                        .non_key_attributes("attempts")
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    name
}

/// Creates a queue; returns its URL.
pub async fn create_queue(client: &aws_sdk_sqs::Client, prefix: &str) -> String {
    client
        .create_queue()
        .queue_name(unique(prefix))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string()
}
