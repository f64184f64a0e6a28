#!/usr/bin/env python3
"""Least-privilege check on the expanded CloudFormation template (sam2cfn.py output).

Usage: check_iam.py expanded.json

Fails when:
- an identity policy statement (role, group, user, managed policy) allows an action on
  Resource "*" or with a wildcard action ("s3:*", "*");
- any role or user carries ManagedPolicyArns (SAM attaches AWS managed policies with
  Resource "*"; our roles name their resources instead);
- a resource policy (bucket, queue) allows Principal "*" (only Deny statements may);
- a Lambda permission grants Principal "*" other than the allowlisted Function URL ones;
- a KMS key policy allows Principal "*", or a wildcard action to anyone but the account root in
  an allowlisted statement (in a key policy, Resource "*" is the key itself: AWS KMS Developer
  Guide, "Key policies").
"""

import json
import sys

IDENTITY_TYPES = {"AWS::IAM::Role", "AWS::IAM::Group", "AWS::IAM::User", "AWS::IAM::Policy",
                  "AWS::IAM::ManagedPolicy"}
RESOURCE_POLICY_TYPES = {"AWS::S3::BucketPolicy": "PolicyDocument",
                         "AWS::SQS::QueuePolicy": "PolicyDocument"}

# Resource "*" where AWS allows nothing narrower, with the reason.
FEDERATION_STAR = ("sts:GetWebIdentityToken has no resource-level permissions (Service Authorization "
                   "Reference, AWS STS actions); the statement is limited by its sts:IdentityTokenAudience condition.")
STAR_RESOURCE_ALLOWLIST = {
    (role, "GetEntraAssertion"): FEDERATION_STAR
    for role in ("S3ForwarderRole", "SqsForwarderRole", "HttpForwarderRole")
}

# Key policy statements that may grant "kms:*", with the reason. Each must name the account root.
KEY_ADMIN_ALLOWLIST = {
    ("AlarmTopicKey", "AccountAdministersTheKey"):
        "The AWS KMS default key policy statement: the account administers the key through IAM; "
        "without it the key can become unmanageable (AWS KMS Developer Guide, default key policy).",
}

# Public Lambda permissions that are intended, with the reason.
PUBLIC_PERMISSION_ALLOWLIST = {
    "HttpForwarderUrlPermission":
        "Function URL with AuthType NONE: HTTP callers cannot sign SigV4; the function checks a bearer token.",
    "HttpForwarderUrlInvokePermission":
        "The lambda:InvokeFunction half of the same Function URL grant (InvokedViaFunctionUrl only).",
}


def as_list(value):
    return value if isinstance(value, list) else [value]


def statements_of(document):
    """The statements of a policy document, both branches of a condition's Fn::If included
    (AWS::NoValue dropped), so a conditional grant is checked like any other."""
    for statement in as_list(document.get("Statement", [])):
        if isinstance(statement, dict) and list(statement) == ["Fn::If"]:
            for branch in statement["Fn::If"][1:]:
                if isinstance(branch, dict) and branch != {"Ref": "AWS::NoValue"}:
                    yield branch
        else:
            yield statement


def identity_documents(resource):
    properties = resource.get("Properties", {})
    if resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
        yield properties.get("PolicyDocument", {})
    for policy in properties.get("Policies", []) or []:
        yield policy.get("PolicyDocument", {})


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check_iam.py expanded.json")
    template = json.load(open(sys.argv[1], encoding="utf-8"))
    problems, statements = [], 0
    for name, resource in template.get("Resources", {}).items():
        kind = resource.get("Type")
        properties = resource.get("Properties", {})
        if kind in IDENTITY_TYPES:
            if properties.get("ManagedPolicyArns"):
                problems.append(f"{name}: managed policies {properties['ManagedPolicyArns']} (they use Resource \"*\")")
            for document in identity_documents(resource):
                for statement in statements_of(document):
                    statements += 1
                    sid = statement.get("Sid", "?")
                    if statement.get("Effect") != "Allow":
                        continue
                    for action in as_list(statement.get("Action", [])):
                        if isinstance(action, str) and action.endswith("*"):
                            problems.append(f"{name}/{sid}: wildcard action {action}")
                    if "NotResource" in statement or "NotAction" in statement:
                        problems.append(f"{name}/{sid}: NotResource/NotAction widens the grant")
                    resources = as_list(statement.get("Resource", []))
                    if not resources:
                        problems.append(f"{name}/{sid}: no Resource")
                    for target in resources:
                        if target == "*" and (name, sid) not in STAR_RESOURCE_ALLOWLIST:
                            problems.append(f"{name}/{sid}: Resource \"*\"")
        elif kind in RESOURCE_POLICY_TYPES:
            document = properties.get(RESOURCE_POLICY_TYPES[kind], {})
            for statement in as_list(document.get("Statement", [])):
                statements += 1
                principal = statement.get("Principal")
                public = principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*")
                if public and statement.get("Effect") == "Allow":
                    problems.append(f"{name}/{statement.get('Sid', '?')}: allows Principal \"*\"")
                if statement.get("Effect") == "Allow" and "Condition" not in statement:
                    problems.append(f"{name}/{statement.get('Sid', '?')}: Allow without a SourceArn/SourceAccount condition")
        elif kind == "AWS::KMS::Key":
            for statement in as_list(properties.get("KeyPolicy", {}).get("Statement", [])):
                statements += 1
                sid = statement.get("Sid", "?")
                if statement.get("Effect") != "Allow":
                    continue
                principal = statement.get("Principal")
                if principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS", []))):
                    problems.append(f"{name}/{sid}: key policy allows Principal \"*\"")
                if "NotAction" in statement or "NotPrincipal" in statement:
                    problems.append(f"{name}/{sid}: NotAction/NotPrincipal widens the grant")
                wildcard = [a for a in as_list(statement.get("Action", [])) if isinstance(a, str) and a.endswith("*")]
                if wildcard:
                    root = isinstance(principal, dict) and any(
                        ":root" in json.dumps(p) for p in as_list(principal.get("AWS", [])))
                    if (name, sid) not in KEY_ADMIN_ALLOWLIST or not root:
                        problems.append(f"{name}/{sid}: wildcard action {wildcard} in a key policy")
        elif kind == "AWS::Lambda::Permission" and properties.get("Principal") == "*":
            if name not in PUBLIC_PERMISSION_ALLOWLIST:
                problems.append(f"{name}: public Lambda permission")
    if statements == 0:
        problems.append("no policy statements found: is this the expanded template?")
    for problem in problems:
        print(f"check_iam: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check_iam: {statements} policy statements name their resources; "
          f"allowlisted public permissions: {', '.join(sorted(PUBLIC_PERMISSION_ALLOWLIST))}; "
          f"key administrators: {', '.join('/'.join(k) for k in sorted(KEY_ADMIN_ALLOWLIST))}")


if __name__ == "__main__":
    main()
