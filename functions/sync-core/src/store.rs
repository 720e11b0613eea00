//! The records table: item layout and the conditional write that lets only a newer source
//! version win. Built as plain data ([`AttrValue`], expressions) so it is tested and
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

/// An item: attribute name -> value.
pub type Item = BTreeMap<&'static str, AttrValue>;

/// A conditional `PutItem`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionalPut {
    /// The whole item (it replaces any previous one).
    pub item: Item,
    /// `ConditionExpression`.
    pub condition: &'static str,
    /// `ExpressionAttributeNames`.
    pub names: BTreeMap<&'static str, &'static str>,
    /// `ExpressionAttributeValues`.
    pub values: BTreeMap<&'static str, AttrValue>,
}

/// An upsert wins over an absent item or an older version.
const UPSERT_CONDITION: &str = "attribute_not_exists(pk) OR #version < :version \
     OR (#version = :version AND #key = :key)";
/// A delete also wins a tie with an upsert of the same version.
const DELETE_CONDITION: &str = "attribute_not_exists(pk) OR #version <= :version \
     OR (#version = :version AND #key = :key)";

/// Partition key of a record: `{source}#{external_id}`.
pub fn record_pk(source: &str, external_id: &str) -> String {
    format!("{source}#{external_id}")
}

/// The write of a normalized record. An upsert stores the fields; a delete replaces the
/// item with a tombstone that keeps only keys and version, so its data is gone and an
/// older upsert arriving late still loses against it.
///
/// Condition: the item is absent, or holds an older version; a delete also wins a tie
/// with an upsert of the same version; and the same delivery (same idempotency key) may
/// write again, so a retry after a failed downstream push does not count itself stale.
pub fn record_put(
    record: &CanonicalRecord,
    idempotency_key: &str,
    correlation_id: &str,
    now_rfc3339: &str,
) -> ConditionalPut {
    let mut item = Item::new();
    item.insert(
        "pk",
        AttrValue::s(record_pk(&record.source, &record.external_id)),
    );
    item.insert("sk", AttrValue::s(record.entity_type.clone()));
    item.insert("source", AttrValue::s(record.source.clone()));
    item.insert("external_id", AttrValue::s(record.external_id.clone()));
    item.insert("entity_type", AttrValue::s(record.entity_type.clone()));
    item.insert("source_version", AttrValue::n(record.source_version));
    item.insert("operation", AttrValue::s(record.operation.as_str()));
    item.insert("idempotency_key", AttrValue::s(idempotency_key));
    item.insert("correlation_id", AttrValue::s(correlation_id));
    item.insert("written_at", AttrValue::s(now_rfc3339));
    match record.operation {
        Operation::Upsert => {
            item.insert("deleted", AttrValue::Bool(false));
            item.insert(
                "fields",
                AttrValue::M(
                    record
                        .fields
                        .iter()
                        .map(|(k, v)| (k.clone(), AttrValue::from_json(v)))
                        .collect(),
                ),
            );
            item.insert(
                "unmapped",
                AttrValue::M(
                    record
                        .unmapped
                        .iter()
                        .map(|(k, v)| (k.clone(), AttrValue::from_json(v)))
                        .collect(),
                ),
            );
        }
        Operation::Delete => {
            item.insert("deleted", AttrValue::Bool(true));
        }
    }
    let condition = match record.operation {
        Operation::Upsert => UPSERT_CONDITION,
        Operation::Delete => DELETE_CONDITION,
    };
    let names = BTreeMap::from([("#version", "source_version"), ("#key", "idempotency_key")]);
    let values = BTreeMap::from([
        (":version", AttrValue::n(record.source_version)),
        (":key", AttrValue::s(idempotency_key)),
    ]);
    ConditionalPut {
        item,
        condition,
        names,
        values,
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
        let put = record_put(
            &record(Operation::Upsert),
            "k1",
            "c1",
            "2024-05-01T00:00:00Z",
        );
        assert_eq!(put.item["pk"], AttrValue::s("hris#E1"));
        assert!(put.item.contains_key("fields"));
        assert!(put.condition.contains("#version < :version"));
        assert_eq!(put.values[":version"], AttrValue::n(42));
    }

    #[test]
    fn a_delete_is_a_tombstone_without_data_that_wins_ties() {
        let put = record_put(
            &record(Operation::Delete),
            "k1",
            "c1",
            "2024-05-01T00:00:00Z",
        );
        assert_eq!(put.item["deleted"], AttrValue::Bool(true));
        assert!(!put.item.contains_key("fields"));
        assert!(!put.item.contains_key("unmapped"));
        assert_eq!(put.item["source_version"], AttrValue::n(42));
        assert!(put.condition.contains("#version <= :version"));
    }
}
