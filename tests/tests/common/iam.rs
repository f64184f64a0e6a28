//! IAM enforced in moto with the roles of `infra/aws/template.yaml`, never a policy copied
//! by hand.
//!
//! moto (server mode) starts with `INITIAL_NO_AUTH_ACTION_COUNT` so that set-up runs
//! unauthenticated; [`Stack::deploy`] then creates what the template declares that the
//! functions touch (versioned buckets, queues, secrets), creates each `AWS::IAM::Role` of the
//! template with its inline policies (intrinsics resolved for the test's names), assumes it,
//! and turns enforcement on (`POST /moto-api/reset-auth 0`). From then on every call is signed
//! and checked: each function runs with its role's temporary credentials, as Lambda gives
//! them, and the harness (playing Keeper's upload, the Lambda service's SQS poller and the
//! operator reading results) uses an administrator's keys.
//!
//! One difference from AWS, handled in the open: moto matches `Resource` against real ARNs
//! only for S3 (`moto/s3/responses.py`, `_authenticate_and_authorize_s3_action`) and for SQS
//! calls naming a queue (`moto/sqs/responses.py` `_determine_resource`); any other service is
//! evaluated as `Resource: "*"` (`moto/core/responses.py` `call_action`), so a statement scoped
//! to an ARN would be denied there. [`moto_view`] widens the `Resource` of exactly those
//! statements (all of whose actions belong to such a service) to `"*"`, never their actions,
//! and [`Stack::function_env`] checks instead that the template's own resources name each
//! secret the function is configured to read.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use aws_sdk_s3::config::Credentials;
use serde_json::{json, Map, Value};

use super::{free_port, repo, tool, Moto, BUCKET, DEAD_LETTER_BUCKET};

/// moto's default account id (moto/core/models.py `DEFAULT_ACCOUNT_ID`).
pub(crate) const ACCOUNT: &str = "123456789012";

/// The region the tests and moto use.
pub(crate) const REGION: &str = "us-east-1";

/// `AWS::StackName` of the test's stand-in stack.
pub(crate) const STACK_NAME: &str = "logrelay-e2e";

/// `AWS::StackId`, in the shape CloudFormation gives it (the export bucket's name uses its
/// last segment).
const STACK_ID: &str =
    "arn:aws:cloudformation:us-east-1:123456789012:stack/logrelay-e2e/51af3dc0-da77-11e4-872e-1234567db123";

/// Services of the roles' statements whose calls moto authorizes as `Resource: "*"` (see the
/// module doc). S3 and SQS are not here: moto checks their ARNs, so their statements are used
/// exactly as written. A statement for another service stays scoped, and fails loudly in
/// moto until its service is checked and listed here.
const MOTO_UNSCOPED_SERVICES: &[&str] = &["secretsmanager", "logs"];

/// The template's buckets and the names the tests give them (the stack would derive them).
const BUCKETS: &[(&str, &str)] = &[
    ("ExportBucket", BUCKET),
    ("DeadLetterBucket", DEAD_LETTER_BUCKET),
];

/// The user whose keys the harness signs with once enforcement is on.
const HARNESS_USER: &str = "e2e-harness";

/// The map from code to permissions (held to the source and the template by
/// tests/tests/aws_template.rs): an AWS operation the code calls, and what IAM must allow for it. Actions from the AWS
/// Service Authorization Reference: Amazon S3
/// (<https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html>)
/// and AWS Secrets Manager
/// (<https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssecretsmanager.html>).
pub(crate) struct Call {
    /// The SDK crate and its fluent method (the operation in snake case).
    pub(crate) sdk: &'static str,
    pub(crate) method: &'static str,
    /// The operation as the code's errors name it (`AWS s3 GetObject failed: ...`).
    pub(crate) operation: &'static str,
    /// Every IAM action the call needs, as the code makes it.
    pub(crate) actions: &'static [&'static str],
    /// The template's functions whose code makes the call.
    pub(crate) functions: &'static [&'static str],
    pub(crate) why: &'static str,
    /// The `EntraCredential` the call belongs to; `None` for every credential.
    pub(crate) credential: Option<&'static str>,
}

