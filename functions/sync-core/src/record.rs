//! The canonical record and the normalization of a source record into it, driven by the
//! source's [`Mapping`]. Pure: no I/O, no clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::mapping::{FieldKind, Mapping, VersionKind};
use crate::normalize::{self, Normalized};

/// Longest external id accepted (it becomes part of table keys and URLs).
pub const MAX_EXTERNAL_ID_CHARS: usize = 256;

/// What a record asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Create or replace the record.
    Upsert,
    /// Remove the record's data, keeping a tombstone with its version.
    Delete,
}

impl Operation {
    /// `upsert` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
        }
    }
}

/// A record in the shape every consumer agrees on, whatever its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanonicalRecord {
    /// Source system (`hris`, `crm`, ...).
    pub source: String,
    /// The record's id in its source system.
    pub external_id: String,
    /// Canonical entity type (`employee`, `contact`, ...).
    pub entity_type: String,
    /// Monotonic version from the source: a newer record has a larger one.
    pub source_version: u64,
    /// Upsert or delete.
    pub operation: Operation,
    /// Normalized canonical fields (empty for a delete).
    pub fields: BTreeMap<String, Value>,
    /// Source attributes no mapping reads, kept unchanged, keyed by dotted path.
    pub unmapped: Map<String, Value>,
}

/// Why one field of a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldErrorCode {
    /// The record is not a JSON object.
    NotAnObject,
    /// A required field is absent, null or empty.
    Missing,
    /// The value has the wrong JSON type.
    WrongType,
    /// The value is longer than allowed.
    TooLong,
    /// Not an e-mail address.
    InvalidEmail,
    /// Not an ISO-8601 date.
    InvalidDate,
    /// Not an RFC 3339 timestamp.
    InvalidTimestamp,
    /// Not a usable version.
    InvalidVersion,
    /// A timestamp version further in the future than the tolerance allows.
    FutureVersion,
    /// A number DynamoDB cannot store (magnitude at or above 1e126, or below 1e-130).
    NumberOutOfRange,
    /// A number with more significant digits than DynamoDB keeps (38).
    TooManyDigits,
    /// Nested deeper than DynamoDB stores.
    TooDeep,
    /// Not one of the values the mapping knows.
    UnknownValue,
}

/// A field-level validation error. Messages describe the problem without repeating the
/// value, so they are safe to log and to return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Dotted path of the field in the source record (`properties.email`).
    pub field: String,
    /// Machine-readable reason.
    pub code: FieldErrorCode,
    /// What is wrong and what is expected.
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(pointer: &str, code: FieldErrorCode, message: impl Into<String>) -> Self {
        Self {
            field: dotted(pointer),
            code,
            message: message.into(),
        }
    }
}

/// The `unmapped` key of a JSON pointer: its segments (pointer escapes kept) joined by
/// `.`, with a `.` inside a segment escaped as `~2` (see [`crate::pointer::dotted_path`]).
pub fn unmapped_path(pointer: &str) -> String {
    pointer
        .trim_start_matches('/')
        .split('/')
        .fold(String::new(), |path, segment| {
            crate::pointer::dotted_path(&path, &segment.replace("~1", "/").replace("~0", "~"))
        })
}

/// `/properties/email` -> `properties.email`.
pub fn dotted(pointer: &str) -> String {
    pointer.trim_start_matches('/').replace('/', ".")
}

/// Refuses a record whose timestamp version lies more than `tolerance_seconds` after `now`
/// (Unix seconds). Such a version would win against every later correction and delete of
/// the record, freezing it. Integer versions carry no time and are not checked.
pub fn future_version_error(
    mapping: &Mapping,
    record: &CanonicalRecord,
    now: i64,
    tolerance_seconds: i64,
) -> Option<FieldError> {
    if mapping.source_version.kind != VersionKind::Timestamp {
        return None;
    }
    let limit_micros = now
        .saturating_add(tolerance_seconds)
        .saturating_mul(1_000_000);
    let limit = u64::try_from(limit_micros).unwrap_or(0);
    (record.source_version > limit).then(|| {
        let pointer = &mapping.source_version.from;
        FieldError::new(
            pointer,
            FieldErrorCode::FutureVersion,
            format!(
                "`{}` lies more than {tolerance_seconds} s in the future; send the time the record was last changed",
                dotted(pointer)
            ),
        )
    })
}

