#!/usr/bin/env bash
# Fuzzes the Keeper decoder (fuzz/fuzz_targets/decode.rs) for a bounded time.
# Usage: scripts/fuzz.sh [SECONDS]   (default 120)
# cargo-fuzz needs unstable rustc flags (-Zsanitizer, sancov); on a stable toolchain they are
# unlocked with RUSTC_BOOTSTRAP=1. New corpus entries go to fuzz/corpus-out (git-ignored); the
# committed seeds in fuzz/corpus/decode are read, never written. Crashes land in fuzz/artifacts/.
set -euo pipefail

seconds="${1:-120}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "Installing cargo-fuzz (compiles from crates.io)."
    cargo install cargo-fuzz --locked
fi

mkdir -p "$root/fuzz/corpus-out"
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-address}"
if ! cargo fuzz build --sanitizer "$sanitizer" decode; then
    if [ "$sanitizer" = address ]; then
        echo "Building with AddressSanitizer failed; retrying without a sanitizer (safe Rust: panics are still found)." >&2
        sanitizer=none
        cargo fuzz build --sanitizer none decode || {
            echo "cargo fuzz cannot build on this toolchain ($(rustc --version)); it needs nightly or RUSTC_BOOTSTRAP=1 with libFuzzer's C++ build (a C++ compiler)." >&2
            exit 2
        }
    else
        echo "cargo fuzz cannot build on this toolchain ($(rustc --version))." >&2
        exit 2
    fi
fi

echo "Fuzzing the decode target for ${seconds}s (sanitizer: $sanitizer)."
cargo fuzz run --sanitizer "$sanitizer" decode "$root/fuzz/corpus-out" "$root/fuzz/corpus/decode" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=262144 -timeout=10
