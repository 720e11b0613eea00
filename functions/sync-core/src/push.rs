//! The push lease: how pushes of one record to the downstream are serialized and kept
//! moving forward, whatever the number of workers.
//!
//! The lease lives on the record's own item in the records table (`push_token`,
//! `push_lease_until`), beside the marker of what was last pushed (`pushed_key`,
//! `pushed_version`). A worker may push version *v* of a record only while it holds the
//! lease, and it takes the lease only on condition that *v* is still the version stored
//! (its idempotency key is the item's) and was not pushed already. Since the stored
//! version only moves forward and one push at a time is in flight, the downstream receives
//! the versions of a record in increasing order: a version that lost the race to a newer
//! one is never pushed after it. The lease runs for `LEASE_SECONDS`, longer than an
//! invocation, so a lease taken over after its holder vanished has no call of the holder
//! still in flight.

use std::collections::BTreeMap;

use crate::store::{AttrValue, RecordUpdate};

const LEASE_NAMES: [(&str, &str); 6] = [
    ("#version", "source_version"),
    ("#key", "idempotency_key"),
    ("#pushed", "pushed_key"),
    ("#pushed_version", "pushed_version"),
    ("#lease", "push_lease_until"),
    ("#token", "push_token"),
];

fn names(used: &[&str]) -> BTreeMap<&'static str, &'static str> {
    LEASE_NAMES
        .into_iter()
        .filter(|(alias, _)| used.contains(alias))
        .collect()
}

/// Takes the push lease of the record item `pk`/`sk` for the version with `key`: refused
/// unless that version is the one stored, was not pushed yet, and nobody else holds a
/// lease that is still running.
pub fn acquire(
    pk: &str,
    sk: &str,
    key: &str,
    token: &str,
    now: i64,
    lease_seconds: i64,
) -> RecordUpdate {
    RecordUpdate {
        pk: pk.to_string(),
        sk: sk.to_string(),
        update: "SET #token = :token, #lease = :lease",
        condition: "#key = :key AND (attribute_not_exists(#pushed) OR #pushed <> :key) \
             AND (attribute_not_exists(#lease) OR #lease < :now OR #token = :token)",
        names: names(&["#token", "#lease", "#key", "#pushed"]),
        values: BTreeMap::from([
            (":token", AttrValue::s(token)),
            (":lease", AttrValue::n(now.saturating_add(lease_seconds))),
            (":key", AttrValue::s(key)),
            (":now", AttrValue::n(now)),
        ]),
    }
}

/// Gives the lease back after a push of `key` at `version` that the downstream took (or
/// answered that it already holds as new or newer): the version is marked pushed.
pub fn release_pushed(pk: &str, sk: &str, token: &str, key: &str, version: u64) -> RecordUpdate {
    RecordUpdate {
        pk: pk.to_string(),
        sk: sk.to_string(),
        update: "SET #pushed = :key, #pushed_version = :version REMOVE #lease, #token",
        condition: "#token = :token",
        names: names(&["#pushed", "#pushed_version", "#lease", "#token"]),
        values: BTreeMap::from([
            (":token", AttrValue::s(token)),
            (":key", AttrValue::s(key)),
            (":version", AttrValue::n(version)),
        ]),
    }
}

/// Gives the lease back without marking anything pushed (the push failed).
pub fn release(pk: &str, sk: &str, token: &str) -> RecordUpdate {
    RecordUpdate {
        pk: pk.to_string(),
        sk: sk.to_string(),
        update: "REMOVE #lease, #token",
        condition: "#token = :token",
        names: names(&["#lease", "#token"]),
        values: BTreeMap::from([(":token", AttrValue::s(token))]),
    }
}

/// Why the lease was refused, read from the record item as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRefusal {
    /// A newer version (or a delete of the same version) is stored now: this one must
    /// never be pushed; the newer one's own delivery pushes it.
    Superseded,
    /// This version was pushed already (by an earlier attempt whose outcome was not
    /// recorded).
    AlreadyPushed,
    /// Another delivery holds the lease and is pushing: wait for it.
    Held,
}

/// Interprets the stored item after a refused [`acquire`] of `key`.
pub fn lease_refusal(
    key: &str,
    stored_key: Option<&str>,
    pushed_key: Option<&str>,
) -> LeaseRefusal {
    if stored_key != Some(key) {
        LeaseRefusal::Superseded
    } else if pushed_key == Some(key) {
        LeaseRefusal::AlreadyPushed
    } else {
        LeaseRefusal::Held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_alias_and_value_is_declared_and_used() {
        for update in [
            acquire("p", "s", "k", "t", 10, 60),
            release_pushed("p", "s", "t", "k", 5),
            release("p", "s", "t"),
        ] {
            let text = format!("{} {}", update.update, update.condition);
            for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || "_#:".contains(c))) {
                if token.starts_with('#') {
                    assert!(update.names.contains_key(token), "{token} in {text}");
                }
                if token.starts_with(':') {
                    assert!(update.values.contains_key(token), "{token} in {text}");
                }
            }
            for alias in update.names.keys().chain(update.values.keys()) {
                assert!(text.contains(alias), "{alias} unused in {text}");
            }
        }
    }

    #[test]
    fn a_lease_needs_the_stored_version_and_a_free_or_expired_lease() {
        let update = acquire("p", "s", "k", "t", 10, 60);
        assert_eq!(update.values[":lease"], AttrValue::n(70));
        assert!(update.condition.starts_with("#key = :key"));
        assert!(update.condition.contains("#lease < :now"));
    }

    #[test]
    fn refusals_tell_superseded_from_pushed_from_held() {
        assert_eq!(
            lease_refusal("k5", Some("k6"), None),
            LeaseRefusal::Superseded
        );
        assert_eq!(lease_refusal("k5", None, None), LeaseRefusal::Superseded);
        assert_eq!(
            lease_refusal("k5", Some("k5"), Some("k5")),
            LeaseRefusal::AlreadyPushed
        );
        assert_eq!(
            lease_refusal("k5", Some("k5"), Some("k4")),
            LeaseRefusal::Held
        );
    }
}
