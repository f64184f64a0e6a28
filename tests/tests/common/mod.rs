//! Shared end-to-end helpers: locating the built binaries, running `logrelay` and capturing
//! its output, moto on 127.0.0.1, a function binary attached to its own `cargo lambda watch`
//! runtime API, the S3 and SQS events it is sent, and secret scans.
//!
//! Shared by aws_e2e, cli_e2e, doctor, reliability and azure_handler.
//! Include with `mod common;`. Each suite uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub(crate) mod iam;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use azmon_emulator::Emulator;
use serde_json::{json, Value};

/// How long a started server may take to answer (a bound for debug builds on two loaded cores).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one invocation may take (a bound, not a wait).
pub(crate) const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);

/// The bucket Keeper exports land in.
pub(crate) const BUCKET: &str = "keeper-exports";

/// The bucket dead letters are written to.
pub(crate) const DEAD_LETTER_BUCKET: &str = "keeper-dead-letter";

/// The name cargo-lambda gives the one function when it does not start it itself.
const LOCAL_FUNCTION: &str = "_";

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A tool installed by `scripts/tools.sh aws`.
pub(crate) fn tool(name: &str) -> PathBuf {
    let path = repo().join(".tools/venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `scripts/tools.sh aws` first",
        path.display()
    );
    path
}

/// `target/debug/<name>`, built by `make test` before the suites run.
pub(crate) fn debug_binary(name: &str) -> PathBuf {
    existing_debug_binary(
        name,
        "`cargo build --workspace` (`make test` and `make reliability` do)",
    )
}

/// The `logrelay` CLI's debug binary.
pub(crate) fn logrelay_binary() -> PathBuf {
    existing_debug_binary(
        "logrelay",
        "`cargo build -p logrelay-cli` (`make test` does)",
    )
}

/// `target/debug/<name>`; fails naming `build`, the command that builds it, when missing.
fn existing_debug_binary(name: &str, build: &str) -> PathBuf {
    let path = repo().join("target/debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first with {build}",
        path.display()
    );
    path
}

/// The newest modification time of any file below `dir`.
fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        let modified = if path.is_dir() {
            newest_source(&path)
        } else {
            entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .unwrap_or_else(|error| panic!("cannot stat {}: {error}", path.display()))
        };
        newest = newest.max(modified);
    }
    newest
}

/// A Lambda function's binary (`functions/<name>`); refuses a binary older than its sources
/// (a stale binary would test old code).
pub(crate) fn function_binary(name: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo().join("target"), PathBuf::from);
    // A release test run (`cargo test --release`, the benchmark) uses release binaries.
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let path = target.join(profile).join(name);
    let hint = format!(
        "build it first with `cargo build -p {name}` (with --release for a release test run; `make test` builds the workspace)"
    );
    assert!(path.exists(), "{} is missing: {hint}", path.display());
    let built = std::fs::metadata(&path)
        .and_then(|metadata| metadata.modified())
        .unwrap_or_else(|error| panic!("cannot stat {}: {error}", path.display()));
    let sources = newest_source(&repo().join("functions").join(name).join("src"))
        .max(newest_source(&repo().join("shared/src")));
    assert!(
        built >= sources,
        "{} is older than its sources: {hint}",
        path.display()
    );
    path
}

/// What one run of a binary printed and how it exited.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// Runs `logrelay args` with only `env` (plus debug logging), in `dir` when given, feeding
/// `stdin` when given (else stdin is null).
pub(crate) async fn run_logrelay(
    args: &[&str],
    env: Vec<(String, String)>,
    dir: Option<&Path>,
    stdin: Option<Vec<u8>>,
) -> Run {
    let binary = logrelay_binary();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let dir = dir.map(Path::to_path_buf);
    // The child talks to the emulator served by this runtime, so wait on a blocking thread.
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(binary);
        command
            .args(&args)
            .env_clear()
            .envs(env)
            .env("RUST_LOG", "debug")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().expect("logrelay starts");
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("stdin pipe");
            pipe.write_all(&bytes).expect("stdin written");
        }
        let output = child.wait_with_output().expect("logrelay finishes");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("runner thread")
}

