//! RFC 5424 syslog lines as Keeper writes them (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`,
//! MSG a JSON event) and as Commander writes them (structured-data params, text MSG).

use serde_json::{Map, Value};

use super::time::{self, Millis};

/// The UTF-8 byte-order mark RFC 5424 §6.4 allows before MSG.
const BOM: &str = "\u{feff}";

/// One parsed line.
#[derive(Debug, PartialEq)]
pub(crate) struct Line<'a> {
    /// The header timestamp; `None` for the NILVALUE `-`.
    pub(crate) time: Option<Millis>,
    /// Every SD-PARAM of every SD-ELEMENT.
    pub(crate) params: Map<String, Value>,
    /// MSG without a leading BOM.
    pub(crate) message: &'a str,
    /// HOSTNAME, MSGID and the first SD-ID; `None` for the NILVALUE `-` or when absent.
    pub(crate) host: Option<&'a str>,
    pub(crate) msgid: Option<&'a str>,
    pub(crate) sd_id: Option<&'a str>,
}

/// The SD-ID of Commander's `audit-log --target=syslog` lines, which carry the event's `id`
/// in MSGID and its `ip_address` in HOSTNAME, not in the params (Keeper-Security/Commander,
/// `keepercommander/commands/aram.py`, `AuditLogSyslogBaseExport.convert_event`).
pub(crate) const COMMANDER_SD_ID: &str = "Keeper@Commander";

/// Parses a line; `Err` says what is wrong with it.
pub(crate) fn parse(line: &str) -> Result<Line<'_>, String> {
    let rest = line
        .strip_prefix('<')
        .ok_or("a syslog line starts with `<PRI>`")?;
    let close = rest
        .find('>')
        .filter(|&p| (1..=3).contains(&p) && rest[..p].bytes().all(|b| b.is_ascii_digit()))
        .ok_or("the syslog priority `<PRI>` is malformed")?;
    let rest = &rest[close + 1..];
    let (version, rest) = token(rest);
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not an RFC 5424 syslog line (no version after `<PRI>`)".to_owned());
    }
    let (stamp, mut rest) = token(rest);
    let time =
        match stamp {
            "-" => None,
            s => Some(time::parse_str(s).ok_or_else(|| {
                format!("the syslog header timestamp {s:?} is not an RFC 3339 time")
            })?),
        };
    // HOSTNAME APP-NAME PROCID MSGID; some writers leave fields out, so stop at a `[`.
    let mut header = [None; 4];
    for slot in &mut header {
        if rest.starts_with('[') {
            break;
        }
        let (field, after) = token(rest);
        *slot = Some(field).filter(|f| *f != "-");
        rest = after;
    }
    let [host, _app, _procid, msgid] = header;
    let mut params = Map::new();
    let mut sd_id = None;
    if let Some(after) = rest.strip_prefix('-') {
        rest = after;
    } else {
        while rest.starts_with('[') {
            let element = &rest[1..];
            if sd_id.is_none() {
                sd_id = element.find([' ', ']']).map(|end| &element[..end]);
            }
            rest = structured_element(element, &mut params)?;
        }
    }
    let message = rest.strip_prefix(' ').unwrap_or(rest);
    let message = message.strip_prefix(BOM).unwrap_or(message);
    Ok(Line {
        time,
        params,
        message,
        host,
        msgid,
        sd_id,
    })
}

/// The next space-separated token and what follows the space.
fn token(s: &str) -> (&str, &str) {
    match s.find(' ') {
        Some(p) => (&s[..p], &s[p + 1..]),
        None => (s, ""),
    }
}

/// Parses `SD-ID *(SP PARAM="VALUE")]` (after the `[`), adding params; returns the rest.
fn structured_element<'a>(s: &'a str, params: &mut Map<String, Value>) -> Result<&'a str, String> {
    const UNCLOSED: &str = "a syslog structured-data element is not closed with `]`";
    let id_end = s.find([' ', ']']).ok_or(UNCLOSED)?;
    let mut rest = &s[id_end..];
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(']') {
            return Ok(after);
        }
        let eq = rest.find('=').ok_or(UNCLOSED)?;
        let name = &rest[..eq];
        let body = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("a syslog structured-data value is not quoted")?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(UNCLOSED.to_owned()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, c @ ('"' | '\\' | ']'))) => value.push(c),
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err(UNCLOSED.to_owned()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        params.insert(name.to_owned(), Value::String(value));
        rest = &body[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepers_documented_line_gives_the_header_time_and_the_json_body() {
        let line = parse(r#"<165>1 2022-10-13T21:05:51.996Z keepersecurity.com keeper - - - {"record_uid":"XXX"}"#).unwrap();
        assert_eq!(
            line.time.and_then(Millis::format).unwrap(),
            *b"2022-10-13T21:05:51.996Z"
        );
        assert!(line.params.is_empty());
        assert_eq!(line.message, r#"{"record_uid":"XXX"}"#);
    }

    #[test]
    fn commanders_line_gives_structured_data_params() {
        let line = parse(r#"<110>1 2022-10-13T21:05:51Z 12.34.56.78 Keeper 99 [Keeper@Commander audit_event_type="login" username="a\"b"] User a"b logged in"#).unwrap();
        assert_eq!(line.params["audit_event_type"], "login");
        assert_eq!(line.params["username"], "a\"b");
        assert_eq!(line.message, "User a\"b logged in");
    }

    #[test]
    fn commanders_own_layout_gives_the_id_in_msgid_and_the_address_in_hostname() {
        // `'<{0}>1 {1} {2} {3} - {4}'.format(pri, time, ip, 'Keeper', event['id'])` then the
        // SD element (Keeper-Security/Commander aram.py).
        let line = parse(r#"<110>1 2025-01-15T10:31:02Z 203.0.113.10 Keeper - 98765 [Keeper@Commander audit_event_type="login"] User logged in"#).unwrap();
        assert_eq!(line.host, Some("203.0.113.10"));
        assert_eq!(line.msgid, Some("98765"));
        assert_eq!(line.sd_id, Some(COMMANDER_SD_ID));
        assert_eq!(line.params["audit_event_type"], "login");
        let keeper =
            parse(r#"<165>1 2022-10-13T21:05:51.996Z keepersecurity.com keeper - - - {}"#).unwrap();
        assert_eq!((keeper.msgid, keeper.sd_id), (None, None));
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        assert!(parse("hello").unwrap_err().contains("<PRI>"));
        assert!(parse("<165>Oct 13 host x")
            .unwrap_err()
            .contains("RFC 5424"));
        assert!(parse("<165>1 nope h a p m - {}")
            .unwrap_err()
            .contains("timestamp"));
        assert!(parse("<165>1 - h a p m [x a=\"1\" {}")
            .unwrap_err()
            .contains("not closed"));
    }
}
