//! The idempotency key of a record delivery: the same source record (same source, id,
//! version and operation) always gets the same key, however often it is delivered.

use sha2::{Digest, Sha256};

use crate::record::{CanonicalRecord, Operation};

/// `sha256` (lower-case hex) over source, external id, source version and operation.
/// Each part is length-prefixed so that no two different tuples hash the same input.
pub fn idempotency_key(
    source: &str,
    external_id: &str,
    source_version: u64,
    operation: Operation,
) -> String {
    let mut hasher = Sha256::new();
    let version = source_version.to_string();
    for part in [source, external_id, version.as_str(), operation.as_str()] {
        hasher.update(part.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(part.as_bytes());
        hasher.update(b";");
    }
    hex::encode(hasher.finalize())
}

/// The key of a canonical record.
pub fn record_key(record: &CanonicalRecord) -> String {
    idempotency_key(
        &record.source,
        &record.external_id,
        record.source_version,
        record.operation,
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

    #[test]
    fn the_key_is_stable_and_depends_on_every_part() {
        let key = idempotency_key("hris", "E1", 7, Operation::Upsert);
        assert_eq!(key.len(), 64);
        assert!(key
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_eq!(key, idempotency_key("hris", "E1", 7, Operation::Upsert));
        assert_ne!(key, idempotency_key("crm", "E1", 7, Operation::Upsert));
        assert_ne!(key, idempotency_key("hris", "E2", 7, Operation::Upsert));
        assert_ne!(key, idempotency_key("hris", "E1", 8, Operation::Upsert));
        assert_ne!(key, idempotency_key("hris", "E1", 7, Operation::Delete));
    }

    #[test]
    fn moving_characters_between_parts_changes_the_key() {
        assert_ne!(
            idempotency_key("hr", "isE1", 7, Operation::Upsert),
            idempotency_key("hris", "E1", 7, Operation::Upsert)
        );
    }
}
