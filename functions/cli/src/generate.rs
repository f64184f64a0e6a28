//! `logrelay generate`: realistic synthetic Keeper audit events in every shape Keeper produces,
//! for `make run`, the end-to-end tests and the benchmarks.
//!
//! Deterministic for a seed (apart from "now"): the same command gives the same events.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use clap::ValueEnum;
use serde_json::{json, Map, Value};

/// How far back generated events go: Keeper exports cover hours to a day.
const SPREAD: Duration = Duration::from_secs(24 * 3600);

/// The Keeper shapes (Keeper's event reporting docs, <https://docs.keeper.io/enterprise-guide/event-reporting/event-descriptions>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shape {
    /// Keeper's Azure Monitor push: common fields, event-specific ones under `data` (<https://docs.keeper.io/en/enterprise-guide/event-reporting/azure-monitor>).
    Push,
    /// SIEM / S3 JSON: one flat object per event (<https://docs.keeper.io/enterprise-guide/event-reporting/aws-s3-bucket>).
    Flat,
    /// Commander / API raw rows: `audit_event_type`, `created` epoch seconds, `ip_address` (<https://github.com/Keeper-Security/Commander>).
    Commander,
    /// RFC 5424 syslog lines with a flat JSON body, as Keeper's syslog push sends them (<https://docs.keeper.io/enterprise-guide/event-reporting/aws-s3-bucket>).
    Syslog,
    /// CSV with a header row (Keeper's S3 CSV export).
    Csv,
}

/// One event type: name, category, and which event-specific fields it carries.
struct EventType {
    name: &'static str,
    category: &'static str,
    /// Relative frequency.
    weight: u32,
    fields: &'static [Field],
}

#[derive(Clone, Copy)]
enum Field {
    RecordUid,
    FolderUid,
    FolderType,
    SharedFolderUid,
    ToUsername,
    ExternalToUsername,
    Channel,
    ResultCode,
    AppUid,
    DeviceName,
    RoleId,
    Enforcement,
}

const EVENT_TYPES: &[EventType] = &[
    EventType {
        name: "login",
        category: "login",
        weight: 30,
        fields: &[Field::DeviceName],
    },
    EventType {
        name: "login_console",
        category: "login",
        weight: 3,
        fields: &[],
    },
    EventType {
        name: "login_failure",
        category: "login",
        weight: 6,
        fields: &[Field::ResultCode],
    },
    EventType {
        name: "fast_fill",
        category: "usage",
        weight: 25,
        fields: &[Field::RecordUid],
    },
    EventType {
        name: "record_add",
        category: "usage",
        weight: 8,
        fields: &[Field::RecordUid],
    },
    EventType {
        name: "record_update",
        category: "usage",
        weight: 10,
        fields: &[Field::RecordUid],
    },
    EventType {
        name: "record_password_change",
        category: "usage",
        weight: 4,
        fields: &[Field::RecordUid],
    },
    EventType {
        name: "folder_add_record",
        category: "usage",
        weight: 4,
        fields: &[Field::RecordUid, Field::FolderUid, Field::FolderType],
    },
    EventType {
        name: "record_share_outside_user",
        category: "share",
        weight: 2,
        fields: &[Field::RecordUid, Field::ExternalToUsername],
    },
    EventType {
        name: "shared_folder_user_add",
        category: "share",
        weight: 3,
        fields: &[Field::SharedFolderUid, Field::ToUsername],
    },
    EventType {
        name: "set_two_factor_on",
        category: "security",
        weight: 1,
        fields: &[Field::Channel],
    },
    EventType {
        name: "set_two_factor_off",
        category: "security",
        weight: 1,
        fields: &[Field::Channel],
    },
    EventType {
        name: "change_master_password",
        category: "security",
        weight: 1,
        fields: &[],
    },
    EventType {
        name: "bw_record_high_risk",
        category: "breachwatch",
        weight: 2,
        fields: &[Field::RecordUid],
    },
    EventType {
        name: "bw_record_resolved",
        category: "breachwatch",
        weight: 1,
        fields: &[Field::RecordUid],
    },
    EventType {
        name: "app_client_connected",
        category: "ksm",
        weight: 4,
        fields: &[Field::AppUid, Field::DeviceName],
    },
    EventType {
        name: "app_record_shared",
        category: "ksm",
        weight: 1,
        fields: &[Field::AppUid, Field::RecordUid],
    },
    EventType {
        name: "audit_sync_setup",
        category: "policy",
        weight: 1,
        fields: &[],
    },
    EventType {
        name: "role_enforcement_changed",
        category: "policy",
        weight: 1,
        fields: &[Field::RoleId, Field::Enforcement],
    },
];

