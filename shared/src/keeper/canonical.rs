//! The canonical JSON an event's `EventId` hashes (docs/eventid.md is the specification;
//! `scripts/eventid_vectors.py` is an independent implementation of it).
//!
//! One rule set makes the four shapes agree. CSV cells and Commander's syslog params are
//! always text, so a field's JSON type cannot be known from them; the canonical form
//! therefore forgets the difference between a scalar and the text that spells it:
//! - a string whose whole text is a JSON number (RFC 8259 §6), `true`, `false` or `null`
//!   stands for that value (`"5"` is `5`, `"1.0"` is `1`, `"true"` is `true`);
//! - an object member that is `null` or the empty string is left out, as an absent field
//!   (an empty CSV cell is all three);
//! - numbers are written as ECMAScript's Number::toString writes them (RFC 8785
//!   §3.2.2.3), except integers that fit 64 bits, which keep all their digits;
//! - object keys are sorted by code point at every level; no whitespace; strings escaped
//!   as serde_json and Python's `json.dumps(ensure_ascii=False)` both do.

use serde_json::{Number, Value};

// Strings are escaped as serde_json and Python's `json.dumps(ensure_ascii=False)` both do.
use super::json_text::write_str;

/// Largest decimal exponent ECMAScript writes without an exponent (Number::toString, ECMA-262
/// §6.1.6.1.20: plain digits while n ≤ 21).
const ES_PLAIN_MAX_EXP: i32 = 21;

/// Smallest `n` written as `0.000ddd` (ECMA-262 §6.1.6.1.20: −6 < n ≤ 0).
const ES_PLAIN_MIN_EXP: i32 = -6;

/// A value after the scalar rule.
enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(&'a str),
}

/// Whether `s` is exactly a JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
/// (RFC 8259 §6); no sign `+`, no leading zeros, no surrounding space.
pub(crate) fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// The number a numeric string stands for, read as serde_json reads the same token in a
/// JSON document (so a CSV cell and a JSON value agree); `None` when it is not a JSON
/// number or is beyond binary64 (then it stays a string).
pub(crate) fn number_of_str(s: &str) -> Option<Number> {
    if !is_json_number(s) {
        return None;
    }
    serde_json::from_str::<Number>(s).ok()
}

fn scalar_of_str(s: &str) -> Scalar<'_> {
    match s {
        "null" => Scalar::Null,
        "true" => Scalar::Bool(true),
        "false" => Scalar::Bool(false),
        _ => match number_of_str(s) {
            Some(n) => Scalar::Number(n),
            None => Scalar::Str(s),
        },
    }
}

/// The canonical text of a number: an integer that serde_json holds exactly (i64 or u64)
/// keeps its digits; any other goes through binary64 and ECMAScript's Number::toString.
pub(crate) fn number_text(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    // serde_json numbers are finite; NaN cannot come out of a parse.
    es_number(n.as_f64().unwrap_or(0.0))
}

/// ECMAScript Number::toString(x) (ECMA-262 §6.1.6.1.20, as RFC 8785 §3.2.2.3 uses it):
/// the shortest digits that round-trip, plain between 1e-7 and 1e21, else `d.ddde±x`.
pub(crate) fn es_number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return "0".to_owned();
    }
    // Rust's `{:e}` prints the shortest round-trip digits: `d.ddde-7`, `1e21`.
    let sci = format!("{:e}", x.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exponent.parse::<i32>().unwrap_or(0) + 1;
    let mut out = String::with_capacity(k as usize + 8);
    if x < 0.0 {
        out.push('-');
    }
    if k <= n && n <= ES_PLAIN_MAX_EXP {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= ES_PLAIN_MAX_EXP {
        out.push_str(&digits[..n as usize]);
        out.push('.');
        out.push_str(&digits[n as usize..]);
    } else if ES_PLAIN_MIN_EXP < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = n - 1;
        out.push('e');
        out.push(if e >= 0 { '+' } else { '-' });
        out.push_str(&e.abs().to_string());
    }
    out
}

/// An object member's value, borrowed from wherever the event keeps it.
pub(crate) enum Member<'a> {
    Value(&'a Value),
    Str(&'a str),
    Int(i64),
    /// An object given as its members (any order, unique keys).
    Members(Vec<(&'a str, Member<'a>)>),
}

impl Member<'_> {
    /// Whether the member is left out: `null`, `""`, or a string spelling `null`.
    fn absent(&self) -> bool {
        match self {
            Member::Value(Value::Null) => true,
            Member::Value(Value::String(s)) => s.is_empty() || s == "null",
            Member::Str(s) => s.is_empty() || *s == "null",
            _ => false,
        }
    }
}

fn write_scalar(out: &mut Vec<u8>, scalar: Scalar<'_>) {
    match scalar {
        Scalar::Null => out.extend_from_slice(b"null"),
        Scalar::Bool(true) => out.extend_from_slice(b"true"),
        Scalar::Bool(false) => out.extend_from_slice(b"false"),
        Scalar::Number(n) => out.extend_from_slice(number_text(&n).as_bytes()),
        Scalar::Str(s) => write_str(out, s),
    }
}

/// Appends the canonical form of `value`.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => write_scalar(out, Scalar::Null),
        Value::Bool(b) => write_scalar(out, Scalar::Bool(*b)),
        Value::Number(n) => out.extend_from_slice(number_text(n).as_bytes()),
        Value::String(s) => write_scalar(out, scalar_of_str(s)),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_members(
            out,
            map.iter()
                .map(|(k, v)| (k.as_str(), Member::Value(v)))
                .collect(),
        ),
    }
}

