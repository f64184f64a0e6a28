#!/usr/bin/env bash
# Builds the three Lambda bootstraps for arm64 (provided.al2023) with cargo-lambda and prints
# their sizes. Output: target/lambda/<binary>/bootstrap, the layout `sam build` also produces.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

scripts/tools.sh aws
export PATH="$root/.tools/venv/bin:$PATH"
rustup target add aarch64-unknown-linux-gnu >/dev/null

binaries=(s3-forwarder sqs-forwarder http-forwarder)
args=()
for binary in "${binaries[@]}"; do args+=(--bin "$binary"); done
cargo lambda build --release --arm64 "${args[@]}"

echo "package-aws: arm64 bootstraps"
for binary in "${binaries[@]}"; do
  file="target/lambda/$binary/bootstrap"
  if [ ! -f "$file" ]; then
    echo "package-aws: $file missing" >&2
    exit 1
  fi
  printf '  %-16s %8d KiB  %s\n' "$binary" "$(( $(stat -c %s "$file") / 1024 ))" "$file"
done
