//! The records table: item layout and the conditional write that lets only a newer source
//! version win (the push lease kept on the same item is in [`crate::push`]). Built as plain data ([`AttrValue`], expressions) so it is tested and
//! benchmarked without DynamoDB; the worker turns it into SDK calls.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::record::{CanonicalRecord, Operation};

/// A DynamoDB attribute value, as plain data.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// String.
    S(String),
    /// Number, in its decimal text.
    N(String),
    /// Boolean.
    Bool(bool),
    /// Null.
    Null,
    /// Map.
    M(BTreeMap<String, AttrValue>),
    /// List.
    L(Vec<AttrValue>),
}

impl AttrValue {
    /// A string value.
    pub fn s(value: impl Into<String>) -> Self {
        AttrValue::S(value.into())
    }

    /// A number value.
    pub fn n(value: impl ToString) -> Self {
        AttrValue::N(value.to_string())
    }

    /// The same data as a JSON value.
    pub fn from_json(value: &Value) -> Self {
        match value {
            Value::Null => AttrValue::Null,
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Number(n) => AttrValue::N(n.to_string()),
            Value::String(s) => AttrValue::S(s.clone()),
            Value::Array(items) => AttrValue::L(items.iter().map(AttrValue::from_json).collect()),
            Value::Object(map) => AttrValue::M(
                map.iter()
                    .map(|(k, v)| (k.clone(), AttrValue::from_json(v)))
                    .collect(),
            ),
        }
    }
}

/// A conditional `UpdateItem` on the records table. Every write of the records item is an
/// update, never a replacing put, so the push lease and the pushed marker kept on the item
/// survive the writes of newer versions.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordUpdate {
    /// Partition key, `{source}#{external_id}`.
    pub pk: String,
    /// Sort key, the entity type.
    pub sk: String,
    /// `UpdateExpression`.
    pub update: &'static str,
    /// `ConditionExpression`.
    pub condition: &'static str,
    /// `ExpressionAttributeNames`.
    pub names: BTreeMap<&'static str, &'static str>,
    /// `ExpressionAttributeValues`.
    pub values: BTreeMap<&'static str, AttrValue>,
}

const UPSERT_UPDATE: &str = "SET #source = :source, #external_id = :external_id, \
     #entity = :entity, #version = :version, #operation = :operation, #key = :key, \
     #digest = :digest, #correlation = :correlation, #written = :written, \
     #deleted = :deleted, #fields = :fields, #unmapped = :unmapped";
const DELETE_UPDATE: &str = "SET #source = :source, #external_id = :external_id, \
     #entity = :entity, #version = :version, #operation = :operation, #key = :key, \
     #digest = :digest, #correlation = :correlation, #written = :written, \
     #deleted = :deleted REMOVE #fields, #unmapped";

/// An upsert wins over an absent item or an older version.
const UPSERT_CONDITION: &str = "attribute_not_exists(pk) OR #version < :version \
     OR (#version = :version AND #key = :key)";
/// A delete also wins a tie with an upsert of the same version.
const DELETE_CONDITION: &str = "attribute_not_exists(pk) OR #version <= :version \
     OR (#version = :version AND #key = :key)";

const WRITE_NAMES: [(&str, &str); 12] = [
    ("#source", "source"),
    ("#external_id", "external_id"),
    ("#entity", "entity_type"),
    ("#version", "source_version"),
    ("#operation", "operation"),
    ("#key", "idempotency_key"),
    ("#digest", "content_digest"),
    ("#correlation", "correlation_id"),
    ("#written", "written_at"),
    ("#deleted", "deleted"),
    ("#fields", "fields"),
    ("#unmapped", "unmapped"),
];

/// Partition key of a record: `{source}#{external_id}`.
pub fn record_pk(source: &str, external_id: &str) -> String {
    format!("{source}#{external_id}")
}

