#!/usr/bin/env bash
# The bounded-memory check for big S3 objects: generates a gzipped Keeper export of about
# BIG_OBJECT_MB (default 200) MiB, then runs `make local` with release binaries on it (moto,
# cargo-lambda's runtime, the emulator) and prints the s3-forwarder's peak memory.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
want_mb="${BIG_OBJECT_MB:-200}"
object="$root/target/bench/keeper-${want_mb}mb.ndjson.gz"
mkdir -p "$(dirname "$object")"
cargo build --quiet --release -p logrelay-cli
if [ ! -f "$object" ]; then
  # Generated exports compress to about 41.6 bytes an event; aim a little over the size.
  events=$(( want_mb * 1048576 / 41 ))
  echo "big-object: generating $events events into $object"
  target/release/logrelay generate --events "$events" --gzip --out "$object"
fi
echo "big-object: $(( $(stat -c %s "$object") / 1048576 )) MiB gzipped, $(zcat "$object" | wc -l) events"
LOCAL_PROFILE=release LOCAL_OBJECT="$object" LOCAL_INVOKE_TIMEOUT="${LOCAL_INVOKE_TIMEOUT:-900}" \
  scripts/local-aws.sh 2>&1 | grep -v '^{"EventId"' | tail -n 25
