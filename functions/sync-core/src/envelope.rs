//! The queue message between ingest and worker: the source record as received, with the
//! source, correlation id and batch id; and how the worker reads it back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::idempotency::{content_digest, idempotency_key, unreadable_message_key};
use crate::mapping::Mappings;
use crate::record::{normalize_record, CanonicalRecord};

/// The message format this code writes and reads.
pub const MESSAGE_FORMAT: u32 = 1;
/// SQS message attribute holding the correlation id.
pub const CORRELATION_ATTRIBUTE: &str = "correlation_id";
/// SQS message attribute holding the source.
pub const SOURCE_ATTRIBUTE: &str = "source";

/// One record on the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueMessage {
    /// [`MESSAGE_FORMAT`].
    pub format: u32,
    /// Source system.
    pub source: String,
    /// Correlation id of the request that brought the record.
    pub correlation_id: String,
    /// Id of the ingest request (all its records share it).
    pub batch_id: String,
    /// When ingest received it (RFC 3339).
    pub received_at: String,
    /// The source record, unchanged.
    pub record: Value,
}

/// A message the worker can process.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadableMessage {
    /// The message.
    pub message: QueueMessage,
    /// Its normalized record.
    pub record: CanonicalRecord,
    /// Its idempotency key.
    pub idempotency_key: String,
    /// The digest of its canonical content (part of the key).
    pub content_digest: String,
}

/// A message that can never be processed (a poison message): its key is derived from
/// its bytes so that redeliveries find the same ledger entry.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadableMessage {
    /// Ledger key.
    pub idempotency_key: String,
    /// The source, when the envelope could be read.
    pub source: Option<String>,
    /// The correlation id, when the envelope could be read.
    pub correlation_id: Option<String>,
    /// Why it cannot be processed (no payload values).
    pub reason: String,
}

/// Reads and normalizes a message body.
pub fn read_message(mappings: &Mappings, body: &str) -> Result<ReadableMessage, UnreadableMessage> {
    let unreadable = |source: Option<String>, correlation_id: Option<String>, reason: String| {
        UnreadableMessage {
            idempotency_key: unreadable_message_key(body),
            source,
            correlation_id,
            reason,
        }
    };
    let message: QueueMessage = serde_json::from_str(body).map_err(|error| {
        unreadable(
            None,
            None,
            format!(
                "the message is not a record envelope: {}",
                error_category(&error)
            ),
        )
    })?;
    let source = Some(message.source.clone());
    let correlation = Some(message.correlation_id.clone());
    if message.format != MESSAGE_FORMAT {
        return Err(unreadable(
            source,
            correlation,
            format!(
                "message format {} is not supported (expected {MESSAGE_FORMAT})",
                message.format
            ),
        ));
    }
    let Some(mapping) = mappings.get(&message.source) else {
        return Err(unreadable(
            source,
            correlation,
            format!(
                "unknown source `{}`; known: {}",
                message.source,
                mappings.sources().join(", ")
            ),
        ));
    };
    match normalize_record(mapping, &message.record) {
        Ok(record) => {
            let digest = content_digest(&record);
            Ok(ReadableMessage {
                idempotency_key: idempotency_key(
                    &record.source,
                    &record.external_id,
                    record.source_version,
                    record.operation,
                    &digest,
                ),
                content_digest: digest,
                record,
                message,
            })
        }
        Err(errors) => {
            let fields: Vec<String> = errors
                .iter()
                .map(|e| format!("{} ({:?})", e.field, e.code))
                .collect();
            Err(unreadable(
                source,
                correlation,
                format!("the record is invalid: {}", fields.join(", ")),
            ))
        }
    }
}

/// The kind of a JSON error without its excerpt of the input.
fn error_category(error: &serde_json::Error) -> String {
    let kind = match error.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "missing or mistyped envelope field",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} at line {} column {}", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(source: &str, record: Value) -> String {
        serde_json::to_string(&QueueMessage {
            format: MESSAGE_FORMAT,
            source: source.into(),
            correlation_id: "c-1".into(),
            batch_id: "b-1".into(),
            received_at: "2024-05-01T00:00:00Z".into(),
            record,
        })
        .unwrap()
    }

    #[test]
    fn a_valid_message_gives_its_record_and_key() {
        let mappings = Mappings::builtin().unwrap();
        let record = json!({"id": "C1", "updatedAt": "2024-05-01T00:00:00Z", "properties": {"email": "X@Y.io"}});
        let read = read_message(&mappings, &body("crm", record)).unwrap();
        assert_eq!(read.record.fields["email"], json!("x@y.io"));
        assert_eq!(
            read.idempotency_key,
            crate::idempotency::record_key(&read.record)
        );
    }

    #[test]
    fn poison_messages_get_a_stable_key_and_a_reason_without_values() {
        let mappings = Mappings::builtin().unwrap();
        let first = read_message(&mappings, "not json at all").unwrap_err();
        let again = read_message(&mappings, "not json at all").unwrap_err();
        assert_eq!(first.idempotency_key, again.idempotency_key);
        assert!(first.reason.contains("invalid JSON"), "{}", first.reason);
        let unknown = read_message(&mappings, &body("erp", json!({}))).unwrap_err();
        assert!(
            unknown.reason.contains("known: crm, hris"),
            "{}",
            unknown.reason
        );
        let secret_email = "private.person@example.com";
        let invalid = read_message(
            &mappings,
            &body(
                "crm",
                json!({"id": "C1", "properties": {"email": secret_email}}),
            ),
        )
        .unwrap_err();
        assert!(invalid.reason.contains("updatedAt"), "{}", invalid.reason);
        assert!(!invalid.reason.contains(secret_email));
    }
}
