//! Pure retry policy: which statuses are transient, Retry-After parsing, capped exponential
//! backoff with full jitter.
//!
//! OWNER: core-ingest helper.
