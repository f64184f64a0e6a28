//! `infra/aws/template.yaml` held to what the code and the platforms need:
//!
//! - a map from code to permissions (`CODE_CALLS`, common/iam.rs): every AWS operation the
//!   code can call (found in the source: an SDK fluent call such as `.get_object()`), with the
//!   IAM actions it needs, and every role granting each of them to each function that makes
//!   the call; and no role granting an action nothing needs;
//! - every SNS topic an alarm publishes to is encrypted with a customer managed key of the
//!   template whose policy lets CloudWatch use it, and nothing else but the account.
//!
//! Reads the template with cfn-lint's decoder (needs `scripts/tools.sh aws`, as aws_e2e does).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use common::iam::{as_list, Template, AWS_FEDERATION, CLIENT_SECRET, CODE_CALLS};
use common::repo;
use serde_json::Value;

/// What Lambda itself does with a function's execution role (AWS Lambda Developer Guide:
/// "Using Lambda with Amazon SQS", execution role permissions; "Sending Lambda function logs
/// to CloudWatch Logs"). SQS only for functions with an SQS event source.
const LOG_ACTIONS: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];
const SQS_EVENT_SOURCE_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];
/// Granted for the event source although the docs list it as optional: the poller extends a
/// message's visibility while a batch is in flight.
const SQS_OPTIONAL_ACTIONS: &[&str] = &["sqs:ChangeMessageVisibility"];

/// Source files whose SDK calls are mapped: the library's AWS adapters (and the STS
/// credential in auth/) and every function.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join("shared/src/aws"), &mut out);
    walk(&repo().join("shared/src/auth"), &mut out);
    for function in std::fs::read_dir(repo().join("functions"))
        .unwrap()
        .flatten()
    {
        let src = function.path().join("src");
        if src.is_dir() {
            walk(&src, &mut out);
        }
    }
    assert!(out.len() > 5, "found only {out:?}");
    out
}

/// The AWS SDK crates the library and the functions depend on, with their locked versions.
fn sdk_crates() -> Vec<(String, String)> {
    let mut names = BTreeSet::new();
    let mut manifests = vec![repo().join("shared/Cargo.toml")];
    for function in std::fs::read_dir(repo().join("functions"))
        .unwrap()
        .flatten()
    {
        manifests.push(function.path().join("Cargo.toml"));
    }
    for manifest in manifests.iter().filter(|path| path.is_file()) {
        let text = std::fs::read_to_string(manifest).unwrap();
        for line in text.lines() {
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            if name.starts_with("aws-sdk-") {
                names.insert(name.to_string());
            }
        }
    }
    let lock = std::fs::read_to_string(repo().join("Cargo.lock")).unwrap();
    names
        .into_iter()
        .map(|name| {
            let block = lock
                .split("[[package]]")
                .find(|block| block.contains(&format!("name = \"{name}\"\n")))
                .unwrap_or_else(|| panic!("{name} is not in Cargo.lock"));
            let version = block
                .lines()
                .find_map(|line| line.strip_prefix("version = \""))
                .and_then(|rest| rest.strip_suffix('"'))
                .unwrap()
                .to_string();
            (name, version)
        })
        .collect()
}

/// Every operation of `sdk` at `version`: the module names under its `src/operation`, from the
/// crate's source in Cargo's registry.
fn sdk_operations(sdk: &str, version: &str) -> BTreeSet<String> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap();
    let registries = std::fs::read_dir(home.join("registry/src")).unwrap();
    let dir = registries
        .flatten()
        .map(|registry| {
            registry
                .path()
                .join(format!("{sdk}-{version}/src/operation"))
        })
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| panic!("the source of {sdk} {version} is not in {}", home.display()));
    let operations: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(operations.len() > 10, "{sdk}: {operations:?}");
    operations
}

