//! Responses of the ingest API: a result per request with per-record errors, or a
//! request-level error with a code and a message saying what to fix.

use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use serde::Serialize;
use sync_core::FieldError;

/// Why one record was not accepted.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordError {
    /// Position of the record in the request (0 for a single record).
    pub index: usize,
    /// The record's id, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `invalid_record`, `too_large` or `not_queued`.
    pub code: &'static str,
    /// Whether sending the same record again can succeed.
    pub retryable: bool,
    /// What to do.
    pub message: String,
    /// Field-level errors of an invalid record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub field_errors: Vec<FieldError>,
}

/// The result of a request that was read.
#[derive(Debug, Clone, Serialize)]
pub struct IngestResult {
    /// Id of this request's batch (on every queued message).
    pub batch_id: String,
    /// Correlation id (on every queued message).
    pub correlation_id: String,
    /// Records queued.
    pub accepted: usize,
    /// Records not queued.
    pub rejected: usize,
    /// One entry per record not queued.
    pub errors: Vec<RecordError>,
}

fn json_response(
    status: u16,
    correlation_id: &str,
    body: &impl Serialize,
) -> ApiGatewayV2httpResponse {
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(status);
    response.headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = http::HeaderValue::from_str(correlation_id) {
        response.headers.insert("x-correlation-id", value);
    }
    response.body = Some(Body::Text(serde_json::to_string(body).unwrap_or_default()));
    response
}

/// The response to a request whose records were processed: 202 when any record was
/// accepted, 503 when none was but some could not be queued (send them again), 400 when
/// every record was invalid.
pub fn result(result: &IngestResult) -> ApiGatewayV2httpResponse {
    let status = if result.accepted > 0 {
        202
    } else if result.errors.iter().any(|e| e.retryable) {
        503
    } else {
        400
    };
    json_response(status, &result.correlation_id, result)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
    correlation_id: &'a str,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// A request-level error.
pub fn error(
    status: u16,
    code: &str,
    message: &str,
    correlation_id: &str,
) -> ApiGatewayV2httpResponse {
    json_response(
        status,
        correlation_id,
        &ErrorBody {
            error: ErrorDetail { code, message },
            correlation_id,
        },
    )
}
