//! The reconciler function, run on a schedule: re-enqueues ledger items accepted by
//! ingest but never claimed (`ACCEPTED` past `LEASE_SECONDS`), stuck `IN_PROGRESS` past
//! their lease and `RETRY` items past their backoff (found through the
//! `by-state-shard` index, each state's shards in turn, never a scan), publishes ledger counts per source and state, and
//! reports the dead-letter queue's depth. Each run is bounded (`MAX_REDRIVE_PER_RUN`) and
//! idempotent: an item is taken with a conditional write, so it is re-driven once per
//! backoff however many runs overlap.

pub mod config;

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use sync_core::envelope::CORRELATION_ATTRIBUTE;
use sync_core::ledger::{state_shard_value, take_for_redrive, LedgerState, STATE_SHARDS};
use sync_core::metrics::{names, Metrics, Unit};
use sync_core::retry::redrive_delay;
use tracing::{info, warn};

pub use config::ReconcilerConfig;

/// Name of the ledger's index by state shard (`{state}#{n}`) and next attempt time.
pub const BY_STATE_INDEX: &str = "by-state-shard";
/// Completed items are counted over this window (seconds) only.
pub const COMPLETED_WINDOW_SECONDS: i64 = 3600;
/// Pages read per state when counting, to bound a run.
pub const MAX_COUNT_PAGES: usize = 50;

/// What the handler needs, built once per cold start.
#[derive(Debug)]
pub struct Reconciler {
    /// DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// Settings.
    pub config: ReconcilerConfig,
}

/// A run that could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Querying the ledger failed.
    #[error("querying the ledger's {BY_STATE_INDEX} index for {state} failed: {message}")]
    Query {
        /// The state queried.
        state: &'static str,
        /// The AWS error.
        message: String,
    },
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Items re-enqueued, per source.
    pub redriven: BTreeMap<String, u64>,
    /// Ledger items per (source, state); `COMPLETED` over the last hour only.
    pub ledger_items: BTreeMap<(String, String), u64>,
    /// Messages in the dead-letter queue (visible and in flight), if it could be read.
    pub dlq_depth: Option<u64>,
}

impl RunReport {
    /// Items re-enqueued in total.
    pub fn total_redriven(&self) -> u64 {
        self.redriven.values().sum()
    }
}

type Item = HashMap<String, AttributeValue>;

