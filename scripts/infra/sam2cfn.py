#!/usr/bin/env python3
"""Expand a SAM template into plain CloudFormation JSON, offline, with aws-sam-translator.

Usage: sam2cfn.py template.yaml out.json

cfn-lint 1.x no longer runs the SAM transform itself, so it misses errors that only show in the
generated resources (offline-toolbox.md section 6). Local CodeUri values are rewritten to an
s3:// placeholder (the translator only accepts S3 locations), and the managed-policy loader is a
no-op because the template uses explicit roles and no managed-policy names.
"""

import json
import os
import sys

from cfnlint.decode import decode
from samtranslator.translator.transform import transform

PLACEHOLDER_CODE = "s3://logrelay-placeholder/code.zip"


class NoManagedPolicies:
    """Managed-policy loader that knows no names (no AWS API call)."""

    def load(self):
        return {}


def rewrite_code_uris(template):
    """Replace local CodeUri paths (Globals and each function) with an S3 placeholder."""
    function_globals = template.get("Globals", {}).get("Function", {})
    if isinstance(function_globals.get("CodeUri"), str):
        function_globals["CodeUri"] = PLACEHOLDER_CODE
    for resource in template.get("Resources", {}).values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.setdefault("Properties", {})
        if isinstance(properties.get("CodeUri"), str):
            properties["CodeUri"] = PLACEHOLDER_CODE


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: sam2cfn.py template.yaml out.json")
    source, target = sys.argv[1], sys.argv[2]
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template, matches = decode(source)
    if matches or template is None:
        for match in matches:
            print(match, file=sys.stderr)
        sys.exit(f"sam2cfn: cannot parse {source}")
    rewrite_code_uris(template)
    # Plain JSON round trip: cfn-lint's decoder returns dict subclasses with position marks.
    template = json.loads(json.dumps(template))
    expanded = transform(template, {}, NoManagedPolicies())
    with open(target, "w", encoding="utf-8") as out:
        json.dump(expanded, out, indent=2, sort_keys=False)
        out.write("\n")
    print(f"sam2cfn: {source} -> {target} ({len(expanded.get('Resources', {}))} resources)")


if __name__ == "__main__":
    main()
