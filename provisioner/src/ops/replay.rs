//! `replay`: ledger items that ended `FAILED` (or wait in `RETRY`) are sent through the
//! pipeline again, so a fixed downstream or mapping gets them. The ledger's
//! `by-state-shard` index finds them (every shard of the state, `--since` on the time of
//! their last change, `--source` on their source); each is taken with the same
//! conditional update the reconciler uses (it repeats the state and time the index
//! showed, so two replays, or a replay and the reconciler, never take one item twice),
//! which makes it `RETRY`, claimable again at once, and returns its body; the body is
//! sent to the records queue with its correlation id and source. An item whose send
//! fails stays `RETRY` and the reconciler re-drives it after its backoff. Safe to run
//! twice and while the pipeline runs.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_sqs::types::MessageAttributeValue;
use serde::Serialize;
use sync_core::envelope::{CORRELATION_ATTRIBUTE, SOURCE_ATTRIBUTE};
use sync_core::ledger::{state_shard_value, take_for_redrive, LedgerState, STATE_SHARDS};

use crate::config::Environment;
use crate::deploy::clients::AwsClients;
use crate::deploy::DeployError;
use crate::error::Error;

/// The ledger's index by state shard and next attempt time.
pub const BY_STATE_INDEX: &str = "by-state-shard";
/// When a replayed item is looked at again by the reconciler if its message is lost.
const LOOK_AGAIN_SECONDS: i64 = 900;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// `FAILED` or `RETRY`.
    pub state: LedgerState,
    pub source: Option<String>,
    /// Only items whose last change is at or after this time (Unix seconds).
    pub since: Option<i64>,
    pub limit: Option<u64>,
    pub dry_run: bool,
}

/// What `replay` did.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub env: String,
    pub state: &'static str,
    pub dry_run: bool,
    /// Items found (per source) that match.
    pub found: BTreeMap<String, u64>,
    /// Items taken and sent again (with `--dry-run`: none).
    pub replayed: BTreeMap<String, u64>,
    /// Items another replay or the reconciler took first.
    pub taken_by_others: u64,
    /// Items taken whose send failed (the reconciler re-drives them later).
    pub send_failed: Vec<String>,
}

impl ReplayReport {
    pub fn to_text(&self) -> String {
        let total = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
        let per = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = format!(
            "{}: {} {} item(s) found ({})",
            self.env,
            total(&self.found),
            self.state,
            per(&self.found)
        );
        if self.dry_run {
            text.push_str("; nothing replayed (--dry-run)");
        } else {
            text.push_str(&format!(
                "; replayed {} ({})",
                total(&self.replayed),
                per(&self.replayed)
            ));
            if self.taken_by_others > 0 {
                text.push_str(&format!(
                    "; {} taken first by another replay or the reconciler",
                    self.taken_by_others
                ));
            }
        }
        for key in &self.send_failed {
            text.push_str(&format!(
                "\n  not sent (the reconciler re-drives it after its backoff): {key}"
            ));
        }
        text
    }
}