/// The write of a normalized record. An upsert stores the fields; a delete turns the
/// item into a tombstone that keeps only keys and version, so its data is gone and an
/// older upsert arriving late still loses against it.
///
/// Condition: the item is absent, or holds an older version; a delete also wins a tie
/// with an upsert of the same version; and the same delivery (same idempotency key) may
/// write again, so a retry after a failed downstream push does not count itself stale.
pub fn record_write(
    record: &CanonicalRecord,
    idempotency_key: &str,
    content_digest: &str,
    correlation_id: &str,
    now_rfc3339: &str,
) -> RecordUpdate {
    let mut values = BTreeMap::new();
    values.insert(":source", AttrValue::s(record.source.clone()));
    values.insert(":external_id", AttrValue::s(record.external_id.clone()));
    values.insert(":entity", AttrValue::s(record.entity_type.clone()));
    values.insert(":version", AttrValue::n(record.source_version));
    values.insert(":operation", AttrValue::s(record.operation.as_str()));
    values.insert(":key", AttrValue::s(idempotency_key));
    values.insert(":digest", AttrValue::s(content_digest));
    values.insert(":correlation", AttrValue::s(correlation_id));
    values.insert(":written", AttrValue::s(now_rfc3339));
    let (update, condition) = match record.operation {
        Operation::Upsert => {
            values.insert(":deleted", AttrValue::Bool(false));
            values.insert(
                ":fields",
                AttrValue::M(
                    record
                        .fields
                        .iter()
                        .map(|(k, v)| (k.clone(), AttrValue::from_json(v)))
                        .collect(),
                ),
            );
            values.insert(
                ":unmapped",
                AttrValue::M(
                    record
                        .unmapped
                        .iter()
                        .map(|(k, v)| (k.clone(), AttrValue::from_json(v)))
                        .collect(),
                ),
            );
            (UPSERT_UPDATE, UPSERT_CONDITION)
        }
        Operation::Delete => {
            values.insert(":deleted", AttrValue::Bool(true));
            (DELETE_UPDATE, DELETE_CONDITION)
        }
    };
    RecordUpdate {
        pk: record_pk(&record.source, &record.external_id),
        sk: record.entity_type.clone(),
        update,
        condition,
        names: WRITE_NAMES.into_iter().collect(),
        values,
    }
}

/// Why the records table refused a record's write, read from the item as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRefusal {
    /// A newer version (or a delete of the same version) is stored.
    Stale,
    /// The same version of the same operation is stored with different content.
    Conflict,
}

/// Tells a conflict (same version and operation, another content digest) from a stale
/// write, given the stored item's version, operation and digest.
pub fn write_refusal(
    record: &CanonicalRecord,
    content_digest: &str,
    stored_version: Option<u64>,
    stored_operation: Option<&str>,
    stored_digest: Option<&str>,
) -> WriteRefusal {
    let same_version = stored_version == Some(record.source_version);
    let same_operation = stored_operation == Some(record.operation.as_str());
    if same_version && same_operation && stored_digest != Some(content_digest) {
        WriteRefusal::Conflict
    } else {
        WriteRefusal::Stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(operation: Operation) -> CanonicalRecord {
        CanonicalRecord {
            source: "hris".into(),
            external_id: "E1".into(),
            entity_type: "employee".into(),
            source_version: 42,
            operation,
            fields: BTreeMap::from([("email".to_string(), Value::String("a@b.co".into()))]),
            unmapped: serde_json::Map::new(),
        }
    }

    #[test]
    fn an_upsert_stores_fields_and_needs_an_older_version() {
        let put = record_write(
            &record(Operation::Upsert),
            "k1",
            "d1",
            "c1",
            "2024-05-01T00:00:00Z",
        );
        assert_eq!(put.pk, "hris#E1");
        assert!(put.values.contains_key(":fields"));
        assert!(put.condition.contains("#version < :version"));
        assert_eq!(put.values[":version"], AttrValue::n(42));
        assert_eq!(put.values[":digest"], AttrValue::s("d1"));
    }

    #[test]
    fn a_delete_is_a_tombstone_without_data_that_wins_ties() {
        let put = record_write(
            &record(Operation::Delete),
            "k1",
            "d1",
            "c1",
            "2024-05-01T00:00:00Z",
        );
        assert_eq!(put.values[":deleted"], AttrValue::Bool(true));
        assert!(!put.values.contains_key(":fields"));
        assert!(put.update.contains("REMOVE #fields, #unmapped"));
        assert_eq!(put.values[":version"], AttrValue::n(42));
        assert!(put.condition.contains("#version <= :version"));
    }

    #[test]
    fn every_alias_and_value_of_a_write_is_declared() {
        for operation in [Operation::Upsert, Operation::Delete] {
            let write = record_write(&record(operation), "k", "d", "c", "t");
            let text = format!("{} {}", write.update, write.condition);
            for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || "_#:".contains(c))) {
                if token.starts_with('#') {
                    assert!(write.names.contains_key(token), "{token} in {text}");
                }
                if token.starts_with(':') {
                    assert!(write.values.contains_key(token), "{token} in {text}");
                }
            }
            for value in write.values.keys() {
                assert!(text.contains(value), "{value} unused in {text}");
            }
        }
    }

    #[test]
    fn same_version_other_content_is_a_conflict_older_is_stale() {
        let upsert = record(Operation::Upsert);
        assert_eq!(
            write_refusal(&upsert, "d1", Some(42), Some("upsert"), Some("d0")),
            WriteRefusal::Conflict
        );
        assert_eq!(
            write_refusal(&upsert, "d1", Some(43), Some("upsert"), Some("d0")),
            WriteRefusal::Stale
        );
        assert_eq!(
            write_refusal(&upsert, "d1", Some(42), Some("delete"), Some("d0")),
            WriteRefusal::Stale
        );
    }
}
