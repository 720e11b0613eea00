//! The dead-letter queue: `dlq peek` shows what waits there (source, record id, version,
//! receive count, the ledger's last state and reason; the payload only when asked), and
//! `redrive` moves it back to the records queue with counts before and after.
//!
//! Redrive loses nothing and is safe to run twice, or while the pipeline runs: a message
//! is deleted from the dead-letter queue only after the records queue accepted its copy
//! (body and message attributes), and one that could not be copied is made visible again.
//! A crash between the two leaves the message in both queues, which the worker's
//! idempotency turns into a duplicate, never a loss. On AWS, without `--limit`, SQS's own
//! message move task does the moving; elsewhere (and with `--limit`) the
//! receive/send/delete loop does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use serde::Serialize;
use serde_json::Value;

use crate::config::Environment;
use crate::deploy::clients::AwsClients;
use crate::deploy::DeployError;
use crate::error::Error;

/// How long a peeked or moving message stays hidden from others.
const HOLD_SECONDS: i32 = 60;

/// The two queues of an environment.
#[derive(Debug, Clone)]
pub struct Queues {
    pub queue_url: String,
    pub queue_arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
}

/// Messages in one queue, as SQS approximates them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Depth {
    pub waiting: u64,
    pub in_flight: u64,
}

/// One dead-lettered message, as `peek` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Peeked {
    pub message_id: String,
    pub source: Option<String>,
    pub record_id: Option<String>,
    pub version: Option<u64>,
    /// How many times the records queue delivered it before it was dead-lettered.
    pub receive_count: Option<u64>,
    /// When it was first sent (RFC 3339).
    pub sent_at: Option<String>,
    /// The ledger's state and reason for it, when it has an item.
    pub ledger_state: Option<String>,
    pub ledger_reason: Option<String>,
    /// Why the message cannot be read as a record, when it cannot.
    pub unreadable: Option<String>,
    /// The message body, only with `--show-payload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
}

/// What `dlq peek` found.
#[derive(Debug, Clone, Serialize)]
pub struct PeekReport {
    pub env: String,
    pub dead_letter_queue: Depth,
    pub messages: Vec<Peeked>,
}

impl PeekReport {
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}: {} dead-lettered message(s) waiting, {} in flight; showing {}\n",
            self.env,
            self.dead_letter_queue.waiting,
            self.dead_letter_queue.in_flight,
            self.messages.len()
        );
        for m in &self.messages {
            text.push_str(&format!(
                "  {}  {}/{} v{}  received {}x  ledger: {}{}\n",
                m.message_id,
                m.source.as_deref().unwrap_or("?"),
                m.record_id.as_deref().unwrap_or("?"),
                m.version
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into()),
                m.receive_count
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "?".into()),
                m.ledger_state.as_deref().unwrap_or("no item"),
                m.ledger_reason
                    .as_deref()
                    .or(m.unreadable.as_deref())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
            if let Some(payload) = &m.payload {
                text.push_str(&format!("    payload: {payload}\n"));
            }
        }
        text
    }
}

/// What `redrive` did.
#[derive(Debug, Clone, Serialize)]
pub struct RedriveReport {
    pub env: String,
    pub dry_run: bool,
    /// `loop` or `move-task`.
    pub method: &'static str,
    pub before: QueuePair,
    /// Messages moved (or, with `--dry-run`, that would be).
    pub moved: u64,
    /// Messages the records queue refused, left in the dead-letter queue.
    pub failed: Vec<String>,
    pub after: QueuePair,
}

/// Both queues' depth at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct QueuePair {
    pub queue: Depth,
    pub dead_letter_queue: Depth,
}

impl RedriveReport {
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}: {} {} message(s) from the dead-letter queue to the records queue ({})\n",
            self.env,
            if self.dry_run { "would move" } else { "moved" },
            self.moved,
            self.method
        );
        text.push_str(&format!(
            "  before: queue {} waiting, {} in flight; dead-letter queue {} waiting, {} in flight\n",
            self.before.queue.waiting,
            self.before.queue.in_flight,
            self.before.dead_letter_queue.waiting,
            self.before.dead_letter_queue.in_flight
        ));
        text.push_str(&format!(
            "  after:  queue {} waiting, {} in flight; dead-letter queue {} waiting, {} in flight\n",
            self.after.queue.waiting,
            self.after.queue.in_flight,
            self.after.dead_letter_queue.waiting,
            self.after.dead_letter_queue.in_flight
        ));
        for failed in &self.failed {
            text.push_str(&format!(
                "  not moved (still in the dead-letter queue): {failed}\n"
            ));
        }
        text
    }
}