fn attribute<'a>(item: &'a BTreeMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// Replays `env`'s ledger items as `request` says.
pub async fn replay(
    clients: &AwsClients,
    env: &Environment,
    request: &ReplayRequest,
    now: i64,
) -> Result<ReplayReport, Error> {
    let sqs = aws_sdk_sqs::Client::new(&clients.config);
    let queue_url = super::dlq::queues(&sqs, env).await?.queue_url;
    let table = &env.names.ledger_table;
    let mut report = ReplayReport {
        env: env.name.clone(),
        state: request.state.as_str(),
        dry_run: request.dry_run,
        found: BTreeMap::new(),
        replayed: BTreeMap::new(),
        taken_by_others: 0,
        send_failed: Vec::new(),
    };
    let limit = request.limit.unwrap_or(u64::MAX);
    let mut handled = 0u64;
    for shard in 0..STATE_SHARDS {
        let mut start = None;
        loop {
            if handled >= limit {
                return Ok(report);
            }
            let mut query = clients
                .dynamodb
                .query()
                .table_name(table)
                .index_name(BY_STATE_INDEX)
                .key_condition_expression("#shard = :shard AND #next >= :since")
                .expression_attribute_names("#shard", "state_shard")
                .expression_attribute_names("#next", "next_attempt_at")
                .expression_attribute_values(
                    ":shard",
                    AttributeValue::S(state_shard_value(request.state.as_str(), shard)),
                )
                .expression_attribute_values(
                    ":since",
                    AttributeValue::N(request.since.unwrap_or(0).to_string()),
                )
                .set_exclusive_start_key(start);
            if let Some(source) = &request.source {
                query = query
                    .filter_expression("#source = :source")
                    .expression_attribute_names("#source", "source")
                    .expression_attribute_values(":source", AttributeValue::S(source.clone()));
            }
            let page = query.send().await.map_err(|error| {
                Error::from(DeployError::aws(
                    format!("Query {table} index {BY_STATE_INDEX}"),
                    &error,
                ))
            })?;
            for item in page.items() {
                if handled >= limit {
                    return Ok(report);
                }
                let item: BTreeMap<String, AttributeValue> =
                    item.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let source = attribute(&item, "source").unwrap_or("unknown").to_string();
                *report.found.entry(source.clone()).or_default() += 1;
                handled += 1;
                if request.dry_run {
                    continue;
                }
                let (Some(key), Some(seen_next)) = (
                    attribute(&item, "idempotency_key"),
                    item.get("next_attempt_at")
                        .and_then(|v| v.as_n().ok())
                        .and_then(|n| n.parse::<i64>().ok()),
                ) else {
                    continue;
                };
                match take_and_send(
                    clients,
                    table,
                    &sqs,
                    &queue_url,
                    key,
                    request.state,
                    seen_next,
                    now,
                )
                .await?
                {
                    Taken::Sent => *report.replayed.entry(source).or_default() += 1,
                    Taken::ByOthers => report.taken_by_others += 1,
                    Taken::SendFailed => report.send_failed.push(key.to_string()),
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
    }
    Ok(report)
}

enum Taken {
    Sent,
    ByOthers,
    SendFailed,
}

#[allow(clippy::too_many_arguments)]
async fn take_and_send(
    clients: &AwsClients,
    table: &str,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    key: &str,
    state: LedgerState,
    seen_next: i64,
    now: i64,
) -> Result<Taken, Error> {
    let update = take_for_redrive(key, state, seen_next, now + LOOK_AGAIN_SECONDS, now);
    let taken = clients
        .dynamodb
        .update_item()
        .table_name(table)
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
        .return_values(ReturnValue::AllNew)
        .send()
        .await;
    let taken = match taken {
        Ok(output) => output.attributes.unwrap_or_default(),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
        {
            return Ok(Taken::ByOthers)
        }
        Err(error) => {
            return Err(Error::from(DeployError::aws(
                format!("UpdateItem {table} (taking {key} for replay)"),
                &error,
            )))
        }
    };
    let text = |name: &str| taken.get(name).and_then(|v| v.as_s().ok()).cloned();
    let Some(body) = text("body") else {
        // Nothing to send: an unreadable message's item keeps no body.
        return Ok(Taken::SendFailed);
    };
    let mut send = sqs.send_message().queue_url(queue_url).message_body(body);
    for (name, value) in [
        (CORRELATION_ATTRIBUTE, text("correlation_id")),
        (SOURCE_ATTRIBUTE, text("source")),
    ] {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            if let Ok(attribute) = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
            {
                send = send.message_attributes(name, attribute);
            }
        }
    }
    Ok(match send.send().await {
        Ok(_) => Taken::Sent,
        Err(error) => {
            tracing::warn!(
                "replay of {key} not sent: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&error)
            );
            Taken::SendFailed
        }
    })
}

/// The SDK's form of a ledger update's value.
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
