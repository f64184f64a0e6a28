#!/usr/bin/env python3
"""Cold start of the Lambda binaries: time from process start to its first
`GET /2018-06-01/runtime/invocation/next`, against a tiny local Lambda Runtime API.

The listener runs in this process, so the spawn time and the request time share one clock.
Each binary is started RUNS times with a fresh process; once the first `next` arrives the
process is killed (it would wait for an invocation forever). Prints JSON:
{"name": {"median_ms": .., "min_ms": .., "max_ms": .., "samples_ms": [..]}, ...}

Usage: cold_start.py --runs N --env KEY=VALUE... -- name=/path/to/bin ...
The environment must configure the binaries (the emulator's variables, a region, ...).
"""

import argparse
import http.server
import json
import os
import statistics
import subprocess
import threading
import time

NEXT_PATH = "/2018-06-01/runtime/invocation/next"
# A binary that never asks for work within this long is reported as failed.
READY_TIMEOUT_S = 20.0


class Listener(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.arrived = threading.Event()
        self.arrived_at = None
        self.release = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        server = self.server
        if self.path == NEXT_PATH and not server.arrived.is_set():
            server.arrived_at = time.perf_counter()
            server.arrived.set()
        # Hold the long poll until the process is killed, as the real API would.
        server.release.wait(READY_TIMEOUT_S)
        try:
            self.send_response(503)
            self.end_headers()
        except OSError:
            pass

    def do_POST(self):  # noqa: N802
        # An init error report means the binary did not start: record nothing, answer 202.
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.server.init_error = body.decode("utf-8", "replace")[:500]
        self.send_response(202)
        self.end_headers()

    def log_message(self, *_args):
        pass


def measure(path, env, runs):
    samples = []
    errors = []
    for _ in range(runs):
        listener = Listener()
        listener.init_error = None
        thread = threading.Thread(target=listener.serve_forever, daemon=True)
        thread.start()
        child_env = dict(env)
        child_env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{listener.server_address[1]}"
        started = time.perf_counter()
        process = subprocess.Popen(
            [path], env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        ready = listener.arrived.wait(READY_TIMEOUT_S)
        process.kill()
        _, stderr = process.communicate()
        listener.release.set()
        listener.shutdown()
        listener.server_close()
        if ready:
            samples.append((listener.arrived_at - started) * 1000.0)
        else:
            detail = listener.init_error or stderr.decode("utf-8", "replace")[-500:]
            errors.append(detail.strip() or "no request and no output")
    result = {"samples_ms": [round(s, 2) for s in samples]}
    if samples:
        result.update(
            median_ms=round(statistics.median(samples), 2),
            min_ms=round(min(samples), 2),
            max_ms=round(max(samples), 2),
        )
    if errors:
        result["errors"] = errors[:3]
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the binaries")
    parser.add_argument("binaries", nargs="+", help="name=/path/to/binary")
    args = parser.parse_args()
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "TMPDIR")}
    for pair in args.env:
        key, _, value = pair.partition("=")
        env[key] = value
    results = {}
    for spec in args.binaries:
        name, _, path = spec.partition("=")
        results[name] = measure(path, env, args.runs)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
