//! Domain library of the sync functions, free of I/O: the canonical record and the
//! declared source mappings, normalization, idempotency keys, queue messages, the
//! records-table and ledger writes as plain data, retry policy, rate limiting, error
//! classification, request signatures, settings and Embedded Metric Format output.
//!
//! The Lambda crates (`ingest`, `worker`, `reconciler`) only add the AWS and HTTP calls.

pub mod breaker;
pub mod classify;
pub mod downstream;
pub mod envelope;
pub mod idempotency;
pub mod ledger;
pub mod mapping;
pub mod metrics;
pub mod normalize;
pub mod pointer;
pub mod push;
pub mod rate_limit;
pub mod record;
pub mod retry;
pub mod settings;
pub mod signature;
pub mod store;

pub use mapping::{Mapping, MappingError, Mappings};
pub use record::{
    future_version_error, normalize_record, storage_errors, CanonicalRecord, FieldError,
    FieldErrorCode, Operation,
};