/// No secret of `secrets` and no JWT (every token the emulator issues starts `eyJ`) in `text`.
pub(crate) fn assert_no_secrets(text: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} shows a secret ({}…)",
            secret.get(..4).unwrap_or_default()
        );
    }
    assert!(!text.contains("eyJ"), "{what} shows a token (eyJ…)");
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

/// A child process killed and reaped on drop; its output goes to a log file.
pub(crate) struct Proc {
    pub(crate) child: Child,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(mut command: Command, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).expect("log file");
        command
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .stdin(Stdio::null());
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        Proc { child, log }
    }

    pub(crate) fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for_tcp(port: u16, what: &str) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < START_TIMEOUT,
            "{what} did not start on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// moto's server and SDK clients pointed at it.
pub(crate) struct Moto {
    pub(crate) url: String,
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) sqs: aws_sdk_sqs::Client,
    pub(crate) secrets: aws_sdk_secretsmanager::Client,
    _proc: Proc,
}

pub(crate) async fn start_moto(dir: &Path) -> Moto {
    start_moto_with_env(dir, &[]).await
}

/// moto started with `env` (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`, see iam.rs).
pub(crate) async fn start_moto_with_env(dir: &Path, env: &[(&str, &str)]) -> Moto {
    let port = free_port();
    let mut command = Command::new(tool("moto_server"));
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    command.envs(env.iter().copied());
    let proc = Proc::spawn(command, dir.join("moto.log"));
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = Instant::now();
    while http.get(format!("{url}/moto-api/")).send().await.is_err() {
        assert!(
            started.elapsed() < START_TIMEOUT,
            "moto did not answer: {}",
            proc.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "e2e",
        ))
        .endpoint_url(&url)
        .load()
        .await;
    let s3_config = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .build();
    Moto {
        s3: aws_sdk_s3::Client::from_conf(s3_config),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        secrets: aws_sdk_secretsmanager::Client::new(&sdk),
        url,
        _proc: proc,
    }
}

/// A function binary attached to its own cargo-lambda runtime API.
pub(crate) struct Function {
    pub(crate) port: u16,
    pub(crate) binary: Proc,
    _watch: Proc,
}

pub(crate) async fn start_function(name: &str, env: &[(String, String)], dir: &Path) -> Function {
    let binary_path = function_binary(name);
    let port = free_port();
    let mut watch = Command::new(tool("cargo-lambda"));
    watch
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
        ])
        .arg(port.to_string())
        .current_dir(repo());
    let watch = Proc::spawn(watch, dir.join(format!("{name}-watch.log")));
    wait_for_tcp(port, "cargo lambda watch").await;

    let mut command = Command::new(binary_path);
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        );
    if !env.iter().any(|(key, _)| key == "RUST_LOG") {
        command.env("RUST_LOG", "info");
    }
    let binary = Proc::spawn(command, dir.join(format!("{name}.log")));
    Function {
        port,
        binary,
        _watch: watch,
    }
}

impl Function {
    /// Invokes the function through the Lambda Invoke API within [`INVOKE_TIMEOUT`]; the HTTP
    /// status and the answer.
    pub(crate) async fn invoke(&self, payload: &Value) -> (u16, Value) {
        self.invoke_within(payload, INVOKE_TIMEOUT).await
    }

    /// Invokes the function through the Lambda Invoke API; the HTTP status and the answer.
    pub(crate) async fn invoke_within(&self, payload: &Value, timeout: Duration) -> (u16, Value) {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{LOCAL_FUNCTION}/invocations",
            self.port
        );
        let response = reqwest::Client::new()
            .post(url)
            .timeout(timeout)
            .json(payload)
            .send()
            .await
            .unwrap_or_else(|error| panic!("invoke failed: {error}\n{}", self.binary.output()));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_else(|error| {
            panic!(
                "reading the invocation answer failed: {error}\n{}",
                self.binary.output()
            )
        });
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }
}

