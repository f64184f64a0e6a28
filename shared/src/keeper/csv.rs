//! CSV records (RFC 4180): a header row names the fields; each later record becomes one
//! object. Records are framed by lines (a quoted field may span lines) so a bad record never
//! costs the ones after it, and memory stays bounded by the record cap.

use serde_json::{Map, Value};

/// Whether `line` leaves a quoted field open (an odd number of `"`; `""` escapes count twice).
pub(crate) fn leaves_quote_open(line: &[u8]) -> bool {
    line.iter().filter(|&&b| b == b'"').count() % 2 == 1
}

/// Splits one logical record into its fields.
pub(crate) fn split_fields(record: &str, out: &mut Vec<String>) {
    out.clear();
    let bytes = record.as_bytes();
    let mut i = 0;
    loop {
        let mut field = String::new();
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            let mut start = i;
            loop {
                match bytes[i..].iter().position(|&b| b == b'"') {
                    None => {
                        field.push_str(&record[start..]);
                        i = bytes.len();
                        break;
                    }
                    Some(p) => {
                        field.push_str(&record[start..i + p]);
                        i += p + 1;
                        if bytes.get(i) == Some(&b'"') {
                            field.push('"');
                            i += 1;
                            start = i;
                        } else {
                            break;
                        }
                    }
                }
            }
            // Lenient: text between a closing quote and the comma is kept, not dropped.
            let rest_end = bytes[i..]
                .iter()
                .position(|&b| b == b',')
                .map_or(bytes.len(), |p| i + p);
            field.push_str(&record[i..rest_end]);
            i = rest_end;
        } else {
            let end = bytes[i..]
                .iter()
                .position(|&b| b == b',')
                .map_or(bytes.len(), |p| i + p);
            field.push_str(&record[i..end]);
            i = end;
        }
        out.push(field);
        if i >= bytes.len() {
            return;
        }
        i += 1; // the comma
    }
}

/// Header names made unique (a repeated name gets `_2`, `_3`, ...) so no cell is overwritten.
/// Linear in the header size, whatever it repeats.
pub(crate) fn header_names(fields: Vec<String>) -> Vec<String> {
    let mut used = std::collections::HashSet::with_capacity(fields.len());
    let mut next_suffix: std::collections::HashMap<String, usize> = Default::default();
    let mut names = Vec::with_capacity(fields.len());
    for (index, field) in fields.into_iter().enumerate() {
        let base = if field.trim().is_empty() {
            format!("column_{}", index + 1)
        } else {
            field.trim().to_owned()
        };
        let mut name = base.clone();
        if used.contains(&name) {
            let n = next_suffix.entry(base.clone()).or_insert(2);
            loop {
                name = format!("{base}_{n}");
                *n += 1;
                if !used.contains(&name) {
                    break;
                }
            }
        }
        used.insert(name.clone());
        names.push(name);
    }
    names
}

/// The object for one record. Empty cells are absent fields: a CSV export has a column for
/// every field any event has, and an empty cell means the event does not have it.
pub(crate) fn to_object(names: &[String], fields: &mut Vec<String>) -> Map<String, Value> {
    let mut object = Map::new();
    for (name, value) in names.iter().zip(fields.drain(..)) {
        if !value.is_empty() {
            object.insert(name.clone(), Value::String(value));
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(s: &str) -> Vec<String> {
        let mut out = Vec::new();
        split_fields(s, &mut out);
        out
    }

    #[test]
    fn quoted_fields_keep_commas_quotes_and_newlines() {
        assert_eq!(
            fields("a,\"b,c\",\"say \"\"hi\"\"\",\"x\ny\","),
            vec!["a", "b,c", "say \"hi\"", "x\ny", ""]
        );
        assert_eq!(fields(""), vec![""]);
    }

    #[test]
    fn repeated_and_blank_header_names_stay_distinct() {
        assert_eq!(
            header_names(vec!["a".into(), "a".into(), " ".into()]),
            vec!["a", "a_2", "column_3"]
        );
    }

    #[test]
    fn an_open_quote_is_detected() {
        assert!(leaves_quote_open(b"a,\"b"));
        assert!(!leaves_quote_open(b"a,\"b\"\"c\""));
    }
}
