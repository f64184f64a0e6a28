//! Injected faults: throttling, 5xx, latency, dropped connections, stalls, short-lived or
//! revoked tokens, 403s, a stricter size limit; scripted (deterministic) or random (fastrand).

use serde::{Deserialize, Serialize};

/// The status that, in [`Faults::script`], means "close the connection without answering".
pub const DROP_CONNECTION: u16 = 0;

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
    /// A stricter 413 threshold than 1,048,576 bytes (wire and, in strict mode, decompressed).
    pub max_body_bytes: Option<usize>,
    /// When set with `set_faults`, every token issued so far becomes invalid (401); tokens
    /// issued afterwards work. A one-shot action: the flag is cleared once applied.
    pub revoke_tokens: bool,
    /// The next token requests (client credentials or managed identity) answer these
    /// statuses in order (e.g. 429, 503) in Entra's error shape, then normal service resumes.
    pub token_script: Vec<u16>,
    /// Seed for the random faults, for reproducible runs (random seed when absent).
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
            max_body_bytes: None,
            revoke_tokens: false,
            token_script: Vec::new(),
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

/// What to do before authentication: the network-level faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Network {
    /// Close the connection without answering.
    pub(crate) drop: bool,
    /// Hold the request this long first (latency plus any stall), in milliseconds.
    pub(crate) delay_ms: u64,
    /// The delay includes a stall.
    pub(crate) stalled: bool,
}

/// Draws the network-level faults for one request.
pub(crate) fn draw_network(faults: &Faults, rng: &mut fastrand::Rng) -> Network {
    let stalled = chance(rng, faults.stall_rate);
    let drop = chance(rng, faults.drop_rate);
    Network {
        drop,
        delay_ms: faults.latency_ms + if stalled { faults.stall_ms } else { 0 },
        stalled,
    }
}

/// Takes the next scripted action, or draws a random status.
pub(crate) fn next_action(faults: &mut Faults, rng: &mut fastrand::Rng) -> Action {
    if !faults.script.is_empty() {
        return match faults.script.remove(0) {
            DROP_CONNECTION => Action::Drop,
            204 => Action::Serve,
            status => Action::Status(status),
        };
    }
    if chance(rng, faults.status_rate) {
        let status = if faults.statuses.is_empty() {
            503
        } else {
            faults.statuses[rng.usize(..faults.statuses.len())]
        };
        return Action::Status(status);
    }
    Action::Serve
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
        let mut rng = fastrand::Rng::with_seed(1);
        let actions: Vec<Action> = (0..5).map(|_| next_action(&mut faults, &mut rng)).collect();
        assert_eq!(
            actions,
            vec![
                Action::Status(429),
                Action::Drop,
                Action::Serve,
                Action::Status(503),
                Action::Serve
            ]
        );
    }

    #[test]
    fn a_status_rate_injects_about_that_share_of_the_given_statuses() {
        let mut faults = Faults::random_statuses(0.3, &[429, 503], 1);
        let mut rng = fastrand::Rng::with_seed(7);
        let actions: Vec<Action> = (0..10_000)
            .map(|_| next_action(&mut faults, &mut rng))
            .collect();
        let injected = actions.iter().filter(|a| **a != Action::Serve).count();
        assert!((2_700..3_300).contains(&injected), "{injected}");
        assert!(actions
            .iter()
            .all(|a| matches!(a, Action::Serve | Action::Status(429) | Action::Status(503))));
    }

    #[test]
    fn partial_json_leaves_the_other_faults_off() {
        let faults: Faults = serde_json::from_str(r#"{"latency_ms": 5}"#).unwrap();
        assert_eq!(faults.latency_ms, 5);
        assert_eq!(faults.retry_after_secs, 1);
        assert!(faults.script.is_empty());
        assert!(!faults.forbids("anyone"));
    }
}
