//! The ingest function set up against moto, and signed API Gateway v2 events to send it.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use ingest::config::{IngestConfig, SecretStoreKind};
use ingest::{Ingest, SecretStore, SigningSecret};
use serde_json::{json, Value};
use sync_core::envelope::QueueMessage;
use sync_core::signature::{sign, SignedRequest};
use sync_core::Mappings;

pub const NOW: i64 = 1_714_564_800;
pub const KEY: &str = "test-signing-key";

pub struct Setup {
    pub ingest: Ingest,
    pub ledger_table: String,
    pub queue_url: String,
    pub secret_name: String,
}

pub async fn setup_with(
    secret_value: &str,
    store: SecretStoreKind,
    max_records: usize,
    max_body: usize,
) -> Setup {
    let sdk = super::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs
        .create_queue()
        .queue_name(super::unique("records"))
        .send()
        .await
        .unwrap();
    let queue_url = queue.queue_url().unwrap().to_string();
    let secret_name = match store {
        SecretStoreKind::SecretsManager => {
            let name = super::unique("ingest-signing");
            aws_sdk_secretsmanager::Client::new(&sdk)
                .create_secret()
                .name(&name)
                .secret_string(secret_value)
                .send()
                .await
                .unwrap();
            name
        }
        SecretStoreKind::Ssm => {
            let name = format!("/datasync/{}/ingest/signing-secret", super::unique("local"));
            aws_sdk_ssm::Client::new(&sdk)
                .put_parameter()
                .name(&name)
                .value(secret_value)
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .send()
                .await
                .unwrap();
            name
        }
    };
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let ledger_table = super::unique("ledger");
    dynamodb
        .create_table()
        .table_name(&ledger_table)
        .billing_mode(aws_sdk_dynamodb::types::BillingMode::PayPerRequest)
        .attribute_definitions(
            aws_sdk_dynamodb::types::AttributeDefinition::builder()
                .attribute_name("idempotency_key")
                .attribute_type(aws_sdk_dynamodb::types::ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            aws_sdk_dynamodb::types::KeySchemaElement::builder()
                .attribute_name("idempotency_key")
                .key_type(aws_sdk_dynamodb::types::KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let config = IngestConfig {
        queue_url: queue_url.clone(),
        ledger_table: ledger_table.clone(),
        lease_seconds: 900,
        ledger_ttl_days: 30,
        secret_store: store,
        secret_name: secret_name.clone(),
        max_records_per_request: max_records,
        max_body_bytes: max_body,
        metrics_namespace: "datasync/test".into(),
        max_version_ahead_seconds: 300,
        secret_ttl_seconds: 300,
        stopped_since: None,
    };
    let ingest = Ingest {
        sqs,
        dynamodb,
        secret: SigningSecret::new(SecretStore::new(store, &sdk), secret_name.clone()),
        mappings: Mappings::builtin().unwrap(),
        config,
    };
    Setup {
        ingest,
        ledger_table,
        queue_url,
        secret_name,
    }
}

pub async fn setup() -> Setup {
    setup_with(KEY, SecretStoreKind::SecretsManager, 50, 64 * 1024).await
}

pub fn event(source: &str, body: &str) -> ApiGatewayV2httpRequest {
    let fixture = include_str!("../fixtures/apigw_v2_post_records.json");
    let mut event: ApiGatewayV2httpRequest = serde_json::from_str(fixture).unwrap();
    event.raw_path = Some(format!("/integrations/{source}/records"));
    event.path_parameters.insert("source".into(), source.into());
    event.body = Some(body.to_string());
    event
}

/// A request to `source`'s route, signed for that route (method, path and source).
pub fn signed(source: &str, body: &str, key: &str, timestamp: i64) -> ApiGatewayV2httpRequest {
    let path = format!("/integrations/{source}/records");
    let signed_for = SignedRequest {
        method: "POST",
        path: &path,
        source,
    };
    signed_as(source, &signed_for, body, key, timestamp)
}

/// A request to `source`'s route carrying a signature made for `signed_for`.
pub fn signed_as(
    source: &str,
    signed_for: &SignedRequest<'_>,
    body: &str,
    key: &str,
    timestamp: i64,
) -> ApiGatewayV2httpRequest {
    let mut event = event(source, body);
    event
        .headers
        .insert("x-sync-timestamp", timestamp.to_string().parse().unwrap());
    event.headers.insert(
        "x-sync-signature",
        sign(key.as_bytes(), signed_for, timestamp, body.as_bytes())
            .parse()
            .unwrap(),
    );
    event
}

pub fn body_json(response: &ApiGatewayV2httpResponse) -> Value {
    match &response.body {
        Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

pub fn employee(id: &str, email: &str) -> Value {
    json!({
        "employee_id": id, "email": email, "first_name": "Ada", "last_name": "Lovelace",
        "department": "R&D", "employment_status": "active", "hire_date": "2020-01-02",
        "updated_at": "2024-05-01T10:00:00Z"
    })
}

pub async fn queued(setup: &Setup) -> Vec<(QueueMessage, Option<String>)> {
    let mut all = Vec::new();
    loop {
        let output = setup
            .ingest
            .sqs
            .receive_message()
            .queue_url(&setup.queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let messages = output.messages();
        if messages.is_empty() {
            return all;
        }
        for message in messages {
            let envelope: QueueMessage = serde_json::from_str(message.body().unwrap()).unwrap();
            let attribute = message
                .message_attributes()
                .and_then(|a| a.get("correlation_id"))
                .and_then(|a| a.string_value())
                .map(str::to_string);
            all.push((envelope, attribute));
        }
    }
}