/// `(sdk, method, file)` for every `.method()` call in the sources (outside `#[cfg(test)]`
/// modules) where `method` is an operation of an SDK crate the code depends on.
fn sdk_calls() -> Vec<(String, String, PathBuf)> {
    let operations: Vec<(String, BTreeSet<String>)> = sdk_crates()
        .into_iter()
        .map(|(sdk, version)| {
            let operations = sdk_operations(&sdk, &version);
            (sdk, operations)
        })
        .collect();
    assert!(
        operations.iter().any(|(sdk, _)| sdk == "aws-sdk-s3"),
        "{:?}",
        operations.iter().map(|(sdk, _)| sdk).collect::<Vec<_>>()
    );
    let mut calls = Vec::new();
    for path in sources() {
        let text = std::fs::read_to_string(&path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (start, _) in code.match_indices("()") {
            let before = &code[..start];
            let name_start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |index| index + 1);
            if before[..name_start].trim_end().ends_with('.') {
                let method = &before[name_start..];
                for (sdk, names) in &operations {
                    if names.contains(method) {
                        calls.push((sdk.clone(), method.to_string(), path.clone()));
                    }
                }
            }
        }
    }
    calls
}

/// Every action the role of `function` allows (inline policies, as written).
fn granted(template: &Template, function: &str) -> BTreeSet<String> {
    let role = template.function_role(function);
    let mut actions = BTreeSet::new();
    for (_, document) in template.role_policies(&role) {
        for statement in as_list(&document["Statement"]) {
            assert_eq!(statement["Effect"], "Allow", "{role}: {statement}");
            for action in as_list(&statement["Action"]) {
                actions.insert(action.as_str().unwrap().to_string());
            }
        }
    }
    actions
}

/// The template under each `EntraCredential`, with its name.
fn each_credential() -> [(&'static str, Template); 2] {
    [
        (CLIENT_SECRET, Template::load_with(CLIENT_SECRET)),
        (AWS_FEDERATION, Template::load_with(AWS_FEDERATION)),
    ]
}

/// What each function needs with `credential`: the code's calls and the platform's,
/// action -> reasons.
fn needed(
    template: &Template,
    credential: &str,
) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut needs: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for call in CODE_CALLS
        .iter()
        .filter(|call| call.credential.is_none_or(|only| only == credential))
    {
        for function in call.functions {
            for action in call.actions {
                needs
                    .entry(function.to_string())
                    .or_default()
                    .entry(action.to_string())
                    .or_default()
                    .push(format!("{}::{} ({})", call.sdk, call.method, call.why));
            }
        }
    }
    for (function, resource) in template.of_type("AWS::Serverless::Function") {
        let entry = needs.entry(function.to_string()).or_default();
        for action in LOG_ACTIONS {
            entry
                .entry(action.to_string())
                .or_default()
                .push("Lambda writes the function's logs".into());
        }
        let polls = resource["Properties"]["Events"]
            .as_object()
            .is_some_and(|events| events.values().any(|event| event["Type"] == "SQS"));
        if polls {
            for action in SQS_EVENT_SOURCE_ACTIONS.iter().chain(SQS_OPTIONAL_ACTIONS) {
                entry
                    .entry(action.to_string())
                    .or_default()
                    .push("Lambda's SQS event source polls as the role".into());
            }
        }
    }
    needs
}

#[test]
fn every_sdk_call_in_the_code_is_mapped_to_the_iam_actions_it_needs() {
    let calls = sdk_calls();
    let mut unmapped = Vec::new();
    for (sdk, method, path) in &calls {
        let mapped = CODE_CALLS
            .iter()
            .find(|call| call.sdk == sdk && call.method == method);
        match mapped {
            None => unmapped.push(format!("{sdk}::{method} in {}", path.display())),
            // A call in a function's own crate belongs to that function.
            Some(call) => {
                let crate_dir = path
                    .strip_prefix(repo().join("functions"))
                    .ok()
                    .and_then(|rest| rest.iter().next())
                    .map(|name| name.to_string_lossy().into_owned());
                if let Some(binary) = crate_dir {
                    let function = Template::load().function_for_binary(&binary);
                    assert!(
                        call.functions.contains(&function.as_str()),
                        "{sdk}::{method} is called in {} but not mapped to {function}",
                        path.display()
                    );
                }
            }
        }
    }
    assert!(
        unmapped.is_empty(),
        "AWS calls without IAM actions in CODE_CALLS (tests/tests/common/iam.rs): {unmapped:#?}"
    );
    // The map names nothing the code no longer calls.
    for call in CODE_CALLS {
        assert!(
            calls
                .iter()
                .any(|(sdk, method, _)| sdk == call.sdk && method == call.method),
            "CODE_CALLS maps {}::{}, which the code no longer calls",
            call.sdk,
            call.method
        );
    }
}

