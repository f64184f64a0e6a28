//! Injected faults: throttling, 5xx, latency, dropped connections, stalls, short-lived or
//! revoked tokens, 403s, a stricter size limit; scripted or drawn from a seed.
//!
//! A request's random fate is a pure function of (seed, the request's key, its attempt
//! number): the key is the first row's `EventId` (else a hash of the body), and the attempt
//! counts how often the emulator has seen that key. So a schedule does not depend on the
//! order or timing in which concurrent requests arrive, and a seed replays it exactly.

use std::collections::BTreeMap;
use std::io::Read as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The status that, in [`Faults::script`] and [`Faults::by_request`], means "close the
/// connection without answering".
pub const DROP_CONNECTION: u16 = 0;

/// The code that, in [`Faults::by_request`], means "hold the request for `stall_ms`, then
/// serve it" (a stall past the client's timeout).
pub const STALL: u16 = 1;

/// The most of a gzip body decompressed to find its key (the service's own lenient cap is
/// larger, but a key needs only the first row).
const KEY_DECOMPRESS_CAP: u64 = 64 * 1024 * 1024;

/// Faults in force. Every field defaults to "no fault"; JSON may give any subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share (0.0–1.0) of ingestion requests answered with one of `statuses` instead.
    pub status_rate: f64,
    /// Statuses picked at random for `status_rate`, e.g. `[429, 503]` (empty = 503).
    pub statuses: Vec<u16>,
    /// `Retry-After` seconds sent with injected 429 and 503 answers.
    pub retry_after_secs: u64,
    /// The next ingestion requests that pass auth answer these statuses in order, then
    /// normal service resumes. `204` = serve normally; `0` = drop the connection.
    pub script: Vec<u16>,
    /// Delay before every ingestion answer, in milliseconds.
    pub latency_ms: u64,
    /// Share of ingestion requests whose connection is closed without an answer.
    pub drop_rate: f64,
    /// Share of ingestion requests held for `stall_ms` (past a client timeout) before answering.
    pub stall_rate: f64,
    /// How long a stalled request is held, in milliseconds.
    pub stall_ms: u64,
    /// Lifetime of newly issued tokens, overriding the configured one.
    pub token_lifetime_secs: Option<u64>,
    /// Every client is forbidden (403 OperationFailed, as without the role assignment).
    pub forbidden: bool,
    /// These client (app) ids are forbidden.
    pub forbidden_clients: Vec<String>,
    /// Every client is forbidden while the emulator's clock (see `Emulator::advance_clock`)
    /// reads before this Unix time in seconds: a role assignment that "arrives" later.
    pub forbidden_until_secs: Option<u64>,
    /// A stricter 413 threshold than 1,048,576 bytes (wire and, in strict mode, decompressed).
    pub max_body_bytes: Option<usize>,
    /// When set with `set_faults`, every token issued so far becomes invalid (401); tokens
    /// issued afterwards work. A one-shot action: the flag is cleared once applied.
    pub revoke_tokens: bool,
    /// The next token requests (client credentials or managed identity) answer these
    /// statuses in order (e.g. 429, 503) in Entra's error shape, then normal service resumes.
    pub token_script: Vec<u16>,
    /// Per-request scripts: the request whose key (its first row's `EventId`, see
    /// [`request_key`]) is the map key answers these codes on its 1st, 2nd, ... attempt
    /// (`0` = drop, [`STALL`] = stall then serve, `204` = serve, else that status); later
    /// attempts are drawn as usual. Faults that must happen, happen by construction.
    pub by_request: BTreeMap<String, Vec<u16>>,
    /// Seed for the random faults, for reproducible runs (one is chosen and kept when absent;
    /// [`crate::Stats::fault_seed`] reports it).
    pub seed: Option<u64>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            status_rate: 0.0,
            statuses: Vec::new(),
            retry_after_secs: 1,
            script: Vec::new(),
            latency_ms: 0,
            drop_rate: 0.0,
            stall_rate: 0.0,
            stall_ms: 0,
            token_lifetime_secs: None,
            forbidden: false,
            forbidden_clients: Vec::new(),
            forbidden_until_secs: None,
            max_body_bytes: None,
            revoke_tokens: false,
            token_script: Vec::new(),
            by_request: BTreeMap::new(),
            seed: None,
        }
    }
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Self {
        Faults::default()
    }

    /// The next requests answer `statuses` in order (`0` = drop the connection).
    pub fn scripted(statuses: &[u16]) -> Self {
        Faults {
            script: statuses.to_vec(),
            ..Faults::default()
        }
    }

    /// A share `rate` of requests answer one of `statuses` with `Retry-After: retry_after_secs`.
    pub fn random_statuses(rate: f64, statuses: &[u16], retry_after_secs: u64) -> Self {
        Faults {
            status_rate: rate,
            statuses: statuses.to_vec(),
            retry_after_secs,
            ..Faults::default()
        }
    }

    /// Whether `client_id` is refused with 403.
    pub fn forbids(&self, client_id: &str) -> bool {
        self.forbidden || self.forbidden_clients.iter().any(|id| id == client_id)
    }

    /// Whether `client_id` is refused with 403 when the emulator's clock reads `now`.
    pub fn forbids_at(&self, client_id: &str, now: std::time::SystemTime) -> bool {
        let until = self
            .forbidden_until_secs
            .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        self.forbids(client_id) || until.is_some_and(|until| now < until)
    }
}

