//! The idempotency key of a record delivery: the same source record (same source, id,
//! version, operation and content) always gets the same key, however often it is
//! delivered. The content is represented by [`content_digest`], so a corrected re-send
//! under an unchanged version gets a new key and is seen as a conflict, not a duplicate.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::record::{CanonicalRecord, Operation};

/// `sha256` (lower-case hex) over source, external id, source version, operation and
/// content digest. Each part is length-prefixed so that no two different tuples hash the
/// same input.
pub fn idempotency_key(
    source: &str,
    external_id: &str,
    source_version: u64,
    operation: Operation,
    content_digest: &str,
) -> String {
    let mut hasher = Sha256::new();
    let version = source_version.to_string();
    for part in [
        source,
        external_id,
        version.as_str(),
        operation.as_str(),
        content_digest,
    ] {
        hasher.update(part.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(part.as_bytes());
        hasher.update(b";");
    }
    hex::encode(hasher.finalize())
}

/// `sha256` (lower-case hex) of a record's canonical content: entity type, operation,
/// fields and unmapped attributes, serialized with object keys in sorted order at every
/// depth, so the same content always gives the same digest whatever order the source
/// wrote its keys in.
pub fn content_digest(record: &CanonicalRecord) -> String {
    let mut hasher = Sha256::new();
    let mut text = String::with_capacity(256);
    text.push_str(&record.entity_type);
    text.push('\n');
    text.push_str(record.operation.as_str());
    text.push('\n');
    text.push('{');
    for (index, (name, value)) in record.fields.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        write_string(&mut text, name);
        text.push(':');
        write_canonical(&mut text, value);
    }
    text.push_str("}\n{");
    let mut unmapped: Vec<(&String, &Value)> = record.unmapped.iter().collect();
    unmapped.sort_by(|a, b| a.0.cmp(b.0));
    for (index, (name, value)) in unmapped.into_iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        write_string(&mut text, name);
        text.push(':');
        write_canonical(&mut text, value);
    }
    text.push('}');
    hasher.update(text.as_bytes());
    hex::encode(hasher.finalize())
}

fn write_string(out: &mut String, text: &str) {
    // Serializing a string cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// JSON with object keys sorted at every depth.
fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (index, (name, value)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_canonical(out, value);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The key of a canonical record.
pub fn record_key(record: &CanonicalRecord) -> String {
    idempotency_key(
        &record.source,
        &record.external_id,
        record.source_version,
        record.operation,
        &content_digest(record),
    )
}

/// The key under which a message that cannot be read as a record is recorded: derived
/// from its bytes, so a redelivery of the same message finds the same ledger entry.
pub fn unreadable_message_key(body: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"unreadable;");
    hasher.update(body.as_bytes());
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_key_is_stable_and_depends_on_every_part() {
        let key = idempotency_key("hris", "E1", 7, Operation::Upsert, "d");
        assert_eq!(key.len(), 64);
        assert!(key
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(
            key,
            idempotency_key("hris", "E1", 7, Operation::Upsert, "d")
        );
        assert_ne!(key, idempotency_key("crm", "E1", 7, Operation::Upsert, "d"));
        assert_ne!(
            key,
            idempotency_key("hris", "E2", 7, Operation::Upsert, "d")
        );
        assert_ne!(
            key,
            idempotency_key("hris", "E1", 8, Operation::Upsert, "d")
        );
        assert_ne!(
            key,
            idempotency_key("hris", "E1", 7, Operation::Delete, "d")
        );
        assert_ne!(
            key,
            idempotency_key("hris", "E1", 7, Operation::Upsert, "e")
        );
    }

    #[test]
    fn moving_characters_between_parts_changes_the_key() {
        assert_ne!(
            idempotency_key("hr", "isE1", 7, Operation::Upsert, "d"),
            idempotency_key("hris", "E1", 7, Operation::Upsert, "d")
        );
    }

    fn record(fields: Value, unmapped: Value) -> CanonicalRecord {
        CanonicalRecord {
            source: "crm".into(),
            external_id: "C1".into(),
            entity_type: "contact".into(),
            source_version: 7,
            operation: Operation::Upsert,
            fields: serde_json::from_value(fields).unwrap(),
            unmapped: serde_json::from_value(unmapped).unwrap(),
        }
    }

    #[test]
    fn changed_content_under_the_same_version_changes_the_key() {
        let first = record(json!({"email": "a@b.co"}), json!({}));
        let corrected = record(json!({"email": "c@b.co"}), json!({}));
        assert_ne!(content_digest(&first), content_digest(&corrected));
        assert_ne!(record_key(&first), record_key(&corrected));
        let unmapped_changed = record(json!({"email": "a@b.co"}), json!({"x": 1}));
        assert_ne!(record_key(&first), record_key(&unmapped_changed));
    }

    #[test]
    fn key_order_inside_values_does_not_change_the_digest() {
        let one: Value =
            serde_json::from_str(r#"{"a": 1, "b": {"y": 2, "x": [1, {"q": 1, "p": 2}]}}"#).unwrap();
        let two: Value =
            serde_json::from_str(r#"{"b": {"x": [1, {"p": 2, "q": 1}], "y": 2}, "a": 1}"#).unwrap();
        assert_eq!(
            content_digest(&record(json!({"e": "v"}), one)),
            content_digest(&record(json!({"e": "v"}), two))
        );
    }
}
