//! The ledger (idempotency table): one item per idempotency key, entered `ACCEPTED` by
//! ingest when it accepts the record (before the message is sent), then moving through
//! `IN_PROGRESS` -> `COMPLETED` | `RETRY` | `FAILED`. This module builds every conditional
//! update as plain data; the worker and the reconciler send them.
//!
//! `state_shard` (`{state}#{n}`, the `by-state-shard` index's partition key, see
//! [`STATE_SHARDS`]) is set with every change of `state`. `next_attempt_at` (the index's
//! sort key) always says when the reconciler
//! should look at the item again: acceptance plus `LEASE_SECONDS` while `ACCEPTED` (no
//! worker claimed it yet), the end of the lease while `IN_PROGRESS`, the end of the
//! backoff plus the queue's redelivery time in `RETRY`, the time of the last change in
//! `COMPLETED` and `FAILED`. `not_before` is when a `RETRY` item may be claimed again.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::store::AttrValue;

/// A ledger state, as stored in `state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LedgerState {
    /// Accepted by ingest, its message sent (or being sent); no worker claimed it yet.
    Accepted,
    /// A worker holds the item until `lease_until`.
    InProgress,
    /// Failed retryably; try again from `next_attempt_at`.
    Retry,
    /// Done: written and pushed (outcome `synced`) or stale (outcome `stale`).
    Completed,
    /// Failed permanently; `reason` says why. Not retried automatically.
    Failed,
}

impl LedgerState {
    /// Every state.
    pub const ALL: [LedgerState; 5] = [
        LedgerState::Accepted,
        LedgerState::InProgress,
        LedgerState::Retry,
        LedgerState::Completed,
        LedgerState::Failed,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Accepted => "ACCEPTED",
            LedgerState::InProgress => "IN_PROGRESS",
            LedgerState::Retry => "RETRY",
            LedgerState::Completed => "COMPLETED",
            LedgerState::Failed => "FAILED",
        }
    }

    /// Reads the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

/// How a completed item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written and pushed downstream.
    Synced,
    /// A newer version was already stored (or the target holds one); nothing pushed.
    Stale,
    /// The same version was stored with other content; nothing written or pushed.
    Conflict,
}

impl Outcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Synced => "synced",
            Outcome::Stale => "stale",
            Outcome::Conflict => "conflict",
        }
    }
}

/// A conditional `UpdateItem` on the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerUpdate {
    /// The item's `idempotency_key`.
    pub key: String,
    /// `UpdateExpression`.
    pub update: &'static str,
    /// `ConditionExpression`.
    pub condition: &'static str,
    /// `ExpressionAttributeNames` (shared: the same few sets serve every update).
    pub names: Arc<BTreeMap<String, String>>,
    /// `ExpressionAttributeValues`.
    pub values: BTreeMap<&'static str, AttrValue>,
}

/// Every attribute the ledger uses, aliased so no reserved word is a problem.
const NAMES: &[(&str, &str)] = &[
    ("#state", "state"),
    ("#next", "next_attempt_at"),
    ("#lease", "lease_until"),
    ("#token", "claim_token"),
    ("#attempts", "attempts"),
    ("#source", "source"),
    ("#external_id", "external_id"),
    ("#version", "source_version"),
    ("#operation", "operation"),
    ("#correlation", "correlation_id"),
    ("#body", "body"),
    ("#reason", "reason"),
    ("#outcome", "outcome"),
    ("#created", "created_at"),
    ("#updated", "updated_at"),
    ("#expires", "expires_at"),
    ("#key", "idempotency_key"),
    ("#redrives", "redrives"),
    ("#not_before", "not_before"),
    ("#message", "message_id"),
    ("#batch", "batch_id"),
    ("#shard", "state_shard"),
];

/// Shards of the `by-state-shard` index: each item's `state_shard` is `{state}#{n}`, with
/// `n` from its key, so the index's writes spread over `STATE_SHARDS` partitions per
/// state instead of one; the reconciler queries every shard.
pub const STATE_SHARDS: u32 = 8;

/// The shard (`0..STATE_SHARDS`) of an idempotency key (FNV-1a over its bytes).
pub fn shard_of(key: &str) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    u32::try_from(hash % u64::from(STATE_SHARDS)).unwrap_or(0)
}

/// The `state_shard` value of an item in `state` with `key`: `{STATE}#{shard}`.
pub fn state_shard(state: &str, key: &str) -> String {
    state_shard_value(state, shard_of(key))
}

