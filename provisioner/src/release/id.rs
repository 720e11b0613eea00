//! Release ids: `<commit time>-<revision>`, e.g. `20261201T121500Z-0123456789ab`, with
//! `-dirty-<content digest>` appended for a tree with uncommitted changes. Ids sort by
//! the commit they were built from, so "older" means "built from an earlier commit",
//! whenever it was published: a late pipeline for an older commit publishes an older id.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One release's id, validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReleaseId(String);

/// Why a text is not a release id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a release id: {reason}")]
pub struct InvalidReleaseId {
    pub text: String,
    pub reason: &'static str,
}

impl InvalidReleaseId {
    pub fn help(&self) -> String {
        "release ids look like 20261201T121500Z-0123456789ab (the commit's UTC time, then the \
         first 12 digits of its revision); `provisioner release list --env <ENV>` lists the \
         published ones"
            .into()
    }
}

const TIME_LEN: usize = 16; // 20261201T121500Z
const REVISION_LEN: usize = 12;
const DIRTY: &str = "-dirty-";
const DIGEST_LEN: usize = 8;

impl ReleaseId {
    /// The id of a build of `revision`, committed at `commit_time` (seconds since the
    /// epoch); `dirty_digest` (the bundle's content digest) for an uncommitted tree.
    pub fn new(commit_time: i64, revision: &str, dirty_digest: Option<&str>) -> Self {
        let time = chrono::DateTime::from_timestamp(commit_time, 0)
            .unwrap_or_default()
            .format("%Y%m%dT%H%M%SZ")
            .to_string();
        let revision: String = revision.chars().take(REVISION_LEN).collect();
        let mut id = format!("{time}-{revision}");
        if let Some(digest) = dirty_digest {
            id.push_str(DIRTY);
            id.extend(digest.chars().take(DIGEST_LEN));
        }
        Self(id)
    }

    pub fn parse(text: &str) -> Result<Self, InvalidReleaseId> {
        let invalid = |reason| InvalidReleaseId {
            text: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if !text.is_ascii() {
            return Err(invalid(
                "it holds characters other than ASCII letters, digits and `-`",
            ));
        }
        let bytes = text.as_bytes();
        if bytes.len() < TIME_LEN + 1 + REVISION_LEN {
            return Err(invalid("it is too short"));
        }
        let time = &text[..TIME_LEN];
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !(digits(&time[..8]) && &time[8..9] == "T" && digits(&time[9..15]) && &time[15..] == "Z")
        {
            return Err(invalid(
                "it does not start with a UTC time like 20261201T121500Z",
            ));
        }
        if chrono::NaiveDateTime::parse_from_str(&time[..15], "%Y%m%dT%H%M%S").is_err() {
            return Err(invalid("its time is not a real date and time"));
        }
        let rest = &text[TIME_LEN..];
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let Some(revision_and_more) = rest.strip_prefix('-') else {
            return Err(invalid("the time must be followed by `-` and the revision"));
        };
        let (revision, dirty) = match revision_and_more.split_once(DIRTY) {
            Some((revision, digest)) => (revision, Some(digest)),
            None => (revision_and_more, None),
        };
        if revision.len() != REVISION_LEN || !hex(revision) {
            return Err(invalid(
                "the revision must be 12 lower-case hexadecimal digits",
            ));
        }
        if let Some(digest) = dirty {
            if digest.len() != DIGEST_LEN || !hex(digest) {
                return Err(invalid(
                    "after `-dirty-` come 8 lower-case hexadecimal digits of the content digest",
                ));
            }
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The commit time part, which orders releases (`20261201T121500Z`).
    pub fn commit_time(&self) -> &str {
        &self.0[..TIME_LEN]
    }

    /// The short revision.
    pub fn revision(&self) -> &str {
        &self.0[TIME_LEN + 1..TIME_LEN + 1 + REVISION_LEN]
    }

    /// Built from a tree with uncommitted changes.
    pub fn is_dirty(&self) -> bool {
        self.0.contains(DIRTY)
    }

    /// Built from an earlier commit than `other` (same-commit builds are not older).
    pub fn is_older_than(&self, other: &ReleaseId) -> bool {
        self.commit_time() < other.commit_time()
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ReleaseId {
    type Error = InvalidReleaseId;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<ReleaseId> for String {
    fn from(id: ReleaseId) -> Self {
        id.0
    }
}

impl std::str::FromStr for ReleaseId {
    type Err = InvalidReleaseId;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_the_commit_time_and_revision_and_sort_by_commit() {
        let older = ReleaseId::new(1_764_590_100, "0123456789abcdef", None);
        assert_eq!(older.as_str(), "20251201T115500Z-0123456789ab");
        assert_eq!(older.revision(), "0123456789ab");
        let newer = ReleaseId::new(1_764_590_160, "ffffffffffff0000", None);
        assert!(older.is_older_than(&newer));
        assert!(!newer.is_older_than(&older));
        assert!(older < newer);
        let dirty = ReleaseId::new(1_764_590_100, "0123456789abcdef", Some("deadbeef99"));
        assert_eq!(
            dirty.as_str(),
            "20251201T115500Z-0123456789ab-dirty-deadbeef"
        );
        assert!(dirty.is_dirty());
        assert!(!dirty.is_older_than(&older), "same commit is not older");
        assert_eq!(ReleaseId::parse(dirty.as_str()).unwrap(), dirty);
    }

    #[test]
    fn malformed_ids_are_refused_with_the_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("latest", "too short"),
            ("2026-12-01T12:15:00Z-0123456789ab", "UTC time"),
            ("20261341T121500Z-0123456789ab", "real date"),
            ("20261201T121500Z_0123456789ab", "followed by `-`"),
            ("20261201T121500Z-0123456789AB", "hexadecimal"),
            ("20261201T121500Z-0123456789ab-dirty-xyz", "content digest"),
            ("20261201T121500Z-0123456789ab; rm -rf /", "hexadecimal"),
            ("2026120\u{20ac}T121500Z-0123456789ab", "ASCII"),
        ] {
            let error = ReleaseId::parse(text).unwrap_err();
            assert!(
                error.to_string().contains(reason),
                "{text}: {error} should mention {reason}"
            );
        }
    }
}
