#!/usr/bin/env bash
# Validates the infrastructure templates offline (offline-toolbox.md section 6):
#   1. cfn-lint on the SAM template and on its expansion to CloudFormation (aws-sam-translator);
#   2. least-privilege IAM check on the expanded template (no Resource "*", no managed policies);
#   3. checkov over the SAM template, the expansion, main.bicep and main.json: no failed check,
#      every skip carries its reason inline, Bicep false positives proven to pass on main.json;
#   4. main.bicep parses (pycep and tree-sitter-bicep), main.json is the same template, both carry
#      exactly the columns, stream, table and transform `logrelay schema` prints, and the Function
#      App runs on Flex Consumption with every setting its function folders reference;
#   5. every resource of main.json validates against Azure's ARM schemas in ../shared/arm-schemas
#      (unknown properties refused), and mutated copies with an unknown property, a missing API
#      version or a wrong enum value are refused (the validator's own negative test).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/tools.sh infra arm
py="$root/.tools/venv/bin/python"
bin="$root/.tools/venv/bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

echo "lint-infra: logrelay schema"
cargo run --quiet -p logrelay-cli -- schema >"$work/schema.json"

echo "lint-infra: SAM -> CloudFormation"
mkdir -p "$work/cfn"
"$py" scripts/infra/sam2cfn.py infra/aws/template.yaml "$work/cfn/template.cfn.json"

echo "lint-infra: cfn-lint (SAM template and expansion)"
"$bin/cfn-lint" infra/aws/template.yaml "$work/cfn/template.cfn.json"

echo "lint-infra: IAM least privilege"
"$py" scripts/infra/check_iam.py "$work/cfn/template.cfn.json"

echo "lint-infra: checkov (AWS SAM + expansion, Bicep, ARM JSON)"
# --skip-download: no calls to the Prisma Cloud API; exit code judged from the report below.
"$bin/checkov" --skip-download --framework cloudformation --output json \
  -d infra/aws -d "$work/cfn" >"$work/checkov-aws.json" 2>"$work/checkov.log" || true
"$bin/checkov" --skip-download --framework arm bicep --output json \
  -f infra/azure/main.bicep -f infra/azure/main.json >"$work/checkov-azure.json" 2>>"$work/checkov.log" || true
if ! "$py" scripts/infra/check_checkov.py infra/azure/main.bicep "$work/checkov-aws.json" "$work/checkov-azure.json"; then
  grep -v 'Failed to run check CKV_AZURE_70' "$work/checkov.log" | tail -n 20 >&2
  exit 1
fi

echo "lint-infra: Bicep syntax, Bicep = ARM JSON, columns = logrelay schema"
"$py" scripts/infra/check_azure.py infra/azure/main.bicep infra/azure/main.json "$work/schema.json"

echo "lint-infra: ARM schema validation of main.json (../shared/arm-schemas)"
schemas="$root/../shared/arm-schemas"
if [ ! -d "$schemas/schemas" ]; then
  echo "lint-infra: $schemas is missing: the ARM schema snapshot must sit beside the repository" >&2
  exit 1
fi
"$py" scripts/infra/check_arm_schema.py "$schemas" infra/azure/main.json --self-test

echo "lint-infra: ok"
