//! What is sent to the downstream target: `PUT {DOWNSTREAM_URL}/records/{id}` with a JSON
//! body describing the canonical record (a delete is sent the same way, with
//! `"operation": "delete"` and no fields).

use serde::Serialize;

use crate::record::CanonicalRecord;

/// Header carrying the correlation id on every hop.
pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// Header carrying the idempotency key, so the target can deduplicate too.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Header carrying the record's source version, so the target can refuse (409 or 412) a
/// version older than one it holds.
pub const VERSION_HEADER: &str = "x-record-version";

/// The record's id at the target, `{source}:{external_id}` percent-encoded for a path.
pub fn target_id(record: &CanonicalRecord) -> String {
    percent_encode_segment(&format!("{}:{}", record.source, record.external_id))
}

/// The URL of the record at the target.
pub fn target_url(base_url: &str, record: &CanonicalRecord) -> String {
    format!(
        "{}/records/{}",
        base_url.trim_end_matches('/'),
        target_id(record)
    )
}

/// Encodes everything but RFC 3986 unreserved characters and `:`.
pub fn percent_encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[derive(Serialize)]
struct Body<'a> {
    idempotency_key: &'a str,
    #[serde(flatten)]
    record: &'a CanonicalRecord,
}

/// The JSON body of the PUT.
pub fn target_body(record: &CanonicalRecord, idempotency_key: &str) -> Vec<u8> {
    // Serializing maps with string keys cannot fail.
    serde_json::to_vec(&Body {
        idempotency_key,
        record,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Operation;

    #[test]
    fn ids_are_safe_path_segments() {
        let record = CanonicalRecord {
            source: "crm".into(),
            external_id: "a/b c".into(),
            entity_type: "contact".into(),
            source_version: 1,
            operation: Operation::Delete,
            fields: Default::default(),
            unmapped: Default::default(),
        };
        assert_eq!(
            target_url("http://t/", &record),
            "http://t/records/crm:a%2Fb%20c"
        );
        let body: serde_json::Value = serde_json::from_slice(&target_body(&record, "k")).unwrap();
        assert_eq!(body["operation"], "delete");
        assert_eq!(body["idempotency_key"], "k");
        assert_eq!(body["external_id"], "a/b c");
    }
}
