//! Keeper audit events: every container and shape Keeper produces, decoded as a stream and
//! converted to table rows.
//!
//! Decisions (each covered by `shared/tests/keeper_shapes.rs`):
//! - The container comes from the content: gzip magic; then the first significant byte
//!   (`[` array, `{` object(s), `<` syslog); otherwise a first line that is JSON means NDJSON
//!   and anything else is a CSV header. A `{` whose object ends on its first line means NDJSON
//!   (framed by lines); otherwise the input is read as concatenated, possibly pretty, values.
//! - Event time: a syslog header timestamp when present, else the first of `timestamp`,
//!   `created`, `TimeGenerated` that parses. Time fields naming the same instant are consumed;
//!   a different one stays in `data`. No time at all rejects the event (never "now").
//! - Nothing is dropped: non-column fields, and column fields of the wrong type, go to `data`
//!   under their own key; a `data` that is not an object goes to `data._data` (`null` counts
//!   as absent); a key clash with a different value keeps both, the top-level one as `_key`.
//! - An empty CSV cell is an absent field (CSV has a column for every field of every event).
//! - Syslog header fields other than the time (host, app, procid, msgid) are transport, not
//!   event fields, and are not kept; Commander's structured-data params are the event fields,
//!   and on its `Keeper@Commander` lines MSGID is the event `id` and HOSTNAME its `ip_address`
//!   (Commander moves them there), so those two are taken back.
//! - `EventId` is Keeper's `id` when the event has one (on Commander's syslog lines, the
//!   MSGID). Otherwise it is the first 32 hex digits of the SHA-256 of the canonical JSON of
//!   the normalised push-form event `{audit_event, category, client_version, data,
//!   enterprise_id, remote_address, timestamp, username}` (`timestamp` as
//!   `YYYY-MM-DDTHH:MM:SS.mmmZ`, strings before truncation). The canonical form
//!   (docs/eventid.md) reads text spelling a number or boolean as that value and leaves out
//!   null and empty members, so JSON, NDJSON, CSV and syslog give the same id for the same
//!   event even where the rows differ (a CSV cell stays text in the row).

mod batch;
mod borrowed;
mod canonical;
mod convert;
mod csv;
mod frame;
mod input;
mod json_text;
mod shape;
mod syslog;
mod time;

use std::collections::VecDeque;
use std::io::{BufRead, Cursor, Read};
use std::sync::Arc;
use std::time::SystemTime;

use crate::dead_letter::DeadLetterEntry;
use crate::model::EncodedRow;
use crate::{Error, Result};

use batch::{Batch, Parse};
use convert::{convert_json, convert_object, not_utf8, reject};
use frame::{JsonFramer, JsonOut, LineFramer, LineOut};
use input::InputError;
use time::Millis;

pub use frame::MAX_RECORD_BYTES;

/// Longest string Azure keeps in a field: 64 KB (<https://learn.microsoft.com/azure/azure-monitor/fundamentals/service-limits#logs-ingestion-api>). Longer
/// strings are truncated here, deterministically, and counted.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Azure replaces a `TimeGenerated` older than this with the arrival time (<https://learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns#timegenerated>).
pub const OLD_EVENT_AGE: std::time::Duration = std::time::Duration::from_secs(2 * 24 * 3600);

/// How input records become rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaMode {
    /// Keeper events of any shape → the Keeper table row.
    Keeper,
    /// Non-Keeper objects forwarded as they are; `TimeGenerated` taken from `time_field`.
    Passthrough { time_field: String },
}

/// Decoding options.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    pub schema: SchemaMode,
    /// Gzip input inflating past this many bytes is stopped (gzip-bomb guard).
    pub max_decompressed_bytes: u64,
    /// "Now", for the old-event check.
    pub now: SystemTime,
}

/// One decoded record: a row to send, or an entry for the dead letter.
#[derive(Debug)]
pub enum Decoded {
    Row(EncodedRow),
    Rejected(DeadLetterEntry),
}

/// Conversion counters for a source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub truncated_fields: u64,
    pub old_events: u64,
}