/// The `state_shard` value of shard `shard` of `state`.
pub fn state_shard_value(state: &str, shard: u32) -> String {
    format!("{state}#{shard}")
}

fn names_for(update: &str, condition: &str) -> BTreeMap<String, String> {
    NAMES
        .iter()
        .filter(|(alias, _)| mentions(update, alias) || mentions(condition, alias))
        .map(|(alias, name)| ((*alias).to_string(), (*name).to_string()))
        .collect()
}

/// The attribute names an expression pair uses, worked out once per distinct pair (the
/// expressions are fixed texts, so a handful of entries ever exist).
fn cached_names(update: &'static str, condition: &'static str) -> Arc<BTreeMap<String, String>> {
    type Cache = std::sync::Mutex<Vec<(usize, usize, Arc<BTreeMap<String, String>>)>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(|| std::sync::Mutex::new(Vec::new()));
    let id = (update.as_ptr() as usize, condition.as_ptr() as usize);
    let mut entries = match cache.lock() {
        Ok(entries) => entries,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some((_, _, names)) = entries.iter().find(|(u, c, _)| (*u, *c) == id) {
        return Arc::clone(names);
    }
    let names = Arc::new(names_for(update, condition));
    entries.push((id.0, id.1, Arc::clone(&names)));
    names
}

/// Whether `expression` uses `alias` as a whole token (`#next` but not `#next_x`).
fn mentions(expression: &str, alias: &str) -> bool {
    expression.match_indices(alias).any(|(at, _)| {
        expression[at + alias.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

fn update(
    key: &str,
    update: &'static str,
    condition: &'static str,
    values: Vec<(&'static str, AttrValue)>,
) -> LedgerUpdate {
    let mut values: BTreeMap<&'static str, AttrValue> = values.into_iter().collect();
    // Every update that sets the state sets its index shard with it.
    if let Some(alias) = update
        .strip_prefix("SET #state = ")
        .and_then(|rest| rest.split(',').next())
    {
        if let Some(AttrValue::S(state)) = values.get(alias.trim()) {
            let shard = AttrValue::S(state_shard(state, key));
            values.insert(":shard", shard);
        }
    }
    LedgerUpdate {
        key: key.to_string(),
        update,
        condition,
        names: cached_names(update, condition),
        values,
    }
}

/// What a claim records about the item.
#[derive(Debug, Clone)]
pub struct ClaimRequest<'a> {
    /// Idempotency key.
    pub key: &'a str,
    /// Source.
    pub source: &'a str,
    /// External id.
    pub external_id: &'a str,
    /// Source version.
    pub source_version: u64,
    /// `upsert` or `delete`.
    pub operation: &'a str,
    /// Correlation id.
    pub correlation_id: &'a str,
    /// The queue message body, kept so the reconciler can re-drive the item.
    pub body: &'a str,
    /// Random token identifying this claim.
    pub claim_token: &'a str,
    /// The queue message delivering it: a later delivery of the same message is a
    /// redelivery, not a duplicate record.
    pub message_id: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
    /// Lease length in seconds.
    pub lease_seconds: i64,
    /// When the ledger entry may expire (TTL, Unix seconds).
    pub expires_at: i64,
}

/// Claims the key: succeeds when it is new, waiting for a retry whose backoff
/// (`not_before`) has passed, or held by a claim whose lease has run out. Fails
/// (condition) when it is completed or failed (a duplicate), still in its backoff, or held
/// by another invocation within its lease.
pub fn claim(request: &ClaimRequest<'_>) -> LedgerUpdate {
    let lease_until = request.now + request.lease_seconds;
    update(
        request.key,
        "SET #state = :in_progress, #shard = :shard, #lease = :lease, #next = :lease, #token = :token, \
         #attempts = if_not_exists(#attempts, :zero) + :one, #source = :source, \
         #external_id = :external_id, #version = :version, #operation = :operation, \
         #correlation = :correlation, #body = :body, #created = if_not_exists(#created, :now), \
         #updated = :now, #expires = :expires, #message = :message REMOVE #reason, #not_before",
        "attribute_not_exists(#key) OR #state = :accepted \
         OR (#state = :retry AND (attribute_not_exists(#not_before) OR #not_before <= :now)) \
         OR (#state = :in_progress AND #lease < :now)",
        vec![
            (
                ":in_progress",
                AttrValue::s(LedgerState::InProgress.as_str()),
            ),
            (":retry", AttrValue::s(LedgerState::Retry.as_str())),
            (":accepted", AttrValue::s(LedgerState::Accepted.as_str())),
            (":lease", AttrValue::n(lease_until)),
            (":token", AttrValue::s(request.claim_token)),
            (":zero", AttrValue::n(0)),
            (":one", AttrValue::n(1)),
            (":source", AttrValue::s(request.source)),
            (":external_id", AttrValue::s(request.external_id)),
            (":version", AttrValue::n(request.source_version)),
            (":operation", AttrValue::s(request.operation)),
            (":correlation", AttrValue::s(request.correlation_id)),
            (":body", AttrValue::s(request.body)),
            (":now", AttrValue::n(request.now)),
            (":expires", AttrValue::n(request.expires_at)),
            (":message", AttrValue::s(request.message_id)),
        ],
    )
}

/// What ingest records about a record it accepts.
#[derive(Debug, Clone)]
pub struct AcceptRequest<'a> {
    /// Idempotency key (the worker computes the same one from the message).
    pub key: &'a str,
    /// Source.
    pub source: &'a str,
    /// External id.
    pub external_id: &'a str,
    /// Source version.
    pub source_version: u64,
    /// `upsert` or `delete`.
    pub operation: &'a str,
    /// Correlation id.
    pub correlation_id: &'a str,
    /// The queue message body, so the reconciler can send it again.
    pub body: &'a str,
    /// The ingest request's batch id: a withdrawal removes only this request's entry.
    pub batch_id: &'a str,
    /// Now, Unix seconds.
    pub now: i64,
    /// When the reconciler looks at it if no worker claimed it by then (Unix seconds).
    pub next_attempt_at: i64,
    /// When the ledger entry may expire (TTL, Unix seconds).
    pub expires_at: i64,
}

/// Enters a record ingest accepts as `ACCEPTED`, with its body, before its message is
/// sent, so every accepted record is in the ledger from the moment it is accepted: one
/// whose message is never claimed (lost, or in the DLQ) is re-driven by the reconciler
/// from `next_attempt_at`. Refused (condition) when the key is in the ledger already: a
/// re-send of a known record, which the worker settles (usually as a duplicate).
pub fn accept(request: &AcceptRequest<'_>) -> LedgerUpdate {
    update(
        request.key,
        "SET #state = :accepted, #shard = :shard, #next = :next, #attempts = :zero, #source = :source, \
         #external_id = :external_id, #version = :version, #operation = :operation, \
         #correlation = :correlation, #body = :body, #batch = :batch, #created = :now, \
         #updated = :now, #expires = :expires",
        "attribute_not_exists(#key)",
        vec![
            (":accepted", AttrValue::s(LedgerState::Accepted.as_str())),
            (":next", AttrValue::n(request.next_attempt_at)),
            (":zero", AttrValue::n(0)),
            (":source", AttrValue::s(request.source)),
            (":external_id", AttrValue::s(request.external_id)),
            (":version", AttrValue::n(request.source_version)),
            (":operation", AttrValue::s(request.operation)),
            (":correlation", AttrValue::s(request.correlation_id)),
            (":body", AttrValue::s(request.body)),
            (":batch", AttrValue::s(request.batch_id)),
            (":now", AttrValue::n(request.now)),
            (":expires", AttrValue::n(request.expires_at)),
        ],
    )
}

/// A conditional `DeleteItem` on the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerDelete {
    /// The item's `idempotency_key`.
    pub key: String,
    /// `ConditionExpression`.
    pub condition: &'static str,
    /// `ExpressionAttributeNames`.
    pub names: Arc<BTreeMap<String, String>>,
    /// `ExpressionAttributeValues`.
    pub values: BTreeMap<&'static str, AttrValue>,
}

/// Removes the `ACCEPTED` entry of a record whose message the queue did not take (the
/// caller is told it was not accepted), unless a worker or another request has it since.
pub fn withdraw(key: &str, batch_id: &str) -> LedgerDelete {
    let entry = update(
        key,
        "",
        "#state = :accepted AND #batch = :batch",
        vec![
            (":accepted", AttrValue::s(LedgerState::Accepted.as_str())),
            (":batch", AttrValue::s(batch_id)),
        ],
    );
    LedgerDelete {
        key: entry.key,
        condition: entry.condition,
        names: entry.names,
        values: entry.values,
    }
}

/// Enters a delivery that will not be claimed now (no time left in the invocation) as
/// `RETRY`, due at once, with its body, unless the key is in the ledger already. Its
/// message goes back to the queue; if it ends in the DLQ instead, the reconciler still
/// finds it from `next_attempt_at`.
pub fn enlist(request: &ClaimRequest<'_>, next_attempt_at: i64) -> LedgerUpdate {
    update(
        request.key,
        "SET #state = :retry, #shard = :shard, #next = :next, #attempts = :zero, #source = :source, \
         #external_id = :external_id, #version = :version, #operation = :operation, \
         #correlation = :correlation, #body = :body, #created = :now, #updated = :now, \
         #expires = :expires",
        "attribute_not_exists(#key)",
        vec![
            (":retry", AttrValue::s(LedgerState::Retry.as_str())),
            (":next", AttrValue::n(next_attempt_at)),
            (":zero", AttrValue::n(0)),
            (":source", AttrValue::s(request.source)),
            (":external_id", AttrValue::s(request.external_id)),
            (":version", AttrValue::n(request.source_version)),
            (":operation", AttrValue::s(request.operation)),
            (":correlation", AttrValue::s(request.correlation_id)),
            (":body", AttrValue::s(request.body)),
            (":now", AttrValue::n(request.now)),
            (":expires", AttrValue::n(request.expires_at)),
        ],
    )
}

/// Why a claim was refused, read from the item as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimRefusal {
    /// Already completed or failed: this delivery is a duplicate.
    Duplicate,
    /// Another invocation holds it within its lease: try again later.
    HeldElsewhere,
    /// Waiting for a retry whose backoff ends at this time (Unix seconds).
    NotYetDue(i64),
}

/// Interprets the existing item's `state`, `lease_until` and `not_before` after a refused
/// claim.
pub fn claim_refusal(
    state: Option<&str>,
    lease_until: Option<i64>,
    not_before: Option<i64>,
    now: i64,
) -> ClaimRefusal {
    match state.and_then(LedgerState::parse) {
        Some(LedgerState::Completed | LedgerState::Failed) => ClaimRefusal::Duplicate,
        Some(LedgerState::Retry) => match not_before {
            Some(at) if at > now => ClaimRefusal::NotYetDue(at),
            _ => ClaimRefusal::HeldElsewhere,
        },
        Some(LedgerState::Accepted) => ClaimRefusal::HeldElsewhere,
        Some(LedgerState::InProgress) if lease_until.is_some_and(|lease| lease >= now) => {
            ClaimRefusal::HeldElsewhere
        }
        // The item changed between the write and this read: let the next delivery decide.
        _ => ClaimRefusal::HeldElsewhere,
    }
}

const HELD_BY_THIS_CLAIM: &str = "#state = :in_progress AND #token = :token";

/// Marks a claimed item completed; drops the body, which is no longer needed.
pub fn complete(key: &str, claim_token: &str, outcome: Outcome, now: i64) -> LedgerUpdate {
    update(
        key,
        "SET #state = :completed, #shard = :shard, #outcome = :outcome, #next = :now, #updated = :now \
         REMOVE #lease, #token, #body, #reason",
        HELD_BY_THIS_CLAIM,
        vec![
            (":completed", AttrValue::s(LedgerState::Completed.as_str())),
            (
                ":in_progress",
                AttrValue::s(LedgerState::InProgress.as_str()),
            ),
            (":outcome", AttrValue::s(outcome.as_str())),
            (":token", AttrValue::s(claim_token)),
            (":now", AttrValue::n(now)),
        ],
    )
}

/// Releases a claimed item after a retryable failure. It may be claimed again from
/// `not_before` (when the queue, whose message visibility is set to the same backoff,
/// delivers it again); the reconciler looks at it only from `next_attempt_at`, which is
/// later by the time the queue may take to redeliver, so it re-drives only what the queue
/// did not.
pub fn release_for_retry(
    key: &str,
    claim_token: &str,
    reason: &str,
    not_before: i64,
    next_attempt_at: i64,
    now: i64,
) -> LedgerUpdate {
    update(
        key,
        "SET #state = :retry, #shard = :shard, #reason = :reason, #not_before = :not_before, #next = :next, \
         #updated = :now REMOVE #lease, #token",
        HELD_BY_THIS_CLAIM,
        vec![
            (":retry", AttrValue::s(LedgerState::Retry.as_str())),
            (
                ":in_progress",
                AttrValue::s(LedgerState::InProgress.as_str()),
            ),
            (":reason", AttrValue::s(reason)),
            (":not_before", AttrValue::n(not_before)),
            (":next", AttrValue::n(next_attempt_at)),
            (":token", AttrValue::s(claim_token)),
            (":now", AttrValue::n(now)),
        ],
    )
}

/// Marks a claimed item failed for good, with the reason; the body stays for inspection.
pub fn fail(key: &str, claim_token: &str, reason: &str, now: i64) -> LedgerUpdate {
    update(
        key,
        "SET #state = :failed, #shard = :shard, #reason = :reason, #next = :now, #updated = :now REMOVE #lease, #token",
        HELD_BY_THIS_CLAIM,
        vec![
            (":failed", AttrValue::s(LedgerState::Failed.as_str())),
            (":in_progress", AttrValue::s(LedgerState::InProgress.as_str())),
            (":reason", AttrValue::s(reason)),
            (":token", AttrValue::s(claim_token)),
            (":now", AttrValue::n(now)),
        ],
    )
}

/// Records a message that can never be processed as `FAILED` with its reason and body.
/// Refused (condition) when the same message was recorded before: a duplicate.
pub fn record_unreadable(
    key: &str,
    source: &str,
    correlation_id: &str,
    body: &str,
    reason: &str,
    now: i64,
    expires_at: i64,
) -> LedgerUpdate {
    update(
        key,
        "SET #state = :failed, #shard = :shard, #source = :source, #correlation = :correlation, #body = :body, \
         #reason = :reason, #attempts = :one, #next = :now, #created = :now, #updated = :now, \
         #expires = :expires",
        "attribute_not_exists(#key)",
        vec![
            (":failed", AttrValue::s(LedgerState::Failed.as_str())),
            (":source", AttrValue::s(source)),
            (":correlation", AttrValue::s(correlation_id)),
            (":body", AttrValue::s(body)),
            (":reason", AttrValue::s(reason)),
            (":one", AttrValue::n(1)),
            (":now", AttrValue::n(now)),
            (":expires", AttrValue::n(expires_at)),
        ],
    )
}

/// Takes an item the reconciler found (stuck `IN_PROGRESS` past its lease, or `RETRY`
/// past its backoff) for re-driving: it becomes `RETRY` with its next look at
/// `next_attempt_at`. The condition repeats what the reconciler saw, so two reconcilers
/// (or a worker that got there first) never re-drive the same item twice.
pub fn take_for_redrive(
    key: &str,
    seen_state: LedgerState,
    seen_next_attempt_at: i64,
    next_attempt_at: i64,
    now: i64,
) -> LedgerUpdate {
    update(
        key,
        "SET #state = :retry, #shard = :shard, #next = :next, #updated = :now, \
         #redrives = if_not_exists(#redrives, :zero) + :one REMOVE #lease, #token, #not_before",
        "#state = :seen_state AND #next = :seen_next",
        vec![
            (":retry", AttrValue::s(LedgerState::Retry.as_str())),
            (":seen_state", AttrValue::s(seen_state.as_str())),
            (":seen_next", AttrValue::n(seen_next_attempt_at)),
            (":next", AttrValue::n(next_attempt_at)),
            (":now", AttrValue::n(now)),
            (":zero", AttrValue::n(0)),
            (":one", AttrValue::n(1)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ClaimRequest<'static> {
        ClaimRequest {
            key: "k",
            source: "hris",
            external_id: "E1",
            source_version: 5,
            operation: "upsert",
            correlation_id: "c",
            body: "{}",
            claim_token: "t",
            message_id: "m",
            now: 1000,
            lease_seconds: 60,
            expires_at: 9999,
        }
    }

    fn accept_request() -> AcceptRequest<'static> {
        AcceptRequest {
            key: "k",
            source: "hris",
            external_id: "E1",
            source_version: 5,
            operation: "upsert",
            correlation_id: "c",
            body: "{}",
            batch_id: "b",
            now: 1000,
            next_attempt_at: 1900,
            expires_at: 9999,
        }
    }

    #[test]
    fn an_accepted_record_is_entered_with_its_body_and_claimable_by_a_worker() {
        let entry = accept(&accept_request());
        assert_eq!(entry.values[":accepted"], AttrValue::s("ACCEPTED"));
        assert_eq!(entry.values[":body"], AttrValue::s("{}"));
        assert_eq!(entry.values[":next"], AttrValue::n(1900));
        assert_eq!(entry.condition, "attribute_not_exists(#key)");
        assert!(claim(&request()).condition.contains("#state = :accepted"));
        let withdrawal = withdraw("k", "b");
        assert_eq!(withdrawal.names.len(), 2);
        assert_eq!(withdrawal.values[":batch"], AttrValue::s("b"));
    }

    #[test]
    fn every_state_change_sets_the_index_shard_from_the_key() {
        let shard = state_shard("IN_PROGRESS", "k");
        assert_eq!(shard, format!("IN_PROGRESS#{}", shard_of("k")));
        assert_eq!(claim(&request()).values[":shard"], AttrValue::s(&shard));
        assert_eq!(
            complete("k", "t", Outcome::Synced, 1).values[":shard"],
            AttrValue::s(state_shard("COMPLETED", "k"))
        );
        assert_eq!(
            take_for_redrive("k", LedgerState::Accepted, 1, 2, 3).values[":shard"],
            AttrValue::s(state_shard("RETRY", "k"))
        );
        // Keys spread over every shard.
        let used: std::collections::BTreeSet<u32> =
            (0..200).map(|n| shard_of(&format!("key-{n}"))).collect();
        assert_eq!(used.len(), STATE_SHARDS as usize);
    }

    #[test]
    fn every_alias_used_is_declared_and_no_other() {
        let updates = [
            claim(&request()),
            accept(&accept_request()),
            enlist(&request(), 5),
            complete("k", "t", Outcome::Synced, 1),
            release_for_retry("k", "t", "r", 2, 3, 1),
            fail("k", "t", "r", 1),
            record_unreadable("k", "s", "c", "b", "r", 1, 2),
            take_for_redrive("k", LedgerState::Retry, 1, 2, 3),
        ];
        for update in updates {
            let text = format!("{} {}", update.update, update.condition);
            for token in text
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '#' || c == ':'))
            {
                if token.starts_with('#') {
                    assert!(
                        update.names.contains_key(token),
                        "{token} undeclared in {text}"
                    );
                }
                if token.starts_with(':') {
                    assert!(
                        update.values.contains_key(token),
                        "{token} has no value in {text}"
                    );
                }
            }
            for alias in update.names.keys() {
                assert!(
                    mentions(&text, alias),
                    "{alias} declared but unused in {text}"
                );
            }
            for value in update.values.keys() {
                assert!(
                    mentions(&text, value),
                    "{value} declared but unused in {text}"
                );
            }
        }
    }

    #[test]
    fn a_claim_holds_a_lease_and_keeps_the_body() {
        let update = claim(&request());
        assert_eq!(update.values[":lease"], AttrValue::n(1060));
        assert_eq!(update.values[":body"], AttrValue::s("{}"));
        assert!(update.condition.contains("#lease < :now"));
    }

    #[test]
    fn refusals_tell_duplicates_from_held_items() {
        assert_eq!(
            claim_refusal(Some("COMPLETED"), None, None, 10),
            ClaimRefusal::Duplicate
        );
        assert_eq!(
            claim_refusal(Some("FAILED"), None, None, 10),
            ClaimRefusal::Duplicate
        );
        assert_eq!(
            claim_refusal(Some("IN_PROGRESS"), Some(20), None, 10),
            ClaimRefusal::HeldElsewhere
        );
        assert_eq!(
            claim_refusal(Some("RETRY"), None, Some(40), 10),
            ClaimRefusal::NotYetDue(40)
        );
    }

    #[test]
    fn a_retry_is_claimable_only_after_its_backoff() {
        let update = claim(&request());
        assert!(
            update.condition.contains("#not_before <= :now"),
            "{}",
            update.condition
        );
        assert!(update.update.contains("REMOVE #reason, #not_before"));
        let release = release_for_retry("k", "t", "r", 130, 1030, 100);
        assert_eq!(release.values[":not_before"], AttrValue::n(130));
        assert_eq!(release.values[":next"], AttrValue::n(1030));
    }

    #[test]
    fn states_round_trip() {
        for state in LedgerState::ALL {
            assert_eq!(LedgerState::parse(state.as_str()), Some(state));
        }
        assert_eq!(LedgerState::parse("DONE"), None);
    }
}
