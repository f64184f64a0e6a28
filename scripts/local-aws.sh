#!/usr/bin/env bash
# `make local`: the AWS path on this machine. Starts the Azure emulator, moto (S3, SQS,
# Secrets Manager) and cargo-lambda's local Lambda runtime, uploads a gzipped Keeper export,
# invokes the s3-forwarder with an S3 event for it, prints what landed, and stops everything.
# Everything listens on 127.0.0.1; nothing reaches a cloud.
# Knobs: LOCAL_PROFILE=release (release binaries), LOCAL_OBJECT=<file> (the export to upload),
# LOCAL_INVOKE_TIMEOUT=<seconds> (default 120), LOCAL_MEMORY_MB=<MB> (the function's
# AWS_LAMBDA_FUNCTION_MEMORY_SIZE, default 1024). The function's peak memory, CPU seconds and
# duration are printed at the end (one `local: invocation ...` line, read by big-object.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/.tools/venv"
bucket=keeper-exports
key="keeper/$(date -u +%Y/%m/%d)/keeper-events.ndjson.gz"

say() { printf '\n== %s\n' "$*"; }

say "tools"
scripts/tools.sh aws

profile="${LOCAL_PROFILE:-debug}"
say "build (s3-forwarder, emulator; $profile)"
if [ "$profile" = release ]; then
  cargo build --quiet --release -p s3-forwarder -p azmon-emulator --bin azmon-emulator
else
  cargo build --quiet -p s3-forwarder -p azmon-emulator --bin azmon-emulator
fi
target="${CARGO_TARGET_DIR:-$root/target}/$profile"

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() { "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # url what
  for _ in $(seq 1 200); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "local: $2 did not start; its log:" >&2; cat "$work/$2.log" >&2 || true; exit 1
}

say "Azure emulator"
"$target/azmon-emulator" --port 0 --env-file "$work/emulator.env" >"$work/emulator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/emulator.env" ] && break; sleep 0.1; done
[ -s "$work/emulator.env" ] || { cat "$work/emulator.log" >&2; exit 1; }
# shellcheck disable=SC1091
set -a; . "$work/emulator.env"; set +a
echo "emulator at $AZMON_EMULATOR_URL"

say "moto (S3, SQS, Secrets Manager)"
moto_port="$(free_port)"
"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
wait_for "$AWS_ENDPOINT_URL/moto-api/" moto
echo "moto at $AWS_ENDPOINT_URL"

sample="${LOCAL_OBJECT:-$root/samples/keeper-events.ndjson.gz}"
if [ ! -f "$sample" ]; then
  sample="$work/keeper-events.ndjson.gz"
  "$venv/bin/python" - "$sample" <<'PY'
import gzip, json, sys, datetime
now = datetime.datetime.now(datetime.timezone.utc)
with gzip.open(sys.argv[1], "wt") as out:
    for i in range(600):
        t = (now - datetime.timedelta(seconds=60 * i)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        out.write(json.dumps({"audit_event": "login", "category": "login", "enterprise_id": 3141592,
                              "remote_address": "198.51.100.7", "timestamp": t,
                              "username": f"user{i}@acme-corp.example"}) + "\n")
PY
fi

say "bucket, queue, secret; upload $(basename "$sample") to s3://$bucket/$key"
secret_arn="$("$venv/bin/python" - "$bucket" "$key" "$sample" <<'PY'
import json, os, sys, boto3
bucket, key, sample = sys.argv[1:4]
s3 = boto3.client("s3")
s3.create_bucket(Bucket=bucket)
s3.create_bucket(Bucket="keeper-dead-letter")
s3.upload_file(sample, bucket, key)
boto3.client("sqs").create_queue(QueueName="keeper-notifications")
secret = boto3.client("secretsmanager").create_secret(
    Name="logrelay/azure-client-secret",
    SecretString=json.dumps({"client_secret": os.environ["AZURE_CLIENT_SECRET"]}))
print(secret["ARN"])
PY
)"
echo "client secret stored in Secrets Manager: $secret_arn"

say "cargo lambda (local Lambda runtime) + s3-forwarder"
rt_port="$(free_port)"
"$venv/bin/cargo-lambda" lambda watch --only-lambda-apis -A 127.0.0.1 -P "$rt_port" >"$work/runtime.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$rt_port") 2>/dev/null && break; sleep 0.1; done
env -u AZURE_CLIENT_SECRET \
  AZURE_CLIENT_SECRET_ARN="$secret_arn" \
  LOGRELAY_DEAD_LETTER="s3://keeper-dead-letter/failed/" \
  AWS_LAMBDA_FUNCTION_NAME=s3-forwarder AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE="${LOCAL_MEMORY_MB:-1024}" \
  AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$rt_port/.rt" RUST_LOG=info \
  "$target/s3-forwarder" >"$work/s3-forwarder.log" 2>&1 &
function_pid=$!
pids+=("$function_pid")

say "invoke s3-forwarder with an S3 ObjectCreated event"
"$venv/bin/python" - "$bucket" "$key" >"$work/event.json" <<'PY'
import json, sys, urllib.parse
bucket, key = sys.argv[1:3]
event = json.load(open("tests/fixtures/aws/s3-put.json"))
s3 = event["Records"][0]["s3"]
s3["bucket"]["name"], s3["bucket"]["arn"] = bucket, f"arn:aws:s3:::{bucket}"
s3["object"]["key"] = urllib.parse.quote_plus(key, safe="/")  # as S3 encodes it
print(json.dumps(event))
PY
curl -s --max-time "${LOCAL_INVOKE_TIMEOUT:-120}" -X POST "http://127.0.0.1:$rt_port/2015-03-31/functions/_/invocations" \
  -w '%{time_total}' -o "$work/answer.json" \
  -H 'content-type: application/json' --data @"$work/event.json" >"$work/round-trip.txt"
echo "answer: $(cat "$work/answer.json")"

say "function log"
cat "$work/s3-forwarder.log"
echo "s3-forwarder peak memory: $(awk '/VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$function_pid/status") (object $(( $(stat -c %s "$sample") / 1048576 )) MiB)"
# duration_s: the handler's own wall time (the answer's `duration`); round_trip_s: the invoke
# call through cargo-lambda's runtime; cpu_s: user + system of the function process so far.
cpu_s="$(awk -v tick="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); split($0, f, " "); printf "%.3f", (f[12] + f[13]) / tick}' "/proc/$function_pid/stat" || true)"
duration_s="$("$venv/bin/python" -c 'import json, sys; print(json.load(open(sys.argv[1])).get("duration", ""))' "$work/answer.json" 2>/dev/null || true)"
echo "local: invocation duration_s=${duration_s:-?} round_trip_s=$(cat "$work/round-trip.txt") cpu_s=$cpu_s peak_kib=$(awk '/VmHWM/ {print $2}' "/proc/$function_pid/status") memory_mb=${LOCAL_MEMORY_MB:-1024} object_bytes=$(stat -c %s "$sample")"

say "what landed (emulator /_emulator/stats)"
curl -s "$AZMON_EMULATOR_URL/_emulator/stats"; echo
say "first rows (emulator /_emulator/rows)"
curl -s "$AZMON_EMULATOR_URL/_emulator/rows?limit=3" | "$venv/bin/python" -c '
import json, sys
rows = json.load(sys.stdin)
rows = rows.get("rows", rows) if isinstance(rows, dict) else rows
for row in rows[:3]:
    print(json.dumps(row))'
