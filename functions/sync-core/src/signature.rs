//! Request signatures: HMAC-SHA256 with the source's signing key over the canonical
//! string `v1\n{METHOD}\n{path}\n{source}\n{timestamp}\n{body}` (see [`canonical`]),
//! sent as `X-Sync-Signature: sha256=<hex>` with `X-Sync-Timestamp: <unix seconds>`. The
//! method, path and source are signed, so a signature made for one source's route does
//! not verify for another's, nor for another method or path. Verification is constant-time, tries every active key of the source (two during a
//! rotation) and refuses timestamps more than five minutes away, whatever their value
//! (no overflow). Error texts say what to fix without revealing configuration.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the signing time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-sync-timestamp";
/// Header carrying `sha256=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "x-sync-signature";
/// Largest accepted distance between the signing time and now, either way.
pub const MAX_CLOCK_SKEW_SECONDS: i64 = 300;
/// The first line of the canonical string: the version of the signing scheme.
pub const SCHEME: &str = "v1";

/// What a signature covers besides the timestamp and the body: the request line and the
/// source it posts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedRequest<'a> {
    /// The HTTP method (`POST`); signed upper-cased.
    pub method: &'a str,
    /// The request's path as sent, without the query string
    /// (`/integrations/hris/records`, with any stage prefix).
    pub path: &'a str,
    /// The source the request posts records for (`hris`).
    pub source: &'a str,
}

/// The canonical string a signature is the HMAC of:
/// `v1\n{METHOD}\n{path}\n{source}\n{timestamp}\n` followed by the body's bytes.
pub fn canonical(request: &SignedRequest<'_>, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut text = format!(
        "{SCHEME}\n{}\n{}\n{}\n{timestamp}\n",
        request.method.to_ascii_uppercase(),
        request.path,
        request.source
    )
    .into_bytes();
    text.extend_from_slice(body);
    text
}

type HmacSha256 = Hmac<Sha256>;

/// Why a request's signature is refused. Messages say what to fix, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No timestamp header.
    #[error("missing header X-Sync-Timestamp (the signing time in Unix seconds)")]
    MissingTimestamp,
    /// No signature header.
    #[error(
        "missing header X-Sync-Signature (sha256=<hex HMAC-SHA256 of \"v1\\n{{METHOD}}\\n{{path}}\\n{{source}}\\n{{timestamp}}\\n{{body}}\">)"
    )]
    MissingSignature,
    /// The timestamp is not an integer.
    #[error("X-Sync-Timestamp must be an integer number of Unix seconds")]
    MalformedTimestamp,
    /// The signature is not `sha256=` and 64 hex digits.
    #[error("X-Sync-Signature must be `sha256=` followed by 64 hex digits")]
    MalformedSignature,
    /// The timestamp is too old or too far ahead. The text does not tell the caller the
    /// server's clock.
    #[error("X-Sync-Timestamp is more than {MAX_CLOCK_SKEW_SECONDS} s away from the current time (sign each request when sending it)")]
    Expired {
        /// Signed time minus now, in seconds (saturated), for the logs only.
        skew_seconds: i64,
    },
    /// The signature does not match.
    #[error("X-Sync-Signature does not match the request; sign \"v1\\n{{METHOD}}\\n{{path}}\\n{{source}}\\n{{timestamp}}\\n{{body}}\" (this request's method, path, source, timestamp and body) with the source's signing key")]
    Mismatch,
    /// No key is configured for this source (for operators; see
    /// [`SignatureError::caller_message`] for what a caller is told).
    #[error("no signing key is configured for source `{0}`")]
    NoKeyForSource(String),
}

impl SignatureError {
    /// What an unauthenticated caller is told: a missing key reads as a mismatch, so the
    /// answer does not reveal which sources have keys.
    pub fn caller_message(&self) -> String {
        match self {
            SignatureError::NoKeyForSource(_) => SignatureError::Mismatch.to_string(),
            other => other.to_string(),
        }
    }
}

/// Signs `request` with `body` at `timestamp`: the value of `X-Sync-Signature`.
pub fn sign(key: &[u8], request: &SignedRequest<'_>, timestamp: i64, body: &[u8]) -> String {
    let canonical = canonical(request, &timestamp.to_string(), body);
    format!(
        "sha256={}",
        hex::encode(mac(key, &canonical).finalize().into_bytes())
    )
}

