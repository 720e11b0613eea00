//! Queueing accepted records: `SendMessageBatch` with up to 10 entries (and at most
//! 256 KiB) a call; entries that fail are sent again, and those that still fail are
//! returned so the caller is told they were not accepted. Nothing is dropped silently.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use sync_core::envelope::{CORRELATION_ATTRIBUTE, SOURCE_ATTRIBUTE};

/// Entries per `SendMessageBatch` call (the SQS limit).
pub const MAX_ENTRIES_PER_CALL: usize = 10;
/// Total body bytes per call (the SQS limit for a batch is 256 KiB).
pub const MAX_BYTES_PER_CALL: usize = 256 * 1024;
/// Calls per batch before its remaining entries are reported as not queued.
pub const SEND_ATTEMPTS: u32 = 3;

/// A message to queue, identified by the record's index in the request.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Index of the record in the request.
    pub index: usize,
    /// Message body (the envelope JSON).
    pub body: String,
    /// Source, as a message attribute.
    pub source: String,
    /// Correlation id, as a message attribute.
    pub correlation_id: String,
}

/// Why a message was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotQueued {
    /// What the queue said.
    pub reason: String,
    /// Whether sending it again can succeed (false when the queue blamed the message).
    pub retryable: bool,
}

/// The size SQS counts for a message: its body plus every attribute's name, data type
/// and value.
pub fn message_size(body: &str, source: &str, correlation_id: &str) -> usize {
    let attribute = |name: &str, value: &str| name.len() + "String".len() + value.len();
    body.len()
        + attribute(CORRELATION_ATTRIBUTE, correlation_id)
        + attribute(SOURCE_ATTRIBUTE, source)
}

/// Sends `messages`; returns the indexes that could not be queued, with the reason.
pub async fn send_all(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &[Outgoing],
) -> BTreeMap<usize, NotQueued> {
    let retryable = |reason: String| NotQueued {
        reason,
        retryable: true,
    };
    let mut not_queued = BTreeMap::new();
    for chunk in chunks(messages) {
        let mut pending: Vec<&Outgoing> = chunk;
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let entries: Result<Vec<_>, _> = pending.iter().map(|m| entry(m)).collect();
            let entries = match entries {
                Ok(entries) => entries,
                Err(reason) => {
                    for message in pending.drain(..) {
                        not_queued.insert(message.index, retryable(reason.clone()));
                    }
                    break;
                }
            };
            let result = sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            let mut retry = Vec::new();
            match result {
                Ok(output) => {
                    for failed in output.failed() {
                        let Some(message) =
                            pending.iter().find(|m| m.index.to_string() == failed.id())
                        else {
                            continue;
                        };
                        let reason = format!("queue refused the message ({})", failed.code());
                        if failed.sender_fault() {
                            not_queued.insert(
                                message.index,
                                NotQueued {
                                    reason,
                                    retryable: false,
                                },
                            );
                        } else {
                            retry.push((*message, reason));
                        }
                    }
                }
                Err(error) => {
                    let reason = format!(
                        "queue unavailable ({})",
                        aws_sdk_sqs::error::DisplayErrorContext(&error)
                            .to_string()
                            .chars()
                            .take(200)
                            .collect::<String>()
                    );
                    retry = pending.iter().map(|m| (*m, reason.clone())).collect();
                }
            }
            if retry.is_empty() {
                break;
            }
            if attempt >= SEND_ATTEMPTS {
                for (message, reason) in retry {
                    not_queued.insert(message.index, retryable(reason));
                }
                break;
            }
            tracing::warn!(
                entries = retry.len(),
                attempt,
                "some records were not queued; sending them again"
            );
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            pending = retry.into_iter().map(|(message, _)| message).collect();
        }
    }
    not_queued
}

fn entry(message: &Outgoing) -> Result<SendMessageBatchRequestEntry, String> {
    let attribute = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|error| format!("could not build a message attribute: {error}"))
    };
    SendMessageBatchRequestEntry::builder()
        .id(message.index.to_string())
        .message_body(message.body.clone())
        .message_attributes(CORRELATION_ATTRIBUTE, attribute(&message.correlation_id)?)
        .message_attributes(SOURCE_ATTRIBUTE, attribute(&message.source)?)
        .build()
        .map_err(|error| format!("could not build a queue entry: {error}"))
}

/// Splits messages into calls of at most 10 entries and 256 KiB.
fn chunks(messages: &[Outgoing]) -> Vec<Vec<&Outgoing>> {
    let mut chunks: Vec<Vec<&Outgoing>> = Vec::new();
    let mut bytes = 0;
    for message in messages {
        let size = message_size(&message.body, &message.source, &message.correlation_id);
        let fits = chunks.last().is_some_and(|chunk| {
            chunk.len() < MAX_ENTRIES_PER_CALL && bytes + size <= MAX_BYTES_PER_CALL
        });
        if fits {
            if let Some(chunk) = chunks.last_mut() {
                chunk.push(message);
            }
            bytes += size;
        } else {
            chunks.push(vec![message]);
            bytes = size;
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outgoing(index: usize, size: usize) -> Outgoing {
        Outgoing {
            index,
            body: "x".repeat(size),
            source: "hris".into(),
            correlation_id: "c".into(),
        }
    }

    #[test]
    fn attributes_count_against_the_message_limit() {
        assert_eq!(
            message_size("abc", "hris", "c-1"),
            3 + ("correlation_id".len() + 6 + 3) + ("source".len() + 6 + 4)
        );
    }

    #[test]
    fn calls_hold_at_most_ten_entries_and_256_kib() {
        let small: Vec<Outgoing> = (0..25).map(|i| outgoing(i, 10)).collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        let large: Vec<Outgoing> = (0..4).map(|i| outgoing(i, 100 * 1024)).collect();
        let sizes: Vec<usize> = chunks(&large).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2]);
    }
}
