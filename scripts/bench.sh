#!/usr/bin/env bash
# `make bench`: throughput, request packing, memory, cold start and binary sizes, side by side
# with Microsoft's Python SDK, written to BENCHMARKS.md. Offline: everything talks to the local
# release emulator. About 15–20 minutes on 2 cores.
#
# Environment knobs (for quicker partial runs): BENCH_SKIP=big,latency,1m,cold (scenarios to
# leave out), BENCH_NO_BUILD=1 (reuse target/release), BENCH_NO_CRITERION=1,
# BENCH_MEASUREMENT_SECS (criterion measurement time per bench, default 3).
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

runner=(.tools/venv/bin/python bench/run_bench.py --root "$root" --skip "${BENCH_SKIP:-}")
commands+=("python bench/run_bench.py  # generate exports, emulator at 0 ms and 50 ms, logrelay send vs bench/sdk_upload.py, 1 GB runs, bench/cold_start.py")
args=()
for command in "${commands[@]}"; do
  args+=(--command "$command")
done
step "end-to-end scenarios"
"${runner[@]}" "${args[@]}"
echo "bench: wrote $root/BENCHMARKS.md" >&2