fn sqs_error(action: &str, error: impl std::fmt::Display) -> Error {
    Error::Other {
        message: format!("{action} failed: {error}"),
        help: "check the environment is deployed (`provisioner status`) and the credentials may \
               use its queues"
            .into(),
    }
}

/// The SQS client for `clients`' target.
pub fn sqs(clients: &AwsClients) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&clients.config)
}

/// Finds the environment's records queue and dead-letter queue.
pub async fn queues(sqs: &aws_sdk_sqs::Client, env: &Environment) -> Result<Queues, Error> {
    let url = |name: String| async move {
        sqs.get_queue_url()
            .queue_name(&name)
            .send()
            .await
            .map_err(|error| Error::Other {
                message: format!(
                    "queue {name} of `{}` not found: {}",
                    env.name,
                    DeployError::aws("GetQueueUrl", &error)
                ),
                help: format!(
                    "deploy the environment first (`provisioner deploy --env {}`)",
                    env.name
                ),
            })
            .map(|output| output.queue_url().unwrap_or_default().to_string())
    };
    let queue_url = url(env.names.queue.clone()).await?;
    let dlq_url = url(env.names.dead_letter_queue.clone()).await?;
    let arn = |url: String| async move {
        let output = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|error| {
                sqs_error(
                    "GetQueueAttributes",
                    DeployError::aws("GetQueueAttributes", &error),
                )
            })?;
        Ok::<_, Error>(
            output
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn))
                .cloned()
                .unwrap_or_default(),
        )
    };
    Ok(Queues {
        queue_arn: arn(queue_url.clone()).await?,
        dlq_arn: arn(dlq_url.clone()).await?,
        queue_url,
        dlq_url,
    })
}

/// A queue's approximate depth.
pub async fn depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<Depth, Error> {
    let output = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|error| {
            sqs_error(
                "GetQueueAttributes",
                DeployError::aws("GetQueueAttributes", &error),
            )
        })?;
    let get = |name: QueueAttributeName| {
        output
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Depth {
        waiting: get(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    })
}

async fn pair(sqs: &aws_sdk_sqs::Client, queues: &Queues) -> Result<QueuePair, Error> {
    Ok(QueuePair {
        queue: depth(sqs, &queues.queue_url).await?,
        dead_letter_queue: depth(sqs, &queues.dlq_url).await?,
    })
}

/// Receives up to `max` messages (at most 10) from `url`, hidden for `hold` seconds.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: i32,
    hold: i32,
) -> Result<Vec<Message>, Error> {
    let output = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max.clamp(1, 10))
        .visibility_timeout(hold)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|error| sqs_error("ReceiveMessage", DeployError::aws("ReceiveMessage", &error)))?;
    Ok(output.messages().to_vec())
}

/// Makes `messages` visible again at once.
async fn release(sqs: &aws_sdk_sqs::Client, url: &str, messages: &[&Message]) {
    for chunk in messages.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .set_receipt_handle(m.receipt_handle().map(str::to_string))
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        if let Err(error) = sqs
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            // They become visible again when their hold ends anyway.
            tracing::warn!("could not release peeked messages at once: {error}");
        }
    }
}

fn attribute(message: &Message, name: MessageSystemAttributeName) -> Option<String> {
    message.attributes().and_then(|a| a.get(&name)).cloned()
}

