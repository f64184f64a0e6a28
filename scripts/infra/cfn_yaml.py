#!/usr/bin/env python3
"""Prints a CloudFormation/SAM YAML template as JSON, short-form tags in their long form
(`!Sub x` -> {"Fn::Sub": x}, `!Ref x` -> {"Ref": x}, `!GetAtt a.b` -> {"Fn::GetAtt": [a, b]}).

Usage: cfn_yaml.py template.yaml

Uses cfn-lint's own template decoder (cfnlint.decode.cfn_yaml), the one `cfn-lint` checks the
template with, so the tests read the template exactly as the linter does.
"""

import json
import sys

from cfnlint.decode import cfn_yaml


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: cfn_yaml.py template.yaml")
    json.dump(cfn_yaml.load(sys.argv[1]), sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
