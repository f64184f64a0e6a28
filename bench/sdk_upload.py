#!/usr/bin/env python3
"""Uploads a Keeper NDJSON export with Microsoft's official Python client
(azure-monitor-ingestion) to the local emulator: the baseline `logrelay send` is compared with.

What a user of the SDK would write: read the file, json.loads each line, give
`TimeGenerated` the event's own `timestamp` (the DCR transform is `source`), and call
`LogsIngestionClient.upload` once. The SDK packs, gzips and sends the chunks sequentially
(azure-monitor-protocol.md §3.1).

The token comes from the emulator's real client-credentials endpoint (the emulator is strict;
no fake token): a tiny credential posts the form over loopback http. Plain http needs
`enforce_https=False` on the call (offline-toolbox.md §4).

Configuration: the emulator's environment (AZURE_TENANT_ID, AZURE_CLIENT_ID,
AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST, LOGS_INGESTION_ENDPOINT).
Prints one JSON line: events, seconds reading/parsing, seconds uploading.

SDK 1.1.0 packs by the sum of each log's `json.dumps` size and does not count the `[`, `]` and
`, ` separators (§3.1), so a full chunk is about 2 bytes per row over 1 MiB of JSON. The strict
emulator enforces the documented 1 MB on the decompressed body too and answers 413 (seen in
this bench: "Provided content length: 1054748 bytes"); the real service is observed to accept
such bodies (§1.5). So by default this script corrects the SDK's count: the same greedy
packing, separators included, still up to 1 MiB. `--as-shipped` leaves the SDK untouched.

`--same-rows` also adds an `EventId` of 32 hex digits (SHA-256 of the line), the size and
entropy of logrelay's, so wire bytes compare packing and gzip on the same row content.
"""

import hashlib
import json
import os
import sys
import time
import urllib.parse
import urllib.request

from azure.core.credentials import AccessToken
from azure.monitor.ingestion import LogsIngestionClient
from azure.monitor.ingestion import _helpers as sdk_helpers

# The SDK's own limit (azure/monitor/ingestion/_helpers.py MAX_CHUNK_SIZE_BYTES).
SDK_MAX_CHUNK_BYTES = sdk_helpers.MAX_CHUNK_SIZE_BYTES


def split_chunks_counting_separators(logs, max_size_bytes=SDK_MAX_CHUNK_BYTES):
    """The SDK's `_split_chunks`, but measuring the body json.dumps(chunk) really makes:
    brackets, and `, ` between rows."""
    chunk_size = 2
    curr_chunk = []
    for log in logs:
        size = len(json.dumps(log).encode("utf-8"))
        extra = size + (2 if curr_chunk else 0)
        if chunk_size + extra <= max_size_bytes:
            curr_chunk.append(log)
            chunk_size += extra
        else:
            if curr_chunk:
                yield curr_chunk
            curr_chunk = [log]
            chunk_size = 2 + size
    if curr_chunk:
        yield curr_chunk


class EmulatorCredential:
    """A TokenCredential that asks the (emulated) Entra endpoint for a client-credentials token."""

    def __init__(self, authority, tenant, client_id, client_secret):
        self._url = f"{authority.rstrip('/')}/{tenant}/oauth2/v2.0/token"
        self._client_id = client_id
        self._client_secret = client_secret
        self._cached = None

    def get_token(self, *scopes, **_kwargs):
        if self._cached and self._cached.expires_on - 300 > time.time():
            return self._cached
        scope = scopes[0] if scopes else "https://monitor.azure.com//.default"
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
                "scope": scope,
            }
        ).encode()
        request = urllib.request.Request(
            self._url,
            data=form,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = json.load(answer)
        self._cached = AccessToken(body["access_token"], int(time.time()) + int(body["expires_in"]))
        return self._cached


def split_endpoint(url):
    """`{dce}/dataCollectionRules/{dcr}/streams/{stream}?api-version=...` → (dce, dcr, stream)."""
    parts = urllib.parse.urlsplit(url)
    segments = parts.path.strip("/").split("/")
    if len(segments) != 4 or segments[0] != "dataCollectionRules" or segments[2] != "streams":
        raise SystemExit(f"sdk_upload: LOGS_INGESTION_ENDPOINT has an unexpected path: {parts.path}")
    return f"{parts.scheme}://{parts.netloc}", segments[1], segments[3]


def main():
    args = sys.argv[1:]
    same_rows = "--same-rows" in args
    as_shipped = "--as-shipped" in args
    args = [arg for arg in args if arg not in ("--same-rows", "--as-shipped")]
    if len(args) != 1:
        raise SystemExit("usage: sdk_upload.py [--same-rows] [--as-shipped] EXPORT.ndjson")
    if not as_shipped:
        # _create_gzip_requests looks the name up in its module at call time.
        sdk_helpers._split_chunks = split_chunks_counting_separators
    env = os.environ
    endpoint, rule_id, stream = split_endpoint(env["LOGS_INGESTION_ENDPOINT"])
    credential = EmulatorCredential(
        env["AZURE_AUTHORITY_HOST"],
        env["AZURE_TENANT_ID"],
        env["AZURE_CLIENT_ID"],
        env["AZURE_CLIENT_SECRET"],
    )
    started = time.monotonic()
    logs = []
    with open(args[0], "rb") as export:
        for line in export:
            if line.strip():
                event = json.loads(line)
                event.setdefault("TimeGenerated", event.get("timestamp"))
                if same_rows:
                    event["EventId"] = hashlib.sha256(line.strip()).hexdigest()[:32]
                logs.append(event)
    parsed = time.monotonic()
    client = LogsIngestionClient(endpoint=endpoint, credential=credential)
    client.upload(rule_id=rule_id, stream_name=stream, logs=logs, enforce_https=False)
    client.close()
    done = time.monotonic()
    print(
        json.dumps(
            {
                "events": len(logs),
                "parse_seconds": round(parsed - started, 3),
                "upload_seconds": round(done - parsed, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
