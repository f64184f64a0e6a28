#!/usr/bin/env python3
"""EventId test vectors from an implementation of docs/eventid.md that shares no code with
logrelay (Python standard library only).

It reads the Keeper events of shared/tests/fixtures/keeper/eventid/ in every shape they are
stored in (JSON array, NDJSON, CSV, syslog), computes each event's EventId from the
documented canonical form, checks that every shape of a set gives the same ids, and writes
shared/tests/fixtures/keeper/eventid-vectors.json, which shared/tests/keeper_shapes.rs
compares logrelay's decoder against.

    python3 scripts/eventid_vectors.py          # rewrite the vectors file
    python3 scripts/eventid_vectors.py --check  # exit 1 if the committed file differs
"""

import csv
import datetime
import decimal
import hashlib
import io
import json
import math
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "shared/tests/fixtures/keeper/eventid"
VECTORS = ROOT / "shared/tests/fixtures/keeper/eventid-vectors.json"

# Each set: the same events in several shapes; the first file is the one the vectors show.
SETS = {
    "keeper": ["events.json", "events.ndjson", "events.csv", "events.syslog"],
    "commander": ["commander-raw.json", "commander-raw.csv", "commander.syslog"],
}

# docs/eventid.md, "Normalised event".
TIME_FIELDS = ["timestamp", "created", "TimeGenerated"]
STRING_COLUMNS = [
    ("audit_event", ["audit_event", "audit_event_type"]),
    ("category", ["category"]),
    ("remote_address", ["remote_address", "ip_address"]),
    ("client_version", ["client_version", "keeper_version"]),
    ("username", ["username"]),
]
EPOCH_MS_THRESHOLD = 1e12
JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")
INTEGER = re.compile(r"-?(0|[1-9][0-9]*)\Z")


# ---- canonical scalars -------------------------------------------------------------------

def es_number(x: float) -> str:
    """ECMAScript Number::toString (ECMA-262 6.1.6.1.20; RFC 8785 3.2.2.3)."""
    if x == 0 or not math.isfinite(x):
        return "0"
    _, digits, exp = decimal.Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digits))
    stripped = digits.rstrip("0")
    exp += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    n = k + exp
    sign = "-" if x < 0 else ""
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def number_text(n) -> str:
    """Integers of 64 bits keep their digits; any other number goes through binary64."""
    if isinstance(n, int) and -(2**63) <= n < 2**64:
        return str(n)
    return es_number(float(n))


def number_of_str(s: str):
    """The number a string spells exactly (RFC 8259 6), or None (also beyond binary64)."""
    if not JSON_NUMBER.match(s):
        return None
    if INTEGER.match(s):
        value = int(s)
        if -(2**63) <= value < 2**64:
            return value
    f = float(s)
    return f if math.isfinite(f) else None


def scalar(value):
    """A string spelling a JSON number, true, false or null stands for that value."""
    if isinstance(value, str):
        if value == "null":
            return None
        if value in ("true", "false"):
            return value == "true"
        number = number_of_str(value)
        if number is not None:
            return number
    return value


