//! Record counts of an emulated environment, for `provisioner status`: what the records
//! table holds, the ledger's items per state, and what waits in the queue and the DLQ.
//! (Against AWS these would be full-table scans, so only emulated environments get them.)

use std::collections::BTreeMap;

use serde::Serialize;

use super::discover::EmulatorClients;
use super::LocalError;
use crate::config::Environment;

/// Messages in a queue.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct QueueCounts {
    pub visible: u64,
    pub in_flight: u64,
}

/// Where the records are.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RecordCounts {
    /// Records table: live records and delete tombstones.
    pub records: u64,
    pub tombstones: u64,
    /// Ledger items per state (`ACCEPTED`, `IN_PROGRESS`, `RETRY`, `COMPLETED`, `FAILED`).
    pub ledger: BTreeMap<String, u64>,
    pub queue: QueueCounts,
    pub dead_letter_queue: QueueCounts,
}

async fn scan_count(
    clients: &EmulatorClients,
    table: &str,
    mut classify: impl FnMut(
        &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    ),
) -> Result<(), LocalError> {
    let mut start = None;
    loop {
        let page = clients
            .dynamodb
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|error| LocalError::Emulator {
                action: format!("count the items of {table}"),
                message: aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string(),
            })?;
        page.items().iter().for_each(&mut classify);
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(());
        }
    }
}

async fn queue_counts(clients: &EmulatorClients, name: &str) -> Result<QueueCounts, LocalError> {
    use aws_sdk_sqs::types::QueueAttributeName as Name;
    let unreachable = |error: String| LocalError::Emulator {
        action: format!("read the depth of queue {name}"),
        message: error,
    };
    let url = clients
        .sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| unreachable(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?
        .queue_url()
        .unwrap_or_default()
        .to_string();
    let attributes = clients
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Name::ApproximateNumberOfMessages)
        .attribute_names(Name::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| unreachable(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
    let get = |name: Name| {
        attributes
            .attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(QueueCounts {
        visible: get(Name::ApproximateNumberOfMessages),
        in_flight: get(Name::ApproximateNumberOfMessagesNotVisible),
    })
}

/// Counts everything for `env` on the emulator at `endpoint_url`.
pub async fn count(env: &Environment, endpoint_url: &str) -> Result<RecordCounts, LocalError> {
    let clients = EmulatorClients::connect(endpoint_url, env.settings.region.as_str()).await;
    let mut counts = RecordCounts::default();
    scan_count(&clients, &env.names.records_table, |item| {
        let deleted = item
            .get("deleted")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false);
        if deleted {
            counts.tombstones += 1;
        } else {
            counts.records += 1;
        }
    })
    .await?;
    let mut ledger = BTreeMap::new();
    scan_count(&clients, &env.names.ledger_table, |item| {
        let state = item
            .get("state")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_else(|| "UNKNOWN".into());
        *ledger.entry(state).or_insert(0) += 1;
    })
    .await?;
    counts.ledger = ledger;
    counts.queue = queue_counts(&clients, &env.names.queue).await?;
    counts.dead_letter_queue = queue_counts(&clients, &env.names.dead_letter_queue).await?;
    Ok(counts)
}

/// The counts as lines of text.
pub fn to_text(counts: &RecordCounts) -> String {
    let ledger = if counts.ledger.is_empty() {
        "empty".to_string()
    } else {
        counts
            .ledger
            .iter()
            .map(|(state, n)| format!("{state} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "records table     {} records, {} tombstones\n\
         ledger            {ledger}\n\
         queue             {} waiting, {} in flight\n\
         dead-letter queue {} waiting, {} in flight",
        counts.records,
        counts.tombstones,
        counts.queue.visible,
        counts.queue.in_flight,
        counts.dead_letter_queue.visible,
        counts.dead_letter_queue.in_flight
    )
}
