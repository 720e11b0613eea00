//! One message through the worker: read it, claim its idempotency key in the ledger,
//! write the records table (newer version wins), push downstream, and record the outcome
//! in the ledger.

use std::time::Instant;

use sync_core::classify::Failure;
use sync_core::envelope::{read_message, ReadableMessage, UnreadableMessage};
use sync_core::ledger::{self, claim_refusal, ClaimRefusal, ClaimRequest, Outcome};
use sync_core::push::{self, lease_refusal, LeaseRefusal};
use sync_core::store::{record_pk, record_write, write_refusal, WriteRefusal};
use tracing::{info, warn, Instrument};

use crate::downstream::{PushStats, Pushed, DEADLINE_MARGIN};
use crate::dynamo::{self, number_attr, string_attr, WriteError};
use crate::Worker;

/// How one message ended in this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Written and pushed.
    Synced,
    /// The record was sent again and processed before (completed or failed): skipped.
    Duplicate,
    /// The queue delivered the message that settled the record once more (delivery is at
    /// least once): skipped, and not a second record.
    Redelivered,
    /// Older than the stored version (or than the target's): not pushed, completed.
    Stale,
    /// The same version was stored with other content: not written, not pushed,
    /// completed with outcome `conflict`.
    Conflict,
    /// Failed for good; recorded in the ledger as `FAILED` with this reason.
    Failed(String),
    /// Not finished; handed back to the queue (a batch item failure) with this reason.
    Retry(String),
}

/// A received message's queue and receipt handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHandle {
    /// The queue's ARN (`eventSourceARN`).
    pub queue_arn: String,
    /// The receipt handle of this delivery.
    pub receipt_handle: String,
}

/// The outcome of one message with what it observed, for metrics.
#[derive(Debug)]
pub struct MessageReport {
    /// The SQS message id.
    pub message_id: String,
    /// The queue and receipt handle, when the event carried them.
    pub handle: Option<MessageHandle>,
    /// The record's source (`unknown` when the message could not be read).
    pub source: String,
    /// The outcome.
    pub outcome: MessageOutcome,
    /// Downstream observations.
    pub stats: PushStats,
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// One message of a batch, read.
#[derive(Debug)]
pub struct Delivery {
    /// The SQS message id.
    pub message_id: String,
    /// Where the message came from, to change its visibility: the queue's ARN and the
    /// message's receipt handle.
    pub handle: Option<MessageHandle>,
    /// The message body.
    pub body: String,
    /// The body read and normalized, or why it cannot be.
    pub read: Result<ReadableMessage, UnreadableMessage>,
}

impl Delivery {
    /// Reads a message body.
    pub fn read(
        worker: &Worker,
        message_id: String,
        handle: Option<MessageHandle>,
        body: String,
    ) -> Self {
        let read = read_message(&worker.mappings, &body);
        Self {
            message_id,
            handle,
            body,
            read,
        }
    }

    /// The record's source (`unknown` when the message could not be read).
    pub fn source(&self) -> String {
        match &self.read {
            Ok(readable) => readable.record.source.clone(),
            Err(unreadable) => unreadable
                .source
                .clone()
                .unwrap_or_else(|| "unknown".to_string()),
        }
    }