def canonical(value) -> str:
    value = scalar(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return number_text(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    members = sorted(
        (k, v) for k, v in value.items() if scalar(v) is not None and v != ""
    )
    return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical(v) for k, v in members) + "}"


# ---- the normalised (push-form) event -------------------------------------------------

def parse_time(value):
    """Epoch milliseconds of an ISO 8601 string or epoch seconds/milliseconds; else None."""
    if isinstance(value, str) and JSON_NUMBER.match(value.strip()):
        value = scalar(value.strip())
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        ms = value if abs(value) > EPOCH_MS_THRESHOLD else value * 1000
        return math.floor(ms)
    if isinstance(value, str):
        text = value.strip().replace(" ", "T", 1)
        try:
            dt = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return (dt - epoch) // datetime.timedelta(milliseconds=1)
    return None


def format_ms(ms: int) -> str:
    dt = datetime.datetime.fromtimestamp(ms // 1000, tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def integer_of(value):
    if isinstance(value, str):
        value = number_of_str(value.strip())
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 9e15:
        return int(value)
    return None


def id_text(value):
    value = scalar(value)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return number_text(value)
    if isinstance(value, str) and value:
        return value
    return None


def normalise(event: dict, header_ms=None):
    """(EventId, canonical text) of one event of any Keeper shape."""
    event = dict(event)
    instant = header_ms
    if instant is None:
        for field in TIME_FIELDS:
            if field in event and (instant := parse_time(event[field])) is not None:
                break
    if instant is None:
        raise ValueError(f"no event time in {event}")
    for field in TIME_FIELDS:
        if field in event and parse_time(event[field]) == instant:
            del event[field]
    data = event.pop("data", None)
    data = {} if data is None else dict(data) if isinstance(data, dict) else {"_data": data}
    event_id = id_text(event["id"]) if "id" in event else None
    if event_id is not None:
        del event["id"]
    top = {"timestamp": format_ms(instant)}
    for column, names in STRING_COLUMNS:
        for name in names:
            if name in event and isinstance(event[name], str):
                top[column] = event.pop(name)
                break
            if name in event and event[name] is None:
                del event[name]
    if "enterprise_id" in event:
        if event["enterprise_id"] is None:
            del event["enterprise_id"]
        elif (number := integer_of(event["enterprise_id"])) is not None:
            top["enterprise_id"] = number
            del event["enterprise_id"]
    for key, value in event.items():
        while key in data and data[key] != value:
            key = "_" + key
        data.setdefault(key, value)
    top["data"] = data
    text = canonical(top)
    if event_id is None:
        event_id = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return event_id, text


# ---- the shapes ---------------------------------------------------------------------------

SYSLOG = re.compile(r"<\d{1,3}>\d+ (\S+) (\S+) (\S+) (\S+) (\S+) ?(.*)\Z")
SD_PARAM = re.compile(r'\s*([^=\s\]]+)="((?:[^"\\]|\\.)*)"')


def syslog_event(line: str):
    """RFC 5424 as Keeper writes it (JSON MSG) and as Commander writes it (SD params)."""
    stamp, host, app, _procid, msgid, rest = SYSLOG.match(line).groups()
    header_ms = None if stamp == "-" else parse_time(stamp)
    event = {}
    if rest.startswith("["):
        sd_id_end = rest.index(" ")
        sd_id = rest[1:sd_id_end]
        body = rest[sd_id_end:]
        while not body.startswith("]"):
            m = SD_PARAM.match(body)
            event[m.group(1)] = re.sub(r'\\(["\\\]])', r"\1", m.group(2))
            body = body[m.end():]
        message = body[1:].strip()
        if message:
            event["message"] = message
        if sd_id == "Keeper@Commander":
            # Commander puts the event id in MSGID and ip_address in HOSTNAME.
            if msgid != "-":
                event.setdefault("id", msgid)
            if host != "-":
                event.setdefault("ip_address", host)
    else:
        body = rest[2:] if rest.startswith("- ") else rest
        event = json.loads(body)
    return event, header_ms


def events_of(name: str):
    text = (FIXTURES / name).read_text(encoding="utf-8")
    if name.endswith(".json"):
        return [(e, None) for e in json.loads(text)]
    if name.endswith(".ndjson"):
        return [(json.loads(line), None) for line in text.splitlines() if line.strip()]
    if name.endswith(".csv"):
        rows = csv.DictReader(io.StringIO(text, newline=""))
        return [({k: v for k, v in row.items() if v != ""}, None) for row in rows]
    return [syslog_event(line) for line in text.splitlines() if line.strip()]


# Number texts whose canonical form is easy to get wrong: ECMAScript's switch points, the
# binary64 extremes, 64-bit integer bounds, and the sample of RFC 8785 3.2.4.
NUMBER_EDGES = [
    "0", "-0", "0.0", "-0.0", "1", "1.0", "1.50", "4.50", "2e-3", "1E30", "1e-27",
    "0.000001", "0.0000001", "1e-7", "1.5e-6", "1e20", "1e21", "123e18", "999999999999999900000",
    "0.1", "0.3", "123.456", "333333333.3333333", "5e-324", "2.2250738585072014e-308",
    "1.7976931348623157e308", "9007199254740992", "9007199254740993", "9007199254740993.0",
    "9223372036854775807", "-9223372036854775808", "-9223372036854775809",
    "18446744073709551615", "18446744073709551616", "1e400",
]


def number_vectors():
    """Edge cases, then pseudo-random binary64 values (fixed seed) written by repr()."""
    import random
    import struct

    rng = random.Random(15)
    texts = list(NUMBER_EDGES)
    while len(texts) < len(NUMBER_EDGES) + 400:
        (x,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if math.isfinite(x):
            texts.append(repr(x))
    for _ in range(100):
        texts.append(str(rng.randrange(-(2**64), 2**65)))
    return [{"text": t, "canonical": canonical(t)} for t in texts]


def vectors():
    out = {}
    for set_name, files in SETS.items():
        first = None
        for name in files:
            events = events_of(name)
            computed = [normalise(event, header) for event, header in events]
            if first is None:
                first = [
                    {"event": event, "canonical": text, "event_id": event_id}
                    for (event, _), (event_id, text) in zip(events, computed)
                ]
                out[set_name] = {"files": [], "vectors": first}
            ids = [event_id for event_id, _ in computed]
            expected = [v["event_id"] for v in first]
            if ids != expected:
                sys.exit(f"{name}: EventIds {ids} differ from {files[0]}'s {expected}")
            out[set_name]["files"].append(name)
    return {
        "about": (
            "EventId test vectors, generated by scripts/eventid_vectors.py (Python standard "
            "library, no logrelay code) from docs/eventid.md; each set lists the fixture files "
            "in shared/tests/fixtures/keeper/eventid/ that hold the same events, and the "
            "script checked that every file gives these ids. Regenerate with "
            "`python3 scripts/eventid_vectors.py`; never edit by hand. `numbers` gives the "
            "canonical text of number texts (read as JSON numbers or as CSV text, the same)."
        ),
        "sets": out,
        "numbers": number_vectors(),
    }


def main():
    text = json.dumps(vectors(), indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv[1:]:
        committed = VECTORS.read_text(encoding="utf-8") if VECTORS.exists() else ""
        if committed != text:
            sys.exit(f"{VECTORS.relative_to(ROOT)} is stale: run python3 scripts/eventid_vectors.py")
        print(f"{VECTORS.relative_to(ROOT)}: up to date")
        return
    VECTORS.write_text(text, encoding="utf-8")
    print(f"wrote {VECTORS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