pub(crate) const CODE_CALLS: &[Call] = &[
    Call {
        sdk: "aws-sdk-s3",
        method: "get_object",
        operation: "GetObject",
        // GetObject: s3:GetObject; with a versionId (every notice from the versioned export
        // bucket) s3:GetObjectVersion; s3:ListBucket turns a missing object's 403 into the
        // 404 the code skips (S3 API Reference, GetObject, "Permissions").
        actions: &["s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"],
        functions: &["S3Forwarder", "SqsForwarder"],
        why: "shared/src/aws/s3.rs open_object: the objects S3 notices name (the HTTP function never reads objects)",
        credential: None,
    },
    Call {
        sdk: "aws-sdk-s3",
        method: "put_object",
        operation: "PutObject",
        actions: &["s3:PutObject"],
        functions: &["S3Forwarder", "SqsForwarder", "HttpForwarder"],
        why: "shared/src/aws/s3.rs S3DeadLetter: the dead letter every function writes",
        credential: None,
    },
    Call {
        sdk: "aws-sdk-secretsmanager",
        method: "get_secret_value",
        operation: "GetSecretValue",
        // No kms:Decrypt: the secrets use the AWS managed key aws/secretsmanager.
        actions: &["secretsmanager:GetSecretValue"],
        functions: &["S3Forwarder", "SqsForwarder", "HttpForwarder"],
        why: "shared/src/aws/secrets.rs: the Entra client secret (all) and the HTTP token (HttpForwarder)",
        credential: Some(CLIENT_SECRET),
    },
    Call {
        sdk: "aws-sdk-secretsmanager",
        method: "get_secret_value",
        operation: "GetSecretValue",
        actions: &["secretsmanager:GetSecretValue"],
        functions: &["HttpForwarder"],
        why: "shared/src/aws/secrets.rs: the HTTP token (HttpForwarder), whatever the Entra credential",
        credential: Some(AWS_FEDERATION),
    },
    Call {
        sdk: "aws-sdk-sts",
        method: "get_web_identity_token",
        operation: "GetWebIdentityToken",
        // sts:GetWebIdentityToken, limited by sts:IdentityTokenAudience
        // (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_outbound_policies.html).
        actions: &["sts:GetWebIdentityToken"],
        functions: &["S3Forwarder", "SqsForwarder", "HttpForwarder"],
        why: "shared/src/aws/web_identity.rs: the JWT exchanged at Entra (LOGRELAY_AWS_FEDERATION)",
        credential: Some(AWS_FEDERATION),
    },
];

/// `infra/aws/template.yaml` as JSON, tags in their long form (`{"Fn::Sub": ...}`), read by
/// cfn-lint's own decoder (scripts/infra/cfn_yaml.py).
#[derive(Debug, Clone)]
pub(crate) struct Template {
    pub(crate) json: Value,
}

/// The template's default credential and the secretless one (`EntraCredential`).
pub(crate) const CLIENT_SECRET: &str = "ClientSecret";
pub(crate) const AWS_FEDERATION: &str = "AwsFederation";

impl Template {
    /// The template as written (every `Fn::If` in place).
    pub(crate) fn load() -> Template {
        Template::load_raw()
    }

    /// The template as CloudFormation would deploy it with `EntraCredential=credential`:
    /// conditions evaluated, each `Fn::If` replaced by its branch, `!Ref AWS::NoValue`
    /// dropped, and resources and outputs whose condition is false removed.
    pub(crate) fn load_with(credential: &str) -> Template {
        let mut template = Template::load_raw();
        let parameters: BTreeMap<&str, String> = [
            ("EntraCredential", credential.to_string()),
            ("AzureCloud", "public".to_string()),
            ("AlarmEmail", String::new()),
            ("CreateKeeperUser", "true".to_string()),
        ]
        .into_iter()
        .collect();
        let definitions = template.json["Conditions"].clone();
        let mut conditions = BTreeMap::new();
        if let Some(definitions) = definitions.as_object() {
            for name in definitions.keys() {
                let value = evaluate(&definitions[name], definitions, &parameters);
                conditions.insert(name.clone(), value);
            }
        }
        let json = choose(&template.json, &conditions);
        template.json = json;
        for section in ["Resources", "Outputs"] {
            if let Some(items) = template.json[section].as_object_mut() {
                items.retain(|_, item| {
                    item["Condition"]
                        .as_str()
                        .is_none_or(|condition| conditions[condition])
                });
            }
        }
        template
    }

    fn load_raw() -> Template {
        let path = repo().join("infra/aws/template.yaml");
        let output = Command::new(tool("python"))
            .arg(repo().join("scripts/infra/cfn_yaml.py"))
            .arg(&path)
            .output()
            .unwrap_or_else(|error| panic!("cfn_yaml.py did not run: {error}"));
        assert!(
            output.status.success(),
            "cfn_yaml.py {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let json = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|error| panic!("cfn_yaml.py printed no JSON: {error}"));
        Template { json }
    }

    pub(crate) fn resources(&self) -> &Map<String, Value> {
        self.json["Resources"]
            .as_object()
            .unwrap_or_else(|| panic!("the template has no Resources"))
    }

    pub(crate) fn resource(&self, id: &str) -> &Value {
        self.resources()
            .get(id)
            .unwrap_or_else(|| panic!("the template has no resource {id}"))
    }

    /// `(logical id, resource)` of every resource of type `kind`.
    pub(crate) fn of_type<'a>(
        &'a self,
        kind: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.resources()
            .iter()
            .filter(move |(_, resource)| resource["Type"] == kind)
            .map(|(id, resource)| (id.as_str(), resource))
    }

