#!/usr/bin/env bash
# Deploys infra/aws/template.yaml with the SAM CLI. Never run by tests.
# Parameters come from the environment when set (non-interactive), else `sam deploy --guided`:
#   AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, LOGS_INGESTION_ENDPOINT,
#   AZURE_CLOUD (public), ALARM_EMAIL (optional), STACK_NAME (logrelay), AWS_REGION.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

missing=0
for tool in sam aws cargo; do
  if ! command -v "$tool" >/dev/null; then
    echo "deploy-aws: '$tool' not found." >&2
    missing=1
  fi
done
if [ "$missing" = 1 ]; then
  cat >&2 <<'HELP'
Install what is missing:
  AWS CLI v2:  https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html
  SAM CLI:     pip install aws-sam-cli   (or https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html)
  Rust:        https://rustup.rs
Then `aws configure` (or AWS_PROFILE) for the target account.
HELP
  exit 1
fi

scripts/tools.sh aws
export PATH="$root/.tools/venv/bin:$PATH"
rustup target add aarch64-unknown-linux-gnu >/dev/null

# `sam build` runs cargo lambda for each function (BuildMethod rust-cargolambda, arm64).
export SAM_CLI_BETA_RUST_CARGO_LAMBDA=1
sam build --template-file infra/aws/template.yaml --beta-features

stack="${STACK_NAME:-logrelay}"
if [ -n "${AZURE_TENANT_ID:-}" ] && [ -n "${AZURE_CLIENT_ID:-}" ] && [ -n "${AZURE_CLIENT_SECRET:-}" ] \
   && [ -n "${LOGS_INGESTION_ENDPOINT:-}" ]; then
  sam deploy --stack-name "$stack" --resolve-s3 --capabilities CAPABILITY_IAM \
    --no-fail-on-empty-changeset \
    --parameter-overrides \
      "TenantId=$AZURE_TENANT_ID" "ClientId=$AZURE_CLIENT_ID" "ClientSecret=$AZURE_CLIENT_SECRET" \
      "LogsIngestionEndpoint=$LOGS_INGESTION_ENDPOINT" "AzureCloud=${AZURE_CLOUD:-public}" \
      "AlarmEmail=${ALARM_EMAIL:-}"
else
  echo "deploy-aws: AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET or LOGS_INGESTION_ENDPOINT not set; asking."
  sam deploy --guided --stack-name "$stack" --capabilities CAPABILITY_IAM
fi

aws cloudformation describe-stacks --stack-name "$stack" \
  --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output table