fn mac(key: &[u8], canonical: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(canonical);
    mac
}

/// Verifies a request's headers against `request` and `body` at time `now` (Unix
/// seconds) with `key`.
pub fn verify(
    key: &[u8],
    request: &SignedRequest<'_>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    verify_any(&[key.to_vec()], request, timestamp, signature, body, now)
}

/// Verifies a request's headers against `request` and `body` at time `now` (Unix
/// seconds): it is accepted if any of `keys` (the active keys of its source) signed it.
pub fn verify_any(
    keys: &[Vec<u8>],
    request: &SignedRequest<'_>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let timestamp = timestamp
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(SignatureError::MissingTimestamp)?;
    let signature = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::MissingSignature)?;
    let signed_at: i64 = timestamp
        .parse()
        .map_err(|_| SignatureError::MalformedTimestamp)?;
    let expected = signature
        .strip_prefix("sha256=")
        .filter(|hex| hex.len() == 64)
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(SignatureError::MalformedSignature)?;
    if signed_at.abs_diff(now) > MAX_CLOCK_SKEW_SECONDS.unsigned_abs() {
        return Err(SignatureError::Expired {
            skew_seconds: signed_at.saturating_sub(now),
        });
    }
    // verify_slice compares in constant time; every key is tried, so the time taken does
    // not tell which one matched.
    let canonical = canonical(request, timestamp, body);
    let mut matched = false;
    for key in keys {
        matched |= mac(key, &canonical).verify_slice(&expected).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The signing keys, from the secret's value: a plain string (one key for every source),
/// a JSON array of strings (keys for every source, during a rotation), or a JSON object
/// whose values are a key or an array of keys per source
/// (`{"hris": ["new", "old"], "crm": "..."}`). The first key listed is the one to sign
/// with; every key listed is accepted.
#[derive(Clone)]
pub enum SigningKeys {
    /// Keys for every source.
    Shared(Vec<Vec<u8>>),
    /// Keys per source; a source not listed has none.
    PerSource(BTreeMap<String, Vec<Vec<u8>>>),
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningKeys::Shared(_) => f.write_str("SigningKeys::Shared(<redacted>)"),
            SigningKeys::PerSource(keys) => {
                write!(
                    f,
                    "SigningKeys::PerSource({:?} <redacted>)",
                    keys.keys().collect::<Vec<_>>()
                )
            }
        }
    }
}

/// A secret value that holds no usable key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeysError {
    /// Empty value.
    #[error(
        "the signing secret is empty; store a random string or a JSON object of per-source keys"
    )]
    Empty,
    /// A JSON object with a value that is not a non-empty string or array of them.
    #[error("the signing secret is a JSON object but the key for `{0}` is not a non-empty string or array of non-empty strings")]
    BadSourceKey(String),
    /// A JSON array that is empty or holds something other than non-empty strings.
    #[error("the signing secret is a JSON array but not of non-empty strings")]
    BadKeyList,
}

/// The keys of a JSON string or array of strings; `None` when it is neither or holds an
/// empty one.
fn key_list(value: &serde_json::Value) -> Option<Vec<Vec<u8>>> {
    match value {
        serde_json::Value::String(key) if !key.is_empty() => Some(vec![key.as_bytes().to_vec()]),
        serde_json::Value::Array(keys) if !keys.is_empty() => keys
            .iter()
            .map(|key| {
                key.as_str()
                    .filter(|k| !k.is_empty())
                    .map(|k| k.as_bytes().to_vec())
            })
            .collect(),
        _ => None,
    }
}

