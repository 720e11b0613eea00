//! The ingest handler in-process, with real SDK clients against moto (SQS, Secrets
//! Manager, SSM) and real API Gateway v2 events built from the fixture.

mod common;

use common::api::{body_json, employee, queued, setup, setup_with, signed, KEY, NOW};
use ingest::config::SecretStoreKind;
use ingest::handle_request;
use serde_json::{json, Value};

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
async fn an_unknown_source_is_a_404_that_names_no_configured_source() {
    let setup = setup().await;
    let response = handle_request(&setup.ingest, signed("erp", "{}", KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 404);
    let message = body_json(&response)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !message.contains("crm") && !message.contains("hris"),
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
    let message = body_json(&response)["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("does not match") && !message.contains("crm"),
        "a source without a key reads as a wrong signature: {message}"
    );
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

#[tokio::test]
async fn a_decommissioned_environment_answers_410_and_accepts_nothing() {
    let mut setup = setup().await;
    setup.ingest.config.stopped_since = Some("2026-12-01T18:00:00.000Z".into());
    let body = json!({"records": [employee("E1", "a@example.com")]}).to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 410);
    let answer = body_json(&response);
    assert_eq!(answer["error"]["code"], "decommissioned");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("2026-12-01T18:00:00.000Z") && message.contains("nothing"),
        "{message}"
    );
    assert!(queued(&setup).await.is_empty(), "nothing may be queued");
    // A wrong route is still a 404: the answer is about records, not every path.
    let mut stray = signed("hris", &body, KEY, NOW);
    stray.raw_path = Some("/elsewhere".into());
    stray.path_parameters.clear();
    let response = handle_request(&setup.ingest, stray, NOW).await;
    assert_eq!(response.status_code, 404);
}
