#!/usr/bin/env bash
# Installs the project's local tools into .tools/ (idempotent, offline except for the package
# registries). Usage: scripts/tools.sh [python] [aws] [infra] [arm] [bench] [azurite] [kql]
#   python  - the virtual environment itself
#   aws     - moto[server] (S3, SQS, Secrets Manager), cargo-lambda and zig
#   infra   - cfn-lint, aws-sam-translator, checkov (with pycep-parser)
#   arm     - jsonschema + referencing (ARM schema validation), tree-sitter-bicep (second Bicep parser)
#   bench   - azure-monitor-ingestion (Microsoft's Python client, for the comparison)
#   azurite - azurite (npm), the Azure Storage emulator
#   kql     - Microsoft's Kusto language service (npm @kusto/language-service-next) and duckdb-kql
#             (PyPI, runs the analytic rules on sample rows), for scripts/check-kql.sh
#   system  - GNU time (/usr/bin/time), which the reliability suite uses to read peak memory
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
venv="$tools/venv"
mkdir -p "$tools"

need_venv() {
  if [ ! -x "$venv/bin/python" ]; then
    echo "tools: creating $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip >/dev/null
  fi
}

pip_group() { # name marker packages...
  local name="$1" marker="$tools/.$1.done"; shift
  need_venv
  if [ ! -f "$marker" ]; then
    echo "tools: installing $name ($*)"
    "$venv/bin/pip" install --quiet "$@"
    touch "$marker"
  fi
}

for group in "${@:-python}"; do
  case "$group" in
    python) need_venv ;;
    aws) pip_group aws 'moto[server]==5.*' 'cargo-lambda==1.*' ziglang ;;
    infra) pip_group infra 'cfn-lint==1.*' 'aws-sam-translator' 'checkov==3.*' 'pycep-parser' ;;
    arm) pip_group arm 'jsonschema==4.*' 'referencing' 'tree-sitter==0.*' 'tree-sitter-bicep==1.*' ;;
    bench) pip_group bench 'azure-monitor-ingestion==1.*' 'azure-core' ;;
    system)
      if [ ! -x /usr/bin/time ]; then
        echo "tools: installing GNU time (apt)"
        if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq time >/dev/null
        else sudo apt-get update -qq && sudo apt-get install -y -qq time >/dev/null; fi
      fi ;;
    azurite)
      if [ ! -x "$tools/node/node_modules/.bin/azurite" ]; then
        echo "tools: installing azurite"
        mkdir -p "$tools/node"
        (cd "$tools/node" && npm install --silent --no-audit --no-fund azurite@3 >/dev/null)
      fi ;;
    kql)
      pip_group kql 'duckdb-kql==1.1.2' 'duckdb==2.0.1'
      if [ ! -f "$tools/kql/node_modules/@kusto/language-service-next/Kusto.Language.Bridge.js" ]; then
        echo "tools: installing the Kusto language service"
        mkdir -p "$tools/kql"
        (cd "$tools/kql" && npm install --silent --no-audit --no-fund @kusto/language-service-next@12.4.1 >/dev/null)
      fi ;;
    *) echo "tools: unknown group $group" >&2; exit 2 ;;
  esac
done
