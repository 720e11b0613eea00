//! CloudWatch Embedded Metric Format: metrics are collected during an invocation and
//! written as JSON lines on stdout, which Lambda forwards to CloudWatch Logs where they
//! become metrics. Names and dimensions are those of the deployment contract.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The unit of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// A duration in milliseconds.
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// Metric names (the contract's).
pub mod names {
    /// ingest: records queued.
    pub const RECORDS_ACCEPTED: &str = "RecordsAccepted";
    /// ingest: records refused (validation or queueing).
    pub const RECORDS_REJECTED: &str = "RecordsRejected";
    /// ingest: requests refused for their signature.
    pub const REQUESTS_UNAUTHORIZED: &str = "RequestsUnauthorized";
    /// worker: records written and pushed.
    pub const RECORDS_SYNCED: &str = "RecordsSynced";
    /// worker: deliveries of an already processed record.
    pub const RECORDS_DUPLICATE: &str = "RecordsDuplicate";
    /// worker: records older than the stored version.
    pub const RECORDS_STALE: &str = "RecordsStale";
    /// worker: deliveries of a message that had settled its record already (the queue
    /// delivers at least once); not records, so not part of the accounting identity.
    pub const MESSAGES_REDELIVERED: &str = "MessagesRedelivered";
    /// worker: records whose version was stored before with other content.
    pub const RECORDS_CONFLICT: &str = "RecordsConflict";
    /// worker: pushes not started because the downstream's circuit breaker is open.
    pub const DOWNSTREAM_CIRCUIT_OPEN: &str = "DownstreamCircuitOpen";
    /// worker: records failed for good.
    pub const RECORDS_FAILED: &str = "RecordsFailed";
    /// worker: records handed back to the queue to try again.
    pub const RECORDS_RETRIED: &str = "RecordsRetried";
    /// worker: downstream call duration.
    pub const DOWNSTREAM_LATENCY: &str = "DownstreamLatency";
    /// worker: failed downstream calls.
    pub const DOWNSTREAM_ERRORS: &str = "DownstreamErrors";
    /// reconciler: items re-enqueued.
    pub const RECORDS_REDRIVEN: &str = "RecordsRedriven";
    /// reconciler: ledger items per state.
    pub const LEDGER_ITEMS: &str = "LedgerItems";
    /// reconciler: messages in the dead-letter queue.
    pub const DLQ_DEPTH: &str = "DlqDepth";

    /// Every metric the functions publish.
    pub const ALL: &[&str] = &[
        RECORDS_ACCEPTED,
        RECORDS_REJECTED,
        REQUESTS_UNAUTHORIZED,
        RECORDS_SYNCED,
        RECORDS_DUPLICATE,
        RECORDS_STALE,
        RECORDS_CONFLICT,
        MESSAGES_REDELIVERED,
        DOWNSTREAM_CIRCUIT_OPEN,
        RECORDS_FAILED,
        RECORDS_RETRIED,
        DOWNSTREAM_LATENCY,
        DOWNSTREAM_ERRORS,
        RECORDS_REDRIVEN,
        LEDGER_ITEMS,
        DLQ_DEPTH,
    ];
}

/// EMF allows at most this many values per metric in one document.
const MAX_VALUES_PER_DOCUMENT: usize = 100;

#[derive(Debug, Default)]
struct Group {
    metrics: BTreeMap<String, (Unit, Vec<f64>)>,
}

/// Dimension values plus the dimension sets they are published under.
type GroupKey = (Vec<(String, String)>, Vec<Vec<String>>);

/// Metrics of one invocation, grouped into one document per dimension combination.
#[derive(Debug)]
pub struct Metrics {
    namespace: String,
    function: String,
    groups: BTreeMap<GroupKey, Group>,
}

