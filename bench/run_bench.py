#!/usr/bin/env python3
"""`make bench` driver: runs every end-to-end scenario against the release emulator and
writes BENCHMARKS.md. scripts/bench.sh builds the release binaries and runs criterion first.

Scenarios (targets in TARGETS, as issue 17's "Must show" list):
- 200k and 1M events, NDJSON, 0 ms latency, one emulator in count-only mode
  (`--store-rows false`: it checks the token, the gzip, the 1 MB limit and that each body is a
  JSON array of objects, counts the rows and keeps none): per round `logrelay send` at the
  default gzip level, `logrelay send` at the fast level (LOGRELAY_GZIP_LEVEL=1), and the
  official Python SDK (bench/sdk_upload.py), alternating; medians over the rounds.
- Floors, per size, measured in the same run: one storing run gives the rows logrelay sends
  (`GET /_emulator/rows`); they are packed into the JSON-array bodies logrelay would send and
  compressed by `gzip -1` and `gzip -6` (one process, one core); the zlib level-6 gzip of each
  body, summed, is the "today's wire bytes" reference.
- 50 ms latency: sustained MB/s of rows for one `logrelay send` process, with the default
  concurrency and tuned values.
- 1 GB inputs (NDJSON, JSON array, gzip): peak memory of `logrelay send`.
- Cold start of the Lambda binaries (bench/cold_start.py) and binary sizes.

Each client runs as a child of this process and is reaped with os.wait4, which gives that
child's own rusage: ru_utime + ru_stime its CPU seconds; peak memory is GNU time's %M for the
client (see run_measured for why not ru_maxrss).
The emulator is reset before each run, and its /_emulator/stats give requests and wire bytes.
"""

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
# Request body limit logrelay packs to (shared/src/ingest/mod.rs MAX_BATCH_BYTES).
MAX_BATCH_BYTES = 1_000_000
# The SDK is measured at 1M only for as many rounds as the 200k rate says fit in this long.
SDK_1M_BUDGET_S = 600
MIB = 1024 * 1024

# logrelay's default LOGRELAY_CONCURRENCY (shared/src/config.rs, Tuning::default).
DEFAULT_CONCURRENCY = 16
# The fastest documented LOGRELAY_GZIP_LEVEL (issue 17: "the fastest documented level").
FAST_LEVEL = 1
# What main compressed with before issue 17: flate2 (zlib-rs) level 6, the ratio of zlib's 6.
REFERENCE_ZLIB_LEVEL = 6
# One DCR takes 2 GB a minute (33.3 MB/s) through the Logs Ingestion API:
DCR_LIMIT_URL = "https://learn.microsoft.com/azure/azure-monitor/fundamentals/service-limits#logs-ingestion-api"

TARGETS = {
    "speedup_default": 10.0,  # × the SDK's events/s at the default level
    "speedup_fast": 20.0,  # × the SDK's events/s at the fast level
    "ns_per_byte_fast": 10.0,  # client CPU ns per byte of input at the fast level
    "cores_busy": 1.6,  # client CPU s ÷ wall s ("both cores busy" on 2 cores)
    "peak_1gb_mib": 64.0,  # peak memory for a 1 GB input
    "mb_s_50ms": 33.0,  # MB/s of rows at 50 ms latency, one process (2 GB/minute)
    "ready_ms": 20.0,  # Lambda cold start to the first /next
    "binary_mib": 10.0,  # release binary size
}

# The scenarios a trial may leave out (--skip).
SKIPPABLE = {"1m", "fast", "floors", "latency", "big", "cold"}


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and emulator


