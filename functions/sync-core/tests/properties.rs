//! Property tests of what a peer system sends: the request signature check and the record
//! normalizer. Whatever arrives, neither panics; each ends in a value or a specific error
//! that says what to fix. Case counts are bounded (256 per property, `PROPTEST_CASES`
//! raises them for a longer hunt).

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{json, Map, Value};
use sync_core::signature::{
    sign, verify, verify_any, SignatureError, SignedRequest, SigningKeys, MAX_CLOCK_SKEW_SECONDS,
};
use sync_core::{normalize_record, storage_errors, Mappings};

/// Never writes regression files into the source tree (CI runs the suite from it).
fn config() -> Config {
    Config::with_failure_persistence(FileFailurePersistence::Off)
}

/// Any JSON value, nested a few levels deep, with the awkward leaves: huge and negative
/// numbers, floats, empty and non-ASCII strings.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::String),
        "[0-9T:+.Z -]{0,32}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// A record of `source` that follows the mapping's shape (its known keys, at their
/// paths), with arbitrary values at every one of them, and arbitrary extra keys.
fn shaped_record(template: Value) -> impl Strategy<Value = Value> {
    let paths = leaf_paths(&template);
    (
        prop::collection::vec(any_json(), paths.len()),
        prop::collection::vec(any::<bool>(), paths.len()),
        prop::collection::btree_map("[a-z_]{1,10}", any_json(), 0..4),
    )
        .prop_map(move |(values, keep, extra)| {
            let mut record = template.clone();
            for ((path, value), keep) in paths.iter().zip(values).zip(keep) {
                if keep {
                    if let Some(slot) = record.pointer_mut(path) {
                        *slot = value;
                    }
                } else if let Some((parent, key)) = path.rsplit_once('/') {
                    if let Some(Value::Object(map)) = record.pointer_mut(parent) {
                        map.remove(key);
                    }
                }
            }
            if let Value::Object(map) = &mut record {
                map.extend(extra);
            }
            record
        })
}

