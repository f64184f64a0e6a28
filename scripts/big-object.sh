#!/usr/bin/env bash
# The bounded-memory and cost check for big S3 objects: generates a gzipped Keeper export of
# about BIG_OBJECT_MB (default 200) MiB, then runs `make local` with release binaries on it
# (moto, cargo-lambda's runtime, the emulator) with the s3-forwarder configured at
# BIG_OBJECT_MEMORY_MB (default 512, the template's MemorySize) and prints its duration, peak
# memory, CPU seconds and the Lambda cost of that invocation, as one line for BENCHMARKS.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
want_mb="${BIG_OBJECT_MB:-200}"
memory_mb="${BIG_OBJECT_MEMORY_MB:-512}"
object="$root/target/bench/keeper-${want_mb}mb.ndjson.gz"
mkdir -p "$(dirname "$object")"
cargo build --quiet --release -p logrelay-cli
if [ ! -f "$object" ]; then
  # Generated exports compress to about 41.6 bytes an event; aim a little over the size.
  events=$(( want_mb * 1048576 / 41 ))
  echo "big-object: generating $events events into $object"
  target/release/logrelay generate --events "$events" --gzip --out "$object"
fi
events_in="$(zcat "$object" | wc -l)"
echo "big-object: $(( $(stat -c %s "$object") / 1048576 )) MiB gzipped, $events_in events"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
LOCAL_PROFILE=release LOCAL_OBJECT="$object" LOCAL_MEMORY_MB="$memory_mb" \
  LOCAL_INVOKE_TIMEOUT="${LOCAL_INVOKE_TIMEOUT:-900}" scripts/local-aws.sh >"$log" 2>&1 ||
  { grep -v '^{"EventId"' "$log" | tail -n 40; echo "big-object: the local run failed" >&2; exit 1; }
grep -v '^{"EventId"' "$log" | tail -n 25

# Lambda bills duration rounded up to the next 1 ms, in GB-seconds of configured memory.
# Prices: AWS Lambda pricing page, https://aws.amazon.com/lambda/pricing/ (us-east-1 list
# prices, first tier): $0.0000133334 per GB-s on arm64, $0.0000166667 per GB-s on x86_64.
# CPU: Lambda allocates CPU in proportion to memory, one vCPU at 1,769 MB
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html), so at 512 MB a
# CPU-bound invocation takes about CPU s × 1769 / 512 there; this machine gives it whole cores.
line="$(grep '^local: invocation ' "$log" | tail -n 1)"
[ -n "$line" ] || { echo "big-object: no invocation line in the local run's output" >&2; exit 1; }
field() { printf '%s\n' "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
duration_s="$(field duration_s)"
if ! printf '%s' "$duration_s" | grep -Eq '^[0-9.]+$'; then
  # No `duration` in the answer (a failed invocation): fall back to the invoke round trip.
  duration_s="$(field round_trip_s)"; source="invoke round trip"
else
  source="handler's own duration"
fi
awk -v d="$duration_s" -v cpu="$(field cpu_s)" -v kib="$(field peak_kib)" -v mb="$memory_mb" \
    -v bytes="$(stat -c %s "$object")" -v events="$events_in" -v src="$source" 'BEGIN {
  arm = 0.0000133334; x86 = 0.0000166667
  billed = int(d * 1000); if (billed < d * 1000) billed++
  gbs = billed / 1000 * mb / 1024
  est = cpu * 1769 / mb; if (est < d) est = d
  est_billed = int(est * 1000); if (est_billed < est * 1000) est_billed++
  est_gbs = est_billed / 1000 * mb / 1024
  printf "big-object: s3-forwarder, %.0f MiB gzipped export (%d events), %d MB configured: duration %.3f s (%s, this machine, x86_64), billed %d ms = %.3f GB-s; peak %.1f MiB; CPU %.2f s; cost per invocation $%.6f arm64 / $%.6f x86_64 (us-east-1 list prices, https://aws.amazon.com/lambda/pricing/: $0.0000133334 / $0.0000166667 per GB-s). At %d MB Lambda gives %.2f vCPU, so if CPU-bound about %.1f s there: $%.6f arm64 / $%.6f x86_64.\n",
    bytes / 1048576, events, mb, d, src, billed, gbs, kib / 1024, cpu, gbs * arm, gbs * x86, mb, mb / 1769, est, est_gbs * arm, est_gbs * x86
}'