/// Deepest nesting of lists and objects accepted inside one attribute value: DynamoDB
/// stores 32 levels, of which the record item's `fields` / `unmapped` map takes one.
pub const MAX_VALUE_DEPTH: usize = 30;

/// Most significant digits DynamoDB keeps in a number.
pub const MAX_NUMBER_DIGITS: usize = 38;

/// Values of a canonical record that DynamoDB would refuse, one error per attribute:
/// numbers outside its range (magnitudes from 1e-130 to below 1e126, or zero), numbers
/// with more than [`MAX_NUMBER_DIGITS`] significant digits, and values nested deeper
/// than [`MAX_VALUE_DEPTH`]. Numbers are judged by their exact text (`serde_json` keeps
/// it), so an integer beyond 64 bits is stored exactly or refused, never rounded. Refusing them at ingest tells the sender,
/// instead of accepting a record the worker could only fail.
pub fn storage_errors(record: &CanonicalRecord) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let values = record
        .fields
        .iter()
        .map(|(name, value)| (name.as_str(), value))
        .chain(
            record
                .unmapped
                .iter()
                .map(|(name, value)| (name.as_str(), value)),
        );
    for (name, value) in values {
        if depth(value) > MAX_VALUE_DEPTH {
            errors.push(FieldError {
                field: name.to_string(),
                code: FieldErrorCode::TooDeep,
                message: format!(
                    "`{name}` is nested more than {MAX_VALUE_DEPTH} levels deep; flatten it"
                ),
            });
        } else if let Some(problem) = first_number_problem(value) {
            let (code, message) = match problem {
                NumberProblem::OutOfRange => (
                    FieldErrorCode::NumberOutOfRange,
                    format!("`{name}` holds a number outside what can be stored (magnitudes from 1e-130 to below 1e126); send it as a string"),
                ),
                NumberProblem::TooManyDigits => (
                    FieldErrorCode::TooManyDigits,
                    format!("`{name}` holds a number with more than {MAX_NUMBER_DIGITS} significant digits, more than can be stored exactly; send it as a string"),
                ),
            };
            errors.push(FieldError {
                field: name.to_string(),
                code,
                message,
            });
        }
    }
    errors
}

