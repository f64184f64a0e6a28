//! Metrics: CloudWatch embedded-metric-format lines from a [`Report`], and the
//! one list of counter names every binary prints.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::model::{Metric, Report};

/// Dimension every metric carries. EMF specification: `Dimensions` is an array of dimension
/// sets, each an array of member names present at the top level of the line.
pub const FUNCTION_NAME_DIMENSION: &str = "FunctionName";

/// The report's counters by name, in the order people read them ([`Report::counters`]). The
/// CLI summary, the Lambda logs and the Azure handler's logs all print exactly these names.
pub fn summary_fields(report: &Report) -> Vec<(&'static str, u64)> {
    report.counters().collect()
}

/// The published metrics and their values, in [`Report::COUNTERS`] order.
fn metrics(report: &Report) -> impl Iterator<Item = (Metric, u64)> + '_ {
    Report::COUNTERS
        .iter()
        .zip(report.counters())
        .filter_map(|((_, metric), (_, value))| metric.map(|metric| (metric, value)))
}

/// One CloudWatch embedded-metric-format JSON line (no trailing newline), stamped now.
/// Printed to stdout in Lambda, CloudWatch turns it into metrics without an API call.
pub fn emf_line(namespace: &str, function_name: &str, report: &Report) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    emf_line_at(namespace, function_name, report, millis)
}

/// [`emf_line`] with an explicit timestamp (milliseconds since the Unix epoch).
pub fn emf_line_at(namespace: &str, function_name: &str, report: &Report, millis: u128) -> String {
    let definitions: Vec<Value> = metrics(report)
        .map(|(metric, _)| json!({ "Name": metric.name, "Unit": metric.unit }))
        .collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            // EMF: Timestamp is an integer of milliseconds since the epoch.
            "Timestamp": u64::try_from(millis).unwrap_or(u64::MAX),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [[FUNCTION_NAME_DIMENSION]],
                "Metrics": definitions,
            }],
        }),
    );
    line.insert(FUNCTION_NAME_DIMENSION.into(), json!(function_name));
    for (metric, value) in metrics(report) {
        line.insert(metric.name.into(), json!(value));
    }
    Value::Object(line).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            events_in: 120,
            delivered: 100,
            dead_lettered: 15,
            unreadable_sources: 4,
            failed_transient: 5,
            requests: 7,
            retries: 3,
            throttled: 2,
            token_fetches: 1,
            bytes_sent: 4096,
            bytes_uncompressed: 65536,
            truncated_fields: 4,
            ..Report::default()
        }
    }

    #[test]
    fn the_emf_line_follows_the_specification_structure() {
        let line = emf_line_at("logrelay", "s3-forwarder", &report(), 1_700_000_000_123);
        assert!(!line.contains('\n'), "one line");
        let value: Value = serde_json::from_str(&line).unwrap();
        let aws = &value["_aws"];
        assert_eq!(aws["Timestamp"], json!(1_700_000_000_123_u64));
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1);
        assert_eq!(directives[0]["Namespace"], "logrelay");
        assert_eq!(directives[0]["Dimensions"], json!([["FunctionName"]]));
        // Every dimension named must be a top-level string member.
        assert_eq!(value["FunctionName"], "s3-forwarder");
        // Every metric named must be a top-level number member.
        let metrics = directives[0]["Metrics"].as_array().unwrap();
        let names: Vec<&str> = metrics
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "EventsIn",
                "Delivered",
                "DeadLettered",
                "UnreadableSources",
                "FailedTransient",
                "Requests",
                "Retries",
                "Throttled",
                "TokenFetches",
                "BytesSent",
                "TruncatedFields"
            ]
        );
        for metric in metrics {
            let name = metric["Name"].as_str().unwrap();
            assert!(value[name].is_u64(), "{name} has a value");
            assert!(["Count", "Bytes"].contains(&metric["Unit"].as_str().unwrap()));
        }
    }

    #[test]
    fn the_emf_values_are_the_report_counters() {
        let value: Value = serde_json::from_str(&emf_line("logrelay", "cli", &report())).unwrap();
        assert_eq!(value["EventsIn"], 120);
        assert_eq!(value["Delivered"], 100);
        assert_eq!(value["DeadLettered"], 15);
        assert_eq!(value["UnreadableSources"], 4);
        assert_eq!(value["FailedTransient"], 5);
        assert_eq!(value["Requests"], 7);
        assert_eq!(value["Retries"], 3);
        assert_eq!(value["Throttled"], 2);
        assert_eq!(value["TokenFetches"], 1);
        assert_eq!(value["BytesSent"], 4096);
        assert_eq!(value["TruncatedFields"], 4);
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Metrics"][9]["Unit"],
            "Bytes"
        );
        assert!(value["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    }

    #[test]
    fn truncated_fields_are_a_metric_and_in_the_summary_line() {
        let line = emf_line_at("logrelay", "sqs-forwarder", &report(), 1);
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["TruncatedFields"], 4);
        let named = value["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Name"] == "TruncatedFields" && m["Unit"] == "Count");
        assert!(named, "{line}");
        // The Lambda summary line (`log_summary`'s `counters`) is the report's summary line.
        assert!(
            report().summary_line().contains("truncated_fields=4"),
            "{}",
            report().summary_line()
        );
    }

    #[test]
    fn summary_fields_name_every_counter_once() {
        let fields = summary_fields(&report());
        let mut names: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
        assert_eq!(fields[0], ("events_in", 120));
        assert!(fields.contains(&("bytes_uncompressed", 65536)));
        assert!(fields.contains(&("truncated_fields", 4)));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), fields.len());
    }
}
