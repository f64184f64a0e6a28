//! JSON text written exactly as serde_json's compact serializer writes it (rows must stay
//! byte-for-byte what `serde_json::to_vec` gave), without its byte-by-byte escape loop: a
//! string that needs no escape, which is nearly every Keeper field, is copied whole, and
//! any other goes through serde_json itself.

use serde_json::{Map, Value};

/// A byte of `0x01` in every lane of a word (and `0x80`: every lane's top bit).
const LANES_LOW: u64 = 0x0101_0101_0101_0101;
const LANES_HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `word` is below `n` (n ≤ 128), exact for "any"
/// (<https://graphics.stanford.edu/~seander/bithacks.html#HasLessInWord>).
const fn has_less(word: u64, n: u64) -> bool {
    word.wrapping_sub(LANES_LOW * n) & !word & LANES_HIGH != 0
}

/// Whether any byte of `word` is `byte`.
const fn has_byte(word: u64, byte: u8) -> bool {
    has_less(word ^ (LANES_LOW * byte as u64), 1)
}

/// Whether serde_json escapes a byte of `word`: `"`, `\` and U+0000–U+001F, nothing else
/// (RFC 8259 §7 requires those; serde_json's `ESCAPE` table escapes exactly them).
const fn word_needs_escape(word: u64) -> bool {
    has_less(word, 0x20) | has_byte(word, b'"') | has_byte(word, b'\\')
}

/// Whether any byte of `bytes` needs an escape, eight at a time (most fields are short, so
/// a word at a time beats a vector loop that never starts). The last word overlaps the one
/// before rather than being copied out: a copied tail stalls the load that reads it.
fn any_escape(bytes: &[u8]) -> bool {
    let word_at = |at: usize| {
        let mut lanes = [0; 8];
        lanes.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(lanes)
    };
    if bytes.len() < 8 {
        return bytes
            .iter()
            .any(|&byte| (byte < 0x20) | (byte == b'"') | (byte == b'\\'));
    }
    let mut at = 0;
    while at + 8 <= bytes.len() {
        if word_needs_escape(word_at(at)) {
            return true;
        }
        at += 8;
    }
    at < bytes.len() && word_needs_escape(word_at(bytes.len() - 8))
}

/// Appends `s` as a JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    if any_escape(bytes) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
        return;
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
}

/// Appends `value` as serde_json writes it (objects in their map's order).
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Numbers are rare in rows and their formatting is serde_json's own business.
        Value::Number(number) => {
            let _ = serde_json::to_writer(&mut *out, number);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

/// Appends `map` as a JSON object.
pub(crate) fn write_map(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// Appends `"key":` (the key needs no escape: it is one of ours).
pub(crate) fn write_key(out: &mut Vec<u8>, key: &str) {
    write_str(out, key);
    out.push(b':');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Strings with every kind of character serde_json treats specially, and some it does not.
    fn hostile_strings() -> Vec<String> {
        let mut strings: Vec<String> = (0u8..0x20).map(|b| format!("a{}b", b as char)).collect();
        strings.extend(
            [
                "",
                "plain",
                "quote \" inside",
                "back\\slash",
                "\u{7f} delete",
                "é ü 漢字 😀",
                "\u{2028}\u{2029}",
                "</script>",
                "tab\tnew\nline\r",
                "\\\"",
                "\u{feff}bom",
            ]
            .map(String::from),
        );
        // Escapes inside a 16-byte scan chunk, at its edges, and in the remainder after chunks.
        for at in [0, 7, 8, 15, 16, 31, 33, 39, 40] {
            for escaped in ['"', '\\', '\n', '\u{1}'] {
                let mut long: String = "x".repeat(41);
                long.replace_range(at..=at, &escaped.to_string());
                strings.push(long);
            }
        }
        strings.push("y".repeat(64));
        strings
    }

    #[test]
    fn every_byte_value_at_every_lane_is_judged_as_one_byte_at_a_time() {
        let escaped = |byte: u8| byte < 0x20 || byte == b'"' || byte == b'\\';
        for byte in 0..=u8::MAX {
            for len in 1..20 {
                for at in 0..len {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = byte;
                    assert_eq!(
                        any_escape(&bytes),
                        escaped(byte),
                        "{byte:#x} at {at} of {len}"
                    );
                }
            }
        }
        assert!(!any_escape(b""));
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for s in hostile_strings() {
            let mut ours = Vec::new();
            write_str(&mut ours, &s);
            assert_eq!(ours, serde_json::to_vec(&s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn values_are_written_as_serde_json_writes_them() {
        let strings = hostile_strings();
        let value = json!({
            "numbers": [0, -1, 18446744073709551615u64, -9223372036854775808i64, 1.5, 1e300,
                0.1, 2.0, -0.0, 123456789.125],
            "nested": {"a": [null, true, false, {"b": strings}], "": {}},
            "keys": strings.iter().map(|s| (s.clone(), Value::from(1))).collect::<Map<_, _>>(),
        });
        let mut ours = Vec::new();
        write_value(&mut ours, &value);
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
    }
}
