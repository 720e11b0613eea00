//! One message through the worker: read it, claim its idempotency key in the ledger,
//! write the records table (newer version wins), push downstream, and record the outcome
//! in the ledger.

use std::time::Instant;

use sync_core::classify::Failure;
use sync_core::envelope::{read_message, ReadableMessage, UnreadableMessage};
use sync_core::ledger::{self, claim_refusal, ClaimRefusal, ClaimRequest, Outcome};
use sync_core::retry::redrive_delay;
use sync_core::store::record_put;
use tracing::{info, warn, Instrument};

use crate::downstream::{PushStats, DEADLINE_MARGIN};
use crate::dynamo::{self, number_attr, string_attr, WriteError};
use crate::Worker;

/// How one message ended in this invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Written and pushed.
    Synced,
    /// Already processed (completed or failed before): skipped.
    Duplicate,
    /// Older than the stored version: not written, not pushed, completed.
    Stale,
    /// Failed for good; recorded in the ledger as `FAILED` with this reason.
    Failed(String),
    /// Not finished; handed back to the queue (a batch item failure) with this reason.
    Retry(String),
}

/// The outcome of one message with what it observed, for metrics.
#[derive(Debug)]
pub struct MessageReport {
    /// The SQS message id.
    pub message_id: String,
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
    /// The message body.
    pub body: String,
    /// The body read and normalized, or why it cannot be.
    pub read: Result<ReadableMessage, UnreadableMessage>,
}

impl Delivery {
    /// Reads a message body.
    pub fn read(worker: &Worker, message_id: String, body: String) -> Self {
        let read = read_message(&worker.mappings, &body);
        Self {
            message_id,
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
            let outcome = process_readable(worker, &readable, body, deadline, &mut stats)
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
        source,
        outcome,
        stats,
    }
}

fn log_outcome(outcome: &MessageOutcome) {
    match outcome {
        MessageOutcome::Synced => info!(outcome = "synced", "record synced"),
        MessageOutcome::Duplicate => info!(outcome = "duplicate", "duplicate delivery skipped"),
        MessageOutcome::Stale => info!(outcome = "stale", "older version skipped"),
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
    body: &str,
    deadline: Instant,
    stats: &mut PushStats,
) -> MessageOutcome {
    let config = &worker.config;
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining
        < config
            .downstream_timeout
            .min(std::time::Duration::from_secs(1))
            + DEADLINE_MARGIN
    {
        return MessageOutcome::Retry("no time left in this invocation".to_string());
    }
    let record = &readable.record;
    let key = readable.idempotency_key.as_str();
    let token = uuid::Uuid::new_v4().to_string();
    let now = now_unix();
    let claim = ledger::claim(&ClaimRequest {
        key,
        source: &record.source,
        external_id: &record.external_id,
        source_version: record.source_version,
        operation: record.operation.as_str(),
        correlation_id: &readable.message.correlation_id,
        body,
        claim_token: &token,
        now,
        lease_seconds: config.lease_seconds,
        expires_at: now + config.ledger_ttl_days * 86_400,
    });
    let attempts = match dynamo::update(&worker.dynamodb, &config.ledger_table, claim).await {
        Ok(updated) => number_attr(&updated, "attempts").unwrap_or(1),
        Err(WriteError::ConditionFailed(existing)) => {
            let existing = existing.unwrap_or_default();
            return match claim_refusal(
                string_attr(&existing, "state"),
                number_attr(&existing, "lease_until"),
                now,
            ) {
                ClaimRefusal::Duplicate => MessageOutcome::Duplicate,
                ClaimRefusal::HeldElsewhere => MessageOutcome::Retry(
                    "another invocation holds this record's lease".to_string(),
                ),
            };
        }
        Err(WriteError::Failed(failure)) => return MessageOutcome::Retry(failure.reason),
    };

    let put = record_put(
        record,
        key,
        &readable.message.correlation_id,
        &chrono::Utc::now().to_rfc3339(),
    );
    match dynamo::put(&worker.dynamodb, &config.records_table, put).await {
        Ok(()) => {}
        Err(WriteError::ConditionFailed(_)) => {
            return finish(
                worker,
                ledger::complete(key, &token, Outcome::Stale, now_unix()),
                MessageOutcome::Stale,
            )
            .await;
        }
        Err(WriteError::Failed(failure)) => {
            return settle_failure(worker, key, &token, attempts, failure).await
        }
    }

    match worker
        .downstream
        .push(
            record,
            key,
            &readable.message.correlation_id,
            deadline,
            stats,
        )
        .await
    {
        Ok(()) => {
            finish(
                worker,
                ledger::complete(key, &token, Outcome::Synced, now_unix()),
                MessageOutcome::Synced,
            )
            .await
        }
        Err(failure) => settle_failure(worker, key, &token, attempts, failure).await,
    }
}

/// Records a failure: permanent ones become `FAILED` (the message is then deleted from the
/// queue); retryable ones become `RETRY` with a backoff and the message goes back to the
/// queue.
async fn settle_failure(
    worker: &Worker,
    key: &str,
    token: &str,
    attempts: i64,
    failure: Failure,
) -> MessageOutcome {
    let now = now_unix();
    if failure.is_retryable() {
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        let next = now
            + i64::try_from(redrive_delay(attempts, failure.retry_after).as_secs()).unwrap_or(3600);
        let update = ledger::release_for_retry(key, token, &failure.reason, next, now);
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
