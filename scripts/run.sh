#!/usr/bin/env bash
# `make run`: build, start the local Azure emulator on a free loopback port, run
# `logrelay doctor`, send the bundled Keeper sample with `logrelay send`, show what landed.
# Talks only to the emulator on 127.0.0.1; stops it on exit whatever happens.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
sample="${1:-samples/keeper-events.ndjson.gz}"

step() { printf '\n==> %s\n' "$*"; }

step "build (logrelay CLI and the emulator)"
cargo build --quiet -p logrelay-cli -p azmon-emulator

work="$(mktemp -d)"
emulator_pid=""
cleanup() {
  if [ -n "$emulator_pid" ] && kill -0 "$emulator_pid" 2>/dev/null; then
    kill "$emulator_pid" 2>/dev/null || true
    wait "$emulator_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

step "start the Azure emulator (Entra ID token endpoint + Logs Ingestion API) on 127.0.0.1"
target/debug/azmon-emulator --port 0 --env-file "$work/env" >"$work/emulator.log" 2>&1 &
emulator_pid=$!
for _ in $(seq 1 200); do
  if grep -q '^LOGS_INGESTION_ENDPOINT=' "$work/env" 2>/dev/null; then break; fi
  if ! kill -0 "$emulator_pid" 2>/dev/null; then
    echo "the emulator exited early:" >&2
    cat "$work/emulator.log" >&2
    exit 1
  fi
  sleep 0.05
done
if ! grep -q '^LOGS_INGESTION_ENDPOINT=' "$work/env" 2>/dev/null; then
  echo "the emulator did not write $work/env within 10 s:" >&2
  cat "$work/emulator.log" >&2
  exit 1
fi
# KEY=VALUE lines; values are taken literally (no shell evaluation).
while IFS='=' read -r key value; do
  case "$key" in
    ''|'#'*) ;;
    *) export "$key=$value" ;;
  esac
done <"$work/env"
echo "emulator at $AZURE_AUTHORITY_HOST"
echo "LOGS_INGESTION_ENDPOINT=$LOGS_INGESTION_ENDPOINT"

step "logrelay doctor"
target/debug/logrelay doctor

if [ "$sample" = "samples/keeper-events.ndjson.gz" ]; then
  step "move the bundled sample's times to the last 24 hours"
  # The sample is dated the day it was generated; Azure replaces a TimeGenerated older than
  # two days with the arrival time, so the demo sends it shifted to end five minutes ago
  # (same spacing, same events). A file given as the argument is sent as it is.
  python3 - "$sample" "$work/keeper-events.ndjson.gz" <<'PY'
import datetime, gzip, json, sys

source, target = sys.argv[1], sys.argv[2]
with gzip.open(source, "rt", encoding="utf-8") as lines:
    events = [json.loads(line) for line in lines if line.strip()]
def parse(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
newest = max(parse(event["timestamp"]) for event in events)
shift = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5) - newest
with gzip.open(target, "wt", encoding="utf-8") as out:
    for event in events:
        moved = parse(event["timestamp"]) + shift
        event["timestamp"] = moved.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moved.microsecond // 1000:03d}Z"
        out.write(json.dumps(event, separators=(",", ":")) + "\n")
first = min(parse(event["timestamp"]) for event in events)
print(f"{len(events)} events from {first:%Y-%m-%d %H:%M} to {newest + shift:%Y-%m-%d %H:%M} UTC")
PY
  sample="$work/keeper-events.ndjson.gz"
fi

step "logrelay send $(basename "$sample")"
status=0
target/debug/logrelay send --dead-letter "$work/dead-letter" "$sample" 2> >(tee "$work/send.log" >&2) || status=$?
if grep -q "older than 2 days" "$work/send.log"; then
  echo "make run: the sample's events were counted as older than two days" >&2
  status=1
fi

step "what landed in the emulator's table"
python3 - "$AZURE_AUTHORITY_HOST" <<'PY'
import collections, json, sys, urllib.request

base = sys.argv[1].rstrip("/")
def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as response:
        return json.load(response)

stats = get("/_emulator/stats")
keys = ["token_requests", "ingestion_requests", "accepted_requests", "status_counts",
        "gzip_requests", "max_wire_bytes", "max_decompressed_bytes", "rows", "dropped_columns",
        "replaced_time_generated"]
print(f"emulator stats ({base}/_emulator/stats):")
for key in keys:
    if key in stats:
        print(f"  {key:<24} {stats[key]}")
rows = get("/_emulator/rows")
if isinstance(rows, dict):
    rows = rows.get("rows", [])
print(f"\n{len(rows)} rows")
counts = collections.Counter((r.get("category", "?"), r.get("audit_event", "?")) for r in rows)
width = max([len(e) for _, e in counts] + [11])
print(f"\n{'category':<12} {'audit_event':<{width}} rows")
for (category, event), n in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
    print(f"{category:<12} {event:<{width}} {n}")
print("\nexample rows:")
for row in [r for r in rows if r.get("audit_event") != "logrelay_doctor_probe"][:3]:
    print(json.dumps(row, sort_keys=True))
PY

if [ "$status" -ne 0 ]; then
  echo "logrelay send exited $status; dead letters:" >&2
  ls -la "$work/dead-letter" >&2 || true
  exit "$status"
fi
echo
echo "make run: the sample was delivered end to end."