    /// The logical id of the role a function runs with (`Role: !GetAtt X.Arn`).
    pub(crate) fn function_role(&self, function: &str) -> String {
        let role = &self.resource(function)["Properties"]["Role"]["Fn::GetAtt"];
        role[0]
            .as_str()
            .unwrap_or_else(|| panic!("{function}: Role is not !GetAtt <role>.Arn"))
            .to_string()
    }

    /// The logical id of the function whose binary is `binary` (Metadata.BuildProperties).
    pub(crate) fn function_for_binary(&self, binary: &str) -> String {
        self.of_type("AWS::Serverless::Function")
            .find(|(_, resource)| resource["Metadata"]["BuildProperties"]["Binary"] == binary)
            .map(|(id, _)| id.to_string())
            .unwrap_or_else(|| panic!("no function of the template builds {binary}"))
    }

    /// Every inline policy document of `role` (unresolved).
    pub(crate) fn role_policies(&self, role: &str) -> Vec<(String, Value)> {
        self.resource(role)["Properties"]["Policies"]
            .as_array()
            .unwrap_or_else(|| panic!("{role} has no inline Policies"))
            .iter()
            .map(|policy| {
                (
                    policy["PolicyName"].as_str().unwrap_or(role).to_string(),
                    policy["PolicyDocument"].clone(),
                )
            })
            .collect()
    }

    fn is_parameter(&self, name: &str) -> bool {
        self.json["Parameters"].get(name).is_some()
    }
}

/// A condition of the template's `Conditions` (`Fn::Equals` on parameters, `Fn::Not`,
/// `Fn::And`, `Fn::Or`, `Condition`).
fn evaluate(
    condition: &Value,
    all: &Map<String, Value>,
    parameters: &BTreeMap<&str, String>,
) -> bool {
    let operand = |value: &Value| -> String {
        match value {
            Value::String(text) => text.clone(),
            Value::Object(object) if object.contains_key("Ref") => {
                let name = as_str(&object["Ref"], "Ref");
                parameters
                    .get(name)
                    .unwrap_or_else(|| panic!("the test has no value for parameter {name}"))
                    .clone()
            }
            other => panic!("condition operand {other}"),
        }
    };
    let (key, argument) = condition
        .as_object()
        .and_then(|object| object.iter().next())
        .unwrap_or_else(|| panic!("condition {condition}"));
    match key.as_str() {
        "Fn::Equals" => operand(&argument[0]) == operand(&argument[1]),
        "Fn::Not" => !evaluate(&argument[0], all, parameters),
        "Fn::And" => as_list(argument)
            .iter()
            .all(|c| evaluate(c, all, parameters)),
        "Fn::Or" => as_list(argument)
            .iter()
            .any(|c| evaluate(c, all, parameters)),
        "Condition" => evaluate(&all[as_str(argument, "Condition")], all, parameters),
        other => panic!("the test cannot evaluate condition {other}"),
    }
}

