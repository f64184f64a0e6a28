//! The table of every environment variable logrelay reads: its name, its default on each
//! platform, and what it means. README's configuration table is rendered from this one
//! ([`markdown_table`]; `shared/tests/readme_settings.rs` fails when they disagree).

/// Where a binary runs; some defaults differ by platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// The `logrelay` command line.
    Cli,
    /// The AWS Lambda functions.
    Aws,
    /// The Azure Functions custom handler.
    Azure,
}

impl Platform {
    /// The name shown in the table.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Cli => "CLI",
            Platform::Aws => "AWS",
            Platform::Azure => "Azure",
        }
    }
}

/// A variable's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// No value is assumed; words for the table ("required", "set by App Service", "").
    Words(&'static str),
    /// This value, the same everywhere.
    Value(&'static str),
    /// A value per platform.
    PerPlatform(&'static [(Platform, &'static str)]),
}

/// One variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    pub name: &'static str,
    pub default: Default,
    pub meaning: &'static str,
}

impl Var {
    /// The default on `platform`, if there is a value.
    pub fn default_on(&self, platform: Platform) -> Option<&'static str> {
        match self.default {
            Default::Words(_) => None,
            Default::Value(value) => Some(value),
            Default::PerPlatform(values) => values
                .iter()
                .find(|(on, _)| *on == platform)
                .map(|(_, value)| *value),
        }
    }
}

pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
pub const LOGRELAY_SCHEMA: &str = "LOGRELAY_SCHEMA";
pub const LOGRELAY_TIME_FIELD: &str = "LOGRELAY_TIME_FIELD";
pub const LOGRELAY_DEAD_LETTER: &str = "LOGRELAY_DEAD_LETTER";
pub const LOGRELAY_HTTP_TOKEN: &str = "LOGRELAY_HTTP_TOKEN";
pub const LOGRELAY_HTTP_TOKEN_ARN: &str = "LOGRELAY_HTTP_TOKEN_ARN";
pub const WEBSITE_SITE_NAME: &str = "WEBSITE_SITE_NAME";
pub const FUNCTIONS_APP_ROOT_PATH: &str = "FUNCTIONS_APP_ROOT_PATH";
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

/// The dead letter's default on Azure App Service: `/home` is the app's persistent, writable
/// share, while `wwwroot` is read-only when the app runs from a package
/// (<https://learn.microsoft.com/azure/app-service/operating-system-functionality#file-access>).
pub const AZURE_DEAD_LETTER_DIR: &str = "/home/data/logrelay/dead-letter";

/// The dead letter's default in Lambda: `/tmp` is the only writable path, and it does not
/// outlive the execution environment
/// (<https://docs.aws.amazon.com/lambda/latest/dg/configuration-ephemeral-storage.html>).
pub const LAMBDA_DEAD_LETTER_DIR: &str = "/tmp/logrelay-dead-letter";