/// Shows up to `limit` dead-lettered messages without taking them off the queue.
pub async fn peek(
    clients: &AwsClients,
    env: &Environment,
    limit: usize,
    show_payload: bool,
) -> Result<PeekReport, Error> {
    let sqs = sqs(clients);
    let queues = queues(&sqs, env).await?;
    let dead_letter_queue = depth(&sqs, &queues.dlq_url).await?;
    let mappings = sync_core::mapping::Mappings::builtin().map_err(|error| Error::Other {
        message: format!("the built-in mappings do not load: {error}"),
        help: String::new(),
    })?;
    let mut seen = BTreeSet::new();
    let mut received: Vec<Message> = Vec::new();
    let mut empty_polls = 0;
    while received.len() < limit && empty_polls < 2 {
        let batch = receive(
            &sqs,
            &queues.dlq_url,
            (limit - received.len()).min(10) as i32,
            HOLD_SECONDS,
        )
        .await?;
        if batch.is_empty() {
            empty_polls += 1;
        }
        for message in batch {
            if seen.insert(message.message_id().unwrap_or_default().to_string()) {
                received.push(message);
            }
        }
    }
    let mut messages = Vec::new();
    for message in &received {
        let body = message.body().unwrap_or_default();
        let (source, record_id, version, key, unreadable) =
            match sync_core::envelope::read_message(&mappings, body) {
                Ok(readable) => (
                    Some(readable.record.source.clone()),
                    Some(readable.record.external_id.clone()),
                    Some(readable.record.source_version),
                    Some(readable.idempotency_key.clone()),
                    None,
                ),
                Err(unreadable) => (
                    unreadable.source.clone(),
                    None,
                    None,
                    Some(unreadable.idempotency_key.clone()),
                    Some(unreadable.reason.clone()),
                ),
            };
        let (ledger_state, ledger_reason) = match &key {
            Some(key) => ledger_item(clients, env, key).await?,
            None => (None, None),
        };
        messages.push(Peeked {
            message_id: message.message_id().unwrap_or_default().to_string(),
            source,
            record_id,
            version,
            receive_count: attribute(message, MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|c| c.parse().ok()),
            sent_at: attribute(message, MessageSystemAttributeName::SentTimestamp)
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(|ms| {
                    aws_smithy_types::DateTime::from_millis(ms)
                        .fmt(aws_smithy_types::date_time::Format::DateTime)
                        .ok()
                }),
            ledger_state,
            ledger_reason,
            unreadable,
            payload: show_payload.then(|| {
                serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()))
            }),
        });
    }
    let held: Vec<&Message> = received.iter().collect();
    release(&sqs, &queues.dlq_url, &held).await;
    Ok(PeekReport {
        env: env.name.clone(),
        dead_letter_queue,
        messages,
    })
}

/// The ledger's state and reason for `key`, when it has an item.
async fn ledger_item(
    clients: &AwsClients,
    env: &Environment,
    key: &str,
) -> Result<(Option<String>, Option<String>), Error> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let output = clients
        .dynamodb
        .get_item()
        .table_name(&env.names.ledger_table)
        .key("idempotency_key", AttributeValue::S(key.to_string()))
        .projection_expression("#s, reason")
        .expression_attribute_names("#s", "state")
        .send()
        .await
        .map_err(|error| {
            Error::from(DeployError::aws(
                format!("GetItem on {}", env.names.ledger_table),
                &error,
            ))
        })?;
    let text = |name: &str| {
        output
            .item()
            .and_then(|item| item.get(name))
            .and_then(|value| value.as_s().ok())
            .cloned()
    };
    Ok((text("state"), text("reason")))
}

/// Moves up to `limit` dead-lettered messages back to the records queue (all, without a
/// limit). `dry_run` counts what would move and moves nothing.
pub async fn redrive(
    clients: &AwsClients,
    env: &Environment,
    limit: Option<u64>,
    dry_run: bool,
) -> Result<RedriveReport, Error> {
    let use_move_task = limit.is_none() && env.settings.endpoint_url.is_none();
    redrive_on(
        &sqs(clients),
        env,
        limit,
        dry_run,
        use_move_task.then_some(Duration::from_secs(2)),
    )
    .await
}

/// [`redrive`] with the SQS client given; `move_task_every` set uses SQS's message move
/// task (polled that often) instead of the loop.
pub async fn redrive_on(
    sqs: &aws_sdk_sqs::Client,
    env: &Environment,
    limit: Option<u64>,
    dry_run: bool,
    move_task_every: Option<Duration>,
) -> Result<RedriveReport, Error> {
    let sqs = sqs.clone();
    let queues = queues(&sqs, env).await?;
    let before = pair(&sqs, &queues).await?;
    let use_move_task = move_task_every.is_some();
    let method = if use_move_task { "move-task" } else { "loop" };
    if dry_run {
        let waiting = before.dead_letter_queue.waiting;
        return Ok(RedriveReport {
            env: env.name.clone(),
            dry_run,
            method,
            before,
            moved: limit.map_or(waiting, |l| l.min(waiting)),
            failed: Vec::new(),
            after: before,
        });
    }
    let (moved, failed) = if use_move_task {
        (
            move_task(&sqs, &queues, move_task_every.unwrap_or_default()).await?,
            Vec::new(),
        )
    } else {
        move_loop(&sqs, &queues, limit.unwrap_or(u64::MAX)).await?
    };
    let after = pair(&sqs, &queues).await?;
    Ok(RedriveReport {
        env: env.name.clone(),
        dry_run,
        method,
        before,
        moved,
        failed,
        after,
    })
}

