#!/usr/bin/env bash
# `make test`: every test the project has, from a fresh clone. Sets up its own tools.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PATH="$root/.tools/venv/bin:$PATH"
export CARGO_TERM_COLOR=never

step() { printf '\n==> %s\n' "$*"; }

step "tools (python venv: moto, cargo-lambda, cfn-lint, checkov; GNU time)"
scripts/tools.sh python aws infra system

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "build (debug binaries used by the end-to-end suites)"
cargo build --workspace --all-targets --all-features --locked

step "EventId vectors: the independent Python implementation agrees with the committed fixture"
python3 scripts/eventid_vectors.py --check

step "unit and end-to-end tests"
cargo test --workspace --all-features --locked --no-fail-fast -- --test-threads 2

step "infrastructure templates"
scripts/lint-infra.sh

step "KQL: every shipped query analysed by the Kusto language service"
scripts/check-kql.sh

step "dependency policy (cargo deny: RustSec advisories offline, licenses, bans, sources)"
scripts/deny.sh

echo
echo "make test: all steps passed"
