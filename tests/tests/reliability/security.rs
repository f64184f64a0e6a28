//! Security: refused configurations, refused callers, no secret in any output.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azmon_emulator::{Emulator, EmulatorConfig, Faults, DROP_CONNECTION, STALL};
use serde_json::json;

use crate::common;
use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_a_non_loopback_endpoint_is_refused_before_any_connection() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "events.ndjson", 10, "push", 14).await;
    let endpoint = format!(
        "http://10.1.2.3/dataCollectionRules/{}/streams/Custom-KeeperAuditEvents?api-version=2023-01-01",
        emulator.config().dcr_id
    );

    let run = logrelay(
        &["send", "events.ndjson"],
        env_with(
            &emulator,
            &[
                ("LOGS_INGESTION_ENDPOINT", &endpoint),
                ("RUST_LOG", "debug"),
            ],
        ),
        dir.path(),
        Stdin::Null,
    )
    .await;

    run.assert_no_panic("send with an http endpoint");
    assert_eq!(run.code, 2, "a configuration error: {}", run.all_output());
    assert!(
        run.stderr.contains("LOGS_INGESTION_ENDPOINT") && run.stderr.contains("plain http://"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("10.1.2.3"), "{}", run.stderr);
    let stats = emulator.stats();
    assert_eq!(stats.token_requests, 0, "no token was even asked for");
    assert!(
        !run.stderr.contains("transport error") && !run.stderr.contains("connect"),
        "no connection attempted: {}",
        run.stderr
    );
    record(&Outcome {
        id: "60-security-plain-http",
        scenario: "Plain http:// to a non-loopback endpoint",
        path: "logrelay send",
        injected: "LOGS_INGESTION_ENDPOINT=http://10.1.2.3/…",
        events_in: 10,
        delivered: 0,
        dead_lettered: 0,
        duplicated: 0,
        lost: 0,
        notes: "refused at configuration time (exit 2, names the variable); no token request, no connection; the input is untouched, so nothing is lost".into(),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_azure_endpoint_host_is_a_warning_not_an_error() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // `.invalid` never resolves (RFC 2606); with empty input nothing is sent, so no lookup.
    let endpoint = format!(
        "https://logs.example.invalid/dataCollectionRules/{}/streams/Custom-KeeperAuditEvents?api-version=2023-01-01",
        emulator.config().dcr_id
    );

    let run = logrelay(
        &["send", "--json", "-"],
        env_with(&emulator, &[("LOGS_INGESTION_ENDPOINT", &endpoint)]),
        dir.path(),
        Stdin::Bytes(Vec::new()),
    )
    .await;

    run.assert_no_panic("send with a non-Azure host");
    assert_eq!(run.code, 0, "{}", run.all_output());
    assert!(
        run.stderr.contains("logs.example.invalid")
            && run.stderr.contains("is not a Logs Ingestion host"),
        "{}",
        run.stderr
    );
    assert_eq!(u64_of(&run.report()["events_in"]), 0);
    assert_eq!(emulator.stats().token_requests, 0);
}

/// The azure-handler process serving the shared HTTP routes (`/events`), killed on drop.
struct HttpFunction {
    child: Child,
    base: String,
    log: PathBuf,
    dead_letter: PathBuf,
    _dir: tempfile::TempDir,
}

impl HttpFunction {
    async fn start(env: Vec<(String, String)>) -> HttpFunction {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("handler.log");
        let dead_letter = dir.path().join("dead-letter");
        let port = common::free_port();
        let log_file = File::create(&log).expect("log file");
        let child = Command::new(common::debug_binary("azure-handler"))
            .env_clear()
            .envs(env)
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("FUNCTIONS_APP_ROOT_PATH", dir.path())
            .env("LOGRELAY_DEAD_LETTER", &dead_letter)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log_file.try_clone().expect("log file")))
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("azure-handler starts");
        let function = HttpFunction {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            dead_letter,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client
            .get(format!("{}/", function.base))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < common::START_TIMEOUT,
                "azure-handler not ready:\n{}",
                function.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        function
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for HttpFunction {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `total` bytes of body over a raw socket, with a Content-Length or chunked, and
/// `auth` as the Authorization header; returns the status. A raw socket because a server that
/// refuses early stops reading: reqwest then fails on the write and never reads the answer,
/// while the answer is there to read.
fn post_raw(base: &str, auth: Option<&str>, total: usize, chunked: bool) -> u16 {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let auth = auth.map_or(String::new(), |value| format!("Authorization: {value}\r\n"));
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {total}")
    };
    let head = format!(
        "POST /events HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\n{framing}\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(head.as_bytes());
    let chunk = vec![b' '; 1 << 16];
    let mut sent = 0;
    while sent < total {
        let piece = if chunked {
            [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk.clone(),
                b"\r\n".to_vec(),
            ]
            .concat()
        } else {
            chunk.clone()
        };
        // The server may answer and close before the whole body is sent.
        if stream.write_all(&piece).is_err() {
            break;
        }
        sent += chunk.len();
    }
    if chunked {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_function_refuses_missing_and_wrong_tokens_and_oversized_bodies() {
    let config = EmulatorConfig::default();
    let client_secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let http_token = format!("lr-{}", uuid::Uuid::new_v4().simple());
    let mut env = emulator.env();
    env.push(("LOGRELAY_HTTP_TOKEN".into(), http_token.clone()));
    let function = HttpFunction::start(env).await;
    let url = format!("{}/events", function.base);
    let client = reqwest::Client::new();
    let good_body: String = (0..3).map(|i| keeper_line(i, json!({}))).collect();
    let post = |auth: Option<String>, body: Vec<u8>| {
        let mut request = client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        async move {
            let response = request.send().await.expect("an answer");
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
    };

    let mut refusals = BTreeMap::new();
    for (what, auth) in [
        ("no Authorization header", None),
        ("wrong token", Some("Bearer not-the-token".to_string())),
        (
            "token with one character changed",
            Some(format!("Bearer {}x", &http_token[..http_token.len() - 1])),
        ),
        ("token as Basic", Some(format!("Basic {http_token}"))),
        ("empty bearer", Some("Bearer ".to_string())),
    ] {
        let (status, body) = post(auth, good_body.clone().into_bytes()).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            !body.contains(&http_token),
            "{what}: the answer echoes the token"
        );
        refusals.insert(what, status);
    }
    // Without a token even a huge body is refused before it is read; with one, a body over
    // 6 MB is refused whether it declares its length or not.
    let base = function.base.clone();
    let bearer = format!("Bearer {http_token}");
    let raw = tokio::task::spawn_blocking(move || {
        [
            post_raw(&base, None, 7 << 20, false),
            post_raw(&base, Some(&bearer), 7 << 20, false),
            post_raw(&base, Some(&bearer), 7 << 20, true),
        ]
    })
    .await
    .unwrap();
    assert_eq!(
        raw,
        [401, 413, 413],
        "no token / declared 7 MiB / chunked 7 MiB"
    );
    assert!(emulator.rows().is_empty(), "nothing refused reached Azure");

    let (status, body) = post(
        Some(format!("Bearer {http_token}")),
        good_body.clone().into_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        emulator.rows().len(),
        3,
        "only the authorized request landed"
    );

    let logs = function.logs();
    assert!(logs.contains("DEBUG"), "the handler ran at debug level");
    assert!(!logs.contains("panicked"), "{logs}");
    common::assert_no_secrets(
        &format!("{logs}\n{}", dead_letter_text(&function.dead_letter)),
        &[&client_secret, &http_token],
        "the HTTP function's logs",
    );
    record(&Outcome {
        id: "61-security-http-auth",
        scenario: "HTTP function: missing/wrong tokens, oversized bodies",
        path: "azure-handler /events (shared router)",
        injected: "5 kinds of bad Authorization (401), 7 MiB bodies with Content-Length and chunked (413)",
        events_in: 3,
        delivered: emulator.rows().len() as u64,
        dead_lettered: 0,
        duplicated: 0,
        lost: 0,
        notes: format!(
            "{} refusals answered 401, both oversized bodies 413, no refused byte reached the emulator; debug log free of the client secret, the HTTP token and JWTs",
            refusals.len() + 1
        ),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_reaches_trace_logs_errors_or_dead_letters_under_faults() {
    let config = EmulatorConfig::default();
    let secret = config.client_secret.clone();
    let emulator = Emulator::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), "events.ndjson", 2_000, "push", 15).await;
    let first_event_id = expected_event_ids(&dir.path().join("events.ndjson"))[0].clone();
    // A client timeout with margin for a debug build at trace level on two loaded cores, and a
    // stall well past it.
    let trace = [
        ("RUST_LOG", "trace"),
        ("LOGRELAY_REQUEST_TIMEOUT_SECS", "8"),
    ];
    let mut outputs = Vec::new();

    // 401 (stale token refreshed), 503, a dropped connection, 429, a stall past the timeout,
    // all scripted on the first request so each happens; short-lived tokens and a token
    // endpoint that throttles first.
    emulator.set_faults(Faults {
        by_request: BTreeMap::from([(
            format!("event:{first_event_id}"),
            vec![401, 503, DROP_CONNECTION, 429, STALL],
        )]),
        stall_ms: 20_000,
        token_lifetime_secs: Some(4),
        token_script: vec![429],
        seed: Some(15),
        ..Faults::default()
    });
    let run = logrelay(
        &["send", "--dead-letter", "dl", "events.ndjson"],
        env_with(&emulator, &trace),
        dir.path(),
        Stdin::Null,
    )
    .await;
    assert_eq!(run.code, 0, "{}", tail(&run.all_output()));
    let scripted = settled(&emulator).await;
    assert!(
        scripted.status_counts.contains_key(&401)
            && scripted.status_counts.contains_key(&503)
            && scripted.status_counts.contains_key(&429)
            && scripted.dropped_connections == 1
            && scripted.stalled_requests == 1
            && scripted.token_failures == 1,
        "every scripted fault happened: {scripted:?}"
    );
    outputs.push(("send under faults at trace level", run.all_output()));

    // Every event refused (403): the dead letter holds them all.
    emulator.set_faults(Faults {
        forbidden: true,
        ..Faults::default()
    });
    let run = logrelay(
        &["send", "--dead-letter", "dl", "events.ndjson"],
        env_with(&emulator, &trace),
        dir.path(),
        Stdin::Null,
    )
    .await;
    assert_eq!(run.code, 1);
    outputs.push(("send refused with 403", run.all_output()));

    // Tokens revoked mid-life, then refused again after the refresh: 401 twice.
    emulator.set_faults(Faults {
        script: vec![401, 401],
        ..Faults::default()
    });
    let run = logrelay(
        &["send", "--dead-letter", "dl", "events.ndjson"],
        env_with(&emulator, &trace),
        dir.path(),
        Stdin::Null,
    )
    .await;
    outputs.push(("send with 401 twice", run.all_output()));

    // A wrong secret: Entra's error comes back; the secret must not.
    emulator.set_faults(Faults::none());
    let wrong = format!("{secret}-rotated");
    let run = logrelay(
        &["send", "--dead-letter", "dl", "events.ndjson"],
        env_with(
            &emulator,
            &[
                ("RUST_LOG", "trace"),
                ("AZURE_CLIENT_SECRET", wrong.as_str()),
            ],
        ),
        dir.path(),
        Stdin::Null,
    )
    .await;
    assert_ne!(run.code, 0);
    outputs.push(("send with a wrong secret", run.all_output()));
    let stats = emulator.stats();

    let dead = dead_letter_text(&dir.path().join("dl"));
    assert!(!dead.is_empty(), "the refused runs wrote dead letters");
    for (what, output) in &outputs {
        assert!(output.contains("TRACE"), "{what} ran at trace level");
        assert!(!output.contains("panicked"), "{what}: {}", tail(output));
        common::assert_no_secrets(output, &[&secret, &wrong], what);
    }
    common::assert_no_secrets(&dead, &[&secret, &wrong], "the dead letter");
    record(&Outcome {
        id: "62-security-secrets",
        scenario: "No secret or token in trace logs, errors or dead letters",
        path: "logrelay send",
        injected: "401 (twice), 403, 429, 503, dropped connection, stalls, 4 s tokens, throttled token endpoint, wrong client secret; RUST_LOG=trace",
        events_in: 0,
        delivered: 0,
        dead_lettered: 0,
        duplicated: 0,
        lost: 0,
        notes: format!(
            "{} runs and {} KB of dead letters searched for the client secret, the wrong secret and any JWT (`eyJ`) of the {} tokens issued: none found",
            outputs.len(),
            dead.len() / 1024,
            stats.tokens_issued
        ),
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_lambda_refuses_bad_tokens_and_oversized_bodies_and_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client_secret = emulator.config().client_secret.clone();
    let moto = common::start_moto(dir.path()).await;
    let mut env = common::function_env(&emulator, &moto).await;
    let http_token = format!("lr-{}", uuid::Uuid::new_v4().simple());
    let stored = moto
        .secrets
        .create_secret()
        .name("logrelay-http-token")
        .secret_string(&http_token)
        .send()
        .await
        .unwrap();
    env.push((
        "LOGRELAY_HTTP_TOKEN_ARN".into(),
        stored.arn().unwrap().to_string(),
    ));
    env.push(("RUST_LOG".into(), "debug".into()));
    let function = common::start_function("http-forwarder", &env, dir.path()).await;
    // cargo-lambda turns plain HTTP requests into Function URL events (payload 2.0).
    let url = format!("http://127.0.0.1:{}/events", function.port);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let body: String = (0..5).map(|i| keeper_line(i, json!({}))).collect();

    for (what, auth) in [
        ("no Authorization header", None),
        ("wrong token", Some("Bearer not-the-token".to_string())),
        ("token as Basic", Some(format!("Basic {http_token}"))),
    ] {
        let mut request = client.post(&url).body(body.clone());
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), 401, "{what}");
    }
    let response = client
        .post(&url)
        .bearer_auth(&http_token)
        .body(vec![b' '; 7 << 20])
        .send()
        .await
        .expect("an answer");
    let oversized = response.status().as_u16();
    assert_eq!(oversized, 413, "{}", tail(&function.binary.output()));
    assert!(emulator.rows().is_empty(), "nothing refused reached Azure");
    let response = client
        .post(&url)
        .bearer_auth(&http_token)
        .body(body)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), 200);
    assert_eq!(emulator.rows().len(), 5);

    let log = function.binary.output();
    assert!(log.contains("DEBUG"), "the function ran at debug level");
    assert!(!log.contains("panicked"), "{}", tail(&log));
    common::assert_no_secrets(
        &log,
        &[&client_secret, &http_token],
        "the HTTP Lambda's log",
    );
    record(&Outcome {
        id: "63-security-http-lambda",
        scenario: "HTTP Lambda: missing/wrong tokens, oversized body",
        path: "http-forwarder (cargo-lambda Function URL)",
        injected: "3 kinds of bad Authorization (401), a 7 MiB body (413); token from Secrets Manager; RUST_LOG=debug",
        events_in: 5,
        delivered: emulator.rows().len() as u64,
        dead_lettered: 0,
        duplicated: 0,
        lost: 0,
        notes: "refusals never reached the emulator; the debug log holds neither the client secret, the HTTP token nor a JWT".into(),
    });
}