/// Receive, send, delete: a message leaves the dead-letter queue only once the records
/// queue holds its copy.
async fn move_loop(
    sqs: &aws_sdk_sqs::Client,
    queues: &Queues,
    limit: u64,
) -> Result<(u64, Vec<String>), Error> {
    let mut moved = 0u64;
    let mut failed = BTreeMap::new();
    let mut empty_polls = 0;
    while moved < limit && empty_polls < 2 {
        let want = (limit - moved).min(10) as i32;
        let batch = receive(sqs, &queues.dlq_url, want, HOLD_SECONDS).await?;
        if batch.is_empty() {
            empty_polls += 1;
            continue;
        }
        empty_polls = 0;
        let entries: Vec<SendMessageBatchRequestEntry> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body().unwrap_or_default())
                    .set_message_attributes(m.message_attributes().cloned())
                    .build()
                    .ok()
            })
            .collect();
        let sent = sqs
            .send_message_batch()
            .queue_url(&queues.queue_url)
            .set_entries(Some(entries))
            .send()
            .await;
        let (ok_ids, refused): (BTreeSet<String>, Vec<(String, String)>) = match sent {
            Ok(output) => (
                output
                    .successful()
                    .iter()
                    .map(|e| e.id().to_string())
                    .collect(),
                output
                    .failed()
                    .iter()
                    .map(|e| {
                        (
                            e.id().to_string(),
                            format!("{}: {}", e.code(), e.message().unwrap_or_default()),
                        )
                    })
                    .collect(),
            ),
            Err(error) => {
                let all: Vec<&Message> = batch.iter().collect();
                release(sqs, &queues.dlq_url, &all).await;
                return Err(sqs_error(
                    "SendMessageBatch to the records queue",
                    DeployError::aws("SendMessageBatch", &error),
                ));
            }
        };
        type Numbered<'a> = Vec<(usize, &'a Message)>;
        let (done, keep): (Numbered, Numbered) = batch
            .iter()
            .enumerate()
            .partition(|(i, _)| ok_ids.contains(&i.to_string()));
        for (id, why) in refused {
            if let Some(message) = id.parse::<usize>().ok().and_then(|i| batch.get(i)) {
                failed.insert(
                    message.message_id().unwrap_or_default().to_string(),
                    why.clone(),
                );
            }
        }
        let kept: Vec<&Message> = keep.iter().map(|(_, m)| *m).collect();
        release(sqs, &queues.dlq_url, &kept).await;
        if !done.is_empty() {
            let entries: Vec<DeleteMessageBatchRequestEntry> = done
                .iter()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .set_receipt_handle(m.receipt_handle().map(str::to_string))
                        .build()
                        .ok()
                })
                .collect();
            sqs.delete_message_batch()
                .queue_url(&queues.dlq_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|error| {
                    sqs_error(
                        "DeleteMessageBatch on the dead-letter queue (the moved messages are \
                         in both queues; the worker treats the copies as duplicates)",
                        DeployError::aws("DeleteMessageBatch", &error),
                    )
                })?;
        }
        moved += done.len() as u64;
        if !failed.is_empty() && done.is_empty() {
            // The records queue refuses everything: stop instead of spinning.
            break;
        }
    }
    Ok((
        moved,
        failed
            .into_iter()
            .map(|(id, why)| format!("{id}: {why}"))
            .collect(),
    ))
}

/// SQS's message move task from the dead-letter queue to the records queue, waited for.
async fn move_task(
    sqs: &aws_sdk_sqs::Client,
    queues: &Queues,
    every: Duration,
) -> Result<u64, Error> {
    let started = sqs
        .start_message_move_task()
        .source_arn(&queues.dlq_arn)
        .destination_arn(&queues.queue_arn)
        .send()
        .await
        .map_err(|error| {
            sqs_error(
                "StartMessageMoveTask",
                DeployError::aws("StartMessageMoveTask", &error),
            )
        })?;
    let handle = started.task_handle().unwrap_or_default().to_string();
    loop {
        tokio::time::sleep(every).await;
        let tasks = sqs
            .list_message_move_tasks()
            .source_arn(&queues.dlq_arn)
            .send()
            .await
            .map_err(|error| {
                sqs_error(
                    "ListMessageMoveTasks",
                    DeployError::aws("ListMessageMoveTasks", &error),
                )
            })?;
        let task = tasks
            .results()
            .iter()
            .find(|t| t.task_handle().is_none_or(|h| h == handle));
        let Some(task) = task else { continue };
        match task.status().unwrap_or_default() {
            "COMPLETED" => return Ok(task.approximate_number_of_messages_moved().max(0) as u64),
            "FAILED" | "CANCELLED" => {
                return Err(Error::Other {
                    message: format!(
                        "the message move task ended {}: {}",
                        task.status().unwrap_or_default(),
                        task.failure_reason().unwrap_or("no reason given")
                    ),
                    help: "run `provisioner redrive` again (it moves what is left), or with \
                           --limit to use the receive/send/delete loop"
                        .into(),
                })
            }
            _ => {}
        }
    }
}