class Emulator:
    """The release azmon-emulator on a free port; its env file configures the clients.
    `store_rows=False` is count-only mode (every check, no row kept)."""

    def __init__(self, binary, work, latency_ms, store_rows=False):
        mode = "store" if store_rows else "count"
        self.env_file = os.path.join(work, f"emulator-{latency_ms}ms-{mode}.env")
        if os.path.exists(self.env_file):
            os.remove(self.env_file)
        env = dict(os.environ, RUST_LOG="warn")
        self.process = subprocess.Popen(
            [binary, "--port", "0", "--env-file", self.env_file, "--latency-ms", str(latency_ms),
             "--store-rows", "true" if store_rows else "false"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not os.path.exists(self.env_file):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench: the emulator did not start (does it know --store-rows?)")
            time.sleep(0.05)
        self.env = {}
        with open(self.env_file) as lines:
            for line in lines:
                key, _, value = line.rstrip("\n").partition("=")
                self.env[key] = value
        self.url = self.env["AZMON_EMULATOR_URL"]
        self.latency_ms = latency_ms
        self.store_rows = store_rows

    def client_env(self):
        keys = [
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_AUTHORITY_HOST",
            "LOGS_INGESTION_ENDPOINT",
        ]
        return {key: self.env[key] for key in keys}

    def _call(self, method, path, timeout=30):
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            body = answer.read()
        return json.loads(body) if body else None

    def reset(self):
        self._call("POST", "/_emulator/reset")

    def stats(self):
        return self._call("GET", "/_emulator/stats")

    def rows(self):
        """Every stored row (storing mode only); a 1M run is some hundreds of MB of JSON."""
        rows = self._call("GET", "/_emulator/rows", timeout=600)
        return rows.get("rows", rows) if isinstance(rows, dict) else rows

    def cpu_seconds(self):
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_measured(command, env, stdout_path):
    """Runs `command`; returns wall seconds, peak RSS (KiB), CPU seconds and exit code.

    Peak RSS comes from GNU time wrapped around the client: Linux carries the parent's
    high-water RSS into a forked child across exec, so a child of this (by then large)
    Python process would report Python's peak, not its own. time(1) is small, so its
    child's ru_maxrss is the client's. CPU is wait4's (time's own is negligible)."""
    rss_path = stdout_path + ".maxrss"
    wrapped = ["/usr/bin/time", "-f", "%M", "-o", rss_path, *command]
    with open(stdout_path, "wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(wrapped, env=env, stdout=out)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    with open(rss_path) as rss:
        maxrss_kib = int(rss.read().split()[-1])
    return {
        "wall_s": wall,
        "maxrss_kib": maxrss_kib,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "rc": process.returncode,
    }


# ---------------------------------------------------------------- the clients


class Bench:
    def __init__(self, args):
        self.args = args
        self.root = os.path.abspath(args.root)
        self.work = os.path.abspath(args.work)
        os.makedirs(self.work, exist_ok=True)
        release = os.path.abspath(args.bin_dir or os.path.join(self.root, "target", "release"))
        self.release = release
        self.logrelay = os.path.join(release, "logrelay")
        self.emulator_bin = os.path.abspath(args.emulator_bin or os.path.join(release, "azmon-emulator"))
        self.python = os.path.join(self.root, ".tools", "venv", "bin", "python")
        self.commands = []

    def base_env(self, extra):
        env = {key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ}
        env["RUST_LOG"] = "warn"
        env.update(extra)
        return env

    def send(self, emulator, path, extra=None, label="", client="logrelay", binary=None):
        """One `logrelay send --json` run; requests and wire bytes from the emulator's stats."""
        dead_letter = os.path.join(self.work, "dead-letter")
        shutil.rmtree(dead_letter, ignore_errors=True)
        env = self.base_env(emulator.client_env())
        env.update(extra or {})
        out = os.path.join(self.work, "send.json")
        command = [binary or self.logrelay, "send", "--json", "--dead-letter", dead_letter, path]
        emulator.reset()
        cpu_before = emulator.cpu_seconds()
        result = run_measured(command, env, out)
        stats = emulator.stats()
        result["emulator_cpu_s"] = emulator.cpu_seconds() - cpu_before
        with open(out) as answer:
            try:
                report = json.load(answer)
            except ValueError:
                raise SystemExit(f"bench: logrelay send gave no JSON report (exit {result['rc']})")
        if result["rc"] != 0 or report["delivered"] != report["events_in"]:
            raise SystemExit(f"bench: logrelay send did not deliver everything: {report}")
        if stats["rows"] != report["delivered"]:
            raise SystemExit(f"bench: the emulator counted {stats['rows']} rows, logrelay reported {report['delivered']}")
        result.update(
            client=client,
            env=extra or {},
            events=report["delivered"],
            file_bytes=os.path.getsize(path),
            json_bytes=report["bytes_uncompressed"],
            requests=stats["ingestion_requests"],
            wire_bytes=stats["total_wire_bytes"],
            report=report,
            emulator=stats,
        )
        log(f"{label} {client}: {fmt_rate(result)}")
        return result

    def sdk(self, emulator, path, label="", same_rows=False):
        """One bench/sdk_upload.py run (`same_rows`: with logrelay's EventId column added)."""
        env = self.base_env(emulator.client_env())
        out = os.path.join(self.work, "sdk.json")
        emulator.reset()
        cpu_before = emulator.cpu_seconds()
        command = [self.python, os.path.join(HERE, "sdk_upload.py"), path]
        if same_rows:
            command.insert(2, "--same-rows")
        result = run_measured(command, env, out)
        stats = emulator.stats()
        result["emulator_cpu_s"] = emulator.cpu_seconds() - cpu_before
        if result["rc"] != 0:
            raise SystemExit(f"bench: the SDK upload failed (exit {result['rc']})")
        with open(out) as answer:
            sdk_report = json.load(answer)
        if stats["rows"] != sdk_report["events"]:
            raise SystemExit(f"bench: the emulator counted {stats['rows']} rows of {sdk_report['events']} from the SDK")
        result.update(
            client="sdk",
            events=sdk_report["events"],
            file_bytes=os.path.getsize(path),
            requests=stats["ingestion_requests"],
            wire_bytes=stats["total_wire_bytes"],
            sdk=sdk_report,
            emulator=stats,
        )
        result["same_rows"] = same_rows
        # Input MB/s: the SDK does not report the JSON bytes it sent.
        result["json_mb_s"] = os.path.getsize(path) / 1e6 / result["wall_s"]
        log(f"{label} SDK{' (same rows)' if same_rows else ''}: {fmt_rate(result)}")
        return result

    def generate(self, name, events, *flags):
        path = os.path.join(self.work, name)
        command = [self.logrelay, "generate", "--events", str(events), "--seed", "7", "--out", path, *flags]
        started = time.perf_counter()
        subprocess.run(command, check=True, env=self.base_env({}))
        log(f"generated {name}: {events} events, {os.path.getsize(path) / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
        return path


def ns_per_byte(run):
    """Client CPU nanoseconds per byte of the input file."""
    return run["cpu_s"] / run["file_bytes"] * 1e9


def cores_busy(run):
    """Client CPU seconds ÷ wall seconds."""
    return run["cpu_s"] / run["wall_s"]


def fmt_rate(result):
    return (
        f"{result['events'] / result['wall_s']:,.0f} events/s, {result['wall_s']:.2f} s, "
        f"{result['requests']} requests, {result['wire_bytes'] / 1e6:.2f} MB wire, "
        f"peak {result['maxrss_kib'] / 1024:.1f} MiB, CPU {result['cpu_s']:.2f} s "
        f"({ns_per_byte(result):.1f} ns/byte, {cores_busy(result):.2f} cores), emulator CPU {result['emulator_cpu_s']:.2f} s"
    )


# ---------------------------------------------------------------- scenarios


def compare(bench, emulator, path, events, rounds, sdk_rounds, label, fast=True, same_rows=False):
    """Per round: logrelay at the default level, at the fast level, then the SDK."""
    runs = {"logrelay": [], "logrelay_fast": [], "sdk": []}
    fast_env = {"LOGRELAY_GZIP_LEVEL": str(FAST_LEVEL)}
    for index in range(rounds):
        name = f"{label} round {index + 1}"
        runs["logrelay"].append(bench.send(emulator, path, label=name))
        if fast:
            runs["logrelay_fast"].append(bench.send(emulator, path, fast_env, label=name, client=f"logrelay level {FAST_LEVEL}"))
        if index < sdk_rounds:
            runs["sdk"].append(bench.sdk(emulator, path, label=name))
    result = {"events": events, "file_bytes": os.path.getsize(path), "runs": runs}
    if same_rows:
        result["sdk_same_rows"] = bench.sdk(emulator, path, label=label, same_rows=True)
    return result


def gzip_body(body, level):
    """One body as a gzip member (header, deflate, CRC trailer), as a client would send it."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


def floors(bench, path, label, runs):
    """The floors for one input: a storing run collects the rows logrelay sent; they are packed
    into the bodies logrelay would send (greedy, ≤ 1,000,000 bytes, `[` rows joined by `,` `]`)
    and written to one file, which `gzip -1` and `gzip -6` compress (`runs` times each, CPU
    from os.wait4). The zlib level-6 gzip of each body, summed, is today's wire bytes."""
    emulator = Emulator(bench.emulator_bin, bench.work, 0, store_rows=True)
    try:
        sent = bench.send(emulator, path, label=f"{label} storing run (rows for the floors)")
        started = time.perf_counter()
        rows = emulator.rows()
        stats = emulator.stats()
    finally:
        emulator.stop()
    if len(rows) != sent["events"]:
        raise SystemExit(f"bench: the storing emulator returned {len(rows)} rows of {sent['events']}")
    rows_file = os.path.join(bench.work, f"rows-{label}.json")
    bodies, json_bytes = 0, 0
    zlib_wire = {REFERENCE_ZLIB_LEVEL: 0, FAST_LEVEL: 0}
    with open(rows_file, "wb") as out:
        body, size = [], 2

        def flush():
            nonlocal bodies, json_bytes
            data = b"[" + b",".join(body) + b"]"
            out.write(data)
            bodies += 1
            json_bytes += len(data)
            for level in zlib_wire:
                zlib_wire[level] += len(gzip_body(data, level))

        while rows:
            row = json.dumps(rows.pop(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            extra = len(row) + (1 if body else 0)
            if body and size + extra > MAX_BATCH_BYTES:
                flush()
                body, size = [], 2
                extra = len(row)
            body.append(row)
            size += extra
        if body:
            flush()
    del rows
    log(f"{label} floors: {bodies} bodies, {json_bytes:,} JSON bytes (logrelay: {sent['json_bytes']:,}), "
        f"zlib-{REFERENCE_ZLIB_LEVEL} {zlib_wire[REFERENCE_ZLIB_LEVEL]:,} bytes, in {time.perf_counter() - started:.1f} s")
    result = {
        "input_bytes": os.path.getsize(path),
        "rows": sent["events"],
        "bodies": bodies,
        "json_bytes": json_bytes,
        "logrelay_json_bytes": sent["json_bytes"],
        "logrelay_requests": sent["requests"],
        "zlib_wire": {str(level): size for level, size in zlib_wire.items()},
        "shaping": {key: stats.get(key) for key in ("dropped_columns", "truncated_fields", "replaced_time_generated",
                                                      "filled_time_generated", "type_mismatches")},
        "gzip": {},
    }
    env = bench.base_env({})
    for level in (FAST_LEVEL, REFERENCE_ZLIB_LEVEL):
        samples = []
        for _ in range(runs):
            sample = run_measured(["gzip", "-c", f"-{level}", rows_file], env, os.devnull)
            if sample["rc"] != 0:
                raise SystemExit(f"bench: gzip -{level} failed")
            samples.append(sample)
        stream = os.path.join(bench.work, f"rows-{label}.json.gz")
        with open(stream, "wb") as out:
            subprocess.run(["gzip", "-c", f"-{level}", rows_file], stdout=out, check=True)
        result["gzip"][str(level)] = {
            "cpu_s": median(samples, "cpu_s"),
            "wall_s": median(samples, "wall_s"),
            "samples_cpu_s": [sample["cpu_s"] for sample in samples],
            "stream_bytes": os.path.getsize(stream),
        }
        os.remove(stream)
        log(f"{label} floor gzip -{level}: CPU {result['gzip'][str(level)]['cpu_s']:.2f} s "
            f"({result['gzip'][str(level)]['cpu_s'] / result['input_bytes'] * 1e9:.1f} ns/input byte)")
    os.remove(rows_file)
    return result


def scenario_latency(bench, path, concurrencies):
    emulator = Emulator(bench.emulator_bin, bench.work, 50)
    try:
        results = []
        for concurrency in concurrencies:
            extra = {"LOGRELAY_CONCURRENCY": str(concurrency)} if concurrency else {}
            run = bench.send(emulator, path, extra, label=f"50 ms, concurrency {concurrency or 'default'}")
            run["concurrency"] = concurrency
            results.append(run)
        sdk = bench.sdk(emulator, path, label="50 ms")
        return {"runs": results, "sdk": sdk}
    finally:
        emulator.stop()


def scenario_big(bench, emulator, inputs):
    results = []
    for name, path, container in inputs:
        run = bench.send(emulator, path, label=f"1 GB {container}")
        run["container"] = container
        results.append(run)
    return results


def scenario_cold_start(bench, emulator, runs):
    release = bench.release
    env = dict(emulator.client_env())
    env.update(
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        # A closed loopback port: nothing at start-up may reach AWS.
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_LAMBDA_FUNCTION_NAME="logrelay-bench",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="256",
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_LOG_GROUP_NAME="/aws/lambda/logrelay-bench",
        AWS_LAMBDA_LOG_STREAM_NAME="bench",
        LOGRELAY_DEAD_LETTER="s3://logrelay-bench-dead-letter/keeper/",
        LOGRELAY_HTTP_TOKEN="bench-shared-token-0123456789abcdef",
        RUST_LOG="warn",
    )
    names = ["s3-forwarder", "sqs-forwarder", "http-forwarder"]
    command = [bench.python, os.path.join(HERE, "cold_start.py"), "--runs", str(runs)]
    for key, value in env.items():
        command += ["--env", f"{key}={value}"]
    command += [f"{name}={os.path.join(release, name)}" for name in names]
    answer = subprocess.run(command, check=True, capture_output=True, text=True)
    results = json.loads(answer.stdout)
    for name, result in results.items():
        log(f"cold start {name}: median {result.get('median_ms')} ms {result.get('errors', '')}")
    return results


def binary_sizes(root, release):
    sizes = []
    for name in ["logrelay", "s3-forwarder", "sqs-forwarder", "http-forwarder", "azure-handler"]:
        path = os.path.join(release, name)
        if os.path.exists(path):
            sizes.append((f"{os.path.relpath(release, root)}/{name} (x86_64)", os.path.getsize(path)))
    lambda_dir = os.path.join(root, "target", "lambda")
    if os.path.isdir(lambda_dir):
        for name in sorted(os.listdir(lambda_dir)):
            path = os.path.join(lambda_dir, name, "bootstrap")
            if os.path.exists(path):
                kind = subprocess.run(["file", "-b", path], capture_output=True, text=True).stdout
                arch = "arm64" if "aarch64" in kind or "ARM" in kind else "x86_64" if "x86-64" in kind else "?"
                sizes.append((f"target/lambda/{name}/bootstrap ({arch})", os.path.getsize(path)))
    return sizes


# ---------------------------------------------------------------- report


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        total_kib = int(meminfo.readline().split()[1])
    return {
        "nproc": os.cpu_count(),
        "model": model,
        "memory": f"{total_kib / MIB:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def verdict(ok, missed):
    return "PASS" if ok else f"MISSED by {missed}"


def median(runs, key):
    return statistics.median(run[key] for run in runs)


def rate(run):
    return run["events"] / run["wall_s"]


VARIANTS = [
    ("logrelay", "logrelay, default level"),
    ("logrelay_fast", f"logrelay, LOGRELAY_GZIP_LEVEL={FAST_LEVEL}"),
    ("sdk", "SDK"),
]


def compare_table(result, floor=None, extrapolated_sdk=None):
    """The runs table, the medians table and the figures the summary judges."""
    lines = []
    runs = result["runs"]
    lines.append(
        "| round | client | events/s | wall s | CPU ns / input byte | cores busy | requests | wire MB | peak MiB | CPU s | emulator CPU s |"
    )
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rounds = max(len(runs.get(key, [])) for key, _ in VARIANTS)
    for index in range(rounds):
        for key, _ in VARIANTS:
            if index >= len(runs.get(key, [])):
                continue
            run = runs[key][index]
            lines.append(
                f"| {index + 1} | {run['client']} | {rate(run):,.0f} | {run['wall_s']:.2f} | {ns_per_byte(run):.1f} | "
                f"{cores_busy(run):.2f} | {run['requests']:,} | {run['wire_bytes'] / 1e6:.2f} | {run['maxrss_kib'] / 1024:.1f} | "
                f"{run['cpu_s']:.2f} | {run['emulator_cpu_s']:.2f} |"
            )
    sdk = runs["sdk"]
    if sdk:
        sdk_med = {
            "rate": statistics.median(rate(run) for run in sdk),
            "requests": median(sdk, "requests"),
            "wire_bytes": median(sdk, "wire_bytes"),
            "maxrss_kib": median(sdk, "maxrss_kib"),
            "cpu_s": median(sdk, "cpu_s"),
            "ns": statistics.median(ns_per_byte(run) for run in sdk),
            "cores": statistics.median(cores_busy(run) for run in sdk),
            "wall_s": median(sdk, "wall_s"),
        }
        sdk_label = f"SDK (measured, {len(sdk)} round{'s' if len(sdk) != 1 else ''})"
    else:
        sdk_med = dict(extrapolated_sdk)
        sdk_label = "SDK (EXTRAPOLATED from 200k, not measured)"
    medians = {"sdk": sdk_med}
    for key in ("logrelay", "logrelay_fast"):
        ours = runs.get(key) or []
        if not ours:
            continue
        medians[key] = {
            "rate": statistics.median(rate(run) for run in ours),
            "requests": median(ours, "requests"),
            "wire_bytes": median(ours, "wire_bytes"),
            "maxrss_kib": median(ours, "maxrss_kib"),
            "cpu_s": median(ours, "cpu_s"),
            "ns": statistics.median(ns_per_byte(run) for run in ours),
            "cores": statistics.median(cores_busy(run) for run in ours),
            "wall_s": median(ours, "wall_s"),
            "json_bytes": median(ours, "json_bytes"),
            "requests_all": [run["requests"] for run in ours],
        }
    json_bytes = medians["logrelay"]["json_bytes"]
    minimum = math.ceil(json_bytes / MAX_BATCH_BYTES)
    reference = floor["zlib_wire"][str(REFERENCE_ZLIB_LEVEL)] if floor else None
    columns = [key for key, _ in VARIANTS if key in medians]
    names = dict(VARIANTS)
    lines.append("")
    lines.append(f"Medians over the rounds. Baseline: {sdk_label}. Minimum requests = ⌈{json_bytes:,.0f} JSON bytes ÷ 1,000,000⌉ = {minimum:,}."
                 + (f" zlib-{REFERENCE_ZLIB_LEVEL} reference (today's wire bytes, see Floors) = {reference / 1e6:.2f} MB." if reference else ""))
    lines.append("")
    lines.append("| measure | " + " | ".join(names[key] for key in columns) + " |")
    lines.append("|---|" + "---:|" * len(columns))

    def row(title, cell):
        lines.append(f"| {title} | " + " | ".join(cell(key, medians[key]) for key in columns) + " |")

    row("events/s", lambda key, m: f"{m['rate']:,.0f}")
    row("× SDK events/s", lambda key, m: f"{m['rate'] / sdk_med['rate']:.1f}×")
    row("wall s", lambda key, m: f"{m['wall_s']:.2f}")
    row("CPU s", lambda key, m: f"{m['cpu_s']:.2f}")
    row("CPU ns / input byte", lambda key, m: f"{m['ns']:.1f}")
    row("cores busy (CPU s ÷ wall s)", lambda key, m: f"{m['cores']:.2f}")
    row("requests", lambda key, m: f"{m['requests']:,.0f}")
    row("wire MB", lambda key, m: f"{m['wire_bytes'] / 1e6:.2f}")
    if reference:
        row(f"wire ÷ zlib-{REFERENCE_ZLIB_LEVEL} reference", lambda key, m: f"{m['wire_bytes'] / reference:.3f}")
    row("wire ÷ SDK wire", lambda key, m: f"{m['wire_bytes'] / sdk_med['wire_bytes']:.3f}")
    row("peak MiB", lambda key, m: f"{m['maxrss_kib'] / 1024:.1f}")
    same = result.get("sdk_same_rows")
    if same:
        lines.append("")
        lines.append(
            f"The SDK sending the same columns (an `EventId` of 32 hex digits added, one run): {same['wire_bytes'] / 1e6:.2f} MB on the "
            f"wire, {same['requests']:,} requests, {rate(same):,.0f} events/s."
        )
    verdicts = {"minimum": minimum, "reference": reference, "sdk_rate": sdk_med["rate"]}
    for key in ("logrelay", "logrelay_fast"):
        if key in medians:
            m = medians[key]
            verdicts[key] = {
                "speedup": m["rate"] / sdk_med["rate"],
                "wire": m["wire_bytes"],
                "ns": m["ns"],
                "cores": m["cores"],
                "cpu_s": m["cpu_s"],
                "requests_all": m["requests_all"],
            }
    return lines, verdicts


def floors_table(floor, verdicts):
    """The floors section: gzip -1/-6 of the same rows, and logrelay's CPU as a ratio of them."""
    lines = []
    input_bytes = floor["input_bytes"]
    lines.append(
        f"The rows logrelay sent ({floor['rows']:,}, from one storing run: `GET /_emulator/rows`), packed into the JSON-array "
        f"bodies logrelay would send (greedy, ≤ 1,000,000 bytes a body, `[` rows joined by `,` `]`, Python `json.dumps` with "
        f"`separators=(\",\", \":\")`, `ensure_ascii=False`): {floor['bodies']:,} bodies, {floor['json_bytes']:,} JSON bytes "
        f"(logrelay reported {floor['logrelay_json_bytes']:,} bytes in {floor['logrelay_requests']:,} requests). Key order within a "
        "row differs from logrelay's own bytes (the emulator returns each row's keys sorted: serde_json maps without "
        "`preserve_order`), which moves the compressed size by a few % (`--baseline-bin` measures today's bytes directly), "
        "and the emulator shapes rows as the "
        f"table would (changes counted in that run: {', '.join(f'{k} {v}' for k, v in floor['shaping'].items())})."
    )
    lines.append("")
    lines.append(
        f"The bodies, one after another in one file, compressed by `gzip -c -N file > /dev/null` (one process, so one core; "
        "CPU = user + system from os.wait4, median of the runs). ns per byte are of the input NDJSON file "
        f"({input_bytes:,} bytes), like the client columns."
    )
    lines.append("")
    lines.append("| floor | CPU s | CPU ns / input byte | MB/s of rows per core | output MB (one stream) | output ÷ zlib-6 reference |")
    lines.append("|---|---:|---:|---:|---:|---:|")
    reference = floor["zlib_wire"][str(REFERENCE_ZLIB_LEVEL)]
    for level, figures in sorted(floor["gzip"].items()):
        lines.append(
            f"| `gzip -{level}` | {figures['cpu_s']:.2f} | {figures['cpu_s'] / input_bytes * 1e9:.1f} | "
            f"{floor['json_bytes'] / 1e6 / figures['cpu_s']:.0f} | {figures['stream_bytes'] / 1e6:.2f} | {figures['stream_bytes'] / reference:.3f} |"
        )
    lines.append("")
    fast_zlib = floor["zlib_wire"].get(str(FAST_LEVEL))
    lines.append(
        f"Today's wire bytes (reference): Python zlib level {REFERENCE_ZLIB_LEVEL} gzip of each body, summed = {reference:,} bytes "
        f"({reference / 1e6:.2f} MB; main compressed with flate2's zlib-rs backend at level 6, which gives zlib's ratio)."
        + (f" The same at zlib level {FAST_LEVEL}: {fast_zlib:,} bytes ({fast_zlib / reference:.3f}× the reference)." if fast_zlib else "")
    )
    lines.append("")
    ratios = []
    pairs = [("logrelay", REFERENCE_ZLIB_LEVEL, "the default level"), ("logrelay_fast", FAST_LEVEL, f"LOGRELAY_GZIP_LEVEL={FAST_LEVEL}")]
    for key, level, name in pairs:
        if key in verdicts and str(level) in floor["gzip"]:
            ratio = verdicts[key]["cpu_s"] / floor["gzip"][str(level)]["cpu_s"]
            ratios.append(f"logrelay at {name}: {verdicts[key]['cpu_s']:.2f} CPU s = **{ratio:.2f}× the `gzip -{level}` floor**")
    if ratios:
        lines.append("How close to the limit (client CPU ÷ floor CPU; 1.0 would be compression alone on one core): " + "; ".join(ratios) + ".")
        lines.append("")
    return lines


def write_report(bench, results, path):
    info = results["machine"]
    out = []
    out.append("# Benchmarks")
    out.append("")
    out.append("Generated by `make bench` (scripts/bench.sh → bench/run_bench.py). Do not edit by hand.")
    out.append("")
    out.append(f"- Date: {results['date']}" + (f" – {results['finished']}" if results.get("finished") else ""))
    out.append(f"- Machine: {info['nproc']} CPUs ({info['model']}), {info['memory']} RAM, Linux {info['kernel']}, Python {info['python']}"
               + (f", {info['gzip']}" if info.get("gzip") else ""))
    out.append("- The machine is shared (other builds may run at the same time): expect ±20 % noise.")
    out.append("- Everything runs on this machine: the client under test and the release `azmon-emulator`, so both compete for")
    out.append("  the same CPUs. Timed runs use the emulator in count-only mode (`--store-rows false`): it checks the token, the")
    out.append("  gzip, the 1 MB limit and that each body is a JSON array of objects, counts the rows (the bench asserts every row")
    out.append("  arrived) and keeps none. One separate storing run per size collects the rows for the floors.")
    out.append(f"- Baseline: Microsoft's `azure-monitor-ingestion` {results.get('sdk_version', '?')} (bench/sdk_upload.py): json.loads")
    out.append("  per line, `TimeGenerated` from `timestamp`, one `upload()` (sequential 1 MiB chunks, gzip), token from the")
    out.append("  emulator's client-credentials endpoint.")
    out.append(f"- logrelay runs twice per round: at the default gzip level, and with `LOGRELAY_GZIP_LEVEL={FAST_LEVEL}` (the fastest")
    out.append("  documented level); the SDK runs after them in the same round.")
    out.append("- Client measures: wall time from process start to exit (file read, decode, send, all delivered); peak memory")
    out.append("  = GNU time's `%M` for the client (a child of this Python would inherit Python's high-water RSS), CPU")
    out.append("  = user + system of the client process (os.wait4 rusage); CPU ns / input byte = CPU s ÷")
    out.append("  the input file's bytes; cores busy = CPU s ÷ wall s; requests and wire bytes from the emulator's")
    out.append("  `/_emulator/stats` (reset before each run).")
    out.append("")
    out.append("Commands:")
    out.append("")
    out.append("```")
    for command in results["commands"]:
        out.append(command)
    out.append("```")
    out.append("")

    summary = []

    def judge(name, wanted, measured, ok, missed=None):
        summary.append((name, wanted, measured, ok, missed))

    out.append("## Hot path (criterion, `shared/benches/hot_path.rs`)")
    out.append("")
    if results["criterion"]:
        out.append("| stage | bench | MB/s (mean) | time per iteration |")
        out.append("|---|---|---:|---:|")
        for row in results["criterion"]:
            out.append(f"| {row['group']} | {row['name']} | {row['mb_s']:.1f} | {row['time']} |")
    else:
        out.append("(criterion results not found)")
    out.append("")

    for key, title in [("200k", "200,000 events"), ("1m", "1,000,000 events")]:
        result = results["compare"].get(key)
        if not result:
            continue
        floor = (results.get("floors") or {}).get(key)
        out.append(f"## {title}, NDJSON ({result['file_bytes'] / 1e6:.1f} MB), 0 ms latency")
        out.append("")
        lines, verdicts = compare_table(result, floor, results.get("sdk_1m_extrapolated") if key == "1m" else None)
        out.extend(lines)
        out.append("")
        if key == "1m" and results.get("sdk_1m_note"):
            out.append(results["sdk_1m_note"])
            out.append("")
        if floor:
            out.append(f"### Floors, {title}")
            out.append("")
            out.extend(floors_table(floor, verdicts))
        minimum, reference = verdicts["minimum"], verdicts["reference"]
        default, fast = verdicts.get("logrelay"), verdicts.get("logrelay_fast")
        want = TARGETS["speedup_default"]
        judge(f"{title}: events/s at the default level vs SDK", f"≥ {want:.0f}×", f"{default['speedup']:.1f}×",
              default["speedup"] >= want, f"a factor of {want / default['speedup']:.2f}")
        if reference:
            judge(f"{title}: wire bytes at the default level vs zlib-6 reference ({reference / 1e6:.2f} MB)", "≤ reference",
                  f"{default['wire'] / 1e6:.2f} MB ({default['wire'] / reference:.3f}×)", default["wire"] <= reference,
                  f"{(default['wire'] - reference) / 1e6:.2f} MB (+{(default['wire'] / reference - 1) * 100:.1f} %)")
        else:
            judge(f"{title}: wire bytes at the default level vs zlib-6 reference", "≤ reference", "floors not run", None)
        baseline = (results.get("baseline") or {}).get(key)
        if baseline:
            today = baseline["wire_bytes"]
            judge(f"{title}: wire bytes at the default level vs the baseline binary's (measured, one run)", "≤ baseline",
                  f"{default['wire'] / 1e6:.2f} MB vs {today / 1e6:.2f} MB ({default['wire'] / today:.3f}×)", default["wire"] <= today,
                  f"{(default['wire'] - today) / 1e6:.2f} MB (+{(default['wire'] / today - 1) * 100:.1f} %)")
        want = TARGETS["speedup_fast"]
        if fast:
            judge(f"{title}: events/s at LOGRELAY_GZIP_LEVEL={FAST_LEVEL} vs SDK", f"≥ {want:.0f}×", f"{fast['speedup']:.1f}×",
                  fast["speedup"] >= want, f"a factor of {want / fast['speedup']:.2f}")
            want_ns = TARGETS["ns_per_byte_fast"]
            judge(f"{title}: CPU per input byte at LOGRELAY_GZIP_LEVEL={FAST_LEVEL}", f"≤ {want_ns:.0f} ns", f"{fast['ns']:.1f} ns",
                  fast["ns"] <= want_ns, f"{fast['ns'] - want_ns:.1f} ns ({fast['ns'] / want_ns:.2f}×)")
            if fast["wire"] == default["wire"]:
                results.setdefault("notes", []).append(
                    f"{title}: the fast level sent exactly the default's wire bytes: the binary may ignore LOGRELAY_GZIP_LEVEL.")
        else:
            judge(f"{title}: events/s at LOGRELAY_GZIP_LEVEL={FAST_LEVEL} vs SDK", f"≥ {want:.0f}×", "not run", None)
            judge(f"{title}: CPU per input byte at LOGRELAY_GZIP_LEVEL={FAST_LEVEL}", f"≤ {TARGETS['ns_per_byte_fast']:.0f} ns", "not run", None)
        want_cores = TARGETS["cores_busy"]
        for name, figures in [("the default level", default), (f"LOGRELAY_GZIP_LEVEL={FAST_LEVEL}", fast)]:
            if not figures:
                continue
            judge(f"{title}: cores busy at {name} (CPU s ÷ wall s, 2 cores)", f"≥ {want_cores}", f"{figures['cores']:.2f}",
                  figures["cores"] >= want_cores, f"{want_cores - figures['cores']:.2f} cores")
            worst = max(figures["requests_all"])
            judge(f"{title}: requests at {name}, every round", f"= minimum {minimum:,}",
                  ", ".join(f"{count:,}" for count in figures["requests_all"]), all(count == minimum for count in figures["requests_all"]),
                  f"{worst - minimum:,} requests (+{(worst / minimum - 1) * 100:.2f} %)")

    latency = results.get("latency")
    if latency:
        out.append("## 50 ms ingestion latency, one `logrelay send` process (1,000,000 events)")
        out.append("")
        out.append(f"MB/s of rows = serialized JSON bytes (`bytes_uncompressed`) ÷ wall seconds. Default `LOGRELAY_CONCURRENCY` is {DEFAULT_CONCURRENCY}.")
        out.append("")
        out.append("| LOGRELAY_CONCURRENCY | MB/s of rows | events/s | × SDK events/s | wall s | requests | max concurrent at emulator | peak MiB | CPU s | emulator CPU s | target ≥ 33 MB/s |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        want_mb_s = TARGETS["mb_s_50ms"]
        sdk = latency["sdk"]
        for run in latency["runs"]:
            mb_s = run["json_bytes"] / 1e6 / run["wall_s"]
            out.append(
                f"| {run['concurrency'] or f'{DEFAULT_CONCURRENCY} (default)'} | {mb_s:.1f} | {rate(run):,.0f} | {rate(run) / rate(sdk):.1f}× | "
                f"{run['wall_s']:.2f} | {run['requests']:,} | "
                f"{run['emulator']['max_concurrent_requests']} | {run['maxrss_kib'] / 1024:.1f} | {run['cpu_s']:.2f} | {run['emulator_cpu_s']:.2f} | "
                f"{verdict(mb_s >= want_mb_s, f'{want_mb_s - mb_s:.1f} MB/s')} |"
            )
        out.append("")
        out.append(
            f"SDK at 50 ms (same file, one run; its chunks go one after another by design): {rate(sdk):,.0f} events/s, "
            f"{sdk['wall_s']:.2f} s, {sdk['requests']:,} requests, {sdk['json_mb_s']:.1f} MB/s of input file, peak "
            f"{sdk['maxrss_kib'] / 1024:.1f} MiB, CPU {sdk['cpu_s']:.2f} s."
        )
        out.append("")
        default = next((run for run in latency["runs"] if not run["concurrency"]), None)
        if default:
            mb_s = default["json_bytes"] / 1e6 / default["wall_s"]
            want_mb_s = TARGETS["mb_s_50ms"]
            judge(f"50 ms latency: MB/s of rows at the default concurrency {DEFAULT_CONCURRENCY} (one DCR's 2 GB/minute)",
                  f"≥ {want_mb_s:.0f} MB/s", f"{mb_s:.1f} MB/s", mb_s >= want_mb_s, f"{want_mb_s - mb_s:.1f} MB/s")
        out.append(f"One DCR accepts 2 GB a minute (33.3 MB/s) through the Logs Ingestion API: {DCR_LIMIT_URL}.")
        out.append("")

    big = results.get("big")
    if big:
        out.append("## 1 GB inputs: peak memory of `logrelay send` (0 ms latency)")
        out.append("")
        out.append("Against the count-only emulator (it keeps no rows, so it never holds gigabytes).")
        out.append("")
        out.append("| container | file | events | peak MiB | target < 64 MiB | events/s | MB/s of input | wall s | requests | wire MB | CPU s |")
        out.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        for run in big:
            peak = run["maxrss_kib"] / 1024
            want_peak = TARGETS["peak_1gb_mib"]
            ok = peak < TARGETS["peak_1gb_mib"]
            out.append(
                f"| {run['container']} | {run['file_bytes'] / 1e6:,.0f} MB | {run['events']:,} | {peak:.1f} | "
                f"{verdict(ok, f'{peak - want_peak:.1f} MiB')} | {rate(run):,.0f} | {run['file_bytes'] / 1e6 / run['wall_s']:.1f} | "
                f"{run['wall_s']:.1f} | {run['requests']:,} | {run['wire_bytes'] / 1e6:.1f} | {run['cpu_s']:.1f} |"
            )
            judge(f"1 GB {run['container']}: peak memory", "< 64 MiB", f"{peak:.1f} MiB", ok, f"{peak - want_peak:.1f} MiB")
        out.append("")

    cold = results.get("cold_start")
    if cold:
        out.append(f"## Cold start: process start → first `GET /2018-06-01/runtime/invocation/next` ({results['cold_runs']} runs each)")
        out.append("")
        out.append("Release x86_64 binaries, a local Runtime API listener (bench/cold_start.py), configuration from the")
        out.append("environment (client secret, S3 dead letter, emulator endpoints); nothing is fetched before `next`.")
        out.append("")
        out.append("| binary | median ms | min ms | max ms | target < 20 ms |")
        out.append("|---|---:|---:|---:|---|")
        for name, result in cold.items():
            if "median_ms" not in result:
                out.append(f"| {name} | failed: {result.get('errors')} | | | MISSED |")
                judge(f"cold start {name}", "< 20 ms", "failed", False, "failing")
                continue
            ready_ms, want_ready = result["median_ms"], TARGETS["ready_ms"]
            ok = ready_ms < want_ready
            out.append(
                f"| {name} | {result['median_ms']:.1f} | {result['min_ms']:.1f} | {result['max_ms']:.1f} | "
                f"{verdict(ok, f'{ready_ms - want_ready:.1f} ms')} |"
            )
            judge(f"cold start {name} (median)", "< 20 ms", f"{result['median_ms']:.1f} ms", ok, f"{ready_ms - want_ready:.1f} ms")
        out.append("")

    out.append("## Binary sizes")
    out.append("")
    out.append("| binary | MB (10⁶ bytes) | target < 10 MB |")
    out.append("|---|---:|---|")
    for name, size in results["sizes"]:
        ok = size < TARGETS["binary_mib"] * 1e6
        out.append(f"| {name} | {size / 1e6:.2f} | {verdict(ok, f'{(size - 10e6) / 1e6:.2f} MB')} |")
        judge(f"size {name}", "< 10 MB", f"{size / 1e6:.2f} MB", ok, f"{(size - 10e6) / 1e6:.2f} MB")
    if not any("target/lambda" in name for name, _ in results["sizes"]):
        out.append("")
        out.append("(No `target/lambda/*/bootstrap`: run `make package-aws` for the arm64 cargo-lambda builds.)")
    out.append("")

    header = ["## Summary", "", "Targets from issue 17's \"Must show\" list.", "",
              "| target | wanted | measured | result |", "|---|---|---|---|"]
    for name, wanted, measured, ok, missed in summary:
        result = "NOT MEASURED" if ok is None else verdict(ok, missed)
        header.append(f"| {name} | {wanted} | {measured} | {result} |")
    header.append("")
    notes = results.get("notes") or []
    if notes:
        header.append("Notes:")
        header.append("")
        header.extend(f"- {note}" for note in notes)
        header.append("")
    # The summary goes right after the preamble.
    cut = out.index("## Hot path (criterion, `shared/benches/hot_path.rs`)")
    out = out[:cut] + header + out[cut:]
    profile = os.path.join(HERE, "profile.md")
    if os.path.exists(profile):
        out.append("## Where the time goes (perf; hand-written in bench/profile.md)")
        out.append("")
        with open(profile) as text:
            out.append(text.read().rstrip())
        out.append("")
    analysis = os.path.join(HERE, "analysis.md")
    if os.path.exists(analysis):
        with open(analysis) as text:
            out.append(text.read().rstrip())
    with open(path, "w") as report:
        report.write("\n".join(out).rstrip() + "\n")


def criterion_results(root):
    """Mean time per iteration and throughput from target/criterion/<group>/<bench>/new/."""
    base = os.path.join(root, "target", "criterion")
    rows = []
    # The known stages first, then any group a later hot_path.rs adds (e.g. another compressor).
    known = ["decode", "pack", "gzip"]
    found = sorted(name for name in os.listdir(base) if name not in known and name != "report") if os.path.isdir(base) else []
    for group in known + found:
        folder = os.path.join(base, group)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            estimates = os.path.join(folder, name, "new", "estimates.json")
            benchmark = os.path.join(folder, name, "new", "benchmark.json")
            if not (os.path.exists(estimates) and os.path.exists(benchmark)):
                continue
            with open(estimates) as f:
                mean_ns = json.load(f)["mean"]["point_estimate"]
            with open(benchmark) as f:
                throughput = json.load(f).get("throughput") or {}
            size = throughput.get("Bytes") or throughput.get("BytesDecimal")
            if not size:
                continue
            rows.append(
                {
                    "group": group,
                    "name": name,
                    "mb_s": size / mean_ns * 1e3,
                    "time": f"{mean_ns / 1e6:.2f} ms",
                }
            )
    return rows


def sdk_rounds_within_budget(sdk_runs, events, wanted):
    """How many 1M SDK rounds fit in SDK_1M_BUDGET_S, from the 200k SDK rate (0 = none)."""
    sdk_rate = statistics.median(rate(run) for run in sdk_runs)
    estimate = events / sdk_rate
    return min(wanted, int(SDK_1M_BUDGET_S // estimate)), estimate, sdk_rate


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=os.path.dirname(HERE))
    parser.add_argument("--work", default=None)
    parser.add_argument("--out", default=None)
    parser.add_argument("--rounds-200k", type=int, default=3)
    parser.add_argument("--rounds-1m", type=int, default=3, help="logrelay rounds per level at 1M")
    parser.add_argument("--sdk-rounds-1m", type=int, default=3, help="at most; fewer if SDK_1M_BUDGET_S says so")
    parser.add_argument("--floor-runs", type=int, default=3, help="gzip -1 / -6 runs per size (median)")
    parser.add_argument("--big-bytes", type=int, default=1_000_000_000)
    parser.add_argument("--concurrency", default="4,0,32", help="50 ms runs; 0 = the default")
    parser.add_argument("--cold-runs", type=int, default=21)
    parser.add_argument("--skip", default="", help=f"comma list of: {','.join(sorted(SKIPPABLE))}")
    parser.add_argument("--bin-dir", default=None, help="binaries (default target/release)")
    parser.add_argument("--baseline-bin", default=None,
                        help="a logrelay built from main before issue 17: one run per size gives today's wire bytes, measured")
    parser.add_argument("--emulator-bin", default=None, help="azmon-emulator (default: the one in --bin-dir; trials only)")
    parser.add_argument("--scale", type=float, default=1.0, help="event counts × this (trial runs only)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from WORK/results.json")
    parser.add_argument("--command", action="append", default=[], help="commands to list in the report")
    args = parser.parse_args()
    args.work = args.work or os.path.join(args.root, "target", "bench")
    args.out = args.out or os.path.join(args.root, "BENCHMARKS.md")
    skip = set(filter(None, args.skip.split(",")))
    if skip - SKIPPABLE:
        raise SystemExit(f"bench: unknown --skip {','.join(sorted(skip - SKIPPABLE))} (known: {','.join(sorted(SKIPPABLE))})")
    bench = Bench(args)
    if args.report_only:
        with open(os.path.join(bench.work, "results.json")) as raw:
            write_report(bench, json.load(raw), args.out)
        log(f"wrote {args.out} from the stored results")
        return
    for path in [bench.logrelay, bench.emulator_bin, bench.python]:
        if not os.path.exists(path):
            raise SystemExit(f"bench: {path} is missing: run scripts/bench.sh (it builds release and installs tools)")

    gzip_version = subprocess.run(["gzip", "--version"], capture_output=True, text=True).stdout.splitlines()
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": dict(machine(), gzip=gzip_version[0] if gzip_version else "gzip ?"),
        "commands": args.command,
        "criterion": criterion_results(bench.root),
        "compare": {},
        "floors": {},
        "notes": [],
        "skipped": sorted(skip),
    }
    version = subprocess.run(
        [bench.python, "-c", "import importlib.metadata as m; print(m.version('azure-monitor-ingestion'))"],
        capture_output=True, text=True,
    )
    results["sdk_version"] = version.stdout.strip() or "?"

    small, large = int(200_000 * args.scale), int(1_000_000 * args.scale)
    if args.scale != 1.0:
        results["notes"].append(f"TRIAL RUN: event counts scaled ×{args.scale}; the labels are wrong.")
    if skip:
        results["notes"].append(f"Scenarios skipped in this run: {', '.join(sorted(skip))}.")
    fast = "fast" not in skip
    bench.paths = {"200k": bench.generate("keeper-200k.ndjson", small)}
    if "1m" not in skip or "latency" not in skip:
        bench.paths["1m"] = bench.generate("keeper-1m.ndjson", large)

    emulator = Emulator(bench.emulator_bin, bench.work, 0)
    try:
        results["compare"]["200k"] = compare(
            bench, emulator, bench.paths["200k"], small, args.rounds_200k, args.rounds_200k, "200k", fast=fast, same_rows=True
        )
        if args.baseline_bin:
            results["baseline"] = {"200k": bench.send(emulator, bench.paths["200k"], label="200k", client="baseline binary",
                                                      binary=os.path.abspath(args.baseline_bin))}
        if "floors" not in skip:
            results["floors"]["200k"] = floors(bench, bench.paths["200k"], "200k", args.floor_runs)
        if "1m" not in skip:
            sdk_200k = results["compare"]["200k"]["runs"]["sdk"]
            sdk_rounds, estimate, sdk_rate = sdk_rounds_within_budget(sdk_200k, large, args.sdk_rounds_1m)
            result = compare(bench, emulator, bench.paths["1m"], large, args.rounds_1m, sdk_rounds, "1M", fast=fast)
            if sdk_rounds:
                results["sdk_1m_note"] = (
                    f"The SDK ran {sdk_rounds} time{'s' if sdk_rounds != 1 else ''} at 1M (about {estimate:.0f} s a run from the 200k "
                    f"rate; budget {SDK_1M_BUDGET_S} s), logrelay {args.rounds_1m} times per level."
                )
            else:
                scale = large / small
                results["sdk_1m_extrapolated"] = {
                    "rate": sdk_rate,
                    "requests": median(sdk_200k, "requests") * scale,
                    "wire_bytes": median(sdk_200k, "wire_bytes") * scale,
                    "maxrss_kib": median(sdk_200k, "maxrss_kib"),
                    "cpu_s": median(sdk_200k, "cpu_s") * scale,
                    "ns": statistics.median(ns_per_byte(run) for run in sdk_200k),
                    "cores": statistics.median(cores_busy(run) for run in sdk_200k),
                    "wall_s": median(sdk_200k, "wall_s") * scale,
                }
                results["sdk_1m_note"] = (
                    f"EXTRAPOLATED: a 1M SDK run would take about {estimate:.0f} s (> {SDK_1M_BUDGET_S} s budget), so its "
                    f"1M figures are the 200k medians scaled ×{scale:.0f} (events/s, ns/byte, cores and peak kept), not a measurement."
                )
            results["compare"]["1m"] = result
            if args.baseline_bin:
                results["baseline"]["1m"] = bench.send(emulator, bench.paths["1m"], label="1M", client="baseline binary",
                                                       binary=os.path.abspath(args.baseline_bin))
            if "floors" not in skip:
                results["floors"]["1m"] = floors(bench, bench.paths["1m"], "1m", args.floor_runs)

        if "cold" not in skip:
            results["cold_runs"] = args.cold_runs
            results["cold_start"] = scenario_cold_start(bench, emulator, args.cold_runs)

        if "big" not in skip:
            per_event = os.path.getsize(bench.paths["200k"]) / small
            events = math.ceil(args.big_bytes * args.scale / per_event)
            ndjson = bench.generate("keeper-1gb.ndjson", events)
            inputs = [("ndjson", ndjson, "NDJSON")]
            inputs.append(("array", bench.generate("keeper-1gb.json", events, "--array"), "JSON array"))
            # gzip(1) rather than `generate --gzip`, which is several times slower.
            gz = ndjson + ".gz"
            with open(gz, "wb") as out:
                subprocess.run(["gzip", "-6", "-c", ndjson], stdout=out, check=True)
            inputs.append(("gzip", gz, "NDJSON gzip (level 6)"))
            results["big"] = scenario_big(bench, emulator, inputs)
            for _, path, _ in inputs:
                os.remove(path)
    finally:
        emulator.stop()

    if "latency" not in skip:
        concurrencies = [int(value) for value in args.concurrency.split(",")]
        results["latency"] = scenario_latency(bench, bench.paths["1m"], concurrencies)

    results["sizes"] = binary_sizes(bench.root, bench.release)
    results["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M UTC")
    with open(os.path.join(bench.work, "results.json"), "w") as raw:
        json.dump(results, raw, indent=1, default=str)
    write_report(bench, results, args.out)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