/// Appends the canonical form of an object given as its members (any order, unique keys).
pub(crate) fn write_members(out: &mut Vec<u8>, mut members: Vec<(&str, Member<'_>)>) {
    members.retain(|(_, m)| !m.absent());
    // Code point order is UTF-8 byte order, which is how `str` compares.
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (key, member)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        match member {
            Member::Value(v) => write_value(out, v),
            Member::Str(s) => write_scalar(out, scalar_of_str(s)),
            Member::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
            Member::Members(members) => write_members(out, members),
        }
    }
    out.push(b'}');
}

/// The text an `id` field gives the `EventId`: a number's (or numeric string's) canonical
/// text, or a string as it is; `None` when the value is not an id (empty, null, boolean,
/// array, object).
pub(crate) fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(number_text(n)),
        Value::String(s) => match scalar_of_str(s) {
            Scalar::Number(n) => Some(number_text(&n)),
            Scalar::Str(s) if !s.is_empty() => Some(s.to_owned()),
            _ => None,
        },
        _ => None,
    }
}

/// The canonical bytes of `object`, for tests and the hash.
#[cfg(test)]
pub(crate) fn canonical(value: &Value) -> String {
    let mut out = Vec::new();
    write_value(&mut out, value);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_are_written_as_ecmascript_writes_them() {
        // The sample of RFC 8785 §3.2.4 (and cyberphone/json-canonicalization's README):
        // [1E30,4.50,6,2e-3,0.000000000000000000000000001] → [1e+30,4.5,6,0.002,1e-27].
        let input: Value =
            serde_json::from_str("[1E30,4.50,6,2e-3,0.000000000000000000000000001]").unwrap();
        assert_eq!(canonical(&input), "[1e+30,4.5,6,0.002,1e-27]");
        // ECMA-262 Number::toString boundaries: 1e21 switches to exponent form, 1e-7 too.
        assert_eq!(es_number(1e21), "1e+21");
        assert_eq!(es_number(1e20), "100000000000000000000");
        assert_eq!(es_number(1e-7), "1e-7");
        assert_eq!(es_number(1.5e-6), "0.0000015");
        assert_eq!(es_number(-0.0), "0");
        assert_eq!(es_number(123.456), "123.456");
    }

    #[test]
    fn number_texts_match_the_independent_scripts_vectors_as_json_and_as_text() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/keeper/eventid-vectors.json"
        );
        let vectors: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let numbers = vectors["numbers"].as_array().unwrap();
        assert!(numbers.len() > 500, "edge cases and random values");
        let mut mismatches = Vec::new();
        for vector in numbers {
            let text = vector["text"].as_str().unwrap();
            let want = vector["canonical"].as_str().unwrap();
            let as_text = canonical(&Value::String(text.to_owned()));
            if as_text != want {
                mismatches.push(format!("text {text}: {as_text} != {want}"));
            }
            if let Ok(number) = serde_json::from_str::<Value>(text) {
                let as_json = canonical(&number);
                if as_json != want {
                    mismatches.push(format!("JSON {text}: {as_json} != {want}"));
                }
            }
        }
        assert!(mismatches.is_empty(), "{mismatches:#?}");
    }

    #[test]
    fn integers_of_64_bits_keep_every_digit() {
        let input: Value =
            serde_json::from_str("[9007199254740993,18446744073709551615,-9223372036854775808]")
                .unwrap();
        assert_eq!(
            canonical(&input),
            "[9007199254740993,18446744073709551615,-9223372036854775808]"
        );
    }

    #[test]
    fn text_spelling_a_scalar_is_that_scalar() {
        let csv_like = json!({"n": "5", "f": "1.50", "w": "2.0", "t": "true", "z": "-0",
            "s": "007", "p": "+5", "sp": " 5", "e": "", "nul": "null", "x": "abc"});
        let json_like = json!({"n": 5, "f": 1.5, "w": 2, "t": true, "z": 0,
            "s": "007", "p": "+5", "sp": " 5", "e": null, "x": "abc"});
        assert_eq!(canonical(&csv_like), canonical(&json_like));
        assert_eq!(
            canonical(&json_like),
            r#"{"f":1.5,"n":5,"p":"+5","s":"007","sp":" 5","t":true,"w":2,"x":"abc","z":0}"#
        );
    }

    #[test]
    fn nulls_and_empty_strings_stay_in_arrays() {
        assert_eq!(
            canonical(&json!({"a": [null, "", "null", "1"], "b": {"c": null}})),
            r#"{"a":[null,"",null,1],"b":{}}"#
        );
    }

    #[test]
    fn the_json_number_grammar_is_exact() {
        for good in ["0", "-0", "5", "-12", "1.5", "1e5", "1E+5", "1.25e-3"] {
            assert!(is_json_number(good), "{good}");
        }
        for bad in [
            "", "-", "01", "+1", "1.", ".5", "1e", "1e+", " 1", "1 ", "0x10", "NaN", "1_0",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
        assert!(
            number_of_str("1e400").is_none(),
            "beyond binary64 stays text"
        );
    }

    #[test]
    fn ids_take_the_canonical_number_text() {
        assert_eq!(id_text(&json!(98765)).as_deref(), Some("98765"));
        assert_eq!(id_text(&json!("98765")).as_deref(), Some("98765"));
        assert_eq!(id_text(&json!("raw-1")).as_deref(), Some("raw-1"));
        assert_eq!(id_text(&json!("")), None);
        assert_eq!(id_text(&json!(null)), None);
        assert_eq!(id_text(&json!("true")), None);
    }
}