/// Every variable, in the order README lists them.
pub const VARS: &[Var] = &[
    Var { name: AZURE_TENANT_ID, default: Default::Words("required"), meaning: "Directory (tenant) id of the app registration." },
    Var { name: AZURE_CLIENT_ID, default: Default::Words("required"), meaning: "Application (client) id." },
    Var { name: "AZURE_CLIENT_SECRET", default: Default::Words("one credential required"), meaning: "The client secret's **Value** (not its Secret ID)." },
    Var { name: "AZURE_CLIENT_SECRET_ARN", default: Default::Words(""), meaning: "AWS functions: Secrets Manager ARN holding the secret (plain, or JSON with `client_secret`). Read once per container, re-read when Entra rejects it (rotation)." },
    Var { name: "LOGRELAY_AWS_FEDERATION", default: Default::Value("false"), meaning: "AWS functions: `true` gets the Entra token with the function role's own identity (STS `GetWebIdentityToken`, audience `api://AzureADTokenExchange`, exchanged at Entra through a federated identity credential): no secret anywhere." },
    Var { name: "AZURE_CLIENT_CERTIFICATE_PATH", default: Default::Words(""), meaning: "A PEM file with the certificate and its unencrypted RSA private key; assertions are signed PS256 with the `x5t#S256` header." },
    Var { name: "AZURE_CLIENT_CERTIFICATE_PASSWORD", default: Default::Words(""), meaning: "Not supported (encrypted PEM/PFX): setting it is refused with how to convert the file." },
    Var { name: "AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", default: Default::Value("false"), meaning: "`true` sends the certificate chain (`x5c`), for subject-name/issuer authentication." },
    Var { name: "AZURE_FEDERATED_TOKEN_FILE", default: Default::Words(""), meaning: "A JWT file another platform writes and renews (Kubernetes workload identity); read again when it changes." },
    Var { name: "IDENTITY_ENDPOINT", default: Default::Words("set by App Service"), meaning: "Azure Functions: the managed identity endpoint; with `IDENTITY_HEADER`, no secret is needed." },
    Var { name: "IDENTITY_HEADER", default: Default::Words("set by App Service"), meaning: "Azure Functions: the managed identity endpoint's header value." },
    Var { name: "AZURE_CLOUD", default: Default::Value("public"), meaning: "`public`, `usgovernment` or `china`: picks the authority host and the token scope." },
    Var { name: "AZURE_AUTHORITY_HOST", default: Default::Words("per cloud"), meaning: "Overrides the authority host (https, or http to loopback only)." },
    Var { name: "LOGS_INGESTION_ENDPOINT", default: Default::Words("one form required"), meaning: "The full Endpoint URL as the Keeper Admin Console takes it: `https://<dce-or-dcr-endpoint>/dataCollectionRules/<dcr-immutable-id>/streams/<stream>?api-version=2023-01-01`." },
    Var { name: "LOGS_INGESTION_DCE", default: Default::Words(""), meaning: "Three-part form of the endpoint URL: the endpoint host (https assumed)." },
    Var { name: "LOGS_INGESTION_DCR_ID", default: Default::Words(""), meaning: "Three-part form: the DCR immutable id (`dcr-` and 32 hex characters)." },
    Var { name: "LOGS_INGESTION_STREAM", default: Default::Words(""), meaning: "Three-part form: the stream (`Custom-<Stream>`)." },
    Var { name: "LOGRELAY_CONCURRENCY", default: Default::Value("16"), meaning: "Requests in flight at once (1–64); 16 sustains one DCR's 2 GB/minute at 50 ms to Azure." },
    Var { name: "LOGRELAY_MAX_ATTEMPTS", default: Default::Value("8"), meaning: "Attempts per request, the first included (1–50)." },
    Var { name: "LOGRELAY_DEADLINE_SECS", default: Default::Value("300"), meaning: "How long one batch may keep retrying. Lambda functions also stop before the invocation's own deadline." },
    Var { name: "LOGRELAY_BATCH_BYTES", default: Default::Value("1000000"), meaning: "Serialized JSON bytes per request (at most 1,000,000)." },
    Var { name: "LOGRELAY_REQUEST_TIMEOUT_SECS", default: Default::Value("30"), meaning: "One HTTP attempt." },
    Var { name: "LOGRELAY_GZIP_LEVEL", default: Default::Value("4"), meaning: "Request-body compression (libdeflate), 1 (least CPU, about 5 % more bytes than 4) to 12 (fewest bytes, most CPU); 4 sends fewer bytes than earlier releases' zlib level 6." },
    Var { name: "LOGRELAY_MAX_DECOMPRESSED_BYTES", default: Default::Value("17179869184"), meaning: "Gzip input inflating past this (16 GiB) is refused (gzip-bomb guard)." },
    Var { name: LOGRELAY_SCHEMA, default: Default::Value("keeper"), meaning: "`keeper`, or `passthrough` to forward non-Keeper objects as they are." },
    Var { name: LOGRELAY_TIME_FIELD, default: Default::Words(""), meaning: "Passthrough: the field `TimeGenerated` is taken from (required with `passthrough`)." },
    Var {
        name: LOGRELAY_DEAD_LETTER,
        default: Default::PerPlatform(&[
            (Platform::Cli, "./logrelay-dead-letter"),
            (Platform::Aws, LAMBDA_DEAD_LETTER_DIR),
            (Platform::Azure, AZURE_DEAD_LETTER_DIR),
        ]),
        meaning: "Where undeliverable events go, as NDJSON with the reason beside each event: a directory, or `s3://bucket/prefix/` in Lambda (one object per failed batch; the `/tmp` default is lost with the container). The Azure default applies on App Service (`WEBSITE_SITE_NAME` set); run by hand, it is `dead-letter` under `FUNCTIONS_APP_ROOT_PATH`.",
    },
    Var { name: "LOGRELAY_QUEUE_BODY_ENCODING", default: Default::Value("none"), meaning: "Azure queue trigger: `base64` when producers base64-encode message bodies themselves (the host already decodes the queue's own encoding)." },
    Var { name: "FUNCTIONS_CUSTOMHANDLER_PORT", default: Default::Words("set by the Functions host"), meaning: "Azure handler: the loopback port to listen on (8080 when run by hand)." },
    Var { name: FUNCTIONS_APP_ROOT_PATH, default: Default::Words("set by the Functions host"), meaning: "Azure handler: the app root (the local dead-letter default)." },
    Var { name: WEBSITE_SITE_NAME, default: Default::Words("set by App Service"), meaning: "Azure handler: tells App Service from a local run (the dead-letter default)." },
    Var { name: LOGRELAY_HTTP_TOKEN, default: Default::Words(""), meaning: "HTTP functions: the shared bearer token callers must send." },
    Var { name: LOGRELAY_HTTP_TOKEN_ARN, default: Default::Words(""), meaning: "AWS HTTP function: Secrets Manager ARN holding the token instead (plain, or JSON with `token`)." },
    Var { name: AWS_ENDPOINT_URL, default: Default::Words(""), meaning: "Points every AWS client at another endpoint (tests, `make local`); `AWS_ENDPOINT_URL_<SERVICE>` for one service. https, or http to loopback only." },
    Var { name: "RUST_LOG", default: Default::Value("info"), meaning: "Log level or filter." },
    Var { name: "AWS_LAMBDA_LOG_LEVEL", default: Default::Words("set by Lambda"), meaning: "Lambda's log level; wins over `RUST_LOG`." },
    Var { name: "AWS_LAMBDA_LOG_FORMAT", default: Default::Words("set by Lambda"), meaning: "`JSON` gives JSON logs." },
];

/// The variable called `name`, if logrelay reads it.
pub fn find(name: &str) -> Option<&'static Var> {
    VARS.iter().find(|var| var.name == name)
}

/// The table as Markdown, for README.
pub fn markdown_table() -> String {
    let mut out = String::from("| Variable | Default | Meaning |\n|---|---|---|\n");
    for var in VARS {
        let default = match var.default {
            Default::Words(words) => words.to_string(),
            Default::Value(value) => format!("`{value}`"),
            Default::PerPlatform(values) => values
                .iter()
                .map(|(platform, value)| format!("{}: `{value}`", platform.name()))
                .collect::<Vec<_>>()
                .join("; "),
        };
        out.push_str(&format!(
            "| `{}` | {default} | {} |\n",
            var.name, var.meaning
        ));
    }
    out
}
