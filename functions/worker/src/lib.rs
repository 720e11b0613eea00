//! The worker function: consumes SQS batches of records. For each message it claims the
//! record's idempotency key in the ledger, writes the records table (only a newer source
//! version wins; deletes leave a tombstone), pushes the record downstream under its push
//! lease (one push of a record at a time, never an older version after a newer one) and a
//! rate limit, and records the outcome. Retryable failures come back as batch item
//! failures with their message's visibility set to the backoff; permanent ones are
//! recorded as `FAILED` with their reason and leave the queue.

pub mod config;
pub mod downstream;
pub mod dynamo;
pub mod process;
pub mod visibility;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::stream::{self, StreamExt};
use sync_core::breaker::CircuitBreaker;
use sync_core::metrics::{names, Metrics, Unit};
use sync_core::rate_limit::TokenBucket;
use sync_core::Mappings;

pub use config::WorkerConfig;
pub use downstream::Downstream;
pub use process::{Delivery, MessageHandle, MessageOutcome, MessageReport};

/// What the handler needs, built once per cold start.
#[derive(Debug)]
pub struct Worker {
    /// DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SQS client (message visibility of hand-backs).
    pub sqs: aws_sdk_sqs::Client,
    /// Queue URLs by queue ARN, looked up once.
    pub queue_urls: tokio::sync::Mutex<HashMap<String, String>>,
    /// The downstream target.
    pub downstream: Downstream,
    /// The source mappings.
    pub mappings: Mappings,
    /// Settings.
    pub config: WorkerConfig,
}

impl Worker {
    /// A worker with a fresh rate limiter (this instance's share of the limit) and a
    /// closed circuit breaker. Fails only if no HTTP client can be built (TLS set-up).
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        mappings: Mappings,
        config: WorkerConfig,
    ) -> Result<Self, reqwest::Error> {
        let (rate, burst) = config.instance_rate_limit();
        let downstream = Downstream {
            http: Downstream::client(config.downstream_timeout)?,
            base_url: config.downstream_url.clone(),
            timeout: config.downstream_timeout,
            retry: config.retry,
            limiter: tokio::sync::Mutex::new(TokenBucket::new(rate, burst, Instant::now())),
            breaker: std::sync::Mutex::new(CircuitBreaker::new(
                config.breaker_threshold,
                config.breaker_cooldown,
            )),
        };
        Ok(Self {
            dynamodb,
            sqs,
            queue_urls: tokio::sync::Mutex::new(HashMap::new()),
            downstream,
            mappings,
            config,
        })
    }
}

/// The outcome of one batch.
/// Groups the deliveries of a batch by record (idempotency key), in batch order.
///
/// Deliveries of one record run one after the other: the first claims the record and
/// finishes it, and the next ones find it done and count as duplicates at once. Run side by
/// side, all but one would find it held by the other and come back only after the queue's
/// visibility timeout.
fn same_record_together(deliveries: impl Iterator<Item = Delivery>) -> Vec<Vec<Delivery>> {
    let mut groups: Vec<Vec<Delivery>> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    for delivery in deliveries {
        match group_of.get(delivery.idempotency_key()) {
            Some(&group) => groups[group].push(delivery),
            None => {
                group_of.insert(delivery.idempotency_key().to_string(), groups.len());
                groups.push(vec![delivery]);
            }
        }
    }
    groups
}

/// Processes the deliveries of one record in turn. Once one is handed back for a retry,
/// the others are handed back with it rather than tried again at once.
async fn process_in_turn(
    worker: &Worker,
    deliveries: Vec<Delivery>,
    deadline: Instant,
) -> Vec<MessageReport> {
    let mut reports: Vec<MessageReport> = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let earlier_retry = reports.iter().find_map(|report| match &report.outcome {
            MessageOutcome::Retry(reason) => Some(reason.clone()),
            _ => None,
        });
        let report = match earlier_retry {
            Some(reason) => MessageReport {
                source: delivery.source(),
                message_id: delivery.message_id,
                handle: delivery.handle,
                outcome: MessageOutcome::Retry(format!(
                    "another delivery of this record in the batch is being retried: {reason}"
                )),
                stats: Default::default(),
            },
            None => process::process_delivery(worker, delivery, deadline).await,
        };
        let report = match (earlier_retry_in(&reports), report) {
            (Some(after), mut report) if report.stats.retry_in.is_none() => {
                report.stats.retry_in = Some(after);
                report
            }
            (_, report) => report,
        };
        reports.push(report);
    }
    reports
}

