//! Framed records converted together, spread over the cores. Framing is a byte scan;
//! conversion (parse, `EventId`, serialize) is most of decoding's CPU, and every record
//! converts on its own (an `EventId` is per event), so a batch of records is converted in
//! parallel and yielded in input order: rows, rejects and counters are exactly what one
//! record at a time gives.

use std::collections::VecDeque;

use rayon::prelude::*;

use super::convert::{convert_json, convert_syslog};
use super::{Ctx, DecodeStats, Decoded, Loc};
use crate::Result;

/// Records framed before a batch is converted (with [`BATCH_BYTES`], what a batch holds:
/// about 1 MiB of input, a few milliseconds of work, so the session never waits long).
pub(super) const BATCH_RECORDS: usize = 1024;

/// Record bytes framed before a batch is converted.
pub(super) const BATCH_BYTES: usize = 1 << 20;

/// Batches with fewer records than this are converted on the calling thread: handing a
/// small request's few events to other threads costs more than it saves.
const PARALLEL_MIN_RECORDS: usize = 16;

/// How the framed records are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parse {
    /// A JSON value per record (NDJSON lines, array elements, objects).
    Json,
    /// An RFC 5424 syslog line per record.
    Syslog,
}

/// One record of a batch, in input order.
enum Entry {
    /// Framed bytes (`arena[start..end]`), still to convert.
    Framed { start: usize, end: usize, at: Loc },
    /// Already decided while framing (a record too long, broken JSON).
    Ready(Decoded),
}

/// Records waiting to be converted together.
#[derive(Default)]
pub(super) struct Batch {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    framed: usize,
}

impl Batch {
    /// Adds a framed record's bytes.
    pub(super) fn push_framed(&mut self, bytes: &[u8], at: Loc) {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        self.entries.push(Entry::Framed {
            start,
            end: self.arena.len(),
            at,
        });
        self.framed += 1;
    }

    /// Adds an item decided while framing, keeping its place.
    pub(super) fn push_ready(&mut self, decoded: Decoded) {
        self.entries.push(Entry::Ready(decoded));
    }

    /// Whether the batch is big enough to convert.
    pub(super) fn is_full(&self) -> bool {
        self.entries.len() >= BATCH_RECORDS || self.arena.len() >= BATCH_BYTES
    }

    /// Converts every record, in parallel when there are enough, appending the items to
    /// `out` in input order and the counters to `stats`; leaves the batch empty.
    pub(super) fn convert_into(
        &mut self,
        ctx: &Ctx,
        parse: Parse,
        stats: &mut DecodeStats,
        out: &mut VecDeque<Result<Decoded>>,
    ) {
        let arena = &self.arena;
        let convert = |entry: Entry| -> (Decoded, DecodeStats) {
            let mut counted = DecodeStats::default();
            let decoded = match entry {
                Entry::Ready(decoded) => decoded,
                Entry::Framed { start, end, at } => {
                    let bytes = &arena[start..end];
                    match parse {
                        Parse::Json => convert_json(ctx, &mut counted, bytes, at),
                        Parse::Syslog => convert_syslog(ctx, &mut counted, bytes, at),
                    }
                }
            };
            (decoded, counted)
        };
        let entries = std::mem::take(&mut self.entries);
        let converted: Vec<(Decoded, DecodeStats)> = if self.framed >= PARALLEL_MIN_RECORDS {
            entries.into_par_iter().map(convert).collect()
        } else {
            entries.into_iter().map(convert).collect()
        };
        for (decoded, counted) in converted {
            stats.truncated_fields += counted.truncated_fields;
            stats.old_events += counted.old_events;
            out.push_back(Ok(decoded));
        }
        self.arena.clear();
        self.framed = 0;
    }
}
