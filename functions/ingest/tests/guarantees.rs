//! Ingest's guarantees against moto: versions too far in the future are refused, signing
//! keys rotate without downtime (two active keys, the secret read again after its time to
//! live), a signature verifies only for the method, path and source it was made for, and
//! refusals tell an unauthenticated caller nothing about the configuration.

mod common;

use std::time::Duration;

use common::api::{body_json, employee, queued, setup, setup_with, signed, signed_as, KEY, NOW};
use ingest::config::SecretStoreKind;
use ingest::{handle_request, SecretStore, SigningSecret};
use sync_core::signature::SignedRequest;

#[tokio::test]
async fn a_version_too_far_in_the_future_is_refused_with_its_own_error() {
    let setup = setup().await;
    let mut ahead = employee("E1", "a@example.com");
    ahead["updated_at"] = "2024-05-01T13:00:00Z".into(); // NOW + 1 h
    let mut slightly = employee("E2", "b@example.com");
    slightly["updated_at"] = "2024-05-01T12:04:00Z".into(); // NOW + 4 min
    let mut frozen = employee("E3", "c@example.com");
    frozen["updated_at"] = "9999-12-31T23:59:59Z".into();
    let body = serde_json::json!({"records": [ahead, slightly, frozen]}).to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 202);
    let answer = body_json(&response);
    assert_eq!(answer["accepted"], 1, "{answer}");
    for (position, index) in [(0, 0), (1, 2)] {
        let error = &answer["errors"][position];
        assert_eq!(error["index"], index, "{answer}");
        assert_eq!(error["field_errors"][0]["field"], "updated_at");
        assert_eq!(
            error["field_errors"][0]["code"], "future_version",
            "{answer}"
        );
    }
    assert_eq!(queued(&setup).await.len(), 1);
}

#[tokio::test]
async fn during_a_rotation_requests_signed_with_either_key_are_accepted() {
    let setup = setup_with(
        r#"{"hris": ["new-key", "old-key"]}"#,
        SecretStoreKind::SecretsManager,
        50,
        64 * 1024,
    )
    .await;
    let body = employee("E1", "a@example.com").to_string();
    for key in ["new-key", "old-key"] {
        let response = handle_request(&setup.ingest, signed("hris", &body, key, NOW), NOW).await;
        assert_eq!(response.status_code, 202, "{key}");
    }
    let response = handle_request(&setup.ingest, signed("hris", &body, "retired", NOW), NOW).await;
    assert_eq!(response.status_code, 401);
}