const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yasmin",
];
const LAST_NAMES: &[&str] = &[
    "nguyen", "smith", "garcia", "kowalski", "okafor", "tanaka", "muller", "rossi", "dubois",
    "haddad",
];
const DOMAIN: &str = "acme-corp.example";
const PARTNER_DOMAINS: &[&str] = &["partner.example", "contractor.example", "gmail.example"];
const CLIENTS: &[&str] = &[
    "Web Vault 17.1.2",
    "Browser Extension 17.1.0",
    "Browser Extensions.16.4.7",
    "Desktop 17.0.4",
    "iOS 17.0.1",
    "Android 16.11.3",
    "Commander 17.0.9",
    "Admin Console 17.1.1",
];
const DEVICES: &[&str] = &[
    "Chrome on Windows 11",
    "Edge on Windows 10",
    "Safari on macOS",
    "Firefox on Ubuntu",
    "iPhone 15",
    "Pixel 8",
    "ksm-prod-runner-01",
];
const RESULT_CODES: &[&str] = &["auth_failed", "invalid_totp", "throttled", "account_locked"];
const CHANNELS: &[&str] = &["TOTP", "DUO", "SMS", "security_key"];
const ENFORCEMENTS: &[&str] = &[
    "require_two_factor",
    "master_password_minimum_length",
    "restrict_sharing_outside_enterprise",
];
/// TEST-NET documentation ranges (RFC 5737): realistic-looking, never real addresses.
const NETWORKS: &[&str] = &["203.0.113", "198.51.100", "192.0.2"];
const ENTERPRISE_ID: i64 = 3_141_592;

/// The CSV columns: the common fields, then every event-specific field.
const CSV_COLUMNS: &[&str] = &[
    "timestamp",
    "audit_event",
    "category",
    "username",
    "remote_address",
    "client_version",
    "enterprise_id",
    "record_uid",
    "folder_uid",
    "folder_type",
    "shared_folder_uid",
    "to_username",
    "channel",
    "result_code",
    "app_uid",
    "device_name",
    "role_id",
    "enforcement",
];

/// What to generate.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) events: u64,
    pub(crate) shape: Shape,
    /// JSON shapes: a JSON array instead of NDJSON (Commander always writes an array).
    pub(crate) array: bool,
    pub(crate) seed: u64,
    pub(crate) now: SystemTime,
}

/// One event in the common (push) vocabulary before it takes a shape.
struct Event {
    time: DateTime<Utc>,
    kind: &'static EventType,
    username: String,
    remote_address: String,
    client_version: &'static str,
    specific: Map<String, Value>,
    /// Commander row id.
    id: u64,
}

struct Generator {
    rng: fastrand::Rng,
    total_weight: u32,
    users: Vec<String>,
    records: Vec<String>,
    folders: Vec<String>,
    shared_folders: Vec<String>,
    apps: Vec<String>,
}