/// `value` with each `Fn::If` replaced by its chosen branch and `!Ref AWS::NoValue` removed
/// (from lists and maps), as CloudFormation does.
fn choose(value: &Value, conditions: &BTreeMap<String, bool>) -> Value {
    let no_value = |value: &Value| value.get("Ref").and_then(Value::as_str) == Some("AWS::NoValue");
    match value {
        Value::Object(object) if object.len() == 1 && object.contains_key("Fn::If") => {
            let argument = &object["Fn::If"];
            let condition = as_str(&argument[0], "Fn::If");
            let chosen = if conditions[condition] {
                &argument[1]
            } else {
                &argument[2]
            };
            choose(chosen, conditions)
        }
        Value::Object(object) => Value::Object(
            object
                .iter()
                .map(|(key, value)| (key.clone(), choose(value, conditions)))
                .filter(|(_, value)| !no_value(value))
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| choose(item, conditions))
                .filter(|item| !no_value(item))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What `Ref` and `Fn::GetAtt` give for the test's stand-ins of the stack's resources.
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    refs: BTreeMap<String, String>,
    attributes: BTreeMap<String, String>,
    /// The template's `Mappings`, for `Fn::FindInMap`.
    mappings: Value,
}

impl Names {
    fn pseudo() -> Names {
        let mut names = Names::default();
        for (name, value) in [
            ("AWS::AccountId", ACCOUNT),
            ("AWS::Region", REGION),
            ("AWS::Partition", "aws"),
            ("AWS::URLSuffix", "amazonaws.com"),
            ("AWS::StackName", STACK_NAME),
            ("AWS::StackId", STACK_ID),
        ] {
            names.refs.insert(name.into(), value.into());
        }
        names
    }

    fn set_ref(&mut self, id: &str, value: impl Into<String>) {
        self.refs.insert(id.into(), value.into());
    }

    fn set_attribute(&mut self, id: &str, attribute: &str, value: impl Into<String>) {
        self.attributes
            .insert(format!("{id}.{attribute}"), value.into());
    }

    fn reference(&self, name: &str) -> String {
        if let Some((id, attribute)) = name.split_once('.') {
            if !name.starts_with("AWS::") {
                return self.attribute(id, attribute);
            }
        }
        self.refs
            .get(name)
            .unwrap_or_else(|| {
                panic!("the test has no value for !Ref {name}: give it one in Stack::deploy")
            })
            .clone()
    }

    fn attribute(&self, id: &str, attribute: &str) -> String {
        self.attributes
            .get(&format!("{id}.{attribute}"))
            .unwrap_or_else(|| panic!("the test has no value for !GetAtt {id}.{attribute}: give it one in Stack::deploy"))
            .clone()
    }

    /// `value` with every intrinsic function resolved. Panics on one it does not know, so a
    /// new intrinsic in a policy is noticed rather than passed to moto unresolved.
    pub(crate) fn resolve(&self, value: &Value) -> Value {
        match value {
            Value::Array(items) => {
                Value::Array(items.iter().map(|item| self.resolve(item)).collect())
            }
            Value::Object(object) if object.len() == 1 => {
                let (key, argument) = object.iter().next().unwrap_or_else(|| unreachable!());
                match key.as_str() {
                    "Ref" => Value::String(self.reference(as_str(argument, "Ref"))),
                    "Fn::GetAtt" => {
                        let (id, attribute) = match argument {
                            Value::Array(parts) => {
                                (as_str(&parts[0], "GetAtt"), as_str(&parts[1], "GetAtt"))
                            }
                            Value::String(text) => text
                                .split_once('.')
                                .unwrap_or_else(|| panic!("!GetAtt {text}: no attribute")),
                            other => panic!("!GetAtt {other}"),
                        };
                        Value::String(self.attribute(id, attribute))
                    }
                    "Fn::Sub" => Value::String(self.sub(argument)),
                    "Fn::FindInMap" => {
                        let keys = self.resolve(argument);
                        let path: Vec<String> = as_list(&keys)
                            .iter()
                            .map(|key| as_str(key, "FindInMap").to_string())
                            .collect();
                        let found =
                            &self.mappings[path[0].as_str()][path[1].as_str()][path[2].as_str()];
                        assert!(!found.is_null(), "!FindInMap {keys}: not in Mappings");
                        found.clone()
                    }
                    "Fn::Join" => {
                        let separator = as_str(&argument[0], "Join");
                        let parts = self.resolve(&argument[1]);
                        let parts: Vec<&str> = parts
                            .as_array()
                            .unwrap_or_else(|| panic!("!Join {argument}: not a list"))
                            .iter()
                            .map(|part| as_str(part, "Join"))
                            .collect();
                        Value::String(parts.join(separator))
                    }
                    "Fn::Split" => {
                        let separator = as_str(&argument[0], "Split");
                        let text = self.resolve(&argument[1]);
                        Value::Array(
                            as_str(&text, "Split")
                                .split(separator)
                                .map(|part| Value::String(part.into()))
                                .collect(),
                        )
                    }
                    "Fn::Select" => {
                        let index = argument[0]
                            .as_u64()
                            .or_else(|| argument[0].as_str().and_then(|text| text.parse().ok()))
                            .unwrap_or_else(|| panic!("!Select {argument}: no index"));
                        let list = self.resolve(&argument[1]);
                        list[usize::try_from(index).unwrap_or(usize::MAX)].clone()
                    }
                    other if other.starts_with("Fn::") => {
                        panic!("the test cannot resolve {other} ({argument}): add it to Names::resolve")
                    }
                    _ => Value::Object(
                        object
                            .iter()
                            .map(|(key, value)| (key.clone(), self.resolve(value)))
                            .collect(),
                    ),
                }
            }
            Value::Object(object) => Value::Object(
                object
                    .iter()
                    .map(|(key, value)| (key.clone(), self.resolve(value)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// `Fn::Sub`: `${Name}`, `${Id.Attribute}`, `${AWS::Pseudo}`, the list form's own
    /// variables, and `${!Literal}` (CloudFormation's escape).
    fn sub(&self, argument: &Value) -> String {
        let (text, variables) = match argument {
            Value::String(text) => (text.as_str(), Map::new()),
            Value::Array(parts) => (
                as_str(&parts[0], "Sub"),
                self.resolve(&parts[1])
                    .as_object()
                    .cloned()
                    .unwrap_or_else(|| panic!("!Sub {argument}: variables are not a map")),
            ),
            other => panic!("!Sub {other}"),
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .unwrap_or_else(|| panic!("!Sub {text}: unclosed ${{"));
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str(&format!("${{{literal}}}"));
            } else if let Some(value) = variables.get(name) {
                out.push_str(as_str(value, "Sub variable"));
            } else {
                out.push_str(&self.reference(name));
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }
}

fn as_str<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {value}"))
}

pub(crate) fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Null => Vec::new(),
        other => vec![other.clone()],
    }
}

/// IAM's wildcard match (`*` any run, `?` one character), as policy `Action` (case
/// insensitive) and `Resource` (case sensitive) elements use it.
pub(crate) fn iam_match(pattern: &str, text: &str) -> bool {
    fn go(pattern: &[u8], text: &[u8]) -> bool {
        match (pattern.first(), text.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                go(&pattern[1..], text) || (!text.is_empty() && go(pattern, &text[1..]))
            }
            (Some(b'?'), Some(_)) => go(&pattern[1..], &text[1..]),
            (Some(p), Some(t)) if p == t => go(&pattern[1..], &text[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// Whether a resolved policy document allows `action` on `resource` (no Deny in our roles;
/// a Deny statement makes this panic so it is not silently ignored).
pub(crate) fn allows(document: &Value, action: &str, resource: &str) -> bool {
    as_list(&document["Statement"]).iter().any(|statement| {
        assert_eq!(
            statement["Effect"], "Allow",
            "Deny statements are not modelled: {statement}"
        );
        let acts = as_list(&statement["Action"]).iter().any(|pattern| {
            iam_match(
                &as_str(pattern, "Action").to_ascii_lowercase(),
                &action.to_ascii_lowercase(),
            )
        });
        acts && as_list(&statement["Resource"])
            .iter()
            .any(|pattern| iam_match(as_str(pattern, "Resource"), resource))
    })
}

/// The document as moto can enforce it: each statement all of whose actions belong to a
/// service moto authorizes as `Resource: "*"` (see the module doc) gets `Resource: "*"`;
/// actions, effects and every other statement stay exactly as the template wrote them.
pub(crate) fn moto_view(document: &Value) -> Value {
    let mut document = document.clone();
    if let Some(statements) = document["Statement"].as_array_mut() {
        for statement in statements {
            let services: Vec<String> = as_list(&statement["Action"])
                .iter()
                .map(|action| {
                    as_str(action, "Action")
                        .split(':')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            let unscoped = services
                .iter()
                .filter(|service| MOTO_UNSCOPED_SERVICES.contains(&service.as_str()))
                .count();
            assert!(
                unscoped == 0 || unscoped == services.len(),
                "statement {statement} mixes services moto scopes and does not; split it"
            );
            if unscoped > 0 {
                statement["Resource"] = json!("*");
            }
        }
    }
    document
}

/// AWS credentials as Lambda hands a role's to a function (Debug shows the key id only).
#[derive(Clone)]
pub(crate) struct Keys {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
    pub(crate) session_token: Option<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl Keys {
    fn credentials(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "iam-e2e",
        )
    }
}

/// An SDK configuration for moto at `url` signing with `keys`.
pub(crate) async fn sdk_config(url: &str, keys: &Keys) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(keys.credentials())
        .endpoint_url(url)
        .load()
        .await
}

/// moto with IAM enforcement still off (`INITIAL_NO_AUTH_ACTION_COUNT`), and the harness's
/// clients signing with an administrator's keys so they keep working once
/// [`Stack::deploy`] turns enforcement on.
pub(crate) async fn start_moto(dir: &Path) -> Moto {
    // Any count larger than the set-up's calls; Stack::deploy resets it to 0.
    let mut moto =
        super::start_moto_with_env(dir, &[("INITIAL_NO_AUTH_ACTION_COUNT", "1000000")]).await;
    let unauthenticated = Keys {
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
        session_token: None,
    };
    let iam = aws_sdk_iam::Client::new(&sdk_config(&moto.url, &unauthenticated).await);
    iam.create_user()
        .user_name(HARNESS_USER)
        .send()
        .await
        .expect("harness user");
    iam.put_user_policy()
        .user_name(HARNESS_USER)
        .policy_name("harness-plays-keeper-lambda-and-the-operator")
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
                .to_string(),
        )
        .send()
        .await
        .expect("harness policy");
    let key = iam
        .create_access_key()
        .user_name(HARNESS_USER)
        .send()
        .await
        .expect("harness access key");
    let key = key.access_key().expect("an access key");
    let harness = Keys {
        access_key_id: key.access_key_id().to_string(),
        secret_access_key: key.secret_access_key().to_string(),
        session_token: None,
    };
    let sdk = sdk_config(&moto.url, &harness).await;
    moto.s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    moto.sqs = aws_sdk_sqs::Client::new(&sdk);
    moto.secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    moto
}

/// One of the template's roles as created in moto.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    /// Inline policies, resolved, exactly as the template grants them (before [`moto_view`]).
    pub(crate) policies: Vec<(String, Value)>,
    /// The assumed role's temporary credentials.
    pub(crate) keys: Keys,
}

/// The template's IAM deployed into moto, and enforcement on.
#[derive(Debug)]
pub(crate) struct Stack {
    pub(crate) template: Template,
    pub(crate) names: Names,
    pub(crate) roles: BTreeMap<String, Role>,
    url: String,
}

impl Stack {
    /// In moto from [`start_moto`] (enforcement still off): the template's buckets (created if
    /// missing, versioned as the template says), queues and `HttpTokenSecret` (holding
    /// `http_token`); `ClientSecretSecret` is the secret `client_secret_arn` names. Then every
    /// `AWS::IAM::Role` of the template with its inline policies, assumed, and IAM enforced.
    pub(crate) async fn deploy(moto: &Moto, client_secret_arn: &str, http_token: &str) -> Stack {
        Stack::deploy_as(moto, CLIENT_SECRET, client_secret_arn, http_token).await
    }

    /// [`Stack::deploy`] of the template with `EntraCredential=credential`; with
    /// [`AWS_FEDERATION`] there is no client secret and `client_secret_arn` is unused.
    pub(crate) async fn deploy_as(
        moto: &Moto,
        credential: &str,
        client_secret_arn: &str,
        http_token: &str,
    ) -> Stack {
        let template = Template::load_with(credential);
        let mut names = Names::pseudo();
        names.mappings = template.json["Mappings"].clone();
        // The parameters the roles' policies use (the values Template::load_with assumes).
        names.set_ref("AzureCloud", "public");

        for (id, name) in BUCKETS {
            let resource = template.resource(id);
            assert_eq!(resource["Type"], "AWS::S3::Bucket", "{id}");
            names.set_ref(id, *name);
            names.set_attribute(id, "Arn", format!("arn:aws:s3:::{name}"));
            // Already created by common::function_env in most tests; moto refuses a second
            // create in us-east-1, which is fine here.
            let _ = moto.s3.create_bucket().bucket(*name).send().await;
            let status = resource["Properties"]["VersioningConfiguration"]["Status"]
                .as_str()
                .unwrap_or_else(|| panic!("{id} declares no VersioningConfiguration"));
            moto.s3
                .put_bucket_versioning()
                .bucket(*name)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(status.into())
                        .build(),
                )
                .send()
                .await
                .expect("bucket versioning set as the template sets it");
        }
        for (id, _) in template.of_type("AWS::S3::Bucket") {
            assert!(
                BUCKETS.iter().any(|(known, _)| *known == id),
                "the template has a bucket {id} the test does not stand in for: add it to BUCKETS"
            );
        }

        for (id, _) in template.of_type("AWS::SQS::Queue") {
            let name = format!("{id}-{}", free_port());
            let created = moto
                .sqs
                .create_queue()
                .queue_name(&name)
                .send()
                .await
                .expect("queue created");
            names.set_ref(id, created.queue_url().expect("a queue URL"));
            names.set_attribute(id, "QueueName", &name);
            names.set_attribute(id, "Arn", format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"));
        }

        names.set_ref("ClientSecretSecret", client_secret_arn);
        let token = moto
            .secrets
            .create_secret()
            .name(format!("logrelay-http-token-{}", free_port()))
            .secret_string(http_token)
            .send()
            .await
            .expect("HTTP token secret created");
        names.set_ref(
            "HttpTokenSecret",
            token.arn().expect("the token secret's ARN"),
        );
        for (id, _) in template.of_type("AWS::SecretsManager::Secret") {
            assert!(
                names.refs.contains_key(id),
                "the template has a secret {id} the test does not stand in for"
            );
        }

        // Log groups and roles have names the template or the stack gives them; the ARNs
        // follow the formats of their GetAtt Arn (log groups end in `:*`).
        let base = names.clone();
        for (id, resource) in template.of_type("AWS::Logs::LogGroup") {
            let name = base.resolve(&resource["Properties"]["LogGroupName"]);
            let name = as_str(&name, "LogGroupName");
            names.set_ref(id, name);
            names.set_attribute(
                id,
                "Arn",
                format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"),
            );
        }
        for (id, _) in template.of_type("AWS::IAM::Role") {
            names.set_ref(id, id);
            names.set_attribute(id, "Arn", format!("arn:aws:iam::{ACCOUNT}:role/{id}"));
        }

        let unauthenticated = Keys {
            access_key_id: "test".into(),
            secret_access_key: "test".into(),
            session_token: None,
        };
        let sdk = sdk_config(&moto.url, &unauthenticated).await;
        let iam = aws_sdk_iam::Client::new(&sdk);
        let sts = aws_sdk_sts::Client::new(&sdk);
        let mut roles = BTreeMap::new();
        for (id, resource) in template.of_type("AWS::IAM::Role") {
            let trust = names.resolve(&resource["Properties"]["AssumeRolePolicyDocument"]);
            iam.create_role()
                .role_name(id)
                .assume_role_policy_document(trust.to_string())
                .send()
                .await
                .unwrap_or_else(|error| panic!("create role {id}: {error:?}"));
            let mut policies = Vec::new();
            for (name, document) in template.role_policies(id) {
                let document = names.resolve(&document);
                iam.put_role_policy()
                    .role_name(id)
                    .policy_name(&name)
                    .policy_document(moto_view(&document).to_string())
                    .send()
                    .await
                    .unwrap_or_else(|error| panic!("put role policy {id}/{name}: {error:?}"));
                policies.push((name, document));
            }
            // Assumed while enforcement is off: the trust policy names lambda.amazonaws.com,
            // which the harness is not (on AWS, Lambda assumes the role).
            let assumed = sts
                .assume_role()
                .role_arn(format!("arn:aws:iam::{ACCOUNT}:role/{id}"))
                .role_session_name(id)
                .send()
                .await
                .unwrap_or_else(|error| panic!("assume role {id}: {error:?}"));
            let credentials = assumed.credentials().expect("assumed-role credentials");
            let keys = Keys {
                access_key_id: credentials.access_key_id().to_string(),
                secret_access_key: credentials.secret_access_key().to_string(),
                session_token: Some(credentials.session_token().to_string()),
            };
            roles.insert(id.to_string(), Role { policies, keys });
        }

        // Enforcement on: from here every request is signed and checked. The body must be
        // sent as text/plain or moto reads it as empty (measured).
        let reset = reqwest::Client::new()
            .post(format!("{}/moto-api/reset-auth", moto.url))
            .header("content-type", "text/plain")
            .body("0")
            .send()
            .await
            .expect("moto reset-auth");
        assert!(
            reset.status().is_success(),
            "reset-auth: {}",
            reset.status()
        );
        // Proof that it is on: the unauthenticated keys the set-up used are refused now.
        let refused = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        )
        .list_buckets()
        .send()
        .await;
        assert!(
            refused.is_err(),
            "moto still accepts unknown keys: IAM is not enforced"
        );

        Stack {
            template,
            names,
            roles,
            url: moto.url.clone(),
        }
    }

    /// The role the template gives the function built from `binary`.
    pub(crate) fn role_of(&self, binary: &str) -> &Role {
        let role = self
            .template
            .function_role(&self.template.function_for_binary(binary));
        &self.roles[&role]
    }

    /// `base` (the emulator's Azure settings, moto's endpoint) with the function's role
    /// credentials and the template's own values for the function's environment variables
    /// that name AWS resources (dead letter, secret ARNs). Checks that the role, as the
    /// template writes it, grants reading each secret the function is configured with: the
    /// check moto cannot make (see the module doc).
    pub(crate) fn function_env(
        &self,
        base: &[(String, String)],
        binary: &str,
    ) -> Vec<(String, String)> {
        let function = self.template.function_for_binary(binary);
        let mut variables = self.template.json["Globals"]["Function"]["Environment"]["Variables"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if let Some(own) =
            self.template.resource(&function)["Properties"]["Environment"]["Variables"].as_object()
        {
            variables.extend(own.clone());
        }
        let mut env: Vec<(String, String)> = base
            .iter()
            .filter(|(key, _)| {
                !matches!(
                    key.as_str(),
                    "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" | "AWS_SESSION_TOKEN"
                )
            })
            .cloned()
            .collect();
        for (name, value) in &variables {
            let parameter = value["Ref"]
                .as_str()
                .is_some_and(|name| self.template.is_parameter(name));
            if parameter || value.is_string() {
                // Parameters (tenant, client, endpoint) and literals come from the emulator's
                // settings and the test itself.
                continue;
            }
            let resolved = self.names.resolve(value);
            env.retain(|(key, _)| key != name);
            env.push((name.clone(), as_str(&resolved, name).to_string()));
        }
        let role = self.role_of(binary);
        for (key, value) in &env {
            if key.ends_with("_SECRET_ARN") || key.ends_with("_TOKEN_ARN") {
                assert!(
                    role.policies
                        .iter()
                        .any(|(_, document)| allows(document, "secretsmanager:GetSecretValue", value)),
                    "{binary}: its role does not grant secretsmanager:GetSecretValue on {key}={value}"
                );
            }
        }
        env.push(("AWS_ACCESS_KEY_ID".into(), role.keys.access_key_id.clone()));
        env.push((
            "AWS_SECRET_ACCESS_KEY".into(),
            role.keys.secret_access_key.clone(),
        ));
        if let Some(token) = &role.keys.session_token {
            env.push(("AWS_SESSION_TOKEN".into(), token.clone()));
        }
        env
    }

    /// Why the function built from `binary` was refused: for each `AccessDenied` in its `log`
    /// (`AWS <service> <Operation> failed: ... AccessDenied`), the IAM actions that operation
    /// needs ([`CODE_CALLS`]) which its role, as the template writes it, does not grant.
    /// moto's S3 answers only "Access Denied"; this names the permission.
    pub(crate) fn explain_denials(&self, binary: &str, log: &str) -> String {
        let function = self.template.function_for_binary(binary);
        let role_id = self.template.function_role(&function);
        let role = &self.roles[&role_id];
        let granted: Vec<String> = role
            .policies
            .iter()
            .flat_map(|(_, document)| as_list(&document["Statement"]))
            .flat_map(|statement| as_list(&statement["Action"]))
            .filter_map(|action| action.as_str().map(str::to_ascii_lowercase))
            .collect();
        let mut out = Vec::new();
        for line in log.lines().filter(|line| line.contains("AccessDenied")) {
            let Some(rest) = line.split("AWS ").nth(1) else {
                continue;
            };
            let mut words = rest.split_whitespace();
            let (Some(service), Some(operation)) = (words.next(), words.next()) else {
                continue;
            };
            let Some(call) = CODE_CALLS.iter().find(|call| {
                call.operation == operation
                    && call
                        .actions
                        .iter()
                        .all(|a| a.starts_with(&format!("{service}:")))
            }) else {
                out.push(format!(
                    "{role_id} was denied {service} {operation}, which CODE_CALLS does not map"
                ));
                continue;
            };
            let lacking: Vec<&str> = call
                .actions
                .iter()
                .copied()
                .filter(|action| {
                    !granted
                        .iter()
                        .any(|pattern| iam_match(pattern, &action.to_ascii_lowercase()))
                })
                .collect();
            let text = if lacking.is_empty() {
                format!("{role_id} was denied {service} {operation} although it grants {:?}: check those statements' Resource", call.actions)
            } else {
                format!("{role_id} (infra/aws/template.yaml) was denied {service} {operation}: the role lacks {}", lacking.join(", "))
            };
            if !out.contains(&text) {
                out.push(text);
            }
        }
        if out.is_empty() {
            "no AccessDenied in the function's log".into()
        } else {
            out.join("\n")
        }
    }

    /// An SQS client signing as the role of the function built from `binary`.
    pub(crate) async fn sqs_as(&self, binary: &str) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&sdk_config(&self.url, &self.role_of(binary).keys).await)
    }

    /// What Lambda's SQS event source does for `binary`: `bodies` sent to the template queue
    /// `queue` (by the harness), then received with the function's role credentials (the
    /// event source mapping polls as the execution role) and turned into the SQS event
    /// Lambda delivers; the event and the message ids in the order the bodies were sent.
    pub(crate) async fn sqs_event(
        &self,
        moto: &Moto,
        queue: &str,
        binary: &str,
        bodies: &[String],
    ) -> (Value, Vec<String>) {
        let url = self.names.reference(queue);
        let arn = self.names.attribute(queue, "Arn");
        let ids = super::send_messages(moto, &url, bodies).await;
        let poller = self.sqs_as(binary).await;
        let mut records = Vec::new();
        while records.len() < bodies.len() {
            let received = poller
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap_or_else(|error| {
                    panic!("{binary}'s role cannot receive from {queue}: {error:?}")
                });
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
                    "awsRegion": REGION
                }));
            }
        }
        records.sort_by_key(|record| {
            ids.iter()
                .position(|id| record["messageId"] == id.as_str())
                .unwrap_or(usize::MAX)
        });
        (json!({"Records": records}), ids)
    }

    /// What the event source does after the invocation: deletes, as the function's role,
    /// every message of `event` that `answer` (a partial batch response) does not list.
    pub(crate) async fn acknowledge(
        &self,
        queue: &str,
        binary: &str,
        event: &Value,
        answer: &Value,
    ) {
        let url = self.names.reference(queue);
        let failed: Vec<&str> = answer["batchItemFailures"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item["itemIdentifier"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let poller = self.sqs_as(binary).await;
        for record in event["Records"].as_array().into_iter().flatten() {
            if failed.contains(&record["messageId"].as_str().unwrap_or_default()) {
                continue;
            }
            poller
                .delete_message()
                .queue_url(&url)
                .receipt_handle(record["receiptHandle"].as_str().unwrap_or_default())
                .send()
                .await
                .unwrap_or_else(|error| {
                    panic!("{binary}'s role cannot delete from {queue}: {error:?}")
                });
        }
    }
}

/// Puts `body` at `key` in [`BUCKET`] (in `storage_class` when given); the version id S3
/// gives it on the versioned bucket.
pub(crate) async fn put(
    moto: &Moto,
    key: &str,
    body: Vec<u8>,
    storage_class: Option<&str>,
) -> String {
    let mut request = moto
        .s3
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body));
    if let Some(class) = storage_class {
        request = request.storage_class(class.into());
    }
    let put = request.send().await.expect("object put in moto");
    put.version_id()
        .expect("a version id: the bucket is versioned as the template makes it")
        .to_string()
}

/// The S3 notification naming `key` at `version` in [`BUCKET`], `versionId` included as S3
/// sends it for versioned buckets (S3 event message structure, `s3.object.versionId`).
pub(crate) fn s3_notice(key: &str, version: &str) -> Value {
    let mut notice = super::s3_notice(key);
    notice["Records"][0]["s3"]["object"]["versionId"] = version.into();
    notice
}
