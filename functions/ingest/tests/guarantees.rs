//! Ingest's guarantees against moto: versions too far in the future are refused, signing
//! keys rotate without downtime (two active keys, the secret read again after its time to
//! live), and refusals tell an unauthenticated caller nothing about the configuration.

mod common;

use std::time::Duration;

use common::api::{body_json, employee, queued, setup, setup_with, signed, KEY, NOW};
use ingest::config::SecretStoreKind;
use ingest::{handle_request, SecretStore, SigningSecret};

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