/// What to do with one ingestion request that passed auth, before looking at its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Serve it normally.
    Serve,
    /// Answer this status (injected).
    Status(u16),
    /// Close the connection without answering.
    Drop,
}

/// One request's fate, decided when its body has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fate {
    /// Close the connection without answering (before authentication).
    pub(crate) drop: bool,
    /// Hold the request this long first (latency plus any stall), in milliseconds.
    pub(crate) delay_ms: u64,
    /// The delay includes a stall.
    pub(crate) stalled: bool,
    /// What to answer once it passed authentication (unless the arrival-order script says
    /// otherwise).
    pub(crate) action: Action,
}

/// The key a request's fate is drawn for: `event:<EventId>` of the first row when the body
/// (gzip or not) is a JSON array whose first object has a string `EventId`, else
/// `sha256:<first 16 hex digits>` of the body as sent. Stable across retries of one batch.
pub fn request_key(wire: &[u8], gzip: bool) -> String {
    let mut inflated = Vec::new();
    let body: &[u8] = if gzip {
        let mut decoder = flate2::read::MultiGzDecoder::new(wire).take(KEY_DECOMPRESS_CAP);
        match decoder.read_to_end(&mut inflated) {
            Ok(_) => &inflated,
            Err(_) => wire,
        }
    } else {
        wire
    };
    if let Ok(FirstEventId(Some(id))) = serde_json::from_slice::<FirstEventId>(body) {
        return format!("event:{id}");
    }
    let digest = Sha256::digest(wire);
    let hex: String = digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The `EventId` of a JSON array's first object; the other elements are skipped unbuilt.
struct FirstEventId(Option<String>);

impl<'de> Deserialize<'de> for FirstEventId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct First {
            #[serde(rename = "EventId")]
            event_id: Option<String>,
        }
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FirstEventId;
            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a JSON array of objects")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FirstEventId, A::Error> {
                let first = seq.next_element::<First>()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(FirstEventId(first.and_then(|first| first.event_id)))
            }
        }
        deserializer.deserialize_seq(Visitor)
    }
}

/// Decides one request's fate from the faults in force, its key and its attempt number
/// (0 for the first time the key is seen). Pure: the same inputs give the same fate.
pub(crate) fn fate(faults: &Faults, key: &str, attempt: u32) -> Fate {
    let latency = faults.latency_ms;
    let scripted = faults
        .by_request
        .get(key)
        .and_then(|codes| codes.get(attempt as usize))
        .copied();
    if let Some(code) = scripted {
        let stalled = code == STALL;
        return Fate {
            drop: code == DROP_CONNECTION,
            delay_ms: latency + if stalled { faults.stall_ms } else { 0 },
            stalled,
            action: match code {
                DROP_CONNECTION | STALL | 204 => Action::Serve,
                status => Action::Status(status),
            },
        };
    }
    let mut rng = fastrand::Rng::with_seed(mix(faults.seed.unwrap_or_default(), key, attempt));
    // The draws happen in a fixed order, so each depends only on the inputs.
    let stalled = chance(&mut rng, faults.stall_rate);
    let drop = chance(&mut rng, faults.drop_rate);
    let action = if chance(&mut rng, faults.status_rate) {
        let status = if faults.statuses.is_empty() {
            503
        } else {
            faults.statuses[rng.usize(..faults.statuses.len())]
        };
        Action::Status(status)
    } else {
        Action::Serve
    };
    Fate {
        drop,
        delay_ms: latency + if stalled { faults.stall_ms } else { 0 },
        stalled,
        action,
    }
}

/// A 64-bit seed from (seed, key, attempt), by SHA-256 so it is the same on every platform
/// and Rust version.
fn mix(seed: u64, key: &str, attempt: u32) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(attempt.to_le_bytes());
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// Takes the next arrival-order scripted action, if any.
pub(crate) fn next_scripted(faults: &mut Faults) -> Option<Action> {
    if faults.script.is_empty() {
        return None;
    }
    Some(match faults.script.remove(0) {
        DROP_CONNECTION => Action::Drop,
        204 => Action::Serve,
        status => Action::Status(status),
    })
}

/// Takes the next scripted token-endpoint status, if any.
pub(crate) fn next_token_status(faults: &mut Faults) -> Option<u16> {
    if faults.token_script.is_empty() {
        None
    } else {
        Some(faults.token_script.remove(0))
    }
}

