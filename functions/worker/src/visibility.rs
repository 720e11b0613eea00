//! Backoff on the queue: a message handed back for a retry has its visibility set to the
//! record's backoff (`ChangeMessageVisibilityBatch`, one call per ten hand-backs), so the
//! queue delivers it again when the ledger lets it be claimed, instead of after the
//! queue's visibility timeout, and retries do not burn through `maxReceiveCount`.

use std::collections::BTreeMap;

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;
use tracing::warn;

use crate::{MessageOutcome, MessageReport, Worker};

/// The longest visibility SQS accepts (12 hours).
pub const MAX_VISIBILITY_SECONDS: u64 = 43_200;

/// Sets the visibility of every handed-back message of a batch to its backoff. A failure
/// is logged and leaves the queue's visibility timeout in force: the ledger's
/// `not_before` still keeps the record from being claimed early.
pub async fn delay_hand_backs(worker: &Worker, reports: &[MessageReport]) {
    let mut by_queue: BTreeMap<&str, Vec<(&str, i32)>> = BTreeMap::new();
    for report in reports {
        let (MessageOutcome::Retry(_), Some(handle), Some(after)) =
            (&report.outcome, &report.handle, report.stats.retry_in)
        else {
            continue;
        };
        let seconds = after.as_secs().min(MAX_VISIBILITY_SECONDS);
        by_queue
            .entry(handle.queue_arn.as_str())
            .or_default()
            .push((
                handle.receipt_handle.as_str(),
                i32::try_from(seconds).unwrap_or(i32::MAX),
            ));
    }
    for (queue_arn, handles) in by_queue {
        let Some(queue_url) = queue_url(worker, queue_arn).await else {
            continue;
        };
        for chunk in handles.chunks(10) {
            let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(index, (receipt, seconds))| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(index.to_string())
                        .receipt_handle(*receipt)
                        .visibility_timeout(*seconds)
                        .build()
                        .ok()
                })
                .collect();
            let result = worker
                .sqs
                .change_message_visibility_batch()
                .queue_url(&queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            match result {
                Ok(output) if output.failed().is_empty() => {}
                Ok(output) => warn!(
                    failed = output.failed().len(),
                    "some handed-back messages keep the queue's visibility timeout"
                ),
                Err(error) => warn!(
                    error = %aws_sdk_sqs::error::DisplayErrorContext(&error),
                    "could not set the visibility of handed-back messages; they keep the queue's visibility timeout"
                ),
            }
        }
    }
}

/// The URL of the queue with `queue_arn` (`arn:aws:sqs:{region}:{account}:{name}`),
/// looked up once per instance.
async fn queue_url(worker: &Worker, queue_arn: &str) -> Option<String> {
    let mut urls = worker.queue_urls.lock().await;
    if let Some(url) = urls.get(queue_arn) {
        return Some(url.clone());
    }
    let mut parts = queue_arn.rsplitn(3, ':');
    let (Some(name), Some(account)) = (parts.next(), parts.next()) else {
        warn!(
            queue_arn,
            "the event's queue ARN is not arn:aws:sqs:{{region}}:{{account}}:{{name}}"
        );
        return None;
    };
    match worker
        .sqs
        .get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
    {
        Ok(output) => {
            let url = output.queue_url()?.to_string();
            urls.insert(queue_arn.to_string(), url.clone());
            Some(url)
        }
        Err(error) => {
            warn!(queue_arn, error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "could not look up the queue's URL");
            None
        }
    }
}