#[tokio::test]
async fn a_signature_made_for_one_source_or_path_is_refused_on_another() {
    // One key for every source: only the signed source and path keep a source's
    // signature from posting as another source.
    let setup = setup().await;
    let contact = serde_json::json!({
        "id": "512", "updatedAt": "2024-05-01T11:00:00Z",
        "properties": {"email": "ada@example.com"}
    })
    .to_string();
    let for_hris = SignedRequest {
        method: "POST",
        path: "/integrations/hris/records",
        source: "hris",
    };
    let replayed = signed_as("crm", &for_hris, &contact, KEY, NOW);
    let response = handle_request(&setup.ingest, replayed, NOW).await;
    assert_eq!(response.status_code, 401, "{}", body_json(&response));
    assert!(body_json(&response)["error"]["message"]
        .as_str()
        .unwrap()
        .contains("method, path, source, timestamp and body"));

    let for_crm_elsewhere = SignedRequest {
        method: "POST",
        path: "/staging/integrations/crm/records",
        source: "crm",
    };
    let response = handle_request(
        &setup.ingest,
        signed_as("crm", &for_crm_elsewhere, &contact, KEY, NOW),
        NOW,
    )
    .await;
    assert_eq!(response.status_code, 401);
    let for_crm_put = SignedRequest {
        method: "PUT",
        path: "/integrations/crm/records",
        source: "crm",
    };
    let response = handle_request(
        &setup.ingest,
        signed_as("crm", &for_crm_put, &contact, KEY, NOW),
        NOW,
    )
    .await;
    assert_eq!(response.status_code, 401);
    assert!(queued(&setup).await.is_empty());

    let response = handle_request(&setup.ingest, signed("crm", &contact, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 202, "{}", body_json(&response));
}

#[tokio::test]
async fn a_rotated_secret_is_read_again_after_its_time_to_live() {
    let setup = setup().await;
    let sdk = common::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let fresh = SigningSecret::with_ttl(
        SecretStore::SecretsManager(secrets.clone()),
        setup.secret_name.clone(),
        Duration::ZERO,
    );
    let cached = SigningSecret::with_ttl(
        SecretStore::SecretsManager(secrets.clone()),
        setup.secret_name.clone(),
        Duration::from_secs(3600),
    );
    assert_eq!(
        fresh.keys().await.unwrap().key_for("hris").unwrap(),
        KEY.as_bytes()
    );
    assert_eq!(
        cached.keys().await.unwrap().key_for("hris").unwrap(),
        KEY.as_bytes()
    );
    secrets
        .put_secret_value()
        .secret_id(&setup.secret_name)
        .secret_string("rotated-key")
        .send()
        .await
        .unwrap();
    assert_eq!(
        fresh.keys().await.unwrap().key_for("hris").unwrap(),
        b"rotated-key",
        "the new key is used once the time to live has passed"
    );
    assert_eq!(
        cached.keys().await.unwrap().key_for("hris").unwrap(),
        KEY.as_bytes(),
        "within its time to live the secret is not read again"
    );
}

#[tokio::test]
async fn an_expired_timestamp_does_not_reveal_the_server_clock_and_cannot_overflow() {
    let setup = setup().await;
    let body = employee("E1", "a@example.com").to_string();
    for signed_at in [NOW - 1234, i64::MIN, i64::MAX] {
        let response =
            handle_request(&setup.ingest, signed("hris", &body, KEY, signed_at), NOW).await;
        assert_eq!(response.status_code, 401, "{signed_at}");
        let message = body_json(&response)["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            !message.contains("1234") && !message.contains(&NOW.to_string()),
            "{message}"
        );
    }
}

#[tokio::test]
async fn values_dynamodb_would_refuse_are_refused_per_field() {
    let setup = setup().await;
    let mut big = employee("E1", "a@example.com");
    big["score"] = serde_json::json!(1e200);
    let mut deep = employee("E2", "b@example.com");
    let mut nested = serde_json::json!("leaf");
    for _ in 0..40 {
        nested = serde_json::json!({ "n": nested });
    }
    deep["tree"] = nested;
    let fine = employee("E3", "c@example.com");
    let mut precise = employee("E4", "d@example.com");
    precise["badge"] = serde_json::from_str("1234567890123456789012345678901234567890").unwrap();
    let mut exact = employee("E5", "e@example.com");
    exact["badge"] = serde_json::from_str("123456789012345678901234567890").unwrap();
    let body = serde_json::json!({"records": [big, deep, fine, precise, exact]}).to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    let answer = body_json(&response);
    assert_eq!(answer["accepted"], 2, "{answer}");
    assert_eq!(answer["errors"][2]["index"], 3, "{answer}");
    assert_eq!(answer["errors"][2]["field_errors"][0]["field"], "badge");
    assert_eq!(
        answer["errors"][2]["field_errors"][0]["code"],
        "too_many_digits"
    );
    let queued = queued(&setup).await;
    let exact = queued
        .iter()
        .find(|(message, _)| message.record["employee_id"] == "E5")
        .expect("E5 queued");
    assert_eq!(
        exact.0.record["badge"].to_string(),
        "123456789012345678901234567890"
    );
    assert_eq!(answer["errors"][0]["field_errors"][0]["field"], "score");
    assert_eq!(
        answer["errors"][0]["field_errors"][0]["code"],
        "number_out_of_range"
    );
    assert_eq!(answer["errors"][1]["field_errors"][0]["field"], "tree");
    assert_eq!(answer["errors"][1]["field_errors"][0]["code"], "too_deep");
    assert_eq!(answer["errors"][1]["retryable"], false);
}

#[tokio::test]
async fn the_message_attributes_count_against_the_queue_limit() {
    let setup = setup_with(KEY, SecretStoreKind::SecretsManager, 50, 1024 * 1024).await;
    // Sized so that the envelope alone fits 256 KiB but not with its attributes.
    let probe = employee("E1", "a@example.com");
    let mut record = probe.clone();
    record["notes"] = "".into();
    let envelope_overhead = {
        let message = sync_core::envelope::QueueMessage {
            format: sync_core::envelope::MESSAGE_FORMAT,
            source: "hris".into(),
            correlation_id: "corr-size".into(),
            batch_id: uuid_like(),
            received_at: chrono_like(),
            record: record.clone(),
        };
        serde_json::to_string(&message).unwrap().len()
    };
    record["notes"] = "x"
        .repeat(ingest::MAX_MESSAGE_BYTES - envelope_overhead - 5)
        .into();
    let body = serde_json::json!({"records": [record]}).to_string();
    let mut request = signed("hris", &body, KEY, NOW);
    request
        .headers
        .insert("x-correlation-id", "corr-size".parse().unwrap());
    let response = handle_request(&setup.ingest, request, NOW).await;
    let answer = body_json(&response);
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["errors"][0]["code"], "too_large", "{answer}");
    assert_eq!(answer["errors"][0]["retryable"], false);
    assert!(queued(&setup).await.is_empty());
}

