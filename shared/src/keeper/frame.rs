//! Record framing over a `BufRead` with bounded memory: lines (NDJSON, syslog, CSV) and JSON
//! values (arrays streamed element by element, concatenated or pretty-printed objects).
//!
//! Neither framer parses JSON: they find record boundaries (tracking strings, escapes and
//! depth as counters, never recursing) and hand each record's bytes to serde_json.

use std::io::{self, BufRead};

/// Largest record (line or array element) buffered; longer ones are skipped to their end
/// and rejected. Keeper events are a few hundred bytes; 8 MiB leaves room for odd exports.
pub const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

/// Appends `bytes` to `buf` without growing it past [`MAX_RECORD_BYTES`]; says whether it fit.
fn append_capped(buf: &mut Vec<u8>, bytes: &[u8]) -> bool {
    let room = MAX_RECORD_BYTES.saturating_sub(buf.len());
    if bytes.len() <= room {
        buf.extend_from_slice(bytes);
        true
    } else {
        buf.extend_from_slice(&bytes[..room]);
        false
    }
}

/// One line from a [`LineFramer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineOut {
    /// The line (without `\n` or `\r\n`) is in the framer's buffer.
    Line {
        line: u64,
    },
    /// The line passed [`MAX_RECORD_BYTES`]; its first bytes are in the buffer, the rest skipped.
    TooLong {
        line: u64,
    },
    End,
}

/// Splits a stream into lines, reusing one buffer.
#[derive(Debug)]
pub(crate) struct LineFramer {
    pub(crate) buf: Vec<u8>,
    line: u64,
}

impl LineFramer {
    /// A framer whose next line is numbered `lines_before + 1`.
    pub(crate) fn new(lines_before: u64) -> Self {
        LineFramer {
            buf: Vec::new(),
            line: lines_before,
        }
    }

    /// The number of the last line returned.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// The next line. On an error the partial line is in the buffer.
    pub(crate) fn next(&mut self, reader: &mut dyn BufRead) -> io::Result<LineOut> {
        self.buf.clear();
        let mut fits = true;
        let mut any = false;
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                if !any {
                    return Ok(LineOut::End);
                }
                break;
            }
            any = true;
            match chunk.iter().position(|&b| b == b'\n') {
                Some(p) => {
                    if fits {
                        fits = append_capped(&mut self.buf, &chunk[..p]);
                    }
                    reader.consume(p + 1);
                    break;
                }
                None => {
                    let n = chunk.len();
                    if fits {
                        fits = append_capped(&mut self.buf, chunk);
                    }
                    reader.consume(n);
                }
            }
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(if fits {
            LineOut::Line { line: self.line }
        } else {
            LineOut::TooLong { line: self.line }
        })
    }
}

/// One value from a [`JsonFramer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonOut {
    /// The value's bytes are in the framer's buffer.
    Value {
        record: u64,
        line: u64,
    },
    /// The value passed [`MAX_RECORD_BYTES`]; its first bytes are in the buffer.
    TooLong {
        record: u64,
        line: u64,
    },
    /// The value's structure is broken; what was read of it is in the buffer.
    Broken {
        record: u64,
        line: u64,
        why: &'static str,
    },
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An array element: ends at `,` or `]` at depth 0.
    Element,
    /// A top-level object: ends when its braces balance.
    Object,
    /// A top-level scalar or garbage: ends at the end of the line.
    Scalar,
}

/// Splits a stream of JSON values. Top-level arrays are opened, so `[a,b][c]`, `a b c` and
/// pretty-printed objects all yield their objects one by one, numbered from 1.
#[derive(Debug)]
pub(crate) struct JsonFramer {
    pub(crate) buf: Vec<u8>,
    line: u64,
    record: u64,
    in_array: bool,
    in_value: bool,
    kind: Kind,
    depth: u64,
    in_string: bool,
    escape: bool,
    fits: bool,
    start_line: u64,
}

impl JsonFramer {
    /// A framer whose input starts on line `line`.
    pub(crate) fn new(line: u64) -> Self {
        JsonFramer {
            buf: Vec::new(),
            line,
            record: 0,
            in_array: false,
            in_value: false,
            kind: Kind::Object,
            depth: 0,
            in_string: false,
            escape: false,
            fits: true,
            start_line: line,
        }
    }

    /// The line the reader is on now.
    pub(crate) fn line(&self) -> u64 {
        self.line
    }

    /// The record being read now: the one started, or the next one when the reader stopped
    /// between values (a truncated gzip or a gzip bomb after a comma).
    pub(crate) fn current_record(&self) -> u64 {
        if self.in_value {
            self.record
        } else {
            self.record + 1
        }
    }

    /// Whether the last value ended within the line it started on, at top level.
    pub(crate) fn last_was_one_line_object(&self) -> bool {
        !self.in_array && self.kind == Kind::Object && self.start_line == self.line
    }

    fn start(&mut self, first: u8) {
        self.record += 1;
        self.start_line = self.line;
        self.in_value = true;
        self.kind = if self.in_array {
            Kind::Element
        } else if first == b'{' {
            Kind::Object
        } else {
            Kind::Scalar
        };
        self.depth = 0;
        self.in_string = false;
        self.escape = false;
        self.fits = true;
    }

    fn finish(&mut self) -> JsonOut {
        self.in_value = false;
        if self.fits {
            JsonOut::Value {
                record: self.record,
                line: self.start_line,
            }
        } else {
            JsonOut::TooLong {
                record: self.record,
                line: self.start_line,
            }
        }
    }

