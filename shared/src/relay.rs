//! The glue every binary uses: a byte source in, rows decoded on a blocking thread, pushed
//! into an ingestion session, a report out.
//!
//! OWNER: core-ingest helper.