impl Metrics {
    /// Metrics of `function` (`ingest|worker|reconciler`) in `namespace`.
    pub fn new(namespace: &str, function: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            function: function.to_string(),
            groups: BTreeMap::new(),
        }
    }

    /// Records a value with extra dimensions (besides `Function`) and the dimension sets
    /// to publish it under (each set implicitly starts with `Function`).
    pub fn record(
        &mut self,
        name: &str,
        unit: Unit,
        value: f64,
        dimensions: &[(&str, &str)],
        sets: &[&[&str]],
    ) {
        let mut dims = vec![("Function".to_string(), self.function.clone())];
        dims.extend(
            dimensions
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
        );
        let sets = sets
            .iter()
            .map(|set| {
                std::iter::once("Function")
                    .chain(set.iter().copied())
                    .map(str::to_string)
                    .collect()
            })
            .collect();
        let group = self.groups.entry((dims, sets)).or_default();
        let entry = group
            .metrics
            .entry(name.to_string())
            .or_insert((unit, Vec::new()));
        if unit == Unit::Count {
            // Counts are summed within an invocation: one value per document.
            match entry.1.first_mut() {
                Some(total) => *total += value,
                None => entry.1.push(value),
            }
        } else {
            entry.1.push(value);
        }
    }

    /// Adds to a count published per function and per function and source.
    pub fn count_by_source(&mut self, name: &str, source: &str, value: u64) {
        self.record(
            name,
            Unit::Count,
            value as f64,
            &[("Source", source)],
            &[&[], &["Source"]],
        );
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The total recorded for a count metric across every group (for tests and logs).
    pub fn total(&self, name: &str) -> f64 {
        self.groups
            .values()
            .filter_map(|group| group.metrics.get(name))
            .flat_map(|(_, values)| values.iter())
            .sum()
    }

    /// The EMF documents, one JSON line each.
    pub fn to_emf_lines(&self, timestamp_ms: i64) -> Vec<String> {
        let mut lines = Vec::new();
        for ((dims, sets), group) in &self.groups {
            let longest = group
                .metrics
                .values()
                .map(|(_, v)| v.len())
                .max()
                .unwrap_or(0);
            let chunks = longest.div_ceil(MAX_VALUES_PER_DOCUMENT).max(1);
            for chunk in 0..chunks {
                let mut document = Map::new();
                let mut definitions = Vec::new();
                for (name, (unit, values)) in &group.metrics {
                    let start = chunk * MAX_VALUES_PER_DOCUMENT;
                    let part: Vec<f64> = values
                        .iter()
                        .skip(start)
                        .take(MAX_VALUES_PER_DOCUMENT)
                        .copied()
                        .collect();
                    if part.is_empty() {
                        continue;
                    }
                    definitions.push(json!({"Name": name, "Unit": unit.as_str()}));
                    let value = if part.len() == 1 {
                        json!(part[0])
                    } else {
                        json!(part)
                    };
                    document.insert(name.clone(), value);
                }
                for (key, value) in dims {
                    document.insert(key.clone(), Value::String(value.clone()));
                }
                document.insert(
                    "_aws".to_string(),
                    json!({
                        "Timestamp": timestamp_ms,
                        "CloudWatchMetrics": [{
                            "Namespace": self.namespace,
                            "Dimensions": sets,
                            "Metrics": definitions,
                        }],
                    }),
                );
                lines.push(Value::Object(document).to_string());
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_summed_per_source_with_the_contract_dimension_sets() {
        let mut metrics = Metrics::new("datasync/local", "worker");
        metrics.count_by_source(names::RECORDS_SYNCED, "hris", 2);
        metrics.count_by_source(names::RECORDS_SYNCED, "hris", 3);
        metrics.count_by_source(names::RECORDS_SYNCED, "crm", 1);
        let lines = metrics.to_emf_lines(1);
        assert_eq!(lines.len(), 2);
        let hris: Value = lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|d| d["Source"] == "hris")
            .unwrap();
        assert_eq!(hris["RecordsSynced"], json!(5.0));
        assert_eq!(hris["Function"], "worker");
        let directive = &hris["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "datasync/local");
        assert_eq!(
            directive["Dimensions"],
            json!([["Function"], ["Function", "Source"]])
        );
        assert_eq!(
            directive["Metrics"][0],
            json!({"Name": "RecordsSynced", "Unit": "Count"})
        );
    }

    #[test]
    fn latencies_keep_every_value_in_documents_of_at_most_100() {
        let mut metrics = Metrics::new("ns", "worker");
        for i in 0..150 {
            metrics.record(
                names::DOWNSTREAM_LATENCY,
                Unit::Milliseconds,
                f64::from(i),
                &[("Source", "crm")],
                &[&[], &["Source"]],
            );
        }
        let lines = metrics.to_emf_lines(1);
        assert_eq!(lines.len(), 2);
        let first: Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["DownstreamLatency"].as_array().unwrap().len(), 100);
        assert_eq!(
            metrics.total(names::DOWNSTREAM_LATENCY),
            (0..150).sum::<i32>() as f64
        );
    }
}
