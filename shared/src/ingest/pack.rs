//! Pure greedy packing of serialized rows into JSON-array bodies under the byte limit.
//!
//! A body is `[` + rows joined by `,` + `]`, so `n` rows of sizes `s₁..sₙ` make a body of
//! `2 + Σsᵢ + (n − 1)` bytes. Brackets and commas are counted (unlike the Python and Java
//! SDKs, which overshoot by `2 + (n − 1)` bytes). Example: with a limit of 10, rows of 3 and 4
//! bytes fit together (`2 + 3 + 4 + 1 = 10`), a third row of 1 byte starts the next body.

use std::io::{self, Write};

use super::EncodedRow;

/// Bytes a body needs for its brackets.
const BRACKETS: usize = 2;

/// Bytes of JSON-array body for rows of `sizes` (an empty body is `[]`).
pub fn body_len(sizes: impl IntoIterator<Item = usize>) -> usize {
    let (sum, count) = sizes
        .into_iter()
        .fold((0usize, 0usize), |(sum, count), size| {
            (sum + size, count + 1)
        });
    BRACKETS + sum + count.saturating_sub(1)
}

/// Whether a row of `row_bytes` can be sent at all under `limit` (alone in its own body).
pub fn fits_alone(row_bytes: usize, limit: usize) -> bool {
    row_bytes + BRACKETS <= limit
}

/// The dead-letter reason for a row too big for any request.
pub fn oversized_reason(row_bytes: usize, limit: usize) -> String {
    format!(
        "row is {row_bytes} bytes of JSON; a request body holds at most {limit} bytes \
         (Logs Ingestion API limit 1 MB), so it can never be sent; shorten its fields"
    )
}

/// Rows collected for one request.
#[derive(Debug, Default)]
pub struct Batch {
    /// The rows, in input order.
    pub rows: Vec<EncodedRow>,
    /// Serialized JSON-array bytes of `rows` (brackets and commas included).
    pub json_bytes: usize,
}

impl Batch {
    /// A batch of `rows`, measuring them.
    pub fn from_rows(rows: Vec<EncodedRow>) -> Batch {
        let json_bytes = body_len(rows.iter().map(|row| row.json.len()));
        Batch { rows, json_bytes }
    }

    /// True when it holds no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Splits in two halves (first half gets the smaller share), for a 413 answer.
    pub fn split(mut self) -> (Batch, Batch) {
        let second = self.rows.split_off(self.rows.len() / 2);
        (Batch::from_rows(self.rows), Batch::from_rows(second))
    }
}

/// What happened to a pushed row.
#[derive(Debug)]
pub enum Packed {
    /// The row joined the current batch.
    Added,
    /// The current batch was full: here it is; the row started the next one.
    Full(Batch),
    /// The row can never be sent: it is returned with the dead-letter reason.
    Oversized(EncodedRow, String),
}

/// The incremental greedy packer: push rows, take full batches.
#[derive(Debug)]
pub struct Packer {
    limit: usize,
    current: Batch,
}

impl Packer {
    /// A packer making bodies of at most `limit` bytes.
    pub fn new(limit: usize) -> Packer {
        Packer {
            limit,
            current: Batch::default(),
        }
    }

    /// The byte limit per body.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Adds a row, closing the current batch first when the row does not fit in it.
    pub fn push(&mut self, row: EncodedRow) -> Packed {
        let size = row.json.len();
        if !fits_alone(size, self.limit) {
            return Packed::Oversized(row, oversized_reason(size, self.limit));
        }
        // Adding to a non-empty batch costs the row and one comma.
        let grown = if self.current.is_empty() {
            BRACKETS + size
        } else {
            self.current.json_bytes + 1 + size
        };
        if grown <= self.limit {
            self.current.rows.push(row);
            self.current.json_bytes = grown;
            Packed::Added
        } else {
            let full = std::mem::take(&mut self.current);
            self.current.rows.push(row);
            self.current.json_bytes = BRACKETS + size;
            Packed::Full(full)
        }
    }

    /// Takes the current batch (possibly empty), leaving the packer empty.
    pub fn take(&mut self) -> Batch {
        std::mem::take(&mut self.current)
    }

    /// Rows waiting in the current batch.
    pub fn pending(&self) -> usize {
        self.current.rows.len()
    }
}

/// Everything [`pack`] produced.
#[derive(Debug, Default)]
pub struct Packing {
    /// Bodies to send, in input order.
    pub batches: Vec<Batch>,
    /// Rows too large for any request, each with its reason.
    pub oversized: Vec<(EncodedRow, String)>,
}

/// Packs all of `rows` greedily under `limit` (the whole-input form of [`Packer`]).
pub fn pack(rows: impl IntoIterator<Item = EncodedRow>, limit: usize) -> Packing {
    let mut packer = Packer::new(limit);
    let mut packing = Packing::default();
    for row in rows {
        match packer.push(row) {
            Packed::Added => {}
            Packed::Full(batch) => packing.batches.push(batch),
            Packed::Oversized(row, reason) => packing.oversized.push((row, reason)),
        }
    }
    let last = packer.take();
    if !last.is_empty() {
        packing.batches.push(last);
    }
    packing
}

