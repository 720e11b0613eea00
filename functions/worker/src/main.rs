//! Lambda entry point of the worker function: settings and clients are built once, and
//! every SQS batch goes to `worker::handle_batch` with the invocation's deadline.

#![recursion_limit = "256"]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use sync_core::settings::{process_env, Env};
use sync_core::Mappings;
use worker::{handle_batch, Worker, WorkerConfig};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .init();
    let config = WorkerConfig::from_env(&Env::new(&process_env))?;
    let mappings = Mappings::builtin()?;
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
    let worker = Arc::new(Worker::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
        mappings,
        config,
    )?);

    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let worker = Arc::clone(&worker);
        async move {
            let deadline = deadline_instant(event.context.deadline);
            Ok::<_, Error>(
                handle_batch(&worker, event.payload, deadline)
                    .await
                    .response,
            )
        }
    }))
    .await
}

/// The invocation deadline (milliseconds since the epoch) as an `Instant`.
fn deadline_instant(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}