/// Whether an invocation failed (the platform would retry it): an error status or an
/// `errorType` answer.
pub(crate) fn invocation_failed(status: u16, answer: &Value) -> bool {
    status != 200 || answer.get("errorType").is_some()
}

/// The function environment: the emulator's Azure settings with the client secret moved to
/// Secrets Manager, moto as every AWS endpoint, the dead letter in S3; buckets created.
pub(crate) async fn function_env(emulator: &Emulator, moto: &Moto) -> Vec<(String, String)> {
    let secret = moto
        .secrets
        .create_secret()
        .name(format!("azure-client-secret-{}", free_port()))
        .secret_string(json!({"client_secret": emulator.config().client_secret}).to_string())
        .send()
        .await
        .expect("secret created in moto");
    let mut env: Vec<(String, String)> = emulator
        .env()
        .into_iter()
        .filter(|(key, _)| key != "AZURE_CLIENT_SECRET")
        .collect();
    let pairs = [
        (
            "AZURE_CLIENT_SECRET_ARN",
            secret.arn().expect("the secret's ARN").to_string(),
        ),
        ("AWS_ENDPOINT_URL", moto.url.clone()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        (
            "LOGRELAY_DEAD_LETTER",
            format!("s3://{DEAD_LETTER_BUCKET}/failed/"),
        ),
    ];
    env.extend(pairs.map(|(key, value)| (key.to_string(), value)));
    for bucket in [BUCKET, DEAD_LETTER_BUCKET] {
        moto.s3
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("bucket created in moto");
    }
    env
}

/// Puts `body` at `key` in [`BUCKET`], in `storage_class` when given.
pub(crate) async fn put(moto: &Moto, key: &str, body: Vec<u8>, storage_class: Option<&str>) {
    let mut request = moto
        .s3
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body));
    if let Some(class) = storage_class {
        request = request.storage_class(class.into());
    }
    request.send().await.expect("object put in moto");
}