    /// The ledger key of what it delivers: the same for every delivery of one record.
    pub fn idempotency_key(&self) -> &str {
        match &self.read {
            Ok(readable) => &readable.idempotency_key,
            Err(unreadable) => &unreadable.idempotency_key,
        }
    }
}

/// Processes one read message before `deadline`.
pub async fn process_delivery(
    worker: &Worker,
    delivery: Delivery,
    deadline: Instant,
) -> MessageReport {
    let source = delivery.source();
    let Delivery {
        message_id,
        handle,
        body,
        read,
    } = delivery;
    let body = body.as_str();
    let mut stats = PushStats::default();
    let outcome = match read {
        Ok(readable) => {
            let span = tracing::info_span!(
                "message",
                correlation_id = %readable.message.correlation_id,
                source = %source,
                idempotency_key = %readable.idempotency_key,
            );
            let outcome =
                process_readable(worker, &readable, &message_id, body, deadline, &mut stats)
                    .instrument(span.clone())
                    .await;
            span.in_scope(|| log_outcome(&outcome));
            outcome
        }
        Err(unreadable) => {
            let now = now_unix();
            let update = ledger::record_unreadable(
                &unreadable.idempotency_key,
                &source,
                unreadable.correlation_id.as_deref().unwrap_or(""),
                body,
                &unreadable.reason,
                now,
                now + worker.config.ledger_ttl_days * 86_400,
            );
            let outcome =
                match dynamo::update(&worker.dynamodb, &worker.config.ledger_table, update).await {
                    Ok(_) => MessageOutcome::Failed(unreadable.reason.clone()),
                    Err(WriteError::ConditionFailed(_)) => MessageOutcome::Duplicate,
                    Err(WriteError::Failed(failure)) => MessageOutcome::Retry(failure.reason),
                };
            warn!(
                message_id = %message_id,
                idempotency_key = %unreadable.idempotency_key,
                reason = %unreadable.reason,
                "unreadable message recorded as FAILED"
            );
            outcome
        }
    };
    MessageReport {
        message_id,
        handle,
        source,
        outcome,
        stats,
    }
}

fn log_outcome(outcome: &MessageOutcome) {
    match outcome {
        MessageOutcome::Synced => info!(outcome = "synced", "record synced"),
        MessageOutcome::Duplicate => info!(outcome = "duplicate", "duplicate record skipped"),
        MessageOutcome::Redelivered => {
            info!(
                outcome = "redelivered",
                "message delivered again after it was settled; skipped"
            )
        }
        MessageOutcome::Stale => info!(outcome = "stale", "older version skipped"),
        MessageOutcome::Conflict => warn!(
            outcome = "conflict",
            "this version was stored before with other content; kept the first, skipped this one"
        ),
        MessageOutcome::Failed(reason) => {
            warn!(outcome = "failed", reason = %reason, "record failed permanently")
        }
        MessageOutcome::Retry(reason) => {
            warn!(outcome = "retry", reason = %reason, "record handed back for retry")
        }
    }
}

async fn process_readable(
    worker: &Worker,
    readable: &ReadableMessage,
    message_id: &str,
    body: &str,
    deadline: Instant,
    stats: &mut PushStats,
) -> MessageOutcome {
    let config = &worker.config;
    let record = &readable.record;
    let key = readable.idempotency_key.as_str();
    let token = uuid::Uuid::new_v4().to_string();
    let now = now_unix();
    let request = ClaimRequest {
        key,
        source: &record.source,
        external_id: &record.external_id,
        source_version: record.source_version,
        operation: record.operation.as_str(),
        correlation_id: &readable.message.correlation_id,
        body,
        claim_token: &token,
        message_id,
        now,
        lease_seconds: config.lease_seconds,
        expires_at: now + config.ledger_ttl_days * 86_400,
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining
        < config
            .downstream_timeout
            .min(std::time::Duration::from_secs(1))
            + DEADLINE_MARGIN
    {
        // Not claimed, but entered in the ledger, so that even a message that reaches the
        // DLQ this way is known to the reconciler.
        let enlist = ledger::enlist(&request, now + config.lease_seconds);
        if let Err(WriteError::Failed(failure)) =
            dynamo::update(&worker.dynamodb, &config.ledger_table, enlist).await
        {
            warn!(reason = %failure.reason, "could not enter the unclaimed record in the ledger");
        }
        return MessageOutcome::Retry("no time left in this invocation".to_string());
    }
    let attempts = match dynamo::update(
        &worker.dynamodb,
        &config.ledger_table,
        ledger::claim(&request),
    )
    .await
    {
        Ok(updated) => number_attr(&updated, "attempts").unwrap_or(1),
        Err(WriteError::ConditionFailed(existing)) => {
            let existing = existing.unwrap_or_default();
            return match claim_refusal(
                string_attr(&existing, "state"),
                number_attr(&existing, "lease_until"),
                number_attr(&existing, "not_before"),
                now,
            ) {
                ClaimRefusal::Duplicate
                    if string_attr(&existing, "message_id") == Some(message_id) =>
                {
                    MessageOutcome::Redelivered
                }
                ClaimRefusal::Duplicate => MessageOutcome::Duplicate,
                ClaimRefusal::HeldElsewhere => {
                    // Most often a repeat of the record being processed elsewhere: it is
                    // settled as a duplicate soon, so look again after the first backoff.
                    stats.retry_in = Some(config.backoff.base);
                    MessageOutcome::Retry(
                        "another invocation holds this record's lease".to_string(),
                    )
                }
                ClaimRefusal::NotYetDue(at) => {
                    stats.retry_in = Some(std::time::Duration::from_secs(
                        u64::try_from(at.saturating_sub(now)).unwrap_or(0),
                    ));
                    MessageOutcome::Retry(
                        "the record's retry backoff has not ended yet".to_string(),
                    )
                }
            };
        }
        Err(WriteError::Failed(failure)) => return MessageOutcome::Retry(failure.reason),
    };

    let write = record_write(
        record,
        key,
        &readable.content_digest,
        &readable.message.correlation_id,
        &chrono::Utc::now().to_rfc3339(),
    );
    match dynamo::update_record(&worker.dynamodb, &config.records_table, write).await {
        Ok(()) => {}
        Err(WriteError::ConditionFailed(stored)) => {
            let stored = stored.unwrap_or_default();
            let refusal = write_refusal(
                record,
                &readable.content_digest,
                number_attr(&stored, "source_version").and_then(|v| u64::try_from(v).ok()),
                string_attr(&stored, "operation"),
                string_attr(&stored, "content_digest"),
            );
            let (ledger_outcome, outcome) = match refusal {
                WriteRefusal::Stale => (Outcome::Stale, MessageOutcome::Stale),
                WriteRefusal::Conflict => (Outcome::Conflict, MessageOutcome::Conflict),
            };
            return finish(
                worker,
                ledger::complete(key, &token, ledger_outcome, now_unix()),
                outcome,
            )
            .await;
        }
        Err(WriteError::Failed(failure)) => {
            return settle_failure(worker, key, &token, attempts, failure, stats).await
        }
    }

    match push_in_order(worker, readable, &token, deadline, stats).await {
        Ok(Pushed::Accepted) => {
            finish(
                worker,
                ledger::complete(key, &token, Outcome::Synced, now_unix()),
                MessageOutcome::Synced,
            )
            .await
        }
        Ok(Pushed::Stale) => {
            finish(
                worker,
                ledger::complete(key, &token, Outcome::Stale, now_unix()),
                MessageOutcome::Stale,
            )
            .await
        }
        Err(failure) => settle_failure(worker, key, &token, attempts, failure, stats).await,
    }
}

/// Pushes the record under its push lease (see `sync_core::push`): waits while another
/// delivery of the same record pushes, and does not push at all once a newer version is
/// stored. The downstream therefore only ever receives a record's versions in increasing
/// order.
async fn push_in_order(
    worker: &Worker,
    readable: &ReadableMessage,
    token: &str,
    deadline: Instant,
    stats: &mut PushStats,
) -> Result<Pushed, Failure> {
    let config = &worker.config;
    let record = &readable.record;
    let key = readable.idempotency_key.as_str();
    let pk = record_pk(&record.source, &record.external_id);
    let sk = record.entity_type.as_str();
    let mut poll = LEASE_POLL_START;
    loop {
        let acquire = push::acquire(&pk, sk, key, token, now_unix(), config.lease_seconds);
        match dynamo::update_record(&worker.dynamodb, &config.records_table, acquire).await {
            Ok(()) => break,
            Err(WriteError::ConditionFailed(stored)) => {
                let stored = stored.unwrap_or_default();
                match lease_refusal(
                    key,
                    string_attr(&stored, "idempotency_key"),
                    string_attr(&stored, "pushed_key"),
                ) {
                    LeaseRefusal::Superseded => {
                        info!("a newer version was stored meanwhile; this one is not pushed");
                        return Ok(Pushed::Stale);
                    }
                    LeaseRefusal::AlreadyPushed => return Ok(Pushed::Accepted),
                    LeaseRefusal::Held => {
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        if remaining < poll + config.downstream_timeout + DEADLINE_MARGIN {
                            return Err(Failure::retryable(
                                "another delivery of this record was pushing it until the invocation's deadline",
                            ));
                        }
                        tokio::time::sleep(poll).await;
                        poll = (poll * 2).min(LEASE_POLL_MAX);
                    }
                }
            }
            Err(WriteError::Failed(failure)) => return Err(failure),
        }
    }
    let result = worker
        .downstream
        .push(
            record,
            key,
            &readable.message.correlation_id,
            deadline,
            stats,
        )
        .await;
    let release = match result {
        Ok(_) => push::release_pushed(&pk, sk, token, key, record.source_version),
        Err(_) => push::release(&pk, sk, token),
    };
    if let Err(error) =
        dynamo::update_record(&worker.dynamodb, &config.records_table, release).await
    {
        // The lease runs out on its own; until then newer versions of this record wait.
        warn!(error = ?error, "could not release the record's push lease");
    }
    result
}

/// First wait for a push lease another delivery holds; doubles up to [`LEASE_POLL_MAX`].
const LEASE_POLL_START: std::time::Duration = std::time::Duration::from_millis(20);
/// Longest wait between two looks at a held push lease.
const LEASE_POLL_MAX: std::time::Duration = std::time::Duration::from_millis(400);

/// Records a failure: permanent ones become `FAILED` (the message is then deleted from the
/// queue); retryable ones become `RETRY` with a backoff, the message goes back to the
/// queue and its visibility is set to the backoff.
async fn settle_failure(
    worker: &Worker,
    key: &str,
    token: &str,
    attempts: i64,
    failure: Failure,
    stats: &mut PushStats,
) -> MessageOutcome {
    let now = now_unix();
    if failure.is_retryable() {
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        let backoff = worker.config.backoff.delay(attempts, failure.retry_after);
        stats.retry_in = Some(backoff);
        let not_before = now.saturating_add(i64::try_from(backoff.as_secs()).unwrap_or(3600));
        let next = not_before.saturating_add(worker.config.lease_seconds);
        let update = ledger::release_for_retry(key, token, &failure.reason, not_before, next, now);
        finish(
            worker,
            update,
            MessageOutcome::Retry(failure.reason.clone()),
        )
        .await
    } else {
        let update = ledger::fail(key, token, &failure.reason, now);
        finish(
            worker,
            update,
            MessageOutcome::Failed(failure.reason.clone()),
        )
        .await
    }
}

/// Sends the final ledger update of a claimed item. If the ledger cannot be updated the
/// message goes back to the queue (the work is idempotent, so doing it again is safe);
/// if our claim was taken over after its lease ran out, the other holder records the
/// outcome and this delivery counts as a duplicate.
async fn finish(
    worker: &Worker,
    update: ledger::LedgerUpdate,
    outcome: MessageOutcome,
) -> MessageOutcome {
    match dynamo::update(&worker.dynamodb, &worker.config.ledger_table, update).await {
        Ok(_) => outcome,
        Err(WriteError::ConditionFailed(_)) => {
            warn!("the lease ran out and another invocation took the record over; leaving the outcome to it");
            MessageOutcome::Duplicate
        }
        Err(WriteError::Failed(failure)) => match outcome {
            MessageOutcome::Retry(reason) => MessageOutcome::Retry(reason),
            _ => MessageOutcome::Retry(format!(
                "could not record the outcome in the ledger: {}",
                failure.reason
            )),
        },
    }
}