/// Writes the JSON array body of `rows` to `out`, the rows laid out for compression (see
/// [`layout`]), without building the array in memory first.
pub fn write_body(rows: &[EncodedRow], out: &mut impl Write) -> io::Result<()> {
    out.write_all(b"[")?;
    for (index, row) in layout(rows).into_iter().enumerate() {
        if index > 0 {
            out.write_all(b",")?;
        }
        out.write_all(row)?;
    }
    out.write_all(b"]")
}

/// The member a row's layout key starts at: Keeper rows hold their unique fields
/// (`TimeGenerated`, `EventId`) first, and what follows (`audit_event`, `category`,
/// addresses, versions, `username`, ...) repeats across events.
const LAYOUT_KEY_FROM: &[u8] = b",\"audit_event\":";

/// The rows of a body in the order they are written: the first row first, so a body is
/// still known by the event it starts with (logs, and the emulator's fault schedules, name
/// a body by its first `EventId`); the rest sorted by what follows their unique fields, so
/// events of the same type, address and user sit side by side and the compressor finds
/// long, near matches. Azure keeps no order within a request (rows are stored by
/// `TimeGenerated`), so only the wire size changes: on the bench's data, 7-12 % fewer bytes
/// at every level (BENCHMARKS.md). Rows without the member (passthrough) sort by their
/// whole text.
pub fn layout(rows: &[EncodedRow]) -> Vec<&[u8]> {
    let Some((first, rest)) = rows.split_first() else {
        return Vec::new();
    };
    let finder = memchr::memmem::Finder::new(LAYOUT_KEY_FROM);
    let mut keyed: Vec<(&[u8], &[u8])> = rest
        .iter()
        .map(|row| {
            let json = row.json.as_slice();
            let key = finder.find(json).map_or(json, |at| &json[at..]);
            (key, json)
        })
        .collect();
    keyed.sort_unstable();
    std::iter::once(first.json.as_slice())
        .chain(keyed.into_iter().map(|(_, json)| json))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Origin;
    use std::sync::Arc;

    /// A row of exactly `size` bytes of valid JSON (`"xxx"`), numbered `record`.
    fn row(size: usize, record: u64) -> EncodedRow {
        assert!(size >= 2);
        let mut json = Vec::with_capacity(size);
        json.push(b'"');
        json.resize(size - 1, b'x');
        json.push(b'"');
        EncodedRow {
            json,
            origin: Origin {
                source: Arc::from("test"),
                record,
            },
        }
    }

    fn sizes_of(batch: &Batch) -> Vec<usize> {
        batch.rows.iter().map(|r| r.json.len()).collect()
    }

    #[test]
    fn body_length_counts_brackets_and_commas() {
        assert_eq!(body_len([]), 2);
        assert_eq!(body_len([5]), 7);
        assert_eq!(body_len([3, 4]), 10);
        assert_eq!(body_len([3, 4, 5]), 16);
    }

    #[test]
    fn packs_greedily_at_exact_boundaries() {
        // (limit, row sizes, expected sizes per batch, expected oversized sizes)
        type Case = (usize, Vec<usize>, Vec<Vec<usize>>, Vec<usize>);
        let cases: Vec<Case> = vec![
            // 2 + 3 + 1 + 4 = 10: exactly at the limit, one body.
            (10, vec![3, 4], vec![vec![3, 4]], vec![]),
            // 2 + 3 + 1 + 5 = 11: one byte over, two bodies.
            (10, vec![3, 5], vec![vec![3], vec![5]], vec![]),
            // A row of limit - 2 fits alone; limit - 1 can never be sent.
            (10, vec![8, 9, 8], vec![vec![8], vec![8]], vec![9]),
            // Many small rows: 2 + 2*4 + 3 = 13 > 12, so 3 per body.
            (
                12,
                vec![2; 7],
                vec![vec![2; 3], vec![2; 3], vec![2]],
                vec![],
            ),
            // Nothing in, nothing out.
            (10, vec![], vec![], vec![]),
            // The real limit: two rows that together make exactly 1,000,000 bytes.
            (
                1_000_000,
                vec![499_998, 499_999, 2],
                vec![vec![499_998, 499_999], vec![2]],
                vec![],
            ),
            (1_000_000, vec![999_998], vec![vec![999_998]], vec![]),
            (1_000_000, vec![999_999], vec![], vec![999_999]),
        ];
        for (limit, sizes, expected, expected_oversized) in cases {
            let rows = sizes.iter().enumerate().map(|(i, &s)| row(s, i as u64));
            let packing = pack(rows, limit);
            let got: Vec<Vec<usize>> = packing.batches.iter().map(sizes_of).collect();
            assert_eq!(got, expected, "limit {limit}, sizes {sizes:?}");
            let oversized: Vec<usize> = packing
                .oversized
                .iter()
                .map(|(r, _)| r.json.len())
                .collect();
            assert_eq!(oversized, expected_oversized, "limit {limit}");
            for batch in &packing.batches {
                let mut body = Vec::new();
                write_body(&batch.rows, &mut body).unwrap();
                assert_eq!(body.len(), batch.json_bytes);
                assert!(body.len() <= limit);
            }
        }
    }

    #[test]
    fn an_oversized_row_is_returned_with_its_size_and_the_limit() {
        let packing = pack([row(11, 1)], 10);
        let (rejected, reason) = &packing.oversized[0];
        assert_eq!(rejected.origin.record, 1);
        assert!(reason.contains("11 bytes"), "{reason}");
        assert!(reason.contains("at most 10 bytes"), "{reason}");
    }

    #[test]
    fn bodies_are_valid_json_arrays_of_the_rows() {
        let packing = pack((0..50).map(|i| row(2 + i % 7, i as u64)), 40);
        for batch in &packing.batches {
            let mut body = Vec::new();
            write_body(&batch.rows, &mut body).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(value.as_array().unwrap().len(), batch.rows.len());
        }
    }

    #[test]
    fn a_body_keeps_its_first_row_first_lays_the_rest_side_by_side_and_keeps_every_row() {
        let keeper = |time: &str, id: &str, event: &str, user: &str| {
            EncodedRow {
            json: format!(
                r#"{{"TimeGenerated":"{time}","EventId":"{id}","audit_event":"{event}","username":"{user}"}}"#
            )
            .into_bytes(),
            origin: Origin {
                source: Arc::from("test"),
                record: 0,
            },
        }
        };
        let rows = vec![
            keeper("2026-01-01T00:00:04Z", "d", "share", "zoe"),
            keeper("2026-01-01T00:00:03Z", "c", "login", "bob"),
            keeper("2026-01-01T00:00:01Z", "a", "share", "ann"),
            keeper("2026-01-01T00:00:02Z", "b", "login", "ann"),
            row(5, 9),
        ];
        let mut body = Vec::new();
        write_body(&rows, &mut body).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let ids: Vec<&str> = value
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.get("EventId")
                    .and_then(|id| id.as_str())
                    .unwrap_or("plain")
            })
            .collect();
        // The first row stays first; without the member, the whole text is the key (`"`
        // sorts before `{`).
        assert_eq!(ids, ["d", "plain", "b", "c", "a"]);
        assert_eq!(body.len(), Batch::from_rows(rows).json_bytes);
    }

    #[test]
    fn splitting_a_batch_keeps_every_row_in_order() {
        let batch = Batch::from_rows((0..5).map(|i| row(3, i)).collect());
        let (first, second) = batch.split();
        let records: Vec<u64> = first
            .rows
            .iter()
            .chain(&second.rows)
            .map(|r| r.origin.record)
            .collect();
        assert_eq!(records, vec![0, 1, 2, 3, 4]);
        assert_eq!(first.rows.len(), 2);
        assert_eq!(first.json_bytes, body_len([3, 3]));
        assert_eq!(second.json_bytes, body_len([3, 3, 3]));
    }

    #[test]
    fn random_row_sizes_pack_under_the_limit_in_order_without_loss_or_duplication() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for _ in 0..300 {
            let limit = rng.usize(3..2_000);
            let count = rng.usize(0..300);
            let sizes: Vec<usize> = (0..count)
                .map(|_| rng.usize(2..limit.saturating_mul(2).max(3)).min(limit + 5))
                .collect();
            let rows = sizes.iter().enumerate().map(|(i, &s)| row(s, i as u64));
            let packing = pack(rows, limit);

            let mut seen: Vec<u64> = Vec::new();
            for batch in &packing.batches {
                assert!(!batch.is_empty());
                assert!(batch.json_bytes <= limit, "{} > {limit}", batch.json_bytes);
                assert_eq!(
                    batch.json_bytes,
                    body_len(batch.rows.iter().map(|r| r.json.len()))
                );
                seen.extend(batch.rows.iter().map(|r| r.origin.record));
            }
            // Sent rows keep input order.
            assert!(seen.windows(2).all(|w| w[0] < w[1]));
            for (rejected, _) in &packing.oversized {
                assert!(!fits_alone(rejected.json.len(), limit));
                seen.push(rejected.origin.record);
            }
            seen.sort_unstable();
            let all: Vec<u64> = (0..count as u64).collect();
            assert_eq!(seen, all, "every row exactly once");
            // Greedy: no two neighbouring bodies could have been merged.
            for pair in packing.batches.windows(2) {
                let first_of_next = pair[1].rows[0].json.len();
                assert!(pair[0].json_bytes + 1 + first_of_next > limit);
            }
        }
    }
}
