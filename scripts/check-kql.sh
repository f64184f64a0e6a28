#!/usr/bin/env bash
# Checks every KQL text the project ships (DCR transforms, the parser and ASIM functions, the
# analytic rules, the workbook queries) with Microsoft's Kusto language service against the
# tables `logrelay schema` prints and the Keeper solution's table; DCR transforms also against the
# transformation-KQL subset. Then the checker's own negative tests (an injected unknown column
# must fail), that the ARM JSON carries exactly the KQL files (scripts/kql/build.js --check), and
# the analytic rules and the solution transform run offline on sample rows (duckdb-kql) with the
# results expected.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/tools.sh kql
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo run --quiet -p logrelay-cli -- schema >"$work/schema.json"
node scripts/kql/check.js "$work/schema.json"
LOGRELAY_SCHEMA="$work/schema.json" node --test scripts/kql/
node scripts/kql/build.js --check
"$root/.tools/venv/bin/python" scripts/kql/run_rules.py "$work/schema.json"
