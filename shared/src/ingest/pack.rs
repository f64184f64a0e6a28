//! Pure greedy packing of serialized rows into JSON-array bodies under the byte limit.
//!
//! OWNER: core-ingest helper.