fn leaf_paths(value: &Value) -> Vec<String> {
    fn walk(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    walk(child, format!("{at}/{key}"), out);
                }
            }
            _ => out.push(at),
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The outcome of normalizing `raw`: a record that is also storable, or errors that
/// each name a field (or the record) and say what is expected.
fn assert_normalized_or_specific_errors(source: &str, raw: &Value) {
    let mappings = Mappings::builtin().unwrap();
    let mapping = mappings.get(source).unwrap();
    match normalize_record(mapping, raw) {
        Ok(record) => {
            assert_eq!(record.source, source);
            assert!(
                !record.external_id.is_empty(),
                "an accepted record without an id: {raw}"
            );
            // What the storage checks refuse is itself a specific error.
            for error in storage_errors(&record) {
                assert!(
                    !error.message.is_empty(),
                    "a storage error without a message"
                );
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason: {raw}");
            for error in &errors {
                assert!(
                    error.message.len() > 10,
                    "an error that does not say what is wrong: {error:?} for {raw}"
                );
                assert!(
                    !error.message.contains("panicked"),
                    "an error that leaks a panic: {error:?}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_json_value_as_a_record_is_normalized_or_refused_with_field_errors(
        source in prop::sample::select(vec!["hris", "crm"]),
        raw in any_json(),
    ) {
        assert_normalized_or_specific_errors(source, &raw);
    }

    #[test]
    fn an_hris_record_with_arbitrary_values_is_normalized_or_refused_with_field_errors(
        raw in shaped_record(fixture("hris_employee.json")),
    ) {
        assert_normalized_or_specific_errors("hris", &raw);
    }

    #[test]
    fn a_crm_record_with_arbitrary_values_is_normalized_or_refused_with_field_errors(
        raw in shaped_record(fixture("crm_contact.json")),
    ) {
        assert_normalized_or_specific_errors("crm", &raw);
    }

    #[test]
    fn a_request_signed_with_the_key_verifies_and_any_change_to_it_does_not(
        key in prop::collection::vec(any::<u8>(), 1..64),
        method in "[A-Za-z]{1,8}",
        path in "/[ -~]{0,60}",
        source in "[a-z0-9_-]{1,20}",
        body in prop::collection::vec(any::<u8>(), 0..512),
        now in 0i64..4_000_000_000,
        skew in -MAX_CLOCK_SKEW_SECONDS..=MAX_CLOCK_SKEW_SECONDS,
        flip in any::<prop::sample::Index>(),
    ) {
        let request = SignedRequest { method: &method, path: &path, source: &source };
        let signed_at = now + skew;
        let signature = sign(&key, &request, signed_at, &body);
        let timestamp = signed_at.to_string();
        prop_assert_eq!(
            verify(&key, &request, Some(&timestamp), Some(&signature), &body, now),
            Ok(())
        );
        // The method is signed upper-cased, so its case does not matter.
        let lower = method.to_ascii_lowercase();
        let relaxed = SignedRequest { method: &lower, ..request };
        prop_assert_eq!(
            verify(&key, &relaxed, Some(&timestamp), Some(&signature), &body, now),
            Ok(())
        );
        let mut tampered = body.clone();
        if tampered.is_empty() {
            tampered.push(b'x');
        } else {
            let at = flip.index(tampered.len());
            tampered[at] ^= 0x01;
        }
        prop_assert_eq!(
            verify(&key, &request, Some(&timestamp), Some(&signature), &tampered, now),
            Err(SignatureError::Mismatch)
        );
        let other_source = format!("{source}x");
        let moved = SignedRequest { source: &other_source, ..request };
        prop_assert_eq!(
            verify(&key, &moved, Some(&timestamp), Some(&signature), &body, now),
            Err(SignatureError::Mismatch)
        );
        // (Not `key` plus a zero byte: HMAC pads short keys with zeros, so that is the
        // same key.)
        let mut other_key = key.clone();
        other_key[0] ^= 0x01;
        prop_assert_eq!(
            verify(&other_key, &request, Some(&timestamp), Some(&signature), &body, now),
            Err(SignatureError::Mismatch)
        );
        // Accepted by a rotation's key list wherever the key is in it.
        prop_assert_eq!(
            verify_any(&[other_key, key.clone()], &request, Some(&timestamp), Some(&signature), &body, now),
            Ok(())
        );
    }

    #[test]
    fn a_signature_outside_the_clock_window_is_expired_not_a_mismatch(
        key in prop::collection::vec(any::<u8>(), 1..32),
        now in 0i64..4_000_000_000,
        beyond in (MAX_CLOCK_SKEW_SECONDS + 1)..1_000_000,
        ahead in any::<bool>(),
    ) {
        let request = SignedRequest { method: "POST", path: "/integrations/hris/records", source: "hris" };
        let signed_at = if ahead { now + beyond } else { now - beyond };
        let signature = sign(&key, &request, signed_at, b"{}");
        let outcome = verify(&key, &request, Some(&signed_at.to_string()), Some(&signature), b"{}", now);
        let is_expired = matches!(outcome, Err(SignatureError::Expired { .. }));
        prop_assert!(is_expired, "{:?}", outcome);
    }

    #[test]
    fn arbitrary_signature_headers_never_panic_and_are_refused_specifically(
        timestamp in prop::option::of(".{0,30}"),
        signature in prop::option::of(prop_oneof![
            ".{0,80}",
            "sha256=[0-9a-fA-F]{0,70}",
            "sha256=[0-9a-f]{64}",
        ]),
        body in prop::collection::vec(any::<u8>(), 0..64),
        now in any::<i64>(),
    ) {
        let request = SignedRequest { method: "POST", path: "/integrations/crm/records", source: "crm" };
        let outcome = verify(b"key", &request, timestamp.as_deref(), signature.as_deref(), &body, now);
        // A random header cannot carry a valid HMAC of this request.
        let error = outcome.expect_err("a random signature verified");
        let message = error.caller_message();
        prop_assert!(message.contains("X-Sync-"), "{message}");
        prop_assert!(!message.contains("key`"), "the caller is told about keys: {message}");
    }

    #[test]
    fn any_signing_secret_value_gives_keys_or_a_specific_error(
        value in prop_oneof![
            ".{0,40}",
            any_json().prop_map(|v| v.to_string()),
            prop::collection::btree_map("[a-z]{1,6}", any_json(), 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()).to_string()),
        ],
        source in "[a-z]{1,6}",
    ) {
        match SigningKeys::parse(&value) {
            Ok(keys) => match keys.keys_for(&source) {
                Ok(list) => prop_assert!(list.iter().all(|key| !key.is_empty())),
                Err(error) => prop_assert_eq!(error, SignatureError::NoKeyForSource(source.clone())),
            },
            Err(error) => prop_assert!(error.to_string().starts_with("the signing secret is")),
        }
    }
}

#[test]
fn the_property_generators_reach_both_outcomes() {
    // The shaped generator keeps the fixture's keys, so unchanged it is accepted; a
    // record without its id is refused.
    assert_normalized_or_specific_errors("hris", &fixture("hris_employee.json"));
    let mappings = Mappings::builtin().unwrap();
    let errors = normalize_record(mappings.get("hris").unwrap(), &json!({"name": 1})).unwrap_err();
    assert!(!errors.is_empty());
}
