//! The hot path, stage by stage, in bytes per second: decode (NDJSON and JSON array, through
//! `keeper::RowReader`, which also converts each event to its table row), the JSON parse
//! alone (the floor conversion adds to), packing into request bodies, and gzip as the
//! ingestor does it (libdeflate, rows laid out by `pack::layout`) at the default and the
//! fastest level, beside what earlier releases did (zlib level 6, rows in input order).
//!
//! Input: the bundled sample (600 realistic Keeper push-shape events) repeated to about 3 MB,
//! so each stage sees the same events `logrelay send` does. Run with `make bench`, or
//! `cargo bench -p logrelay-core --bench hot_path -- --measurement-time 3`.

use std::hint::black_box;
use std::io::{Cursor, Read, Write};
use std::time::SystemTime;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use logrelay_core::ingest::pack::{pack, Batch};
use logrelay_core::ingest::tuning::DEFAULT_GZIP_LEVEL;
use logrelay_core::ingest::{gzip, EncodedRow, MAX_BATCH_BYTES};
use logrelay_core::keeper::{DecodeOptions, Decoded, RowReader, SchemaMode};

/// The bundled sample: Keeper's Azure Monitor push shape, NDJSON, gzip.
const SAMPLE_GZ: &[u8] = include_bytes!("../../samples/keeper-events.ndjson.gz");

/// Copies of the sample in the bench input (600 events each: about 10,000 events, 2.8 MB).
const COPIES: usize = 17;

/// Fails the bench with what went wrong (benches have no `Result` to return).
fn must<T, E: std::fmt::Display>(result: Result<T, E>, what: &str) -> T {
    result.unwrap_or_else(|error| panic!("hot_path bench: {what}: {error}"))
}

/// The sample's event lines, each without its newline.
fn sample_lines() -> Vec<Vec<u8>> {
    let mut text = Vec::new();
    must(
        GzDecoder::new(SAMPLE_GZ).read_to_end(&mut text),
        "cannot inflate the sample",
    );
    text.split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// NDJSON input: the sample repeated.
fn ndjson(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..COPIES {
        for line in lines {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out
}

/// The same events as one JSON array.
fn json_array(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![b'['];
    for (index, line) in (0..COPIES).flat_map(|_| lines.iter()).enumerate() {
        if index > 0 {
            out.extend_from_slice(b",\n");
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"]\n");
    out
}

fn options() -> DecodeOptions {
    DecodeOptions {
        schema: SchemaMode::Keeper,
        max_decompressed_bytes: u64::MAX,
        now: SystemTime::now(),
    }
}

/// Decodes `input` to rows; a rejected event would make the numbers meaningless.
fn decode(input: &[u8], options: &DecodeOptions) -> Vec<EncodedRow> {
    RowReader::new(Cursor::new(input), "bench", options)
        .map(|item| match must(item, "decoding failed") {
            Decoded::Row(row) => row,
            Decoded::Rejected(entry) => panic!("hot_path bench: rejected: {}", entry.reason),
        })
        .collect()
}

/// The gzipped body of `batch` as earlier releases built it: zlib (flate2's zlib-rs) at
/// level 6, rows in input order.
fn gzip_zlib6_input_order(batch: &Batch) -> Vec<u8> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(batch.json_bytes / 4),
        Compression::default(),
    );
    must(encoder.write_all(b"["), "gzip write");
    for (index, row) in batch.rows.iter().enumerate() {
        if index > 0 {
            must(encoder.write_all(b","), "gzip write");
        }
        must(encoder.write_all(&row.json), "gzip write");
    }
    must(encoder.write_all(b"]"), "gzip write");
    must(encoder.finish(), "gzip finish")
}

fn hot_path(c: &mut Criterion) {
    let lines = sample_lines();
    let ndjson = ndjson(&lines);
    let array = json_array(&lines);
    let options = options();
    let rows = decode(&ndjson, &options);
    assert_eq!(
        rows.len(),
        lines.len() * COPIES,
        "every event becomes a row"
    );
    let row_bytes: usize = rows.iter().map(|row| row.json.len()).sum();

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Bytes(ndjson.len() as u64));
    group.bench_function("ndjson_to_rows", |b| {
        b.iter(|| decode(black_box(&ndjson), &options).len());
    });
    // The floor: parsing each line into a serde_json::Value, with no framing or conversion.
    group.bench_function("ndjson_parse_only", |b| {
        b.iter(|| {
            black_box(&ndjson)
                .split(|&byte| byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| {
                    let value = must(serde_json::from_slice::<serde_json::Value>(line), "parse");
                    value.as_object().map_or(0, serde_json::Map::len)
                })
                .sum::<usize>()
        });
    });
    group.throughput(Throughput::Bytes(array.len() as u64));
    group.bench_function("json_array_to_rows", |b| {
        b.iter(|| decode(black_box(&array), &options).len());
    });
    group.finish();

    let mut group = c.benchmark_group("pack");
    group.throughput(Throughput::Bytes(row_bytes as u64));
    group.bench_function("rows_into_1mb_bodies", |b| {
        b.iter_batched(
            || rows.clone(),
            |rows| pack(rows, MAX_BATCH_BYTES).batches.len(),
            BatchSize::LargeInput,
        );
    });
    group.finish();

    // One full request body: as the ingestor gzips it, and as earlier releases did.
    let body = pack(rows.iter().cloned(), MAX_BATCH_BYTES)
        .batches
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut group = c.benchmark_group("gzip");
    group.throughput(Throughput::Bytes(body.json_bytes as u64));
    group.bench_function("one_1mb_body_default_level", |b| {
        b.iter(|| must(gzip(black_box(&body), DEFAULT_GZIP_LEVEL), "gzip").len());
    });
    group.bench_function("one_1mb_body_fast_level", |b| {
        b.iter(|| must(gzip(black_box(&body), 1), "gzip").len());
    });
    // Earlier releases, for comparison: the ingestor no longer does this.
    group.bench_function("one_1mb_body_zlib6_input_order", |b| {
        b.iter(|| gzip_zlib6_input_order(black_box(&body)).len());
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
