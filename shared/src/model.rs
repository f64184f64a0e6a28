//! The values every stage hands to the next: a decoded row and where it came from, the
//! counters of a run, the request-size limit rows are packed under. A leaf: it imports no
//! other module of the crate, so every module may use it.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::AddAssign;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// A boxed future, for dyn-compatible async traits (dead letters, token providers, the
/// Azure handler's forwarder seam).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Looks a setting up by variable name; `None` when unset (the settings module trims values
/// and treats empty ones as unset before any parser sees them).
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Bytes of serialized JSON array per request. The documented limit is 1 MB "both compressed
/// and uncompressed" (Logs Ingestion API, "Limits and restrictions":
/// <https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview>);
/// 1,000,000 is safe for every reading of it.
pub const MAX_BATCH_BYTES: usize = 1_000_000;

/// Where a row came from, for dead-letter entries and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File name, S3 URI, message id.
    pub source: Arc<str>,
    /// 1-based record (line or element) number within the source.
    pub record: u64,
}

/// One row, already serialized as a JSON object.
#[derive(Debug, Clone)]
pub struct EncodedRow {
    /// `{"TimeGenerated":...}` as UTF-8 JSON.
    pub json: Vec<u8>,
    /// Where it came from.
    pub origin: Origin,
}

/// A CloudWatch metric a counter is published as: its name and its `StandardUnit`
/// (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDatum.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The metric name, e.g. `EventsIn`.
    pub name: &'static str,
    /// `Count` or `Bytes`.
    pub unit: &'static str,
}

/// Declares [`Report`] from ONE list of counters; the struct, its field names in logs and
/// answers, its metrics and `+=` all come from this list.
macro_rules! report {
    ($( $(#[doc = $doc:literal])* $field:ident => $metric:expr, )*) => {
        /// Counters for one run or invocation. The CLI summary, the Lambda and Azure logs, the
        /// HTTP answers and the CloudWatch metrics all show these names ([`Report::counters`]).
        #[derive(Debug, Clone, Default, Serialize, PartialEq)]
        pub struct Report {
            $( $(#[doc = $doc])* pub $field: u64, )*
            /// Dead-letter reasons and how many events each.
            pub dead_letter_reasons: BTreeMap<String, u64>,
            /// Wall time of the run.
            #[serde(with = "duration_secs")]
            pub duration: Duration,
        }

        impl Report {
            /// Every counter's name, in the order people read them, with the metric it is
            /// published as (if any).
            pub const COUNTERS: &'static [(&'static str, Option<Metric>)] =
                &[ $( (stringify!($field), $metric), )* ];

            /// The counters by name, in [`Report::COUNTERS`] order.
            pub fn counters(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                Self::COUNTERS
                    .iter()
                    .map(|(name, _)| *name)
                    .zip([ $( self.$field, )* ])
            }

            fn counters_mut(&mut self) -> [&mut u64; Self::COUNTERS.len()] {
                [ $( &mut self.$field, )* ]
            }
        }
    };
}

const fn count(name: &'static str) -> Option<Metric> {
    Some(Metric {
        name,
        unit: "Count",
    })
}

report! {
    events_in => count("EventsIn"),
    delivered => count("Delivered"),
    dead_lettered => count("DeadLettered"),
    /// Sources (objects, messages, bodies, files) that gave no event: missing, unreadable as
    /// a whole, or non-empty with no event in them. Each is one dead-letter entry.
    unreadable_sources => count("UnreadableSources"),
    /// Rows not delivered because of transient failures when the caller asked to fail
    /// rather than dead-letter them (Lambda, the HTTP routes).
    failed_transient => count("FailedTransient"),
    requests => count("Requests"),
    retries => count("Retries"),
    throttled => count("Throttled"),
    token_fetches => count("TokenFetches"),
    /// Bytes on the wire (gzip).
    bytes_sent => Some(Metric { name: "BytesSent", unit: "Bytes" }),
    /// Serialized JSON bytes before gzip.
    bytes_uncompressed => None,
    truncated_fields => count("TruncatedFields"),
    old_events => None,
}

impl Report {
    /// True when `events_in == delivered + dead_lettered + failed_transient`: every event
    /// is accounted for.
    pub fn is_balanced(&self) -> bool {
        self.events_in == self.delivered + self.dead_lettered + self.failed_transient
    }

    /// Counts `count` events dead-lettered for `reason`.
    pub fn count_dead_letter(&mut self, reason: &str, count: u64) {
        self.dead_lettered += count;
        *self
            .dead_letter_reasons
            .entry(reason.to_string())
            .or_default() += count;
    }

    /// The counters as `name=value` pairs separated by spaces, for one log line.
    pub fn summary_line(&self) -> String {
        let mut line = String::new();
        for (name, value) in self.counters() {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(name);
            line.push('=');
            line.push_str(&value.to_string());
        }
        line
    }
}

impl AddAssign<&Report> for Report {
    /// Adds every counter, the dead-letter reasons and the duration.
    fn add_assign(&mut self, other: &Report) {
        for (total, (_, value)) in self.counters_mut().into_iter().zip(other.counters()) {
            *total += value;
        }
        for (reason, count) in &other.dead_letter_reasons {
            *self.dead_letter_reasons.entry(reason.clone()).or_default() += count;
        }
        self.duration += other.duration;
    }
}

impl AddAssign for Report {
    fn add_assign(&mut self, other: Report) {
        *self += &other;
    }
}

mod duration_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub(super) fn serialize<S: Serializer>(
        value: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_reports_adds_every_counter_and_merges_the_reasons() {
        let mut one = Report::default();
        for (value, field) in (1..).zip(one.counters_mut()) {
            *field = value;
        }
        one.count_dead_letter("bad json", 2);
        let mut total = one.clone();
        total += &one;
        for ((name, doubled), (_, single)) in total.counters().zip(one.counters()) {
            assert_eq!(doubled, 2 * single, "{name}");
        }
        assert_eq!(total.dead_letter_reasons["bad json"], 4);
    }

    #[test]
    fn every_counter_is_named_once_and_serialized_under_its_name() {
        let report = Report {
            bytes_uncompressed: 65536,
            ..Report::default()
        };
        let json = serde_json::to_value(&report).unwrap();
        let mut names: Vec<&str> = report.counters().map(|(name, _)| name).collect();
        for name in &names {
            assert!(json[name].is_u64(), "{name} in {json}");
        }
        assert_eq!(json["bytes_uncompressed"], 65536);
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Report::COUNTERS.len());
        assert!(report.summary_line().starts_with("events_in=0 delivered=0"));
    }
}
