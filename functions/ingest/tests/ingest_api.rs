//! The ingest handler in-process, with real SDK clients against moto (SQS, Secrets
//! Manager, SSM) and real API Gateway v2 events built from the fixture.

mod common;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use ingest::config::{IngestConfig, SecretStoreKind};
use ingest::{handle_request, Ingest, SecretStore, SigningSecret};
use serde_json::{json, Value};
use sync_core::envelope::QueueMessage;
use sync_core::signature::sign;
use sync_core::Mappings;

const NOW: i64 = 1_714_564_800;
const KEY: &str = "test-signing-key";

struct Setup {
    ingest: Ingest,
    queue_url: String,
}

async fn setup_with(
    secret_value: &str,
    store: SecretStoreKind,
    max_records: usize,
    max_body: usize,
) -> Setup {
    let sdk = common::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let queue = sqs
        .create_queue()
        .queue_name(common::unique("records"))
        .send()
        .await
        .unwrap();
    let queue_url = queue.queue_url().unwrap().to_string();
    let secret_name = match store {
        SecretStoreKind::SecretsManager => {
            let name = common::unique("ingest-signing");
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
            let name = format!(
                "/datasync/{}/ingest/signing-secret",
                common::unique("local")
            );
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
    let config = IngestConfig {
        queue_url: queue_url.clone(),
        secret_store: store,
        secret_name: secret_name.clone(),
        max_records_per_request: max_records,
        max_body_bytes: max_body,
        metrics_namespace: "datasync/test".into(),
    };
    let ingest = Ingest {
        sqs,
        secret: SigningSecret::new(SecretStore::new(store, &sdk), secret_name),
        mappings: Mappings::builtin().unwrap(),
        config,
    };
    Setup { ingest, queue_url }
}

async fn setup() -> Setup {
    setup_with(KEY, SecretStoreKind::SecretsManager, 50, 64 * 1024).await
}

fn event(source: &str, body: &str) -> ApiGatewayV2httpRequest {
    let fixture = include_str!("fixtures/apigw_v2_post_records.json");
    let mut event: ApiGatewayV2httpRequest = serde_json::from_str(fixture).unwrap();
    event.raw_path = Some(format!("/integrations/{source}/records"));
    event.path_parameters.insert("source".into(), source.into());
    event.body = Some(body.to_string());
    event
}

fn signed(source: &str, body: &str, key: &str, timestamp: i64) -> ApiGatewayV2httpRequest {
    let mut event = event(source, body);
    event
        .headers
        .insert("x-sync-timestamp", timestamp.to_string().parse().unwrap());
    event.headers.insert(
        "x-sync-signature",
        sign(key.as_bytes(), timestamp, body.as_bytes())
            .parse()
            .unwrap(),
    );
    event
}

fn body_json(response: &ApiGatewayV2httpResponse) -> Value {
    match &response.body {
        Some(Body::Text(text)) => serde_json::from_str(text).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

fn employee(id: &str, email: &str) -> Value {
    json!({
        "employee_id": id, "email": email, "first_name": "Ada", "last_name": "Lovelace",
        "department": "R&D", "employment_status": "active", "hire_date": "2020-01-02",
        "updated_at": "2024-05-01T10:00:00Z"
    })
}

async fn queued(setup: &Setup) -> Vec<(QueueMessage, Option<String>)> {
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

#[tokio::test]
async fn a_signed_batch_is_queued_with_the_correlation_id() {
    let setup = setup().await;
    let body =
        json!({"records": [employee("E1", "a@example.com"), employee("E2", "b@example.com")]})
            .to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW + 3).await;
    assert_eq!(response.status_code, 202);
    let result = body_json(&response);
    assert_eq!(result["accepted"], 2);
    assert_eq!(result["rejected"], 0);
    assert_eq!(result["correlation_id"], "req-7d1f2c");
    let batch_id = result["batch_id"].as_str().unwrap().to_string();
    let messages = queued(&setup).await;
    assert_eq!(messages.len(), 2);
    for (envelope, attribute) in messages {
        assert_eq!(envelope.source, "hris");
        assert_eq!(envelope.correlation_id, "req-7d1f2c");
        assert_eq!(attribute.as_deref(), Some("req-7d1f2c"));
        assert_eq!(envelope.batch_id, batch_id);
    }
}

#[tokio::test]
async fn a_single_record_without_correlation_header_gets_a_generated_id() {
    let setup = setup().await;
    let body = employee("E9", "c@example.com").to_string();
    let mut request = signed("hris", &body, KEY, NOW);
    request.headers.remove("x-correlation-id");
    let response = handle_request(&setup.ingest, request, NOW).await;
    assert_eq!(response.status_code, 202);
    let generated = body_json(&response)["correlation_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(generated.len(), 36, "a uuid: {generated}");
    let messages = queued(&setup).await;
    assert_eq!(messages[0].0.correlation_id, generated);
}

#[tokio::test]
async fn a_wrong_signature_is_refused_with_401() {
    let setup = setup().await;
    let body = employee("E1", "a@example.com").to_string();
    let response = handle_request(
        &setup.ingest,
        signed("hris", &body, "not-the-key", NOW),
        NOW,
    )
    .await;
    assert_eq!(response.status_code, 401);
    let error = body_json(&response);
    assert_eq!(error["error"]["code"], "unauthorized");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("does not match"));
    assert!(queued(&setup).await.is_empty());
}

#[tokio::test]
async fn a_missing_signature_is_refused_with_401_naming_the_header() {
    let setup = setup().await;
    let body = employee("E1", "a@example.com").to_string();
    let mut request = signed("hris", &body, KEY, NOW);
    request.headers.remove("x-sync-signature");
    let response = handle_request(&setup.ingest, request, NOW).await;
    assert_eq!(response.status_code, 401);
    assert!(body_json(&response)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("X-Sync-Signature"));
}

#[tokio::test]
async fn an_expired_or_future_timestamp_is_refused_with_401() {
    let setup = setup().await;
    let body = employee("E1", "a@example.com").to_string();
    for signed_at in [NOW - 301, NOW + 301] {
        let response =
            handle_request(&setup.ingest, signed("hris", &body, KEY, signed_at), NOW).await;
        assert_eq!(response.status_code, 401, "signed at {signed_at}");
        assert!(body_json(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("X-Sync-Timestamp"));
    }
    assert!(queued(&setup).await.is_empty());
}

#[tokio::test]
async fn malformed_json_is_a_400_with_its_position() {
    let setup = setup().await;
    let response = handle_request(
        &setup.ingest,
        signed("hris", "{\"records\": [", KEY, NOW),
        NOW,
    )
    .await;
    assert_eq!(response.status_code, 400);
    let error = body_json(&response);
    assert_eq!(error["error"]["code"], "malformed_json");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("line 1"));
}

#[tokio::test]
async fn a_non_json_content_type_is_a_415() {
    let setup = setup().await;
    let body = employee("E1", "a@example.com").to_string();
    let mut request = signed("hris", &body, KEY, NOW);
    request
        .headers
        .insert("content-type", "text/csv".parse().unwrap());
    let response = handle_request(&setup.ingest, request, NOW).await;
    assert_eq!(response.status_code, 415);
    assert!(body_json(&response)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("application/json"));
}

#[tokio::test]
async fn an_oversize_body_or_too_many_records_is_a_413_naming_the_limit() {
    let setup = setup_with(KEY, SecretStoreKind::SecretsManager, 3, 2048).await;
    let big = json!({"records": (0..40).map(|i| employee(&format!("E{i}"), "a@example.com")).collect::<Vec<_>>()}).to_string();
    let response = handle_request(&setup.ingest, signed("hris", &big, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 413);
    assert!(body_json(&response)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("MAX_BODY_BYTES"));
    let four = json!({"records": (0..4).map(|i| employee(&format!("E{i}"), "a@example.com")).collect::<Vec<_>>()}).to_string();
    let response = handle_request(&setup.ingest, signed("hris", &four, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 413);
    assert!(body_json(&response)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("MAX_RECORDS_PER_REQUEST"));
}

#[tokio::test]
async fn an_unknown_source_is_a_404_naming_the_known_ones() {
    let setup = setup().await;
    let response = handle_request(&setup.ingest, signed("erp", "{}", KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 404);
    let message = body_json(&response)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("`erp`") && message.contains("crm, hris"),
        "{message}"
    );
}

#[tokio::test]
async fn each_record_level_error_is_reported_per_record_and_field() {
    let setup = setup().await;
    let mut bad_email = employee("E2", "not-an-address");
    bad_email["hire_date"] = json!("yesterday");
    let mut no_id = employee("", "x@example.com");
    no_id["employment_status"] = json!("retired");
    let mut no_version = employee("E4", "y@example.com");
    no_version.as_object_mut().unwrap().remove("updated_at");
    let mut wrong_type = employee("E5", "z@example.com");
    wrong_type["first_name"] = json!(["Ada"]);
    wrong_type["last_name"] = json!(null);
    let body = json!({"records": [employee("E1", "ok@example.com"), bad_email, no_id, no_version, wrong_type, "not an object"]}).to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 202);
    let result = body_json(&response);
    assert_eq!(result["accepted"], 1);
    assert_eq!(result["rejected"], 5);
    let errors = result["errors"].as_array().unwrap();
    let codes_of = |index: usize| -> Vec<(String, String)> {
        errors.iter().find(|e| e["index"] == index).unwrap()["field_errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["field"].as_str().unwrap().to_string(),
                    f["code"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let has = |index: usize, field: &str, code: &str| {
        let codes = codes_of(index);
        assert!(
            codes.contains(&(field.to_string(), code.to_string())),
            "record {index}: {codes:?}"
        );
    };
    has(1, "email", "invalid_email");
    has(1, "hire_date", "invalid_date");
    has(2, "employee_id", "missing");
    has(2, "employment_status", "unknown_value");
    has(3, "updated_at", "missing");
    has(4, "first_name", "wrong_type");
    has(4, "last_name", "missing");
    has(5, "", "not_an_object");
    assert_eq!(
        errors.iter().find(|e| e["index"] == 1).unwrap()["external_id"],
        "E2"
    );
    assert!(
        !response_mentions(&result, "not-an-address"),
        "values are not echoed"
    );
    assert_eq!(queued(&setup).await.len(), 1);
}

fn response_mentions(result: &Value, needle: &str) -> bool {
    result.to_string().contains(needle)
}

#[tokio::test]
async fn a_request_whose_records_are_all_invalid_is_a_400() {
    let setup = setup().await;
    let body = json!({"records": [employee("E1", "broken")]}).to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 400);
    assert_eq!(body_json(&response)["rejected"], 1);
}

#[tokio::test]
async fn per_source_keys_from_ssm_refuse_a_source_without_a_key() {
    let setup = setup_with(
        r#"{"hris": "hris-key"}"#,
        SecretStoreKind::Ssm,
        50,
        64 * 1024,
    )
    .await;
    let body = employee("E1", "a@example.com").to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, "hris-key", NOW), NOW).await;
    assert_eq!(response.status_code, 202);
    let contact = json!({"id": "C1", "updatedAt": "2024-05-01T00:00:00Z", "properties": {"email": "c@example.com"}}).to_string();
    let response =
        handle_request(&setup.ingest, signed("crm", &contact, "hris-key", NOW), NOW).await;
    assert_eq!(response.status_code, 401);
    assert!(body_json(&response)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no signing key"));
}

#[tokio::test]
async fn records_that_cannot_be_queued_are_reported_not_accepted() {
    let mut setup = setup().await;
    setup.ingest.config.queue_url = format!(
        "{}/123456789012/{}",
        common::moto_endpoint(),
        common::unique("missing-queue")
    );
    let body =
        json!({"records": [employee("E1", "a@example.com"), employee("E2", "b@example.com")]})
            .to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 503);
    let result = body_json(&response);
    assert_eq!(result["accepted"], 0);
    assert_eq!(result["rejected"], 2);
    for error in result["errors"].as_array().unwrap() {
        assert_eq!(error["code"], "not_queued");
        assert_eq!(error["retryable"], true);
    }
}

#[derive(Clone, Default)]
struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_the_correlation_id_but_never_payload_values() {
    let setup = setup().await;
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests of this binary run on other threads without a subscriber; callsites they
    // reached first may have cached "never interested". Ask again with this one in place.
    tracing::callsite::rebuild_interest_cache();
    let mut invalid = employee("E2", "leaky.person@example");
    invalid["hire_date"] = json!("1999-99-99");
    let body =
        json!({"records": [employee("E1", "visible.person@example.com"), invalid]}).to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 202);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("req-7d1f2c"),
        "the correlation id is logged: {text}"
    );
    assert!(text.contains("records processed"), "{text}");
    for value in ["visible.person", "leaky.person", "1999-99-99", "Lovelace"] {
        assert!(
            !text.contains(value),
            "`{value}` leaked into the logs: {text}"
        );
    }
}
