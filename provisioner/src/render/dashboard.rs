//! The environment's CloudWatch dashboard body: one widget row per concern, covering
//! every function, queue and table. Built as JSON here rather than in a template, and
//! handed to `Fn::Sub` with `${AWS::Region}` and `${ApiId}` left for CloudFormation.

use serde_json::{json, Value};
use sync_core::metrics::names as metric;

use crate::config::Names;

const WIDTH: u32 = 12;
const HEIGHT: u32 = 6;

fn widget(index: usize, title: &str, metrics: Vec<Value>, stat: &str) -> Value {
    let index = u32::try_from(index).unwrap_or(0);
    json!({
        "type": "metric",
        "x": (index % 2) * WIDTH,
        "y": (index / 2) * HEIGHT,
        "width": WIDTH,
        "height": HEIGHT,
        "properties": {
            "title": title,
            "region": "${AWS::Region}",
            "view": "timeSeries",
            "stat": stat,
            "period": 300,
            "metrics": metrics,
        }
    })
}

/// The dashboard body for `functions` (short names such as `worker`).
pub fn body(names: &Names, functions: &[String]) -> String {
    let ns = names.metrics_namespace.as_str();
    let custom = |metric: &str, function: &str| json!([ns, metric, "Function", function]);
    let ledger = |state: &str| {
        json!([
            ns,
            metric::LEDGER_ITEMS,
            "Function",
            "reconciler",
            "State",
            state
        ])
    };
    let lambda = |metric: &str, function: &str| json!(["AWS/Lambda", metric, "FunctionName", names.function(function), {"label": format!("{function} {metric}")}]);
    let mut widgets = vec![
        widget(
            0,
            "Records through the pipeline",
            vec![
                custom(metric::RECORDS_ACCEPTED, "ingest"),
                custom(metric::RECORDS_REJECTED, "ingest"),
                custom(metric::RECORDS_SYNCED, "worker"),
                custom(metric::RECORDS_DUPLICATE, "worker"),
                custom(metric::RECORDS_STALE, "worker"),
                custom(metric::RECORDS_FAILED, "worker"),
                custom(metric::RECORDS_RETRIED, "worker"),
                custom(metric::RECORDS_REDRIVEN, "reconciler"),
            ],
            "Sum",
        ),
        widget(
            1,
            "Downstream pushes",
            vec![
                json!([ns, metric::DOWNSTREAM_LATENCY, "Function", "worker", {"stat": "p50", "label": "latency p50"}]),
                json!([ns, metric::DOWNSTREAM_LATENCY, "Function", "worker", {"stat": "p99", "label": "latency p99"}]),
                json!([ns, metric::DOWNSTREAM_ERRORS, "Function", "worker", {"stat": "Sum", "yAxis": "right"}]),
            ],
            "Average",
        ),
    ];
    let mut invocations = Vec::new();
    let mut failures = Vec::new();
    let mut durations = Vec::new();
    for function in functions {
        invocations.push(lambda("Invocations", function));
        failures.push(lambda("Errors", function));
        failures.push(lambda("Throttles", function));
        durations.push(lambda("Duration", function));
    }
    widgets.push(widget(2, "Function invocations", invocations, "Sum"));
    widgets.push(widget(3, "Function errors and throttles", failures, "Sum"));
    widgets.push(widget(4, "Function duration (p99)", durations, "p99"));
    widgets.push(widget(
        5,
        "Queues",
        vec![
            json!(["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", names.queue, {"label": "records visible"}]),
            json!(["AWS/SQS", "ApproximateNumberOfMessagesNotVisible", "QueueName", names.queue, {"label": "records in flight"}]),
            json!(["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", names.dead_letter_queue, {"label": "dead letters"}]),
            json!(["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", names.queue, {"label": "oldest record age (s)", "yAxis": "right"}]),
        ],
        "Maximum",
    ));
    let mut capacity = Vec::new();
    let mut throttles = Vec::new();
    for table in [&names.records_table, &names.ledger_table] {
        capacity.push(json!([
            "AWS/DynamoDB",
            "ConsumedReadCapacityUnits",
            "TableName",
            table
        ]));
        capacity.push(json!([
            "AWS/DynamoDB",
            "ConsumedWriteCapacityUnits",
            "TableName",
            table
        ]));
        throttles.push(json!([
            "AWS/DynamoDB",
            "ReadThrottleEvents",
            "TableName",
            table
        ]));
        throttles.push(json!([
            "AWS/DynamoDB",
            "WriteThrottleEvents",
            "TableName",
            table
        ]));
    }
    widgets.push(widget(6, "Table capacity consumed", capacity, "Sum"));
    widgets.push(widget(7, "Table throttles", throttles, "Sum"));
    widgets.push(widget(
        8,
        "Ingest API",
        vec![
            json!(["AWS/ApiGateway", "Count", "ApiId", "${ApiId}"]),
            json!(["AWS/ApiGateway", "4xx", "ApiId", "${ApiId}"]),
            json!(["AWS/ApiGateway", "5xx", "ApiId", "${ApiId}"]),
            json!(["AWS/ApiGateway", "Latency", "ApiId", "${ApiId}", {"stat": "p99", "yAxis": "right"}]),
        ],
        "Sum",
    ));
    widgets.push(widget(
        9,
        "Ledger and dead letters (reconciler)",
        vec![
            ledger("ACCEPTED"),
            ledger("IN_PROGRESS"),
            ledger("RETRY"),
            ledger("FAILED"),
            json!([ns, metric::DLQ_DEPTH, "Function", "reconciler"]),
        ],
        "Maximum",
    ));
    json!({ "widgets": widgets }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_queue_and_table_has_a_widget() {
        let names = Names::new("datasync", "dev", "210987654321", "eu-west-1");
        let functions = vec![
            "ingest".to_string(),
            "worker".to_string(),
            "reconciler".to_string(),
        ];
        let body = body(&names, &functions);
        let parsed: Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(parsed["widgets"].as_array().map(Vec::len), Some(10));
        for name in [
            "datasync-dev-ingest",
            "datasync-dev-worker",
            "datasync-dev-reconciler",
            "datasync-dev-records-dlq",
            "datasync-dev-ledger",
            "datasync-dev-records",
            "datasync/dev",
        ] {
            assert!(
                body.contains(&format!("\"{name}\"")),
                "{name} missing from the dashboard"
            );
        }
    }
}