/// Raw input kept in a dead-letter entry: enough to see what was wrong, never the whole file.
pub const MAX_RAW_BYTES: usize = 4 * 1024;

/// The UTF-8 byte-order mark, skipped at the start of input and of lines.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A streaming decoder over any reader: sniffs gzip and the container from the content,
/// then yields one item per record. `Err` items are I/O failures of the reader itself
/// (transient: the caller retries the source); malformed input is `Decoded::Rejected`.
///
/// Containers: JSON array (streamed element by element), NDJSON, single, pretty-printed or
/// concatenated objects, RFC 5424 syslog lines, CSV with a header row; any of them gzipped
/// (multi-member). Memory is bounded by [`MAX_RECORD_BYTES`] whatever the input size.
pub struct RowReader<'a> {
    raw: Option<Box<dyn Read + Send + 'a>>,
    reader: Box<dyn BufRead + Send + 'a>,
    ctx: Ctx,
    mode: Mode,
    stats: DecodeStats,
    /// Records framed and waiting to be converted together.
    batch: Batch,
    /// Items converted and not yet yielded, in input order.
    ready: VecDeque<Result<Decoded>>,
}

/// What every record's conversion needs.
struct Ctx {
    source: Arc<str>,
    schema: SchemaMode,
    max_decompressed_bytes: u64,
    old_before: Millis,
    gzip: bool,
    fields: Vec<String>,
}

enum Mode {
    Start,
    Json {
        framer: JsonFramer,
        probe: bool,
    },
    Lines {
        framer: LineFramer,
        syslog: bool,
    },
    Csv {
        framer: LineFramer,
        names: Vec<String>,
        record: Vec<u8>,
    },
    Done,
}

/// Where a record is, for messages.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Line(u64),
    Record { record: u64, line: u64 },
}

impl Loc {
    fn record(self) -> u64 {
        match self {
            Loc::Line(line) => line,
            Loc::Record { record, .. } => record,
        }
    }
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loc::Line(line) => write!(f, "line {line}"),
            Loc::Record { record, line } => write!(f, "record {record} (line {line})"),
        }
    }
}