fn string_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn number_attr(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// Handles a scheduled event (EventBridge) at `now` (Unix seconds).
pub async fn handle_scheduled(
    reconciler: &Reconciler,
    event: aws_lambda_events::eventbridge::EventBridgeEvent,
    now: i64,
) -> Result<RunReport, ReconcileError> {
    let span = tracing::info_span!("run", event_id = event.id.as_deref().unwrap_or(""), scheduled_at = ?event.time);
    let _entered = span.enter();
    run(reconciler, now).await
}

/// One run at `now` (Unix seconds); writes its metrics.
pub async fn run(reconciler: &Reconciler, now: i64) -> Result<RunReport, ReconcileError> {
    let mut report = RunReport::default();
    redrive_due(reconciler, now, &mut report).await?;
    count_states(reconciler, now, &mut report).await?;
    report.dlq_depth = dlq_depth(reconciler).await;

    let mut metrics = Metrics::new(&reconciler.config.metrics_namespace, "reconciler");
    for (source, count) in &report.redriven {
        metrics.count_by_source(names::RECORDS_REDRIVEN, source, *count);
    }
    for ((source, state), count) in &report.ledger_items {
        metrics.record(
            names::LEDGER_ITEMS,
            Unit::Count,
            *count as f64,
            &[("Source", source), ("State", state)],
            &[&["State"], &["Source", "State"]],
        );
    }
    if let Some(depth) = report.dlq_depth {
        metrics.record(names::DLQ_DEPTH, Unit::Count, depth as f64, &[], &[&[]]);
    }
    for line in metrics.to_emf_lines(now.saturating_mul(1000)) {
        println!("{line}");
    }
    info!(redriven = report.total_redriven(), dlq_depth = ?report.dlq_depth, "reconciliation done");
    Ok(report)
}

/// Key condition of items in a state whose next attempt is due by `:bound`.
const DUE_BY: &str = "#shard = :shard AND #next <= :bound";
/// Key condition of items in a state whose next attempt (or last update) is at or after
/// `:bound`.
const SINCE: &str = "#shard = :shard AND #next >= :bound";

/// A query of the ledger's index for shard `shard` of `state`, with `key_condition`
/// (`DUE_BY` or `SINCE`) on `next_attempt_at` against `bound`.
fn by_state(
    reconciler: &Reconciler,
    state: LedgerState,
    shard: u32,
    key_condition: &'static str,
    bound: i64,
) -> aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder {
    reconciler
        .dynamodb
        .query()
        .table_name(&reconciler.config.ledger_table)
        .index_name(BY_STATE_INDEX)
        .key_condition_expression(key_condition)
        .expression_attribute_names("#shard", "state_shard")
        .expression_attribute_names("#next", "next_attempt_at")
        .expression_attribute_values(
            ":shard",
            AttributeValue::S(state_shard_value(state.as_str(), shard)),
        )
        .expression_attribute_values(":bound", AttributeValue::N(bound.to_string()))
}

/// Sends a by-state query, naming the state in the error.
async fn send_query(
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    state: LedgerState,
) -> Result<aws_sdk_dynamodb::operation::query::QueryOutput, ReconcileError> {
    query.send().await.map_err(|error| ReconcileError::Query {
        state: state.as_str(),
        message: aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string(),
    })
}

async fn redrive_due(
    reconciler: &Reconciler,
    now: i64,
    report: &mut RunReport,
) -> Result<(), ReconcileError> {
    let budget = reconciler.config.max_redrive_per_run;
    let mut taken = 0;
    for state in [
        LedgerState::Accepted,
        LedgerState::InProgress,
        LedgerState::Retry,
    ] {
        for shard in 0..STATE_SHARDS {
            let mut start: Option<Item> = None;
            loop {
                if taken >= budget {
                    return Ok(());
                }
                let page_size = i32::try_from((budget - taken).clamp(1, 100)).unwrap_or(100);
                let output = send_query(
                    by_state(reconciler, state, shard, DUE_BY, now)
                        .limit(page_size)
                        .set_exclusive_start_key(start),
                    state,
                )
                .await?;
                for item in output.items() {
                    if taken >= budget {
                        return Ok(());
                    }
                    if redrive_one(reconciler, item, state, now).await {
                        taken += 1;
                        let source = string_attr(item, "source").unwrap_or("unknown").to_string();
                        *report.redriven.entry(source).or_default() += 1;
                    }
                }
                start = output.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Takes one item (conditionally) and sends its body to the queue again.
async fn redrive_one(reconciler: &Reconciler, item: &Item, state: LedgerState, now: i64) -> bool {
    let (Some(key), Some(seen_next)) = (
        string_attr(item, "idempotency_key"),
        number_attr(item, "next_attempt_at"),
    ) else {
        warn!(item = ?string_attr(item, "idempotency_key"), "ledger index entry without key or time; cannot re-drive it");
        return false;
    };
    let attempts = u32::try_from(number_attr(item, "attempts").unwrap_or(1)).unwrap_or(u32::MAX);
    let backoff = i64::try_from(redrive_delay(attempts, None).as_secs()).unwrap_or(3600);
    let next = now + backoff.max(reconciler.config.lease_seconds);
    let update = take_for_redrive(key, state, seen_next, next, now);
    let taken = reconciler
        .dynamodb
        .update_item()
        .table_name(&reconciler.config.ledger_table)
        .key("idempotency_key", AttributeValue::S(update.key.clone()))
        .update_expression(update.update)
        .condition_expression(update.condition)
        .set_expression_attribute_names(Some(
            update
                .names
                .iter()
                .map(|(alias, name)| (alias.clone(), name.clone()))
                .collect(),
        ))
        .set_expression_attribute_values(Some(
            update
                .values
                .iter()
                .map(|(k, v)| (k.to_string(), to_sdk(v)))
                .collect(),
        ))
        // The index holds no bodies: the body comes back with the item taken.
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
        .send()
        .await;
    let taken = match taken {
        Ok(output) => output.attributes.unwrap_or_default(),
        Err(error) => {
            let condition_failed = error
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception());
            if !condition_failed {
                warn!(idempotency_key = %key, error = %aws_sdk_dynamodb::error::DisplayErrorContext(&error), "could not take item for re-drive");
            }
            return false;
        }
    };
    let Some(body) = string_attr(&taken, "body") else {
        warn!(idempotency_key = %key, "ledger item without a body; cannot re-drive it");
        return false;
    };
    let correlation_id = string_attr(&taken, "correlation_id").unwrap_or_default();
    let mut send = reconciler
        .sqs
        .send_message()
        .queue_url(&reconciler.config.queue_url)
        .message_body(body);
    if !correlation_id.is_empty() {
        if let Ok(attribute) = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(correlation_id)
            .build()
        {
            send = send.message_attributes(CORRELATION_ATTRIBUTE, attribute);
        }
    }
    match send.send().await {
        Ok(_) => {
            info!(idempotency_key = %key, correlation_id = %correlation_id, from_state = state.as_str(), "item re-driven");
            true
        }
        Err(error) => {
            // The item stays RETRY and is due again after its backoff.
            warn!(idempotency_key = %key, error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "re-drive send failed; the item is due again later");
            false
        }
    }
}

fn to_sdk(value: &sync_core::store::AttrValue) -> AttributeValue {
    use sync_core::store::AttrValue as V;
    match value {
        V::S(s) => AttributeValue::S(s.clone()),
        V::N(n) => AttributeValue::N(n.clone()),
        V::Bool(b) => AttributeValue::Bool(*b),
        V::Null => AttributeValue::Null(true),
        V::M(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| (k.to_string(), to_sdk(v)))
                .collect(),
        ),
        V::L(items) => AttributeValue::L(items.iter().map(to_sdk).collect()),
    }
}

async fn count_states(
    reconciler: &Reconciler,
    now: i64,
    report: &mut RunReport,
) -> Result<(), ReconcileError> {
    for state in LedgerState::ALL {
        let since = if state == LedgerState::Completed {
            now - COMPLETED_WINDOW_SECONDS
        } else {
            0
        };
        for shard in 0..STATE_SHARDS {
            let mut start: Option<Item> = None;
            for _ in 0..MAX_COUNT_PAGES {
                let output = send_query(
                    by_state(reconciler, state, shard, SINCE, since)
                        .projection_expression("#source")
                        .expression_attribute_names("#source", "source")
                        .set_exclusive_start_key(start),
                    state,
                )
                .await?;
                for item in output.items() {
                    let source = string_attr(item, "source").unwrap_or("unknown").to_string();
                    *report
                        .ledger_items
                        .entry((source, state.as_str().to_string()))
                        .or_default() += 1;
                }
                start = output.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
    }
    Ok(())
}

async fn dlq_depth(reconciler: &Reconciler) -> Option<u64> {
    let output = reconciler
        .sqs
        .get_queue_attributes()
        .queue_url(&reconciler.config.dlq_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await;
    match output {
        Ok(output) => {
            let attributes = output.attributes()?;
            let read = |name: QueueAttributeName| {
                attributes
                    .get(&name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            Some(
                read(QueueAttributeName::ApproximateNumberOfMessages)
                    + read(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            )
        }
        Err(error) => {
            warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&error), "could not read the dead-letter queue's depth");
            None
        }
    }
}
