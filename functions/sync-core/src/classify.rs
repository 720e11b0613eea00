//! Error classification: a retryable failure may succeed later (throttling, timeouts,
//! server errors, a misconfigured target), a permanent one never will (the target refuses
//! the record itself). Downstream answers are classified by whose fault they are.

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

/// What an answer of the downstream target means for the record, by whose fault it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownstreamVerdict {
    /// 2xx: the target took the record.
    Accepted,
    /// 409 or 412: the target holds this version or a newer one already. The record is
    /// stale there, not failed.
    Stale,
    /// 400 or 422: the target refuses this record's content; trying again gives the same
    /// answer. The record fails with the reason.
    RecordRefused,
    /// 408, 425, 429, 5xx: the target is overloaded or failing; try again later.
    Unavailable,
    /// 3xx (redirects are never followed: a redirect would send the record, personal data
    /// included, wherever it points), 401, 403, 404, 405, 410 and any other status: the
    /// target's address, credentials or deployment are wrong. The record is not at fault,
    /// so it is kept and retried until the configuration is fixed.
    Misconfigured,
}

impl DownstreamVerdict {
    /// Whether the answer counts against the target's health (for the circuit breaker).
    pub fn is_target_failure(self) -> bool {
        matches!(
            self,
            DownstreamVerdict::Unavailable | DownstreamVerdict::Misconfigured
        )
    }
}

/// Classifies an HTTP status of the downstream target by whose fault it is.
pub fn classify_status(status: u16) -> DownstreamVerdict {
    match status {
        200..=299 => DownstreamVerdict::Accepted,
        409 | 412 => DownstreamVerdict::Stale,
        400 | 422 => DownstreamVerdict::RecordRefused,
        408 | 425 | 429 | 500..=599 => DownstreamVerdict::Unavailable,
        _ => DownstreamVerdict::Misconfigured,
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
    fn failures_are_classified_by_whose_fault_they_are() {
        for status in [408, 425, 429, 500, 502, 503, 504] {
            assert_eq!(
                classify_status(status),
                DownstreamVerdict::Unavailable,
                "{status}"
            );
        }
        for status in [400, 422] {
            assert_eq!(
                classify_status(status),
                DownstreamVerdict::RecordRefused,
                "{status}"
            );
        }
        for status in [409, 412] {
            assert_eq!(
                classify_status(status),
                DownstreamVerdict::Stale,
                "{status}"
            );
        }
        for status in [301, 302, 303, 307, 308, 401, 403, 404, 405, 410] {
            assert_eq!(
                classify_status(status),
                DownstreamVerdict::Misconfigured,
                "{status}"
            );
            assert!(classify_status(status).is_target_failure());
        }
        assert_eq!(classify_status(204), DownstreamVerdict::Accepted);
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