impl<'a> RowReader<'a> {
    /// Starts decoding `reader`, naming it `source` in rows and errors. Nothing is read
    /// until the first call to `next`.
    pub fn new(reader: impl Read + Send + 'a, source: &str, options: &DecodeOptions) -> Self {
        let old_ms = i64::try_from(OLD_EVENT_AGE.as_millis()).unwrap_or(i64::MAX);
        RowReader {
            raw: Some(Box::new(reader)),
            reader: Box::new(std::io::empty()),
            ctx: Ctx {
                source: Arc::from(source),
                schema: options.schema.clone(),
                max_decompressed_bytes: options.max_decompressed_bytes,
                old_before: Millis(Millis::from_system(options.now).0.saturating_sub(old_ms)),
                gzip: false,
                fields: Vec::new(),
            },
            mode: Mode::Start,
            stats: DecodeStats::default(),
            batch: Batch::default(),
            ready: VecDeque::new(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DecodeStats {
        self.stats
    }

    /// Opens the input and picks the container from its first significant byte.
    fn start(&mut self) -> Option<Result<Decoded>> {
        let raw = self.raw.take()?;
        let opened = match input::open(raw, self.ctx.max_decompressed_bytes) {
            Ok(opened) => opened,
            Err(e) => return self.ended(e, Loc::Line(1), &[]),
        };
        self.ctx.gzip = opened.gzip;
        self.reader = opened.reader;
        if let Err(e) = self.skip_bom() {
            return self.failed(e, Loc::Line(1), &[]);
        }
        let mut lines_before = 0;
        let first = loop {
            let chunk = match self.reader.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) => return self.failed(e, Loc::Line(lines_before + 1), &[]),
            };
            let Some(&byte) = chunk.first() else {
                self.mode = Mode::Done;
                return None;
            };
            match byte {
                b'\n' => lines_before += 1,
                b' ' | b'\t' | b'\r' => {}
                other => break other,
            }
            self.reader.consume(1);
        };
        self.mode = match first {
            b'[' | b'{' => Mode::Json {
                framer: JsonFramer::new(lines_before + 1),
                probe: first == b'{',
            },
            b'<' => Mode::Lines {
                framer: LineFramer::new(lines_before),
                syslog: true,
            },
            _ => return self.start_csv_or_ndjson(lines_before),
        };
        None
    }

    /// Skips a leading BOM; a partial match is put back.
    fn skip_bom(&mut self) -> std::io::Result<()> {
        let mut seen = Vec::with_capacity(BOM.len());
        while seen.len() < BOM.len() {
            let chunk = self.reader.fill_buf()?;
            match chunk.first() {
                Some(&b) if b == BOM[seen.len()] => {
                    seen.push(b);
                    self.reader.consume(1);
                }
                _ => break,
            }
        }
        if !seen.is_empty() && seen != BOM {
            let rest = std::mem::replace(&mut self.reader, Box::new(std::io::empty()));
            self.reader = Box::new(Cursor::new(seen).chain(rest));
        }
        Ok(())
    }

    /// A first line that is JSON means NDJSON (of odd values); anything else is a CSV header.
    fn start_csv_or_ndjson(&mut self, lines_before: u64) -> Option<Result<Decoded>> {
        let mut framer = LineFramer::new(lines_before);
        let out = match framer.next(&mut *self.reader) {
            Ok(out) => out,
            Err(e) => return self.failed(e, Loc::Line(lines_before + 1), &framer.buf),
        };
        let line = match out {
            LineOut::End => {
                self.mode = Mode::Done;
                return None;
            }
            LineOut::TooLong { line } => {
                self.mode = Mode::Done;
                return Some(Ok(reject(
                    &self.ctx,
                    Loc::Line(line),
                    format!("the first line exceeds {MAX_RECORD_BYTES} bytes: not a format logrelay reads"),
                    &framer.buf,
                )));
            }
            LineOut::Line { line } => line,
        };
        if serde_json::from_slice::<serde::de::IgnoredAny>(&framer.buf).is_ok() {
            let item = convert_json(&self.ctx, &mut self.stats, &framer.buf, Loc::Line(line));
            self.mode = Mode::Lines {
                framer,
                syslog: false,
            };
            return Some(Ok(item));
        }
        let Ok(header) = std::str::from_utf8(&framer.buf) else {
            self.mode = Mode::Done;
            return Some(Ok(reject(
                &self.ctx,
                Loc::Line(line),
                "the CSV header is not valid UTF-8; nothing after it was read".to_owned(),
                &framer.buf,
            )));
        };
        let mut fields = Vec::new();
        csv::split_fields(header, &mut fields);
        self.mode = Mode::Csv {
            framer,
            names: csv::header_names(fields),
            record: Vec::new(),
        };
        None
    }

    /// Ends decoding after a read failure: an `Err` for the reader's own I/O errors, a
    /// rejected entry for corrupt or oversized gzip.
    fn failed(
        &mut self,
        error: std::io::Error,
        at: Loc,
        partial: &[u8],
    ) -> Option<Result<Decoded>> {
        let error = input::classify(error, self.ctx.gzip);
        self.ended(error, at, partial)
    }

    fn ended(&mut self, error: InputError, at: Loc, partial: &[u8]) -> Option<Result<Decoded>> {
        self.mode = Mode::Done;
        let reason = match error {
            InputError::Source(source) => {
                return Some(Err(Error::Io {
                    what: self.ctx.source.to_string(),
                    source,
                }))
            }
            InputError::Gzip(e) => format!(
                "the gzip stream is corrupt or truncated ({e}); decoding stopped here, the records before it were read"
            ),
            InputError::TooLarge { limit } => format!(
                "the decompressed input exceeds {limit} bytes (LOGRELAY_MAX_DECOMPRESSED_BYTES guards against gzip bombs); decoding stopped here"
            ),
        };
        Some(Ok(reject(&self.ctx, at, reason, partial)))
    }

    /// Frames JSON values into a batch until it is full or the input ends, then converts the
    /// batch (in parallel) into `ready`, like [`RowReader::next_line`]. The first value of
    /// input starting with `{` is read alone: it decides whether the rest is NDJSON.
    fn next_json(&mut self) -> Option<Result<Decoded>> {
        let Mode::Json { framer, probe } = &mut self.mode else {
            return None;
        };
        if *probe {
            return self.next_json_probe();
        }
        let mut failure = None;
        let mut ended = false;
        while !self.batch.is_full() {
            let out = match framer.next(&mut *self.reader) {
                Ok(out) => out,
                Err(e) => {
                    let at = Loc::Record {
                        record: framer.current_record(),
                        line: framer.line(),
                    };
                    failure = Some((e, at, std::mem::take(&mut framer.buf)));
                    break;
                }
            };
            match out {
                JsonOut::End => {
                    ended = true;
                    break;
                }
                JsonOut::Value { record, line } => self
                    .batch
                    .push_framed(&framer.buf, Loc::Record { record, line }),
                JsonOut::TooLong { record, line } => self.batch.push_ready(reject(
                    &self.ctx,
                    Loc::Record { record, line },
                    format!("the record exceeds {MAX_RECORD_BYTES} bytes; it was skipped"),
                    &framer.buf,
                )),
                JsonOut::Broken { record, line, why } => self.batch.push_ready(reject(
                    &self.ctx,
                    Loc::Record { record, line },
                    format!("malformed JSON: {why}"),
                    &framer.buf,
                )),
            }
        }
        self.end_batch(Parse::Json, ended, failure)
    }

    /// The first value of input starting with `{`, read and converted alone.
    fn next_json_probe(&mut self) -> Option<Result<Decoded>> {
        let Mode::Json { framer, probe } = &mut self.mode else {
            return None;
        };
        let out = match framer.next(&mut *self.reader) {
            Ok(out) => out,
            Err(e) => {
                let at = Loc::Record {
                    record: framer.current_record(),
                    line: framer.line(),
                };
                let partial = std::mem::take(&mut framer.buf);
                return self.failed(e, at, &partial);
            }
        };
        let item = match out {
            JsonOut::End => {
                self.mode = Mode::Done;
                return None;
            }
            JsonOut::Value { record, line } => convert_json(
                &self.ctx,
                &mut self.stats,
                &framer.buf,
                Loc::Record { record, line },
            ),
            JsonOut::TooLong { record, line } => reject(
                &self.ctx,
                Loc::Record { record, line },
                format!("the record exceeds {MAX_RECORD_BYTES} bytes; it was skipped"),
                &framer.buf,
            ),
            JsonOut::Broken { record, line, why } => reject(
                &self.ctx,
                Loc::Record { record, line },
                format!("malformed JSON: {why}"),
                &framer.buf,
            ),
        };
        if std::mem::take(probe) && framer.last_was_one_line_object() {
            // The first object fit on its line: the rest is NDJSON, framed by lines so a
            // malformed line never costs the lines after it.
            let line = framer.line();
            self.mode = Mode::Lines {
                framer: LineFramer::new(line.saturating_sub(1)),
                syslog: false,
            };
        }
        Some(Ok(item))
    }

    /// Frames lines into a batch until it is full or the input ends, then converts the
    /// batch (in parallel) into `ready`. A line too long is rejected in its place; a read
    /// failure comes after the lines before it.
    fn next_line(&mut self) -> Option<Result<Decoded>> {
        let Mode::Lines { framer, syslog } = &mut self.mode else {
            return None;
        };
        let parse = if *syslog { Parse::Syslog } else { Parse::Json };
        let mut failure = None;
        let mut ended = false;
        while !self.batch.is_full() {
            let out = match framer.next(&mut *self.reader) {
                Ok(out) => out,
                Err(e) => {
                    let at = Loc::Line(framer.line() + 1);
                    failure = Some((e, at, std::mem::take(&mut framer.buf)));
                    break;
                }
            };
            match out {
                LineOut::End => {
                    ended = true;
                    break;
                }
                LineOut::TooLong { line } => self.batch.push_ready(reject(
                    &self.ctx,
                    Loc::Line(line),
                    format!("the line exceeds {MAX_RECORD_BYTES} bytes; it was skipped"),
                    &framer.buf,
                )),
                LineOut::Line { line } => {
                    let bytes = framer.buf.strip_prefix(BOM).unwrap_or(&framer.buf);
                    if !bytes.iter().all(u8::is_ascii_whitespace) {
                        self.batch.push_framed(bytes, Loc::Line(line));
                    }
                }
            }
        }
        self.end_batch(parse, ended, failure)
    }

    /// Converts the batch framed so far into `ready`, then what ended it: the end of the
    /// input, or a read failure (after the records before it). Always `None`: the items
    /// are in `ready`.
    fn end_batch(
        &mut self,
        parse: Parse,
        ended: bool,
        failure: Option<(std::io::Error, Loc, Vec<u8>)>,
    ) -> Option<Result<Decoded>> {
        self.batch
            .convert_into(&self.ctx, parse, &mut self.stats, &mut self.ready);
        if ended {
            self.mode = Mode::Done;
        }
        if let Some((error, at, partial)) = failure {
            let failed = self.failed(error, at, &partial);
            self.ready.extend(failed);
        }
        None
    }

    fn next_csv(&mut self) -> Option<Result<Decoded>> {
        let Mode::Csv {
            framer,
            names,
            record,
        } = &mut self.mode
        else {
            return None;
        };
        let mut first_line = None;
        let mut open = false;
        record.clear();
        loop {
            let out = match framer.next(&mut *self.reader) {
                Ok(out) => out,
                Err(e) => {
                    let at = Loc::Line(first_line.unwrap_or(framer.line() + 1));
                    let partial = std::mem::take(record);
                    return self.failed(e, at, &partial);
                }
            };
            match out {
                LineOut::End if first_line.is_none() => {
                    self.mode = Mode::Done;
                    return None;
                }
                LineOut::End => {
                    return Some(Ok(reject(
                        &self.ctx,
                        Loc::Line(first_line.unwrap_or(0)),
                        "a quoted CSV field is never closed".to_owned(),
                        record,
                    )))
                }
                LineOut::TooLong { line } => {
                    return Some(Ok(reject(
                        &self.ctx,
                        Loc::Line(first_line.unwrap_or(line)),
                        format!("the CSV record exceeds {MAX_RECORD_BYTES} bytes; it was skipped"),
                        &framer.buf,
                    )))
                }
                LineOut::Line { line } => {
                    if first_line.is_none() && framer.buf.is_empty() {
                        continue;
                    }
                    if first_line.is_some() {
                        record.push(b'\n');
                    }
                    let first = *first_line.get_or_insert(line);
                    if record.len() + framer.buf.len() > MAX_RECORD_BYTES {
                        return Some(Ok(reject(
                            &self.ctx,
                            Loc::Line(first),
                            format!(
                                "the CSV record exceeds {MAX_RECORD_BYTES} bytes; it was skipped"
                            ),
                            record,
                        )));
                    }
                    record.extend_from_slice(&framer.buf);
                    open ^= csv::leaves_quote_open(&framer.buf);
                    if !open {
                        break;
                    }
                }
            }
        }
        let at = Loc::Line(first_line.unwrap_or(0));
        let text = match std::str::from_utf8(record) {
            Ok(text) => text,
            Err(e) => return Some(Ok(not_utf8(&self.ctx, at, e, record))),
        };
        let fields = &mut self.ctx.fields;
        csv::split_fields(text, fields);
        if fields.len() != names.len() {
            let reason = format!(
                "the CSV record has {} fields; the header has {}",
                fields.len(),
                names.len()
            );
            return Some(Ok(reject(&self.ctx, at, reason, record)));
        }
        let object = csv::to_object(names, fields);
        Some(Ok(convert_object(
            &self.ctx,
            &mut self.stats,
            object,
            None,
            at,
            record,
        )))
    }
}

impl Iterator for RowReader<'_> {
    type Item = Result<Decoded>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            let item = match self.mode {
                Mode::Start => self.start(),
                Mode::Json { .. } => self.next_json(),
                Mode::Lines { .. } => self.next_line(),
                Mode::Csv { .. } => self.next_csv(),
                Mode::Done => return None,
            };
            if item.is_some() {
                return item;
            }
        }
    }
}
