//! Fuzz target: the Keeper decoder over arbitrary bytes, in both schemas and with reads of
//! every size. It must never panic, never report an I/O error for in-memory input, and every
//! row it yields must be a JSON object with the table's columns.
#![no_main]

use std::io::{self, Read};
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use logrelay_core::keeper::{DecodeOptions, Decoded, RowReader, SchemaMode};
use logrelay_core::schema::KEEPER_COLUMNS;

/// Small enough that a bomb in the corpus stops fast, big enough for real inputs.
const MAX_DECOMPRESSED: u64 = 16 * 1024 * 1024;

/// Hands out at most `step` bytes per read, so every buffer boundary gets exercised.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let (control, input) = match data.split_first() {
        Some((c, rest)) => (*c, rest),
        None => (0, data),
    };
    let schema = if control & 1 == 0 {
        SchemaMode::Keeper
    } else {
        SchemaMode::Passthrough {
            time_field: "timestamp".to_owned(),
        }
    };
    let keeper = schema == SchemaMode::Keeper;
    let options = DecodeOptions {
        schema,
        max_decompressed_bytes: MAX_DECOMPRESSED,
        now: UNIX_EPOCH + Duration::from_secs(1_736_985_600),
    };
    let step = match control >> 1 {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let reader = Trickle { bytes: input, step };
    for item in RowReader::new(reader, "fuzz", &options) {
        match item {
            Ok(Decoded::Row(row)) => {
                let value: serde_json::Value =
                    serde_json::from_slice(&row.json).expect("rows are JSON");
                let object = value.as_object().expect("rows are objects");
                assert!(object["TimeGenerated"].is_string());
                if keeper {
                    assert_eq!(object.len(), KEEPER_COLUMNS.len());
                    for column in KEEPER_COLUMNS {
                        assert!(object.contains_key(column.name), "{}", column.name);
                    }
                }
            }
            Ok(Decoded::Rejected(entry)) => assert!(entry.reason.starts_with("fuzz: ")),
            Err(e) => panic!("in-memory input cannot fail to read: {e}"),
        }
    }
});
