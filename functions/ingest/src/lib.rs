//! The ingest function: `POST /integrations/{source}/records` (API Gateway HTTP API,
//! payload format 2.0). It checks the route, size, signature and content type, validates
//! every record against its source's mapping, enters the valid ones in the ledger
//! (`ACCEPTED`) and queues them on SQS, and answers
//! with accepted and rejected counts and per-record errors. Payload values are never
//! logged.

pub mod config;
pub mod ledger;
pub mod queue;
pub mod request;
pub mod response;
pub mod secret;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use std::collections::BTreeMap;
use sync_core::envelope::{QueueMessage, MESSAGE_FORMAT};
use sync_core::metrics::{names, Metrics};
use sync_core::signature::{
    self, SignatureError, SignedRequest, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
use sync_core::{future_version_error, normalize_record, storage_errors, Mappings};

use sync_core::ledger::AcceptRequest;
use tracing::{info, warn};

pub use config::IngestConfig;
pub use secret::{SecretStore, SigningSecret};

use queue::Outgoing;
use response::{IngestResult, RecordError};

/// Largest queue message body (the SQS limit).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// What the handler needs, built once per cold start.
#[derive(Debug)]
pub struct Ingest {
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB client (the ledger).
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The signing keys (read lazily, once).
    pub secret: SigningSecret,
    /// The source mappings.
    pub mappings: Mappings,
    /// Settings.
    pub config: IngestConfig,
}

/// Handles one request at `now` (Unix seconds) and writes this request's metrics.
pub async fn handle_request(
    ingest: &Ingest,
    request: ApiGatewayV2httpRequest,
    now: i64,
) -> ApiGatewayV2httpResponse {
    let mut metrics = Metrics::new(&ingest.config.metrics_namespace, "ingest");
    let correlation_id = request::correlation_id(&request);
    let span = tracing::info_span!("request", correlation_id = %correlation_id);
    let _entered = span.enter();
    let response = handle(ingest, &request, now, &correlation_id, &mut metrics).await;
    info!(status = response.status_code, "request answered");
    emit(&metrics, now);
    response
}

/// Writes the metrics as EMF lines on stdout.
pub fn emit(metrics: &Metrics, now: i64) {
    for line in metrics.to_emf_lines(now.saturating_mul(1000)) {
        println!("{line}");
    }
}

async fn handle(
    ingest: &Ingest,
    request: &ApiGatewayV2httpRequest,
    now: i64,
    correlation_id: &str,
    metrics: &mut Metrics,
) -> ApiGatewayV2httpResponse {
    let Some(source) = request::route_source(request) else {
        return response::error(
            404,
            "not_found",
            "no such route; records are posted to POST /integrations/{source}/records",
            correlation_id,
        );
    };
    if request.request_context.http.method != http::Method::POST {
        let mut response = response::error(
            405,
            "method_not_allowed",
            "use POST /integrations/{source}/records",
            correlation_id,
        );
        response
            .headers
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        return response;
    }
    if let Some(since) = &ingest.config.stopped_since {
        // Decommissioned: a clear, final answer instead of a timeout; nothing is accepted.
        return response::error(
            410,
            "decommissioned",
            &format!(
                "this environment stopped taking records at {since}: it is being decommissioned; \
                 nothing in this request was accepted; send it to the environment that replaces this one"
            ),
            correlation_id,
        );
    }
    let Some(mapping) = ingest.mappings.get(&source) else {
        // The caller is not authenticated yet: the answer names no configured source.
        warn!(source = %truncate(&source, 64), "request refused: unknown source");
        return response::error(
            404,
            "unknown_source",
            "no such source; records are posted to POST /integrations/{source}/records with a source you were given",
            correlation_id,
        );
    };
    let body = match request::body_bytes(request) {
        Ok(body) => body,
        Err(message) => return response::error(400, "malformed_body", &message, correlation_id),
    };
    let max_body = ingest.config.max_body_bytes;
    if body.len() > max_body {
        let message = format!("the body is {} bytes; at most {max_body} are accepted (MAX_BODY_BYTES); split the records over several requests", body.len());
        return response::error(413, "body_too_large", &message, correlation_id);
    }
    if let Err(error) = authenticate(ingest, request, &source, &body, now).await {
        return match error {
            AuthFailure::Refused(error) => {
                warn!(source = %source, reason = %error, "request refused: signature");
                metrics.count_by_source(names::REQUESTS_UNAUTHORIZED, &source, 1);
                response::error(401, "unauthorized", &error.caller_message(), correlation_id)
            }
            AuthFailure::SecretUnavailable(message) => {
                tracing::error!(error = %message, "signing secret unavailable");
                response::error(
                    503,
                    "unavailable",
                    "the service cannot verify signatures right now; send the request again later",
                    correlation_id,
                )
            }
        };
    }
    if !request::is_json(request::header(request, "content-type")) {
        return response::error(
            415,
            "unsupported_media_type",
            "send the records as JSON with Content-Type: application/json",
            correlation_id,
        );
    }
    let parsed: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(error) => {
            let message = format!(
                "the body is not valid JSON (line {}, column {})",
                error.line(),
                error.column()
            );
            return response::error(400, "malformed_json", &message, correlation_id);
        }
    };
    let records = match request::records(parsed) {
        Ok(records) => records,
        Err(message) => return response::error(400, "malformed_body", &message, correlation_id),
    };
    let max_records = ingest.config.max_records_per_request;
    if records.len() > max_records {
        let message = format!("the request holds {} records; at most {max_records} are accepted per request (MAX_RECORDS_PER_REQUEST)", records.len());
        return response::error(413, "too_many_records", &message, correlation_id);
    }

    let batch_id = uuid::Uuid::new_v4().to_string();
    let received_at = chrono::DateTime::from_timestamp(now, 0)
        .unwrap_or_default()
        .to_rfc3339();
    let mut errors = Vec::new();
    let mut outgoing = Vec::new();
    let mut entries = Vec::new();
    let mut keys = BTreeMap::new();
    let mut external_ids = Vec::with_capacity(records.len());
    for (index, record) in records.into_iter().enumerate() {
        let normalized = normalize_record(mapping, &record).and_then(|canonical| {
            match future_version_error(
                mapping,
                &canonical,
                now,
                ingest.config.max_version_ahead_seconds,
            ) {
                Some(error) => Err(vec![error]),
                None => {
                    let errors = storage_errors(&canonical);
                    if errors.is_empty() {
                        Ok(canonical)
                    } else {
                        Err(errors)
                    }
                }
            }
        });
        match normalized {
            Ok(canonical) => {
                external_ids.push(Some(canonical.external_id.clone()));
                let message = QueueMessage {
                    format: MESSAGE_FORMAT,
                    source: source.clone(),
                    correlation_id: correlation_id.to_string(),
                    batch_id: batch_id.clone(),
                    received_at: received_at.clone(),
                    record,
                };
                let body = serde_json::to_string(&message).unwrap_or_default();
                if queue::message_size(&body, &source, correlation_id) > MAX_MESSAGE_BYTES {
                    errors.push(RecordError {
                        index,
                        external_id: Some(canonical.external_id),
                        code: "too_large",
                        retryable: false,
                        message: format!("the record, with its envelope and message attributes, is larger than the queue's {MAX_MESSAGE_BYTES}-byte message limit"),
                        field_errors: Vec::new(),
                    });
                    continue;
                }
                let key = sync_core::idempotency::record_key(&canonical);
                let config = &ingest.config;
                entries.push((
                    index,
                    sync_core::ledger::accept(&AcceptRequest {
                        key: &key,
                        source: &source,
                        external_id: &canonical.external_id,
                        source_version: canonical.source_version,
                        operation: canonical.operation.as_str(),
                        correlation_id,
                        body: &body,
                        batch_id: &batch_id,
                        now,
                        next_attempt_at: now.saturating_add(config.lease_seconds),
                        expires_at: now
                            .saturating_add(config.ledger_ttl_days.saturating_mul(86_400)),
                    }),
                ));
                keys.insert(index, key);
                outgoing.push(Outgoing {
                    index,
                    body,
                    source: source.clone(),
                    correlation_id: correlation_id.to_string(),
                });
            }
            Err(field_errors) => {
                external_ids.push(None);
                let fields: Vec<String> = field_errors
                    .iter()
                    .map(|e| format!("{}:{:?}", e.field, e.code))
                    .collect();
                info!(index, fields = %fields.join(","), "record refused");
                errors.push(RecordError {
                    index,
                    external_id: mapping.external_id_of(&record).and_then(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .or_else(|| v.as_u64().map(|n| n.to_string()))
                    }),
                    code: "invalid_record",
                    retryable: false,
                    message: "fix the listed fields and send the record again".to_string(),
                    field_errors,
                });
            }
        }
    }
    // Entered before it is sent: from the moment a record is accepted the ledger knows it.
    let mut not_queued =
        ledger::enter_all(&ingest.dynamodb, &ingest.config.ledger_table, entries).await;
    outgoing.retain(|message| !not_queued.contains_key(&message.index));
    let refused_by_queue = queue::send_all(&ingest.sqs, &ingest.config.queue_url, &outgoing).await;
    // A record sent twice in one request has one entry: it stays if either copy was queued.
    let queued_keys: std::collections::BTreeSet<&String> = outgoing
        .iter()
        .filter(|message| !refused_by_queue.contains_key(&message.index))
        .filter_map(|message| keys.get(&message.index))
        .collect();
    let withdrawn: std::collections::BTreeSet<&String> = refused_by_queue
        .keys()
        .filter_map(|index| keys.get(index))
        .filter(|key| !queued_keys.contains(key))
        .collect();
    ledger::withdraw_all(
        &ingest.dynamodb,
        &ingest.config.ledger_table,
        withdrawn
            .into_iter()
            .map(|key| sync_core::ledger::withdraw(key, &batch_id))
            .collect(),
    )
    .await;
    let queued = outgoing.len() - refused_by_queue.len();
    not_queued.extend(refused_by_queue);
    for (index, refusal) in &not_queued {
        warn!(index, reason = %refusal.reason, "record not queued");
        let (code, message) = if refusal.retryable {
            (
                "not_queued",
                "the record could not be queued and was not accepted; send it again",
            )
        } else {
            (
                "refused_by_queue",
                "the queue refuses this record as it is (sending it again gives the same answer); fix or shorten it",
            )
        };
        errors.push(RecordError {
            index: *index,
            external_id: external_ids.get(*index).cloned().flatten(),
            code,
            retryable: refusal.retryable,
            message: message.to_string(),
            field_errors: Vec::new(),
        });
    }
    errors.sort_by_key(|e| e.index);
    let accepted = queued;
    metrics.count_by_source(names::RECORDS_ACCEPTED, &source, accepted as u64);
    metrics.count_by_source(names::RECORDS_REJECTED, &source, errors.len() as u64);
    info!(source = %source, batch_id = %batch_id, accepted, rejected = errors.len(), "records processed");
    response::result(&IngestResult {
        batch_id,
        correlation_id: correlation_id.to_string(),
        accepted,
        rejected: errors.len(),
        errors,
    })
}

enum AuthFailure {
    Refused(SignatureError),
    SecretUnavailable(String),
}

async fn authenticate(
    ingest: &Ingest,
    request: &ApiGatewayV2httpRequest,
    source: &str,
    body: &[u8],
    now: i64,
) -> Result<(), AuthFailure> {
    let keys = ingest
        .secret
        .keys()
        .await
        .map_err(|e| AuthFailure::SecretUnavailable(e.to_string()))?;
    let active = keys.keys_for(source).map_err(AuthFailure::Refused)?;
    let signed = SignedRequest {
        method: request.request_context.http.method.as_str(),
        path: request::path(request).unwrap_or_default(),
        source,
    };
    signature::verify_any(
        active,
        &signed,
        request::header(request, TIMESTAMP_HEADER),
        request::header(request, SIGNATURE_HEADER),
        body,
        now,
    )
    .map_err(AuthFailure::Refused)
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}