/// The length of the batch id ingest generates (a UUID).
fn uuid_like() -> String {
    "00000000-0000-0000-0000-000000000000".into()
}

/// The length of the receive time ingest writes.
fn chrono_like() -> String {
    chrono::DateTime::from_timestamp(NOW, 0)
        .unwrap()
        .to_rfc3339()
}

async fn ledger_states(setup: &common::api::Setup) -> Vec<(String, String)> {
    let sdk = common::sdk_config().await;
    let items = aws_sdk_dynamodb::Client::new(&sdk)
        .scan()
        .table_name(&setup.ledger_table)
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default();
    let mut states: Vec<(String, String)> = items
        .iter()
        .map(|item| {
            let text = |name: &str| item[name].as_s().unwrap().clone();
            (text("external_id"), text("state"))
        })
        .collect();
    states.sort();
    states
}

#[tokio::test]
async fn every_accepted_record_is_in_the_ledger_from_the_moment_it_is_accepted() {
    let setup = setup().await;
    let body = serde_json::json!({"records": [
        employee("E1", "a@example.com"),
        employee("E2", "not-an-email"),
        employee("E3", "c@example.com"),
    ]})
    .to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    assert_eq!(body_json(&response)["accepted"], 2);
    let accepted = vec![
        ("E1".to_string(), "ACCEPTED".to_string()),
        ("E3".to_string(), "ACCEPTED".to_string()),
    ];
    assert_eq!(ledger_states(&setup).await, accepted);
    // A re-send is accepted again and settled by the worker; its entry is not replaced.
    let response =
        handle_request(&setup.ingest, signed("hris", &body, KEY, NOW + 5), NOW + 5).await;
    assert_eq!(body_json(&response)["accepted"], 2);
    assert_eq!(ledger_states(&setup).await, accepted);
    assert_eq!(queued(&setup).await.len(), 4);
}

#[tokio::test]
async fn a_record_the_ledger_cannot_take_is_not_queued_and_may_be_sent_again() {
    let mut setup = setup().await;
    setup.ingest.config.ledger_table = "no-such-ledger".into();
    let body = employee("E1", "a@example.com").to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    assert_eq!(response.status_code, 503, "{}", body_json(&response));
    let answer = body_json(&response);
    assert_eq!(answer["accepted"], 0);
    assert_eq!(answer["errors"][0]["code"], "not_queued");
    assert_eq!(answer["errors"][0]["retryable"], true);
    assert!(queued(&setup).await.is_empty());
}

#[tokio::test]
async fn a_record_the_queue_does_not_take_leaves_no_ledger_entry() {
    let mut setup = setup().await;
    setup.ingest.config.queue_url = format!("{}-gone", setup.queue_url);
    let body = employee("E1", "a@example.com").to_string();
    let response = handle_request(&setup.ingest, signed("hris", &body, KEY, NOW), NOW).await;
    let answer = body_json(&response);
    assert_eq!(answer["accepted"], 0, "{answer}");
    assert_eq!(answer["errors"][0]["code"], "not_queued", "{answer}");
    // The caller was told it was not accepted, so the ledger does not count it either.
    assert_eq!(ledger_states(&setup).await, Vec::new());
}
