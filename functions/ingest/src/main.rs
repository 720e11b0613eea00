//! Lambda entry point of the ingest function: settings and SDK clients are built once,
//! the signing secret is read in the background while the runtime polls for the first
//! request, and every request goes to `ingest::handle_request`.

#![recursion_limit = "256"]

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use ingest::{handle_request, Ingest, IngestConfig, SecretStore, SigningSecret};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use sync_core::settings::{process_env, Env};
use sync_core::Mappings;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .init();
    let config = IngestConfig::from_env(&Env::new(&process_env))?;
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
    let secret = SigningSecret::with_ttl(
        SecretStore::new(config.secret_store, &sdk),
        config.secret_name.clone(),
        std::time::Duration::from_secs(config.secret_ttl_seconds),
    );
    let ingest = Arc::new(Ingest {
        sqs: aws_sdk_sqs::Client::new(&sdk),
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        secret,
        mappings,
        config,
    });

    // Read the secret concurrently with the runtime's first poll; a failure here is
    // retried by the first request that needs the keys.
    let prefetch = Arc::clone(&ingest);
    tokio::spawn(async move {
        if let Err(error) = prefetch.secret.keys().await {
            tracing::warn!(error = %error, "signing secret not read at start; will retry on the first request");
        }
    });

    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| {
            let ingest = Arc::clone(&ingest);
            async move {
                let now = chrono::Utc::now().timestamp();
                Ok::<_, Error>(handle_request(&ingest, event.payload, now).await)
            }
        },
    ))
    .await
}
