//! Property tests of the ingest request parser: whatever path, headers and body a caller
//! sends, reading them never panics and ends in a value or a specific error that says
//! what to send instead. Case counts are bounded (256 per property, `PROPTEST_CASES`
//! raises them).

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use base64::Engine;
use ingest::request::{
    body_bytes, correlation_id, is_json, records, route_source, CORRELATION_HEADER,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::Value;

/// Never writes regression files into the source tree (CI runs the suite from it).
fn config() -> Config {
    Config::with_failure_persistence(FileFailurePersistence::Off)
}

fn any_json() -> impl Strategy<Value = Value> {
    // Bodies as callers get them wrong: strings, numbers and nulls where records go.
    let leaf = prop_oneof![
        ".{0,20}".prop_map(Value::String),
        any::<i64>().prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool),
        Just(Value::Null),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![Just("records".to_string()), "[a-z]{1,8}"],
                inner,
                0..5
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn request_with(raw_path: &str, header_value: &[u8]) -> ApiGatewayV2httpRequest {
    let mut request = ApiGatewayV2httpRequest::default();
    request.raw_path = Some(raw_path.to_string());
    if let Ok(value) = http::HeaderValue::from_bytes(header_value) {
        request.headers.insert(CORRELATION_HEADER, value.clone());
        request.headers.insert(http::header::CONTENT_TYPE, value);
    }
    request
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_path_routes_to_a_named_source_or_to_no_route(
        path in prop_oneof![
            "[ -~]{0,60}",
            "(/[a-z]{1,6}){0,2}/integrations/[a-z0-9_-]{0,12}/records/?",
        ],
    ) {
        let request = request_with(&path, b"");
        if let Some(source) = route_source(&request) {
            prop_assert!(!source.is_empty());
            prop_assert!(!source.contains('/'), "{source}");
            let route = format!("/integrations/{source}/records");
            prop_assert!(path.trim_end_matches('/').ends_with(&route), "{path} -> {source}");
        }
    }

    #[test]
    fn any_correlation_header_yields_a_usable_correlation_id(
        value in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        let request = request_with("/integrations/hris/records", &value);
        let id = correlation_id(&request);
        prop_assert!((1..=128).contains(&id.len()), "{id:?}");
        let usable = id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        prop_assert!(usable, "{id:?}");
        // A usable id the caller sent is kept, so their logs and ours line up.
        if let Ok(sent) = std::str::from_utf8(&value) {
            let sent = sent.trim();
            let sent_usable = !sent.is_empty() && sent.len() <= 128
                && sent.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
            if sent_usable && http::HeaderValue::from_bytes(&value).is_ok() {
                prop_assert_eq!(id, sent);
            }
        }
        // Any content type is either JSON or not; never a panic.
        let _ = is_json(request.headers.get("content-type").and_then(|v| v.to_str().ok()));
    }

    #[test]
    fn a_base64_flagged_body_decodes_to_what_was_encoded_or_is_refused_by_name(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        garbage in "[ -~]{1,40}",
    ) {
        let mut request = request_with("/integrations/hris/records", b"");
        request.is_base64_encoded = true;
        request.body = Some(base64::engine::general_purpose::STANDARD.encode(&bytes));
        prop_assert_eq!(body_bytes(&request), Ok(bytes.clone()));
        request.body = Some(garbage.clone());
        match body_bytes(&request) {
            Ok(decoded) => prop_assert_eq!(
                &base64::engine::general_purpose::STANDARD.encode(decoded),
                &garbage
            ),
            Err(message) => prop_assert!(message.contains("base64"), "{message}"),
        }
        request.is_base64_encoded = false;
        prop_assert_eq!(body_bytes(&request), Ok(garbage.into_bytes()));
    }

    #[test]
    fn any_json_body_holds_records_or_is_refused_saying_what_to_send(body in any_json()) {
        match records(body.clone()) {
            Ok(list) => {
                prop_assert!(!list.is_empty());
                match &body {
                    Value::Object(object) if object.contains_key("records") => {
                        prop_assert_eq!(Some(&Value::Array(list)), object.get("records"));
                    }
                    _ => prop_assert_eq!(list, vec![body]),
                }
            }
            Err(message) => {
                prop_assert!(message.contains("record"), "{message}");
                let is_a_record_object = matches!(&body, Value::Object(o) if !o.contains_key("records"));
                prop_assert!(!is_a_record_object, "a record object was refused: {body}");
            }
        }
    }

}