    fn broken(&mut self, why: &'static str) -> JsonOut {
        self.in_value = false;
        JsonOut::Broken {
            record: self.record,
            line: self.start_line,
            why,
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.fits {
            self.fits = append_capped(&mut self.buf, bytes);
        }
    }

    /// The next value. On an error the partial value is in the buffer.
    pub(crate) fn next(&mut self, reader: &mut dyn BufRead) -> io::Result<JsonOut> {
        self.buf.clear();
        loop {
            let chunk = reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(self.at_end());
            }
            let len = chunk.len();
            let mut i = 0;
            let mut out = None;
            while i < len && out.is_none() {
                if !self.in_value {
                    match chunk[i] {
                        b'\n' => self.line += 1,
                        b' ' | b'\t' | b'\r' => {}
                        // Empty elements (`[a,,b]`, `[a,]`) carry nothing: skip them.
                        b',' if self.in_array => {}
                        b']' if self.in_array => self.in_array = false,
                        b'[' if !self.in_array => self.in_array = true,
                        first => {
                            self.start(first);
                            continue;
                        }
                    }
                    i += 1;
                    continue;
                }
                let start = i;
                let mut end = None;
                while i < len {
                    let b = chunk[i];
                    if self.in_string {
                        if self.escape {
                            self.escape = false;
                        } else if b == b'\\' {
                            self.escape = true;
                        } else if b == b'"' {
                            self.in_string = false;
                        } else if b == b'\n' {
                            // JSON strings cannot hold a raw newline: resynchronise here.
                            end = Some((i, i + 1, Some("a string runs past the end of its line")));
                            self.line += 1;
                            break;
                        }
                        i += 1;
                        continue;
                    }
                    match b {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' if self.depth > 0 => {
                            self.depth -= 1;
                            if self.depth == 0 && self.kind == Kind::Object {
                                end = Some((i + 1, i + 1, None));
                                break;
                            }
                        }
                        b']' if self.kind == Kind::Element => {
                            self.in_array = false;
                            end = Some((i, i + 1, None));
                            break;
                        }
                        b',' if self.depth == 0 && self.kind == Kind::Element => {
                            end = Some((i, i + 1, None));
                            break;
                        }
                        b'\n' => {
                            if self.kind == Kind::Scalar && self.depth == 0 {
                                end = Some((i, i + 1, None));
                                self.line += 1;
                                break;
                            }
                            self.line += 1;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                match end {
                    Some((value_end, consumed, broken)) => {
                        self.keep(&chunk[start..value_end]);
                        i = consumed;
                        out = Some(match broken {
                            Some(why) => self.broken(why),
                            None => self.finish(),
                        });
                    }
                    None => self.keep(&chunk[start..len]),
                }
            }
            reader.consume(i);
            if let Some(out) = out {
                return Ok(out);
            }
        }
    }

    fn at_end(&mut self) -> JsonOut {
        if !self.in_value {
            return JsonOut::End;
        }
        if self.in_string || (self.depth > 0) || self.kind == Kind::Object {
            // An object that had balanced would have finished already.
            self.broken("the input ends inside this value")
        } else {
            self.finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(input: &str) -> Vec<(JsonOut, String)> {
        let mut reader = io::BufReader::with_capacity(3, input.as_bytes());
        let mut framer = JsonFramer::new(1);
        let mut out = Vec::new();
        loop {
            let item = framer.next(&mut reader).unwrap();
            if item == JsonOut::End {
                return out;
            }
            out.push((item, String::from_utf8_lossy(&framer.buf).into_owned()));
        }
    }

    #[test]
    fn an_array_yields_each_element_with_its_line() {
        let got = values("[\n {\"a\":\"x,]}\"},\n {\"b\":[1,{\"c\":2}]}\n]\n");
        assert_eq!(
            got,
            vec![
                (
                    JsonOut::Value { record: 1, line: 2 },
                    "{\"a\":\"x,]}\"}".to_owned()
                ),
                (
                    JsonOut::Value { record: 2, line: 3 },
                    "{\"b\":[1,{\"c\":2}]}\n".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn concatenated_and_pretty_objects_are_split() {
        let got = values("{\"a\":\n1}{\"b\":\"\\\"}\"}\n5\n[{\"c\":3}]");
        let texts: Vec<&str> = got.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            vec!["{\"a\":\n1}", "{\"b\":\"\\\"}\"}", "5", "{\"c\":3}"]
        );
    }

    #[test]
    fn a_raw_newline_in_a_string_breaks_only_that_value() {
        let got = values("[{\"a\":\"open\n},{\"b\":1}]");
        assert!(matches!(got[0].0, JsonOut::Broken { record: 1, .. }));
        assert_eq!(got.last().unwrap().1, "{\"b\":1}");
    }

    #[test]
    fn an_unterminated_value_is_broken_at_the_end() {
        let got = values("[{\"a\":1},{\"b\":");
        assert_eq!(got[0].1, "{\"a\":1}");
        assert!(matches!(
            got[1].0,
            JsonOut::Broken {
                record: 2,
                line: 1,
                ..
            }
        ));
    }

    #[test]
    fn lines_are_capped_and_skipped_to_their_end() {
        let long = "x".repeat(MAX_RECORD_BYTES + 10);
        let input = format!("a\r\n{long}\nb");
        let mut reader = io::BufReader::new(input.as_bytes());
        let mut framer = LineFramer::new(0);
        assert_eq!(framer.next(&mut reader).unwrap(), LineOut::Line { line: 1 });
        assert_eq!(framer.buf, b"a");
        assert_eq!(
            framer.next(&mut reader).unwrap(),
            LineOut::TooLong { line: 2 }
        );
        assert_eq!(framer.buf.len(), MAX_RECORD_BYTES);
        assert_eq!(framer.next(&mut reader).unwrap(), LineOut::Line { line: 3 });
        assert_eq!(framer.buf, b"b");
        assert_eq!(framer.next(&mut reader).unwrap(), LineOut::End);
    }
}
