//! Error classification: a retryable failure may succeed later (throttling, timeouts,
//! server errors), a permanent one never will (the target refuses the record itself).

use std::time::Duration;

/// Whether trying again can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Try again later.
    Retryable,
    /// Trying again gives the same answer.
    Permanent,
}

/// A classified failure with a reason fit for the ledger and the logs (no payload values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Retryable or permanent.
    pub class: ErrorClass,
    /// What happened.
    pub reason: String,
    /// How long the other side asked us to wait, if it said.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A retryable failure.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Retryable,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            class: ErrorClass::Permanent,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// Whether trying again can help.
    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }
}

/// Classifies an HTTP status of the downstream target: 408, 425, 429 and 5xx are
/// retryable; any other 4xx is permanent (the target refuses this record).
pub fn classify_status(status: u16) -> ErrorClass {
    match status {
        408 | 425 | 429 => ErrorClass::Retryable,
        500..=599 => ErrorClass::Retryable,
        400..=499 => ErrorClass::Permanent,
        _ => ErrorClass::Retryable,
    }
}

/// `2xx`, `4xx`, `5xx`... for the `StatusClass` metric dimension; `network` when no
/// status was received.
pub fn status_class(status: Option<u16>) -> String {
    match status {
        Some(status) => format!("{}xx", status / 100),
        None => "network".to_string(),
    }
}

/// Classifies an AWS error code: a request the service refuses as invalid is permanent;
/// throttling, capacity, missing resources (a deployment in progress) and unknown codes
/// are retryable, so nothing is dropped on a configuration mistake.
pub fn classify_aws_code(code: Option<&str>) -> ErrorClass {
    match code {
        Some(
            "ValidationException"
            | "SerializationException"
            | "ItemCollectionSizeLimitExceededException",
        ) => ErrorClass::Permanent,
        _ => ErrorClass::Retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_and_server_errors_are_retryable_client_errors_are_not() {
        for status in [408, 425, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(status), ErrorClass::Retryable, "{status}");
        }
        for status in [400, 401, 403, 404, 409, 410, 422] {
            assert_eq!(classify_status(status), ErrorClass::Permanent, "{status}");
        }
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "network");
    }

    #[test]
    fn aws_validation_errors_are_permanent_throttling_is_not() {
        assert_eq!(
            classify_aws_code(Some("ValidationException")),
            ErrorClass::Permanent
        );
        assert_eq!(
            classify_aws_code(Some("ProvisionedThroughputExceededException")),
            ErrorClass::Retryable
        );
        assert_eq!(
            classify_aws_code(Some("ResourceNotFoundException")),
            ErrorClass::Retryable
        );
        assert_eq!(classify_aws_code(None), ErrorClass::Retryable);
    }
}