impl SigningKeys {
    /// Reads the secret's value.
    pub fn parse(value: &str) -> Result<Self, SigningKeysError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(SigningKeysError::Empty);
        }
        if trimmed.starts_with('{') {
            if let Ok(serde_json::Value::Object(object)) = serde_json::from_str(trimmed) {
                let mut keys = BTreeMap::new();
                for (source, key) in object {
                    match key_list(&key) {
                        Some(list) => keys.insert(source, list),
                        None => return Err(SigningKeysError::BadSourceKey(source)),
                    };
                }
                return Ok(SigningKeys::PerSource(keys));
            }
        }
        if trimmed.starts_with('[') {
            if let Ok(list @ serde_json::Value::Array(_)) = serde_json::from_str(trimmed) {
                return key_list(&list)
                    .map(SigningKeys::Shared)
                    .ok_or(SigningKeysError::BadKeyList);
            }
        }
        Ok(SigningKeys::Shared(vec![trimmed.as_bytes().to_vec()]))
    }

    /// Every active key of `source` (never empty).
    pub fn keys_for(&self, source: &str) -> Result<&[Vec<u8>], SignatureError> {
        let keys = match self {
            SigningKeys::Shared(keys) => Some(keys),
            SigningKeys::PerSource(keys) => keys.get(source),
        };
        keys.filter(|keys| !keys.is_empty())
            .map(Vec::as_slice)
            .ok_or_else(|| SignatureError::NoKeyForSource(source.to_string()))
    }

    /// The key to sign with for `source`: the first one listed.
    pub fn key_for(&self, source: &str) -> Result<&[u8], SignatureError> {
        self.keys_for(source).and_then(|keys| {
            keys.first()
                .map(Vec::as_slice)
                .ok_or(SignatureError::Mismatch)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_714_564_800;
    const R: SignedRequest<'static> = SignedRequest {
        method: "POST",
        path: "/integrations/hris/records",
        source: "hris",
    };

    #[test]
    fn a_signed_body_verifies() {
        let signature = sign(b"k", &R, NOW, b"{}");
        assert!(verify(
            b"k",
            &R,
            Some(&NOW.to_string()),
            Some(&signature),
            b"{}",
            NOW + 10
        )
        .is_ok());
    }

    #[test]
    fn the_signature_matches_the_documented_openssl_recipe() {
        // printf 'v1\nPOST\n%s\n%s\n%s\n%s' /integrations/hris/records hris 1714564800 '{"a":1}' \
        //   | openssl dgst -sha256 -hmac 'secret'
        let signature = sign(b"secret", &R, NOW, br#"{"a":1}"#);
        assert_eq!(
            signature,
            "sha256=10beef5351dc0edcd193a7651275ffd1e482273df80da96e04cd7cf6e90a9031"
        );
    }

    #[test]
    fn a_signature_verifies_only_for_the_method_path_and_source_it_was_made_for() {
        let body = br#"{"records":[]}"#;
        let ts = NOW.to_string();
        let good = sign(b"k", &R, NOW, body);
        assert_eq!(verify(b"k", &R, Some(&ts), Some(&good), body, NOW), Ok(()));
        let lower_case = SignedRequest {
            method: "post",
            ..R
        };
        assert_eq!(
            verify(b"k", &lower_case, Some(&ts), Some(&good), body, NOW),
            Ok(())
        );
        let other_source = SignedRequest {
            path: "/integrations/crm/records",
            source: "crm",
            ..R
        };
        let other_source_same_path = SignedRequest { source: "crm", ..R };
        let other_path = SignedRequest {
            path: "/prod/integrations/hris/records",
            ..R
        };
        let other_method = SignedRequest { method: "PUT", ..R };
        for replayed in [
            other_source,
            other_source_same_path,
            other_path,
            other_method,
        ] {
            assert_eq!(
                verify(b"k", &replayed, Some(&ts), Some(&good), body, NOW),
                Err(SignatureError::Mismatch),
                "{replayed:?}"
            );
        }
    }

    #[test]
    fn the_canonical_string_is_the_documented_one() {
        assert_eq!(
            String::from_utf8(canonical(
                &SignedRequest {
                    method: "post",
                    ..R
                },
                "1",
                b"{}"
            ))
            .unwrap(),
            "v1\nPOST\n/integrations/hris/records\nhris\n1\n{}"
        );
    }

    #[test]
    fn each_bad_header_gets_its_own_error() {
        let body = b"{}";
        let good = sign(b"k", &R, NOW, body);
        let ts = NOW.to_string();
        assert_eq!(
            verify(b"k", &R, None, Some(&good), body, NOW),
            Err(SignatureError::MissingTimestamp)
        );
        assert_eq!(
            verify(b"k", &R, Some(&ts), None, body, NOW),
            Err(SignatureError::MissingSignature)
        );
        assert_eq!(
            verify(b"k", &R, Some("yesterday"), Some(&good), body, NOW),
            Err(SignatureError::MalformedTimestamp)
        );
        assert_eq!(
            verify(b"k", &R, Some(&ts), Some("md5=abc"), body, NOW),
            Err(SignatureError::MalformedSignature)
        );
        assert_eq!(
            verify(b"other", &R, Some(&ts), Some(&good), body, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"k", &R, Some(&ts), Some(&good), b"{ }", NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn timestamps_more_than_five_minutes_away_are_refused() {
        let old = NOW - 301;
        let signature = sign(b"k", &R, old, b"{}");
        assert_eq!(
            verify(
                b"k",
                &R,
                Some(&old.to_string()),
                Some(&signature),
                b"{}",
                NOW
            ),
            Err(SignatureError::Expired { skew_seconds: -301 })
        );
        let future = NOW + 301;
        let signature = sign(b"k", &R, future, b"{}");
        assert!(matches!(
            verify(
                b"k",
                &R,
                Some(&future.to_string()),
                Some(&signature),
                b"{}",
                NOW
            ),
            Err(SignatureError::Expired { skew_seconds: 301 })
        ));
        let edge = NOW - 300;
        let signature = sign(b"k", &R, edge, b"{}");
        assert!(verify(
            b"k",
            &R,
            Some(&edge.to_string()),
            Some(&signature),
            b"{}",
            NOW
        )
        .is_ok());
    }

    #[test]
    fn the_most_negative_timestamp_is_refused_without_overflow() {
        let signature = sign(b"k", &R, i64::MIN, b"{}");
        assert!(matches!(
            verify(
                b"k",
                &R,
                Some(&i64::MIN.to_string()),
                Some(&signature),
                b"{}",
                NOW
            ),
            Err(SignatureError::Expired { .. })
        ));
        let signature = sign(b"k", &R, i64::MAX, b"{}");
        assert!(matches!(
            verify(
                b"k",
                &R,
                Some(&i64::MAX.to_string()),
                Some(&signature),
                b"{}",
                -NOW
            ),
            Err(SignatureError::Expired { .. })
        ));
    }

    #[test]
    fn during_a_rotation_both_keys_verify() {
        let keys = SigningKeys::parse(r#"{"hris": ["new-key", "old-key"], "crm": "c"}"#).unwrap();
        let active = keys.keys_for("hris").unwrap();
        for key in [b"new-key".as_slice(), b"old-key"] {
            let signature = sign(key, &R, NOW, b"{}");
            assert_eq!(
                verify_any(
                    active,
                    &R,
                    Some(&NOW.to_string()),
                    Some(&signature),
                    b"{}",
                    NOW
                ),
                Ok(())
            );
        }
        let signature = sign(b"retired", &R, NOW, b"{}");
        assert_eq!(
            verify_any(
                active,
                &R,
                Some(&NOW.to_string()),
                Some(&signature),
                b"{}",
                NOW
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(keys.key_for("hris").unwrap(), b"new-key");
        let shared = SigningKeys::parse(r#"["a", "b"]"#).unwrap();
        assert_eq!(shared.keys_for("crm").unwrap().len(), 2);
        assert_eq!(
            SigningKeys::parse("[]").map(|_| ()),
            Err(SigningKeysError::BadKeyList)
        );
    }

    #[test]
    fn errors_reveal_neither_the_clock_nor_the_configured_sources() {
        let expired = SignatureError::Expired {
            skew_seconds: -1234,
        }
        .to_string();
        assert!(!expired.contains("1234"), "{expired}");
        assert_eq!(
            SignatureError::NoKeyForSource("erp".into()).caller_message(),
            SignatureError::Mismatch.to_string()
        );
    }

    #[test]
    fn secrets_are_shared_or_per_source() {
        let shared = SigningKeys::parse("  s3cret \n").unwrap();
        assert_eq!(shared.key_for("crm").unwrap(), b"s3cret");
        let per_source = SigningKeys::parse(r#"{"hris": "h-key"}"#).unwrap();
        assert_eq!(per_source.key_for("hris").unwrap(), b"h-key");
        assert_eq!(
            per_source.key_for("crm"),
            Err(SignatureError::NoKeyForSource("crm".into()))
        );
        assert!(!format!("{per_source:?}").contains("h-key"));
        assert!(matches!(
            SigningKeys::parse(""),
            Err(SigningKeysError::Empty)
        ));
        assert_eq!(
            SigningKeys::parse(r#"{"crm": 3}"#).map(|_| ()),
            Err(SigningKeysError::BadSourceKey("crm".into()))
        );
    }
}
