//! Tuning knobs: concurrency, retries, deadlines, batch size, decompression limit.

use std::time::Duration;

use crate::model::{Lookup, MAX_BATCH_BYTES};
use crate::{Error, Result};

/// Tuning knobs; every one has a documented default and environment variable.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// `LOGRELAY_CONCURRENCY`: requests in flight at once (default 16: at 50 ms to Azure one
    /// process then sustains one DCR's 2 GB a minute; see BENCHMARKS.md).
    pub concurrency: usize,
    /// `LOGRELAY_MAX_ATTEMPTS`: attempts per request, first included (default 8).
    pub max_attempts: u32,
    /// `LOGRELAY_DEADLINE_SECS`: how long one batch may keep retrying (default 300 s).
    pub deadline: Duration,
    /// `LOGRELAY_BATCH_BYTES`: serialized JSON array bytes per request (default and max 1,000,000).
    pub batch_bytes: usize,
    /// `LOGRELAY_REQUEST_TIMEOUT_SECS`: one HTTP attempt (default 30 s).
    pub request_timeout: Duration,
    /// `LOGRELAY_MAX_DECOMPRESSED_BYTES`: gzip input larger than this once inflated is refused
    /// (default 16 GiB), the gzip-bomb guard.
    pub max_decompressed_bytes: u64,
    /// `LOGRELAY_GZIP_LEVEL`: libdeflate level of request bodies, 1 (fastest) to 12 (smallest);
    /// the default [`DEFAULT_GZIP_LEVEL`] was chosen in BENCHMARKS.md.
    pub gzip_level: u8,
}

/// The default request-body compression level: with rows laid out side by side
/// (`pack::layout`), libdeflate's level 4 sends about 4 % fewer bytes than zlib's level 6 did
/// (in input order) on the bench's data, for about a third of its CPU (BENCHMARKS.md); level
/// 2 is the lowest that still sends fewer, too close to keep as the default.
pub const DEFAULT_GZIP_LEVEL: u8 = 4;

/// Accepted ranges, shown in error messages.
const CONCURRENCY_RANGE: (u64, u64) = (1, 64);
const MAX_ATTEMPTS_RANGE: (u64, u64) = (1, 50);
const DEADLINE_SECS_RANGE: (u64, u64) = (1, 86_400);
const BATCH_BYTES_RANGE: (u64, u64) = (1024, MAX_BATCH_BYTES as u64);
const REQUEST_TIMEOUT_SECS_RANGE: (u64, u64) = (1, 600);
const MAX_DECOMPRESSED_BYTES_RANGE: (u64, u64) = (1024, 1 << 50);
/// libdeflate's levels (<https://github.com/ebiggers/libdeflate/blob/master/libdeflate.h>: 0 is
/// "no compression", 1 the fastest, 12 the smallest); 0 is not offered, bodies must fit 1 MB.
const GZIP_LEVEL_RANGE: (u64, u64) = (1, 12);

pub(crate) fn read_tuning(get: Lookup<'_>) -> Result<Tuning> {
    let defaults = Tuning::default();
    let number = |name: &'static str, default: u64, (min, max): (u64, u64)| -> Result<u64> {
        let Some(value) = get(name) else {
            return Ok(default);
        };
        let parsed: u64 = value.replace('_', "").parse().map_err(|_| {
            Error::invalid(
                name,
                format!("`{value}` is not a whole number; accepted range is {min}..={max}"),
            )
        })?;
        if parsed > max && name == "LOGRELAY_BATCH_BYTES" {
            return Err(Error::invalid(
                name,
                format!("{parsed} is too large: the Logs Ingestion API refuses requests over 1 MB, so batches are at most {max} bytes; accepted range is {min}..={max}"),
            ));
        }
        if !(min..=max).contains(&parsed) {
            return Err(Error::invalid(
                name,
                format!("{parsed} is out of range; accepted range is {min}..={max}"),
            ));
        }
        Ok(parsed)
    };
    // The ranges above bound every value well inside usize/u32, so the casts cannot truncate.
    Ok(Tuning {
        concurrency: number(
            "LOGRELAY_CONCURRENCY",
            defaults.concurrency as u64,
            CONCURRENCY_RANGE,
        )? as usize,
        max_attempts: number(
            "LOGRELAY_MAX_ATTEMPTS",
            u64::from(defaults.max_attempts),
            MAX_ATTEMPTS_RANGE,
        )? as u32,
        deadline: Duration::from_secs(number(
            "LOGRELAY_DEADLINE_SECS",
            defaults.deadline.as_secs(),
            DEADLINE_SECS_RANGE,
        )?),
        batch_bytes: number(
            "LOGRELAY_BATCH_BYTES",
            defaults.batch_bytes as u64,
            BATCH_BYTES_RANGE,
        )? as usize,
        request_timeout: Duration::from_secs(number(
            "LOGRELAY_REQUEST_TIMEOUT_SECS",
            defaults.request_timeout.as_secs(),
            REQUEST_TIMEOUT_SECS_RANGE,
        )?),
        max_decompressed_bytes: number(
            "LOGRELAY_MAX_DECOMPRESSED_BYTES",
            defaults.max_decompressed_bytes,
            MAX_DECOMPRESSED_BYTES_RANGE,
        )?,
        gzip_level: number(
            "LOGRELAY_GZIP_LEVEL",
            u64::from(defaults.gzip_level),
            GZIP_LEVEL_RANGE,
        )? as u8,
    })
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            concurrency: 16,
            max_attempts: 8,
            deadline: Duration::from_secs(300),
            batch_bytes: MAX_BATCH_BYTES,
            request_timeout: Duration::from_secs(30),
            max_decompressed_bytes: 16 << 30,
            gzip_level: DEFAULT_GZIP_LEVEL,
        }
    }
}
