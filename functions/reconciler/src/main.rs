//! Lambda entry point of the reconciler function: settings and clients are built once,
//! and every scheduled event runs `reconciler::run`.

#![recursion_limit = "256"]

use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use reconciler::{handle_scheduled, Reconciler, ReconcilerConfig};
use sync_core::settings::{process_env, Env};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .init();
    let config = ReconcilerConfig::from_env(&Env::new(&process_env))?;
    // A call that hangs must not eat the invocation: each attempt and each operation
    // (its retries included) is bounded.
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(std::time::Duration::from_secs(2))
                .operation_attempt_timeout(std::time::Duration::from_secs(3))
                .operation_timeout(std::time::Duration::from_secs(10))
                .build(),
        )
        .load()
        .await;
    let reconciler = Arc::new(Reconciler {
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        config,
    });
    lambda_runtime::run(service_fn(move |event: LambdaEvent<EventBridgeEvent>| {
        let reconciler = Arc::clone(&reconciler);
        async move {
            let now = chrono::Utc::now().timestamp();
            let report = handle_scheduled(&reconciler, event.payload, now).await?;
            Ok::<_, Error>(serde_json::json!({
                "redriven": report.total_redriven(),
                "dlq_depth": report.dlq_depth,
            }))
        }
    }))
    .await
}