/// The backoff of an earlier hand-back of the same record in the batch.
fn earlier_retry_in(reports: &[MessageReport]) -> Option<Duration> {
    reports.iter().find_map(|report| match report.outcome {
        MessageOutcome::Retry(_) => report.stats.retry_in,
        _ => None,
    })
}

#[derive(Debug, Default)]
pub struct BatchReport {
    /// What to answer to Lambda: the messages to deliver again.
    pub response: SqsBatchResponse,
    /// Every message's outcome.
    pub messages: Vec<MessageReport>,
}

impl BatchReport {
    /// How many messages ended with an outcome matching `predicate`.
    pub fn count(&self, predicate: impl Fn(&MessageOutcome) -> bool) -> usize {
        self.messages
            .iter()
            .filter(|m| predicate(&m.outcome))
            .count()
    }
}

/// Processes a batch before `deadline` and writes its metrics.
pub async fn handle_batch(worker: &Worker, event: SqsEvent, deadline: Instant) -> BatchReport {
    let deliveries = event
        .records
        .into_iter()
        .enumerate()
        .map(|(index, message)| {
            let message_id = message
                .message_id
                .unwrap_or_else(|| format!("message-{index}"));
            let handle = match (message.event_source_arn, message.receipt_handle) {
                (Some(queue_arn), Some(receipt_handle)) => Some(MessageHandle {
                    queue_arn,
                    receipt_handle,
                }),
                _ => None,
            };
            Delivery::read(worker, message_id, handle, message.body.unwrap_or_default())
        });
    let messages: Vec<MessageReport> = stream::iter(same_record_together(deliveries))
        .map(|deliveries| process_in_turn(worker, deliveries, deadline))
        .buffer_unordered(worker.config.concurrency)
        .flat_map(stream::iter)
        .collect()
        .await;

    let mut metrics = Metrics::new(&worker.config.metrics_namespace, "worker");
    let mut response = SqsBatchResponse::default();
    for report in &messages {
        let name = match &report.outcome {
            MessageOutcome::Synced => names::RECORDS_SYNCED,
            MessageOutcome::Duplicate => names::RECORDS_DUPLICATE,
            MessageOutcome::Redelivered => names::MESSAGES_REDELIVERED,
            MessageOutcome::Stale => names::RECORDS_STALE,
            MessageOutcome::Conflict => names::RECORDS_CONFLICT,
            MessageOutcome::Failed(_) => names::RECORDS_FAILED,
            MessageOutcome::Retry(_) => {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = report.message_id.clone();
                response.batch_item_failures.push(failure);
                names::RECORDS_RETRIED
            }
        };
        metrics.count_by_source(name, &report.source, 1);
        if report.stats.circuit_open {
            metrics.count_by_source(names::DOWNSTREAM_CIRCUIT_OPEN, &report.source, 1);
        }
        for latency in &report.stats.latencies_ms {
            metrics.record(
                names::DOWNSTREAM_LATENCY,
                Unit::Milliseconds,
                *latency,
                &[("Source", &report.source)],
                &[&[], &["Source"]],
            );
        }
        for class in &report.stats.errors {
            metrics.record(
                names::DOWNSTREAM_ERRORS,
                Unit::Count,
                1.0,
                &[("Source", &report.source), ("StatusClass", class)],
                &[&[], &["Source"], &["StatusClass"]],
            );
        }
    }
    visibility::delay_hand_backs(worker, &messages).await;
    for line in metrics.to_emf_lines(chrono::Utc::now().timestamp_millis()) {
        println!("{line}");
    }
    tracing::info!(
        messages = messages.len(),
        retried = response.batch_item_failures.len(),
        "batch processed"
    );
    BatchReport { response, messages }
}
