//! Metrics: CloudWatch embedded-metric-format lines from a [`crate::ingest::Report`].
//!
//! OWNER: operate helper (issue 7).