impl Generator {
    fn new(seed: u64) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let users = (0..60)
            .map(|_| {
                format!(
                    "{}.{}@{DOMAIN}",
                    FIRST_NAMES[rng.usize(..FIRST_NAMES.len())],
                    LAST_NAMES[rng.usize(..LAST_NAMES.len())]
                )
            })
            .collect();
        let mut uids = |n: usize| (0..n).map(|_| uid(&mut rng)).collect::<Vec<_>>();
        let records = uids(500);
        let folders = uids(40);
        let shared_folders = uids(15);
        let apps = uids(4);
        Generator {
            total_weight: EVENT_TYPES.iter().map(|t| t.weight).sum(),
            rng,
            users,
            records,
            folders,
            shared_folders,
            apps,
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.usize(..items.len())]
    }

    fn event(&mut self, time: DateTime<Utc>, id: u64) -> Event {
        let mut roll = self.rng.u32(..self.total_weight);
        let mut kind = &EVENT_TYPES[0];
        for candidate in EVENT_TYPES {
            if roll < candidate.weight {
                kind = candidate;
                break;
            }
            roll -= candidate.weight;
        }
        let username = self.users[self.rng.usize(..self.users.len())].clone();
        let network = *self.pick(NETWORKS);
        let remote_address = format!("{network}.{}", self.rng.u8(1..=254));
        let client_version = if kind.category == "ksm" {
            "Keeper Secrets Manager CLI 1.1.4"
        } else {
            *self.pick(CLIENTS)
        };
        let mut specific = Map::new();
        for field in kind.fields {
            let (name, value) = match field {
                Field::RecordUid => ("record_uid", json!(self.pick_owned(Pool::Records))),
                Field::FolderUid => ("folder_uid", json!(self.pick_owned(Pool::Folders))),
                Field::FolderType => ("folder_type", json!(*self.pick(&["user", "shared"]))),
                Field::SharedFolderUid => (
                    "shared_folder_uid",
                    json!(self.pick_owned(Pool::SharedFolders)),
                ),
                Field::ToUsername => ("to_username", json!(self.pick_owned(Pool::Users))),
                Field::ExternalToUsername => {
                    let who = *self.pick(FIRST_NAMES);
                    let domain = *self.pick(PARTNER_DOMAINS);
                    ("to_username", json!(format!("{who}@{domain}")))
                }
                Field::Channel => ("channel", json!(*self.pick(CHANNELS))),
                Field::ResultCode => ("result_code", json!(*self.pick(RESULT_CODES))),
                Field::AppUid => ("app_uid", json!(self.pick_owned(Pool::Apps))),
                Field::DeviceName => ("device_name", json!(*self.pick(DEVICES))),
                Field::RoleId => ("role_id", json!(self.rng.u64(1_000_000..9_999_999))),
                Field::Enforcement => ("enforcement", json!(*self.pick(ENFORCEMENTS))),
            };
            specific.insert(name.into(), value);
        }
        Event {
            time,
            kind,
            username,
            remote_address,
            client_version,
            specific,
            id,
        }
    }

    fn pick_owned(&mut self, pool: Pool) -> String {
        let items = match pool {
            Pool::Records => &self.records,
            Pool::Folders => &self.folders,
            Pool::SharedFolders => &self.shared_folders,
            Pool::Apps => &self.apps,
            Pool::Users => &self.users,
        };
        items[self.rng.usize(..items.len())].clone()
    }
}

enum Pool {
    Records,
    Folders,
    SharedFolders,
    Apps,
    Users,
}

/// A Keeper-style 22-character URL-safe base64 uid.
fn uid(rng: &mut fastrand::Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..22)
        .map(|_| ALPHABET[rng.usize(..ALPHABET.len())] as char)
        .collect()
}

fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Event {
    fn common(&self) -> Map<String, Value> {
        let mut object = Map::new();
        object.insert("audit_event".into(), json!(self.kind.name));
        object.insert("remote_address".into(), json!(self.remote_address));
        object.insert("category".into(), json!(self.kind.category));
        object.insert("client_version".into(), json!(self.client_version));
        object.insert("username".into(), json!(self.username));
        object.insert("enterprise_id".into(), json!(ENTERPRISE_ID));
        object
    }

    fn push(&self) -> Value {
        let mut object = self.common();
        object.insert("timestamp".into(), json!(iso(self.time)));
        object.insert("data".into(), Value::Object(self.specific.clone()));
        Value::Object(object)
    }

    fn flat(&self, with_time: bool) -> Value {
        let mut object = self.specific.clone();
        object.extend(self.common());
        if with_time {
            object.insert("timestamp".into(), json!(iso(self.time)));
        }
        Value::Object(object)
    }

    fn commander(&self) -> Value {
        let mut object = self.specific.clone();
        object.insert("id".into(), json!(self.id.to_string()));
        object.insert("created".into(), json!(self.time.timestamp()));
        object.insert("username".into(), json!(self.username));
        object.insert("ip_address".into(), json!(self.remote_address));
        object.insert("audit_event_type".into(), json!(self.kind.name));
        object.insert("keeper_version".into(), json!(self.client_version));
        Value::Object(object)
    }

    fn syslog(&self) -> String {
        // PRI 165 = facility local4, severity notice, as in Keeper's documented sample.
        format!(
            "<165>1 {} keepersecurity.com keeper - - - {}",
            iso(self.time),
            self.flat(false)
        )
    }

    fn csv_record(&self) -> Vec<String> {
        let flat = self.flat(true);
        CSV_COLUMNS
            .iter()
            .map(|column| match flat.get(*column) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            })
            .collect()
    }
}

