//! The one definition of the table: stream declaration, table columns and a data sample.
//! `logrelay schema` prints it; the infra templates and the emulator use it.

use serde_json::{json, Value};

/// The DCR stream rows are sent to by default. Stream names must begin `Custom-`
/// (<https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview>).
pub const DEFAULT_STREAM: &str = "Custom-KeeperAuditEvents";

/// The Log Analytics table the DCR writes to; custom tables end `_CL` (<https://learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns#timegenerated>).
pub const DEFAULT_TABLE: &str = "KeeperAuditEvents_CL";

/// The DCR transform: rows already carry the event's own `TimeGenerated`, so keep it.
pub const TRANSFORM_KQL: &str = "source";

/// One column: its name, its type in a DCR stream declaration and in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    /// Stream declaration type: string, int, long, real, boolean, dynamic, datetime (<https://learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns#timegenerated>).
    pub stream_type: &'static str,
    /// Table column type: string, int, long, real, boolean, dateTime, dynamic, guid (<https://learn.microsoft.com/azure/azure-monitor/logs/log-standard-columns#timegenerated>).
    pub table_type: &'static str,
    pub description: &'static str,
}

/// The Keeper audit-event columns, in order. The names follow Keeper's push shape so the
/// Keeper Admin Console can push to the same stream.
pub const KEEPER_COLUMNS: &[Column] = &[
    Column {
        name: "TimeGenerated",
        stream_type: "datetime",
        table_type: "dateTime",
        description: "When the event happened (the event's own time, UTC).",
    },
    Column {
        name: "EventId",
        stream_type: "string",
        table_type: "string",
        description:
            "Keeper's event id, or a stable hash of the event; deduplicate with arg_max by EventId.",
    },
    Column {
        name: "audit_event",
        stream_type: "string",
        table_type: "string",
        description: "Event type, e.g. login.",
    },
    Column {
        name: "category",
        stream_type: "string",
        table_type: "string",
        description: "Event category, e.g. usage.",
    },
    Column {
        name: "remote_address",
        stream_type: "string",
        table_type: "string",
        description: "Client IP address.",
    },
    Column {
        name: "client_version",
        stream_type: "string",
        table_type: "string",
        description: "Keeper client and version.",
    },
    Column {
        name: "username",
        stream_type: "string",
        table_type: "string",
        description: "Acting user.",
    },
    Column {
        name: "enterprise_id",
        stream_type: "long",
        table_type: "long",
        description: "Keeper enterprise id.",
    },
    Column {
        name: "timestamp",
        stream_type: "datetime",
        table_type: "dateTime",
        description:
            "The event time as Keeper sent it; kept even when Azure replaces an old TimeGenerated.",
    },
    Column {
        name: "data",
        stream_type: "dynamic",
        table_type: "dynamic",
        description: "Every event-specific field (record_uid, to_username, ...).",
    },
];

/// The `streamDeclarations` entry for a DCR: `{"columns":[{"name":..,"type":..}]}`.
pub fn stream_declaration() -> Value {
    json!({ "columns": KEEPER_COLUMNS.iter().map(|c| json!({"name": c.name, "type": c.stream_type})).collect::<Vec<_>>() })
}

/// The table's columns as the Log Analytics tables API takes them.
pub fn table_columns() -> Value {
    Value::Array(
        KEEPER_COLUMNS
            .iter()
            .map(|c| json!({"name": c.name, "type": c.table_type, "description": c.description}))
            .collect(),
    )
}

/// A data sample for the portal's "New custom log (DCR-based)" wizard: a JSON array of rows
/// in the shape logrelay sends.
pub fn data_sample() -> Value {
    json!([
        {
            "TimeGenerated": "2025-01-15T10:31:02.123Z",
            "EventId": "8f8c3a6e2b1d4f7a9c0e5b3d2a1f6e4c",
            "audit_event": "login",
            "category": "login",
            "remote_address": "203.0.113.10",
            "client_version": "Web Vault 17.0.0",
            "username": "alice@example.com",
            "enterprise_id": 1234,
            "timestamp": "2025-01-15T10:31:02.123Z",
            "data": {}
        },
        {
            "TimeGenerated": "2025-01-15T10:32:45.000Z",
            "EventId": "0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e",
            "audit_event": "record_share_outside_user",
            "category": "share",
            "remote_address": "198.51.100.7",
            "client_version": "Browser Extension 17.0.1",
            "username": "bob@example.com",
            "enterprise_id": 1234,
            "timestamp": "2025-01-15T10:32:45.000Z",
            "data": {"record_uid": "NkTQeSWJcPnE5rDuHa1x0g", "to_username": "carol@partner.example"}
        }
    ])
}

/// Everything `logrelay schema` prints: stream, table, transform and sample.
pub fn document(stream: &str, table: &str) -> Value {
    json!({
        "stream": stream,
        "table": table,
        "streamDeclaration": { stream: stream_declaration() },
        "tableColumns": table_columns(),
        "transformKql": TRANSFORM_KQL,
        "outputStream": format!("Custom-{table}"),
        "dataSample": data_sample(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_name_is_valid_for_log_analytics() {
        const RESERVED: &[&str] = &[
            "_ResourceId",
            "id",
            "_SubscriptionId",
            "TenantId",
            "Type",
            "UniqueId",
            "Title",
        ];
        for column in KEEPER_COLUMNS {
            assert!(column.name.len() <= 45, "{}", column.name);
            assert!(
                column.name.starts_with(|c: char| c.is_ascii_alphabetic()),
                "{}",
                column.name
            );
            assert!(
                column
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{}",
                column.name
            );
            assert!(!RESERVED.contains(&column.name), "{}", column.name);
        }
    }

    #[test]
    fn stream_types_are_ones_a_dcr_accepts() {
        const STREAM_TYPES: &[&str] = &[
            "string", "int", "long", "real", "boolean", "dynamic", "datetime",
        ];
        for column in KEEPER_COLUMNS {
            assert!(
                STREAM_TYPES.contains(&column.stream_type),
                "{}: {}",
                column.name,
                column.stream_type
            );
        }
    }

    #[test]
    fn the_data_sample_uses_exactly_the_declared_columns() {
        let names: Vec<&str> = KEEPER_COLUMNS.iter().map(|c| c.name).collect();
        for row in data_sample().as_array().unwrap() {
            let keys: Vec<&str> = row
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut expected = names.clone();
            expected.sort_unstable();
            let mut keys = keys;
            keys.sort_unstable();
            assert_eq!(keys, expected);
        }
    }
}