/// A JSON fixture from `tests/fixtures/aws`.
pub(crate) fn fixture(name: &str) -> Value {
    let path = repo().join("tests/fixtures/aws").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The S3 notification fixture naming `key` (form-urlencoded as S3 does) in [`BUCKET`].
pub(crate) fn s3_notice(key: &str) -> Value {
    let mut notice = fixture("s3-put.json");
    notice["Records"][0]["s3"]["bucket"]["name"] = BUCKET.into();
    notice["Records"][0]["s3"]["bucket"]["arn"] = format!("arn:aws:s3:::{BUCKET}").into();
    notice["Records"][0]["s3"]["object"]["key"] = form_encode(key).into();
    notice
}

/// S3's key encoding in notifications: form-urlencoded, `/` kept.
pub(crate) fn form_encode(key: &str) -> String {
    let mut out = String::new();
    for byte in key.bytes() {
        match byte {
            b'/' | b'-' | b'_' | b'.' | b'*' => out.push(byte as char),
            b' ' => out.push('+'),
            _ if byte.is_ascii_alphanumeric() => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Sends `bodies` through a real moto queue and turns what SQS hands back into the event
/// Lambda's SQS trigger delivers (docs/emulator-facts.md §4.2); the event and the message
/// ids in the order the bodies were sent.
/// Sends each body to the queue as its own message; the message ids, in order.
pub(crate) async fn send_messages(moto: &Moto, queue_url: &str, bodies: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for body in bodies {
        let sent = moto
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .expect("message sent to moto");
        ids.push(sent.message_id().expect("a message id").to_string());
    }
    ids
}

pub(crate) async fn sqs_event(moto: &Moto, bodies: &[String]) -> (Value, Vec<String>) {
    let queue = moto
        .sqs
        .create_queue()
        .queue_name(format!("keeper-{}", free_port()))
        .send()
        .await
        .expect("queue created in moto");
    let queue_url = queue.queue_url().expect("a queue URL").to_string();
    let ids = send_messages(moto, &queue_url, bodies).await;
    let arn = format!(
        "arn:aws:sqs:us-east-1:123456789012:{}",
        queue_url.rsplit('/').next().expect("a queue name")
    );
    let mut records = Vec::new();
    while records.len() < bodies.len() {
        let received = moto
            .sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("messages received from moto");
        for message in received.messages() {
            records.push(json!({
                "messageId": message.message_id(),
                "receiptHandle": message.receipt_handle(),
                "body": message.body(),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764000000000",
                               "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1764000000001"},
                "messageAttributes": {},
                "md5OfBody": message.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": "us-east-1"
            }));
        }
    }
    // Lambda hands messages over in queue order; keep the order they were sent in.
    records.sort_by_key(|record| {
        ids.iter()
            .position(|id| record["messageId"] == id.as_str())
            .unwrap_or(usize::MAX)
    });
    (json!({"Records": records}), ids)
}

/// Every object in the dead-letter bucket: key and body (UTF-8, as dead letters are written).
pub(crate) async fn dead_letter_objects(moto: &Moto) -> Vec<(String, String)> {
    let listed = moto
        .s3
        .list_objects_v2()
        .bucket(DEAD_LETTER_BUCKET)
        .send()
        .await
        .expect("list the dead-letter bucket");
    let mut out = Vec::new();
    for object in listed.contents() {
        let key = object.key().expect("an object key").to_string();
        let body = moto
            .s3
            .get_object()
            .bucket(DEAD_LETTER_BUCKET)
            .key(&key)
            .send()
            .await
            .expect("get a dead-letter object")
            .body
            .collect()
            .await
            .expect("read a dead-letter object")
            .into_bytes();
        let body = String::from_utf8(body.to_vec()).expect("a dead-letter object is UTF-8");
        out.push((key, body));
    }
    out
}

/// The stored `rows` in the order their `events` were sent, each paired by `key` (the same
/// text for an event and its row). Inside a request body logrelay lays rows out for
/// compression (`pack::layout`; Azure keeps no order within a request), so a test that
/// compares rows with events one by one pairs them by content. Panics naming the event
/// when a row is missing or left over.
pub(crate) fn in_order_of(
    rows: Vec<Value>,
    events: &[Value],
    key: impl Fn(&Value) -> String,
) -> Vec<Value> {
    let mut by_key: std::collections::HashMap<String, Vec<Value>> =
        std::collections::HashMap::new();
    for row in rows {
        by_key.entry(key(&row)).or_default().push(row);
    }
    let ordered: Vec<Value> = events
        .iter()
        .map(|event| {
            let wanted = key(event);
            by_key
                .get_mut(&wanted)
                .and_then(Vec::pop)
                .unwrap_or_else(|| panic!("no stored row for the event keyed {wanted}"))
        })
        .collect();
    let left: usize = by_key.values().map(Vec::len).sum();
    assert_eq!(left, 0, "rows stored beyond the events sent: {by_key:?}");
    ordered
}

/// Every dead-letter line in the `*.ndjson` files of `dir`, which must exist.
pub(crate) fn dead_letter_lines(dir: &Path) -> Vec<Value> {
    let mut entries = Vec::new();
    for file in std::fs::read_dir(dir).expect("dead-letter directory exists") {
        let path = file.expect("directory entry").path();
        if path.extension().is_some_and(|ext| ext == "ndjson") {
            let text = std::fs::read_to_string(&path).expect("dead-letter file");
            entries.extend(text.lines().map(|line| {
                serde_json::from_str::<Value>(line).expect("a dead-letter line is JSON")
            }));
        }
    }
    entries
}
