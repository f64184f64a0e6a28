//! Shared end-to-end helpers for the Lambda functions: moto on 127.0.0.1, a function binary
//! attached to its own `cargo lambda watch` runtime API, and the S3 notification it is sent.
//!
//! OWNER: reliability helper (adapted from tests/tests/aws_e2e.rs, which may switch to it).
//! Include with `mod common;`. Each suite uses a subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use azmon_emulator::Emulator;
use serde_json::{json, Value};

/// How long a started server may take to answer.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(20);

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
    let path = repo().join("target/debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --workspace` (`make test` does)",
        path.display()
    );
    path
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
    let port = free_port();
    let mut command = Command::new(tool("moto_server"));
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
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
    let binary_path = debug_binary(name);
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
        let text = response.text().await.unwrap_or_default();
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
            secret.arn().unwrap_or_default().to_string(),
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

/// Puts `body` at `key` in [`BUCKET`].
pub(crate) async fn put_object(moto: &Moto, key: &str, body: Vec<u8>) {
    moto.s3
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body))
        .send()
        .await
        .expect("object put in moto");
}

/// A direct S3 "ObjectCreated:Put" notification for `key` in [`BUCKET`] (key without
/// characters S3 would encode).
pub(crate) fn s3_notice(key: &str) -> Value {
    let path = repo().join("tests/fixtures/aws/s3-put.json");
    let text = std::fs::read_to_string(&path).expect("tests/fixtures/aws/s3-put.json");
    let mut notice: Value = serde_json::from_str(&text).expect("fixture is JSON");
    notice["Records"][0]["s3"]["bucket"]["name"] = BUCKET.into();
    notice["Records"][0]["s3"]["bucket"]["arn"] = format!("arn:aws:s3:::{BUCKET}").into();
    notice["Records"][0]["s3"]["object"]["key"] = key.into();
    notice
}

/// An SQS event as Lambda's SQS trigger delivers it, one record per body (ids `msg-<n>`).
pub(crate) fn sqs_event(bodies: &[String]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(n, body)| {
            json!({
                "messageId": format!("msg-{n}"),
                "receiptHandle": format!("handle-{n}"),
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764000000000",
                               "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1764000000001"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:keeper-notices",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Every object in the dead-letter bucket: key and body.
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
        let key = object.key().unwrap_or_default().to_string();
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
        out.push((key, String::from_utf8_lossy(&body).into_owned()));
    }
    out
}