#[test]
fn every_role_grants_each_action_its_function_needs() {
    let mut missing = Vec::new();
    for (credential, template) in each_credential() {
        for (function, actions) in needed(&template, credential) {
            let granted = granted(&template, &function);
            for (action, reasons) in actions {
                if !granted.contains(&action) {
                    missing.push(format!(
                        "{credential}: {} lacks {action}, needed by {}",
                        template.function_role(&function),
                        reasons.join("; ")
                    ));
                }
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn no_role_grants_an_action_that_neither_its_code_nor_lambda_needs() {
    for (credential, template) in each_credential() {
        let needs = needed(&template, credential);
        for (function, _) in template.of_type("AWS::Serverless::Function") {
            let needed = needs.get(function).cloned().unwrap_or_default();
            for action in granted(&template, function) {
                assert!(
                    needed.contains_key(&action),
                    "{credential}: {} grants {action}, which nothing {function} does needs",
                    template.function_role(function)
                );
            }
        }
    }
}

#[test]
fn with_aws_federation_no_client_secret_exists_and_the_roles_may_ask_sts_only_for_the_entra_audience(
) {
    let template = Template::load_with(AWS_FEDERATION);
    assert!(
        template
            .of_type("AWS::SecretsManager::Secret")
            .all(|(id, _)| id != "ClientSecretSecret"),
        "a client-secret secret is created with AwsFederation"
    );
    let globals = &template.json["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(globals["LOGRELAY_AWS_FEDERATION"], "true");
    assert!(
        globals.get("AZURE_CLIENT_SECRET_ARN").is_none(),
        "{globals}"
    );
    for (function, _) in template.of_type("AWS::Serverless::Function") {
        let role = template.function_role(function);
        let statements: Vec<Value> = template
            .role_policies(&role)
            .iter()
            .flat_map(|(_, document)| as_list(&document["Statement"]))
            .collect();
        let sts: Vec<&Value> = statements
            .iter()
            .filter(|statement| {
                as_list(&statement["Action"])
                    .iter()
                    .any(|a| a == "sts:GetWebIdentityToken")
            })
            .collect();
        assert_eq!(sts.len(), 1, "{role}: {statements:#?}");
        // Audience-limited: the condition key AWS documents for GetWebIdentityToken, with
        // the template's mapping for the public cloud.
        let audience =
            &sts[0]["Condition"]["ForAnyValue:StringEquals"]["sts:IdentityTokenAudience"];
        assert_eq!(
            audience["Fn::FindInMap"],
            serde_json::json!(["FederationAudience", {"Ref": "AzureCloud"}, "Audience"]),
            "{role}: {}",
            sts[0]
        );
        assert!(
            !statements
                .iter()
                .any(|statement| as_list(&statement["Resource"])
                    .iter()
                    .any(|r| r.get("Ref") == Some(&Value::from("ClientSecretSecret")))),
            "{role} still names the client secret"
        );
    }
    assert_eq!(
        template.json["Mappings"]["FederationAudience"]["public"]["Audience"],
        "api://AzureADTokenExchange"
    );
    let outputs = template.json["Outputs"].as_object().unwrap();
    for output in [
        "FederationSubjects",
        "FederationAudience",
        "FederationIssuer",
        "FederatedCredentialCommand",
    ] {
        assert!(outputs.contains_key(output), "no {output} output");
    }
    assert!(!outputs.contains_key("ClientSecretArn"));
    let subjects = serde_json::to_string(&outputs["FederationSubjects"]["Value"]).unwrap();
    for role in ["S3ForwarderRole", "SqsForwarderRole", "HttpForwarderRole"] {
        assert!(
            subjects.contains(role),
            "FederationSubjects lacks {role}: {subjects}"
        );
    }
    assert!(outputs["FederationIssuer"]["Value"]
        .as_str()
        .unwrap()
        .contains("get-outbound-web-identity-federation-info"));
}

#[test]
fn with_a_client_secret_no_role_may_call_sts_and_the_secret_is_required() {
    let template = Template::load_with(CLIENT_SECRET);
    assert!(template
        .of_type("AWS::SecretsManager::Secret")
        .any(|(id, _)| id == "ClientSecretSecret"));
    let globals = &template.json["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(globals["LOGRELAY_AWS_FEDERATION"], "false");
    for (function, _) in template.of_type("AWS::Serverless::Function") {
        assert!(!granted(&template, function)
            .iter()
            .any(|action| action.starts_with("sts:")));
    }
    // The rule that refuses an empty ClientSecret in this mode.
    let rule = &template.json["Rules"]["SecretGivenWhenUsed"];
    assert_eq!(
        rule["RuleCondition"]["Fn::Equals"][1], "ClientSecret",
        "{rule}"
    );
    assert!(template.json["Outputs"].get("FederationSubjects").is_none());
}

/// The logical ids a value references with `Ref` (through `Fn::If` and lists).
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        Value::Object(object) => {
            if let Some(Value::String(name)) = object.get("Ref") {
                out.push(name.clone());
            }
            object.values().for_each(|value| refs(value, out));
        }
        _ => {}
    }
}

#[test]
fn every_topic_an_alarm_publishes_to_is_on_a_customer_key_that_only_cloudwatch_and_the_account_use()
{
    let template = Template::load();
    let mut topics = BTreeSet::new();
    for (alarm, resource) in template.of_type("AWS::CloudWatch::Alarm") {
        let mut named = Vec::new();
        for actions in ["AlarmActions", "OKActions", "InsufficientDataActions"] {
            refs(&resource["Properties"][actions], &mut named);
        }
        for name in named {
            if template
                .resources()
                .get(&name)
                .is_some_and(|r| r["Type"] == "AWS::SNS::Topic")
            {
                topics.insert(name);
            } else if name != "AWS::NoValue" {
                panic!("{alarm} acts on {name}, which is not an SNS topic of the template");
            }
        }
    }
    assert!(!topics.is_empty(), "no alarm publishes to a topic");
    for topic in &topics {
        // Amazon SNS Developer Guide, "Key management": CloudWatch alarms cannot publish to a
        // topic encrypted with the AWS managed key alias/aws/sns.
        let key_ref = &template.resource(topic)["Properties"]["KmsMasterKeyId"];
        let key = key_ref["Ref"]
            .as_str()
            .or_else(|| key_ref["Fn::GetAtt"][0].as_str())
            .unwrap_or_else(|| {
                panic!("{topic}: KmsMasterKeyId {key_ref} is not a key of the template (alias/aws/sns cannot be used by CloudWatch)")
            });
        let key_resource = template.resource(key);
        assert_eq!(key_resource["Type"], "AWS::KMS::Key", "{topic} -> {key}");
        assert_eq!(
            key_resource["Properties"]["EnableKeyRotation"], true,
            "{key}"
        );
        let statements = as_list(&key_resource["Properties"]["KeyPolicy"]["Statement"]);
        let mut cloudwatch = BTreeSet::new();
        for statement in &statements {
            let principal = &statement["Principal"];
            assert_eq!(statement["Effect"], "Allow", "{key}: {statement}");
            let actions: BTreeSet<String> = as_list(&statement["Action"])
                .iter()
                .map(|action| action.as_str().unwrap().to_string())
                .collect();
            if let Some(service) = principal.get("Service") {
                assert_eq!(
                    as_list(service),
                    vec![Value::from("cloudwatch.amazonaws.com")],
                    "{key}: no service but CloudWatch may use the alarm key: {statement}"
                );
                cloudwatch.extend(actions);
            } else {
                // Anything else is the account itself (AWS KMS default key policy).
                let account = principal["AWS"]["Fn::Sub"].as_str().unwrap_or_else(|| {
                    panic!("{key}: principal {principal} is neither CloudWatch nor the account")
                });
                assert_eq!(
                    account, "arn:${AWS::Partition}:iam::${AWS::AccountId}:root",
                    "{key}"
                );
            }
        }
        // What SNS needs from the publisher of an encrypted message (SNS "Key management").
        let expected: BTreeSet<String> = ["kms:Decrypt", "kms:GenerateDataKey"]
            .map(String::from)
            .into();
        assert_eq!(cloudwatch, expected, "{key}: CloudWatch's grant");
        // The key exists exactly when the topic does.
        assert_eq!(
            key_resource["Condition"],
            template.resource(topic)["Condition"],
            "{key} and {topic}"
        );
    }
}