fn depth(value: &Value) -> usize {
    // Iterative, so a hostile nesting cannot exhaust the stack.
    let mut deepest = 0;
    let mut pending = vec![(value, 0_usize)];
    while let Some((value, level)) = pending.pop() {
        match value {
            Value::Array(items) => {
                deepest = deepest.max(level + 1);
                pending.extend(items.iter().map(|item| (item, level + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(level + 1);
                pending.extend(map.values().map(|item| (item, level + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Why DynamoDB would refuse a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberProblem {
    OutOfRange,
    TooManyDigits,
}

fn first_number_problem(value: &Value) -> Option<NumberProblem> {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Number(number) => {
                if let Some(problem) = number_problem(&number.to_string()) {
                    return Some(problem);
                }
            }
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    None
}

/// Judges a JSON number by its text (`-12.30e5`): its significant digits (leading and
/// trailing zeros apart) and the decimal magnitude of its first one.
fn number_problem(text: &str) -> Option<NumberProblem> {
    let unsigned = text.trim_start_matches('-');
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], &unsigned[at + 1..]),
        None => (unsigned, "0"),
    };
    let exponent: i64 =
        exponent
            .trim_start_matches('+')
            .parse()
            .unwrap_or(if exponent.starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            });
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: Vec<u8> = integer.bytes().chain(fraction.bytes()).collect();
    let Some(first) = digits.iter().position(|&d| d != b'0') else {
        return None; // zero
    };
    let last = digits.iter().rposition(|&d| d != b'0').unwrap_or(first);
    if last - first + 1 > MAX_NUMBER_DIGITS {
        return Some(NumberProblem::TooManyDigits);
    }
    // The first significant digit stands for 10^magnitude.
    let integer_len = i64::try_from(integer.len()).unwrap_or(i64::MAX);
    let first = i64::try_from(first).unwrap_or(i64::MAX);
    let magnitude = exponent.saturating_add(integer_len - 1 - first);
    (!(-130..126).contains(&magnitude)).then_some(NumberProblem::OutOfRange)
}

/// Normalizes a source record into the canonical record, or lists every field that is
/// wrong (not just the first).
pub fn normalize_record(
    mapping: &Mapping,
    raw: &Value,
) -> Result<CanonicalRecord, Vec<FieldError>> {
    let Some(object) = raw.as_object() else {
        return Err(vec![FieldError::new(
            "",
            FieldErrorCode::NotAnObject,
            format!("a {} record must be a JSON object", mapping.source),
        )]);
    };
    let mut errors = Vec::new();
    let external_id = read_external_id(mapping, raw)
        .map_err(|e| errors.push(e))
        .ok();
    let source_version = read_version(mapping, raw).map_err(|e| errors.push(e)).ok();
    let operation = match &mapping.delete_when {
        Some(rule)
            if mapping
                .paths
                .delete_when
                .as_ref()
                .and_then(|path| path.get(raw))
                == Some(&rule.equals) =>
        {
            Operation::Delete
        }
        _ => Operation::Upsert,
    };
    let mut fields = BTreeMap::new();
    let mut unmapped = Map::new();
    if operation == Operation::Upsert {
        for (field, path) in mapping.fields.iter().zip(&mapping.paths.fields) {
            let value = path.get(raw);
            let outcome = match field.kind {
                FieldKind::Text => normalize::text(&field.from, value),
                FieldKind::Email => normalize::email(&field.from, value),
                FieldKind::Phone => normalize::phone(&field.from, value, mapping.region),
                FieldKind::Date => normalize::date(&field.from, value),
                FieldKind::Timestamp => normalize::timestamp(&field.from, value),
                FieldKind::Enum => {
                    normalize::enumerated(&field.from, value, mapping.enum_lookup.get(&field.name))
                }
            };
            match outcome {
                Ok(Normalized::Value(value)) => {
                    fields.insert(field.name.clone(), value);
                }
                Ok(Normalized::Absent) if field.required => errors.push(FieldError::new(
                    &field.from,
                    FieldErrorCode::Missing,
                    format!("`{}` is required", dotted(&field.from)),
                )),
                Ok(Normalized::Absent) => {}
                Ok(Normalized::KeptRaw(raw_value)) => {
                    unmapped.insert(unmapped_path(&field.from), raw_value);
                }
                Err(error) => errors.push(error),
            }
        }
        mapping
            .paths
            .consumed
            .collect_unmapped(object, &mut unmapped);
    }
    match (external_id, source_version, errors.is_empty()) {
        (Some(external_id), Some(source_version), true) => Ok(CanonicalRecord {
            source: mapping.source.clone(),
            external_id,
            entity_type: mapping.entity_type.clone(),
            source_version,
            operation,
            fields,
            unmapped,
        }),
        _ => Err(errors),
    }
}

fn read_external_id(mapping: &Mapping, raw: &Value) -> Result<String, FieldError> {
    let pointer = &mapping.external_id;
    let id = match mapping.external_id_of(raw) {
        Some(Value::String(id)) => id.trim().to_string(),
        Some(Value::Number(id)) if id.is_u64() || id.is_i64() => id.to_string(),
        None | Some(Value::Null) => String::new(),
        Some(_) => {
            return Err(FieldError::new(
                pointer,
                FieldErrorCode::WrongType,
                format!("`{}` must be a string or an integer", dotted(pointer)),
            ))
        }
    };
    if id.is_empty() {
        return Err(FieldError::new(
            pointer,
            FieldErrorCode::Missing,
            format!("`{}` (the record's id) is required", dotted(pointer)),
        ));
    }
    if id.chars().count() > MAX_EXTERNAL_ID_CHARS || id.chars().any(char::is_control) {
        return Err(FieldError::new(
            pointer,
            FieldErrorCode::TooLong,
            format!(
                "`{}` must be at most {MAX_EXTERNAL_ID_CHARS} characters without control characters",
                dotted(pointer)
            ),
        ));
    }
    Ok(id)
}

fn read_version(mapping: &Mapping, raw: &Value) -> Result<u64, FieldError> {
    let pointer = &mapping.source_version.from;
    let value = mapping.paths.source_version.get(raw);
    if matches!(value, None | Some(Value::Null)) {
        return Err(FieldError::new(
            pointer,
            FieldErrorCode::Missing,
            format!("`{}` (the record's version) is required", dotted(pointer)),
        ));
    }
    match mapping.source_version.kind {
        VersionKind::Timestamp => normalize::timestamp_micros(pointer, value),
        VersionKind::Integer => match value {
            Some(Value::Number(number)) => number.as_u64(),
            Some(Value::String(text)) => text.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            FieldError::new(
                pointer,
                FieldErrorCode::InvalidVersion,
                format!(
                    "`{}` must be a non-negative integer version",
                    dotted(pointer)
                ),
            )
        }),
    }
}

#[cfg(test)]
mod storage_tests {
    use super::*;
    use serde_json::json;

    fn record(unmapped: Value) -> CanonicalRecord {
        CanonicalRecord {
            source: "crm".into(),
            external_id: "C1".into(),
            entity_type: "contact".into(),
            source_version: 1,
            operation: Operation::Upsert,
            fields: BTreeMap::new(),
            unmapped: serde_json::from_value(unmapped).unwrap(),
        }
    }

    #[test]
    fn numbers_dynamodb_refuses_are_named_per_field() {
        let errors = storage_errors(&record(json!({
            "ok": 1.5, "zero": 0.0, "big": 1e200, "tiny": [1e-200], "int": u64::MAX
        })));
        let fields: Vec<(&str, FieldErrorCode)> =
            errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            fields,
            vec![
                ("big", FieldErrorCode::NumberOutOfRange),
                ("tiny", FieldErrorCode::NumberOutOfRange)
            ]
        );
    }

    #[test]
    fn unmapped_keys_holding_dots_do_not_collide_with_nested_ones() {
        let mapping = crate::Mappings::builtin().unwrap();
        let crm = mapping.get("crm").unwrap();
        let raw = json!({
            "id": "7", "updatedAt": "2024-05-01T12:00:00Z",
            "properties": {"email": "a@example.com", "x": 1, "y.z": 3},
            "properties.x": 2,
            "a~b/c": 4,
        });
        let record = normalize_record(crm, &raw).unwrap();
        assert_eq!(record.unmapped["properties.x"], json!(1));
        assert_eq!(record.unmapped["properties~2x"], json!(2));
        assert_eq!(record.unmapped["properties.y~2z"], json!(3));
        assert_eq!(record.unmapped["a~0b~1c"], json!(4));
        assert_eq!(unmapped_path("/a.b/c~1d"), "a~2b.c~1d");
    }

    #[test]
    fn numbers_are_judged_by_their_exact_digits() {
        assert_eq!(number_problem("123456789012345678901234567890"), None);
        assert_eq!(number_problem(&"9".repeat(38)), None);
        assert_eq!(
            number_problem(&"9".repeat(39)),
            Some(NumberProblem::TooManyDigits)
        );
        // Zeros around the significant digits do not count.
        assert_eq!(number_problem(&format!("1{}", "0".repeat(100))), None);
        assert_eq!(
            number_problem("0.000000000000000000000000000000000000000012"),
            None
        );
        assert_eq!(number_problem("-1.5E+125"), None);
        assert_eq!(number_problem("1e126"), Some(NumberProblem::OutOfRange));
        assert_eq!(number_problem("9.99e125"), None);
        assert_eq!(number_problem("1e-130"), None);
        assert_eq!(number_problem("0.9e-130"), Some(NumberProblem::OutOfRange));
        assert_eq!(
            number_problem("1e99999999999999999999"),
            Some(NumberProblem::OutOfRange)
        );
        assert_eq!(number_problem("-0.0e-999"), None);
    }

    #[test]
    fn an_integer_beyond_64_bits_keeps_its_digits_into_storage() {
        let big: Value = serde_json::from_str(r#"{"n": 123456789012345678901234567890}"#).unwrap();
        let unmapped = record(big);
        assert!(storage_errors(&unmapped).is_empty());
        assert_eq!(
            crate::store::AttrValue::from_json(&unmapped.unmapped["n"]),
            crate::store::AttrValue::N("123456789012345678901234567890".into())
        );
        let too_precise: Value =
            serde_json::from_str(r#"{"n": 1234567890123456789012345678901234567890}"#).unwrap();
        let errors = storage_errors(&record(too_precise));
        assert_eq!(errors[0].field, "n");
        assert_eq!(errors[0].code, FieldErrorCode::TooManyDigits);
    }

    #[test]
    fn nesting_deeper_than_dynamodb_stores_is_refused() {
        let mut deep = json!("leaf");
        for _ in 0..MAX_VALUE_DEPTH {
            deep = json!([deep]);
        }
        assert!(storage_errors(&record(json!({ "a": deep.clone() }))).is_empty());
        let errors = storage_errors(&record(json!({ "a": [deep] })));
        assert_eq!(errors[0].code, FieldErrorCode::TooDeep);
    }
}