/// Writes `options.events` events to `out`.
pub(crate) fn write(options: &Options, out: &mut dyn Write) -> io::Result<()> {
    let mut generator = Generator::new(options.seed);
    let now: DateTime<Utc> = options.now.into();
    let start = now - chrono::Duration::milliseconds(SPREAD.as_millis() as i64);
    // Evenly spread in time order (exports are chronological), with jitter inside each step.
    let step_ms = (SPREAD.as_millis() as u64 / options.events.max(1)).max(1);
    let mut next = |index: u64| {
        let offset = index * step_ms + generator.rng.u64(..step_ms);
        let time = start + chrono::Duration::milliseconds(i64::try_from(offset).unwrap_or(0));
        generator.event(time, 1_000_000_000 + index)
    };
    let array = options.array || options.shape == Shape::Commander;
    match options.shape {
        Shape::Csv => {
            let mut writer = csv::Writer::from_writer(&mut *out);
            writer.write_record(CSV_COLUMNS).map_err(io::Error::other)?;
            for index in 0..options.events {
                writer
                    .write_record(next(index).csv_record())
                    .map_err(io::Error::other)?;
            }
            writer.flush()?;
        }
        Shape::Syslog => {
            for index in 0..options.events {
                writeln!(out, "{}", next(index).syslog())?;
            }
        }
        shape => {
            if array {
                out.write_all(b"[\n")?;
            }
            for index in 0..options.events {
                let event = next(index);
                let value = match shape {
                    Shape::Push => event.push(),
                    Shape::Commander => event.commander(),
                    _ => event.flat(true),
                };
                if array && index > 0 {
                    out.write_all(b",\n")?;
                }
                serde_json::to_writer(&mut *out, &value)?;
                if !array {
                    out.write_all(b"\n")?;
                }
            }
            if array {
                out.write_all(b"\n]\n")?;
            }
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(shape: Shape, events: u64) -> String {
        let options = Options {
            events,
            shape,
            array: false,
            seed: 7,
            now: SystemTime::now(),
        };
        let mut out = Vec::new();
        write(&options, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn push_shape_is_one_keeper_push_object_per_line() {
        let text = generate(Shape::Push, 200);
        let lines: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines.len(), 200);
        for event in &lines {
            for key in [
                "audit_event",
                "category",
                "remote_address",
                "client_version",
                "username",
                "timestamp",
                "enterprise_id",
            ] {
                assert!(event.get(key).is_some(), "{key} in {event}");
            }
            assert!(event["data"].is_object());
        }
        let categories: std::collections::BTreeSet<&str> = lines
            .iter()
            .map(|e| e["category"].as_str().unwrap())
            .collect();
        assert!(categories.len() >= 5, "{categories:?}");
    }

    #[test]
    fn timestamps_are_in_order_within_the_last_day() {
        let now = Utc::now();
        let text = generate(Shape::Flat, 1000);
        let times: Vec<DateTime<Utc>> = text
            .lines()
            .map(|line| {
                let value: Value = serde_json::from_str(line).unwrap();
                value["timestamp"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(times[0] >= now - chrono::Duration::hours(24) - chrono::Duration::seconds(5));
        assert!(*times.last().unwrap() <= now + chrono::Duration::seconds(5));
    }

    #[test]
    fn commander_shape_is_a_json_array_of_raw_rows() {
        let rows: Vec<Value> = serde_json::from_str(&generate(Shape::Commander, 50)).unwrap();
        assert_eq!(rows.len(), 50);
        assert!(rows
            .iter()
            .all(|row| row["created"].is_i64() && row["audit_event_type"].is_string()));
    }

    #[test]
    fn syslog_and_csv_carry_every_event() {
        let syslog = generate(Shape::Syslog, 30);
        assert_eq!(syslog.lines().count(), 30);
        assert!(syslog
            .lines()
            .all(|line| line.starts_with("<165>1 ") && line.ends_with('}')));
        let csv = generate(Shape::Csv, 30);
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        assert_eq!(reader.headers().unwrap().len(), CSV_COLUMNS.len());
        assert_eq!(reader.records().count(), 30);
    }

    #[test]
    fn the_same_seed_gives_the_same_events() {
        let now = SystemTime::now();
        let run = || {
            let mut out = Vec::new();
            let options = Options {
                events: 20,
                shape: Shape::Push,
                array: true,
                seed: 9,
                now,
            };
            write(&options, &mut out).unwrap();
            out
        };
        assert_eq!(run(), run());
    }
}
