#!/usr/bin/env bash
# Dependency policy (deny.toml): licenses, bans, sources. Advisories are not checked: the
# RustSec database is fetched from GitHub, which this environment cannot reach.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
deny="$root/.tools/cargo/bin/cargo-deny"
if [ ! -x "$deny" ]; then
  echo "tools: installing cargo-deny (compiles once, ~2 minutes)"
  cargo install cargo-deny --locked --quiet --root "$root/.tools/cargo"
fi
cd "$root"
"$deny" --log-level error check licenses bans sources
