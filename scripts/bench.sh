#!/usr/bin/env bash
# `make bench`: throughput at the default and the fast gzip level side by side with Microsoft's
# Python SDK, the gzip -1/-6 floors of the same rows, request packing, memory, cold start and
# binary sizes, written to BENCHMARKS.md. Offline: everything talks to the local release
# emulator. About 20–25 minutes on 2 cores (see bench/run_bench.py for what runs).
#
# Environment knobs (for quicker partial runs): BENCH_SKIP=1m,fast,floors,latency,big,cold
# (scenarios to leave out), BENCH_NO_BUILD=1 (reuse target/release), BENCH_NO_CRITERION=1,
# BENCH_MEASUREMENT_SECS (criterion measurement time per bench, default 3), BENCH_ARGS (more
# bench/run_bench.py arguments, split on spaces, e.g. "--scale 0.02 --out /tmp/bench-trial.md
# --bin-dir target/profiling").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CARGO="${CARGO:-cargo}"
measurement="${BENCH_MEASUREMENT_SECS:-3}"
commands=()

step() { echo "bench: $*" >&2; }

step "tools (azure-monitor-ingestion in .tools/venv)"
scripts/tools.sh bench

build=("$CARGO" build --release -p logrelay-cli -p azmon-emulator -p s3-forwarder -p sqs-forwarder -p http-forwarder -p azure-handler)
commands+=("${build[*]}")
if [ -z "${BENCH_NO_BUILD:-}" ]; then
  step "release build"
  "${build[@]}"
fi

criterion=("$CARGO" bench -p logrelay-core --bench hot_path -- --warm-up-time 1 --measurement-time "$measurement" --sample-size 20)
commands+=("${criterion[*]}")
if [ -z "${BENCH_NO_CRITERION:-}" ]; then
  step "criterion hot path"
  "${criterion[@]}"
fi

# shellcheck disable=SC2206 # BENCH_ARGS is split on spaces on purpose
extra=(${BENCH_ARGS:-})
runner=(.tools/venv/bin/python bench/run_bench.py --root "$root" --skip "${BENCH_SKIP:-}" "${extra[@]}")
commands+=("python bench/run_bench.py --skip '${BENCH_SKIP:-}' ${BENCH_ARGS:-}  # generate exports; emulator (count-only) at 0 ms and 50 ms: logrelay send (default level, LOGRELAY_GZIP_LEVEL=1) vs bench/sdk_upload.py; storing run + gzip -1/-6 floors; 1 GB runs; bench/cold_start.py")
args=()
for command in "${commands[@]}"; do
  args+=(--command "$command")
done
step "end-to-end scenarios"
"${runner[@]}" "${args[@]}"