fn chance(rng: &mut fastrand::Rng, rate: f64) -> bool {
    rate > 0.0 && rng.f64() < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_is_played_in_order_then_service_resumes() {
        let mut faults = Faults::scripted(&[429, 0, 204, 503]);
        let actions: Vec<Option<Action>> = (0..5).map(|_| next_scripted(&mut faults)).collect();
        assert_eq!(
            actions,
            vec![
                Some(Action::Status(429)),
                Some(Action::Drop),
                Some(Action::Serve),
                Some(Action::Status(503)),
                None
            ]
        );
    }

    #[test]
    fn a_status_rate_injects_about_that_share_of_the_given_statuses() {
        let faults = Faults {
            seed: Some(7),
            ..Faults::random_statuses(0.3, &[429, 503], 1)
        };
        let actions: Vec<Action> = (0..10_000)
            .map(|i| fate(&faults, &format!("event:{i}"), 0).action)
            .collect();
        let injected = actions.iter().filter(|a| **a != Action::Serve).count();
        assert!((2_700..3_300).contains(&injected), "{injected}");
        assert!(actions
            .iter()
            .all(|a| matches!(a, Action::Serve | Action::Status(429) | Action::Status(503))));
    }

    #[test]
    fn a_fate_depends_only_on_the_seed_the_request_and_the_attempt() {
        let storm = |seed| Faults {
            status_rate: 0.3,
            statuses: vec![429, 503],
            drop_rate: 0.1,
            stall_rate: 0.2,
            stall_ms: 100,
            seed: Some(seed),
            ..Faults::default()
        };
        let keys: Vec<String> = (0..200).map(|i| format!("event:{i}")).collect();
        let forwards: Vec<Fate> = keys.iter().map(|key| fate(&storm(42), key, 1)).collect();
        let backwards: Vec<Fate> = keys
            .iter()
            .rev()
            .map(|key| fate(&storm(42), key, 1))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert_eq!(forwards, backwards, "arrival order does not matter");
        let other_seed: Vec<Fate> = keys.iter().map(|key| fate(&storm(43), key, 1)).collect();
        assert_ne!(forwards, other_seed, "the seed does");
        let other_attempt: Vec<Fate> = keys.iter().map(|key| fate(&storm(42), key, 2)).collect();
        assert_ne!(forwards, other_attempt, "and so does the attempt");
    }

    #[test]
    fn a_per_request_script_plays_its_attempts_then_draws() {
        let faults = Faults {
            stall_ms: 900,
            latency_ms: 10,
            by_request: BTreeMap::from([(
                "event:first".to_string(),
                vec![DROP_CONNECTION, 429, STALL, 204],
            )]),
            seed: Some(1),
            ..Faults::default()
        };
        let fates: Vec<Fate> = (0..5).map(|n| fate(&faults, "event:first", n)).collect();
        assert!(fates[0].drop);
        assert_eq!(fates[1].action, Action::Status(429));
        assert!(fates[2].stalled && fates[2].delay_ms == 910 && fates[2].action == Action::Serve);
        let served = Fate {
            drop: false,
            delay_ms: 10,
            stalled: false,
            action: Action::Serve,
        };
        assert_eq!(fates[3], served);
        assert_eq!(fates[4], served, "no rates: the drawn fate is to serve");
        assert_eq!(fate(&faults, "event:other", 0), served);
    }

    #[test]
    fn a_request_key_is_the_first_event_id_gzip_or_not_else_a_body_hash() {
        let body = br#"[{"EventId":"abc","n":1},{"EventId":"def"}]"#;
        assert_eq!(request_key(body, false), "event:abc");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, body).unwrap();
        assert_eq!(request_key(&encoder.finish().unwrap(), true), "event:abc");
        let other = request_key(b"[{\"x\":1}]", false);
        assert!(other.starts_with("sha256:") && other.len() == 23, "{other}");
        assert_eq!(other, request_key(b"[{\"x\":1}]", false));
    }

    #[test]
    fn partial_json_leaves_the_other_faults_off() {
        let faults: Faults = serde_json::from_str(r#"{"latency_ms": 5}"#).unwrap();
        assert_eq!(faults.latency_ms, 5);
        assert_eq!(faults.retry_after_secs, 1);
        assert!(faults.script.is_empty());
        assert!(faults.by_request.is_empty());
        assert!(!faults.forbids("anyone"));
    }

    #[test]
    fn a_forbidden_until_time_forbids_everyone_before_it_and_no_one_after() {
        let start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let faults = Faults {
            forbidden_until_secs: Some(1_000_600),
            ..Faults::default()
        };
        assert!(faults.forbids_at("anyone", start));
        assert!(faults.forbids_at("anyone", start + std::time::Duration::from_secs(599)));
        assert!(!faults.forbids_at("anyone", start + std::time::Duration::from_secs(600)));
        assert!(
            !faults.forbids("anyone"),
            "without a clock only the fixed rules apply"
        );
    }
}
