#!/usr/bin/env python3
"""Runs the analytic rules' KQL offline on sample rows with duckdb-kql (KQL translated to DuckDB
SQL; it refuses what it does not cover rather than guess) and compares what each rule returns
with infra/azure/sentinel/samples/expected-alerts.json.

Usage: run_rules.py <schema.json from `logrelay schema`>

The sample events land in KeeperAuditEvents_CL as logrelay writes them (columns from the schema
document), one of them twice (a retry: same EventId) so the parser's de-duplication is exercised.
KeeperSecurityEventNewLogs_CL is not created: the parser reads it with column_ifexists(), which
duckdb-kql 1.1.2 refuses (KqlUnsupportedError), so its fuzzy union leg is dropped here as Log
Analytics drops it for a missing table; that leg is covered only by the language-service check.
The ASim* parsers call the vim* ones with a named argument (disabled=disabled), which duckdb-kql
refuses too, so the vim* (filtering) parsers are run here with their defaults. The workspace
functions are defined from the parser files. `now` is fixed so ago() windows hold
the sample.
"""

import datetime
import json
import pathlib
import sys

import duckdb_kql

ROOT = pathlib.Path(__file__).resolve().parents[2]
SENTINEL = ROOT / "infra" / "azure" / "sentinel"

# Table column type -> DuckDB column type.
DUCK = {"string": "VARCHAR", "long": "BIGINT", "int": "INTEGER", "datetime": "TIMESTAMP",
        "dynamic": "JSON", "real": "DOUBLE", "boolean": "BOOLEAN"}


def create(con, table, columns):
    cols = ", ".join(f'"{c["name"]}" {DUCK[c["type"].lower()]}' for c in columns)
    con.sql(f'CREATE TABLE "{table}" ({cols})')


def insert(con, table, columns, row):
    values = []
    for c in columns:
        value = row.get(c["name"])
        if c["type"].lower() == "dynamic" and value is not None:
            value = json.dumps(value)
        if c["type"].lower() == "datetime" and value is not None:
            value = value.replace("Z", "")
        values.append(value)
    marks = ", ".join("?" for _ in columns)
    con.execute(f'INSERT INTO "{table}" VALUES ({marks})', values)


def main():
    schema = json.load(open(sys.argv[1], encoding="utf-8"))
    expected = json.load(open(SENTINEL / "samples" / "expected-alerts.json", encoding="utf-8"))
    con = duckdb_kql.connect()
    create(con, schema["table"], schema["tableColumns"])
    events = [json.loads(line) for line in open(SENTINEL / "samples" / "keeper-push-events.ndjson", encoding="utf-8") if line.strip()]
    for i, event in enumerate(events):
        row = dict(event, TimeGenerated=event["timestamp"], EventId=f"sample-{i:02d}")
        insert(con, schema["table"], schema["tableColumns"], row)
    # A retried delivery of the first event: same EventId, must count once.
    first = events[0]
    insert(con, schema["table"], schema["tableColumns"], dict(first, TimeGenerated=first["timestamp"], EventId="sample-00"))
    functions_doc = json.load(open(SENTINEL / "parsers" / "functions.json", encoding="utf-8"))
    functions = [f".create function {f['alias']}({f['parameters']}) {{\n{(SENTINEL / 'parsers' / f['file']).read_text()}\n}}"
                 for f in functions_doc["functions"]]
    now = datetime.datetime.fromisoformat(expected["now"].replace("Z", "+00:00"))

    def run(query):
        relation = duckdb_kql.kql(con, query, functions=functions, query_now=now)
        names = relation.columns
        return [dict(zip(names, row)) for row in relation.fetchall()]

    failures = []
    events_seen = run("KeeperAuditEvents | summarize Rows = count(), Ids = dcount(EventId)")
    want_rows = len(events)  # every sample event once
    if events_seen != [{"Rows": want_rows, "Ids": want_rows}]:
        failures.append(f"parser: {events_seen}, expected {want_rows} de-duplicated rows")
    # The ASIM parsers use has_any_ipv4_prefix() and named arguments, which duckdb-kql 1.1.2
    # refuses: report them as not run (with the engine's reason) rather than fake them.
    not_run = []
    asim = (("vimAuthenticationKeeperSecurity() | summarize Events = count() by EventResult | order by EventResult asc",
             [{"EventResult": "Failure", "Events": 5}, {"EventResult": "Success", "Events": 3}]),
            ("vimAuditEventKeeperSecurity() | project Operation | order by Operation asc",
             [{"Operation": "admin_permission_added"}, {"Operation": "audit_sync_setup"}]))
    for query, want in asim:
        try:
            got = run(query)
        except duckdb_kql.KqlUnsupportedError as error:
            not_run.append(f"{query.split('(')[0]}: {error}")
            continue
        if got != want:
            failures.append(f"{query}: {got}, expected {want}")
    # The solution-compatible DCR transform on rows as the stream receives them: the solution's
    # column names, TimeGenerated = the event's time inside Azure's window, else now().
    solution = json.load(open(SENTINEL / "keeper-solution-table.json", encoding="utf-8"))
    create(con, "source", solution["streamColumns"])
    recent = dict(events[0], TimeGenerated=events[0]["timestamp"], EventId="recent")
    old = dict(events[1], timestamp="2025-01-11T10:00:00Z", TimeGenerated="2025-01-11T10:00:00Z", EventId="old")
    for row in (recent, old):
        insert(con, "source", solution["streamColumns"], row)
    transformed = run((SENTINEL / "dcr" / "keeper-solution-transform.kql").read_text() + "\n| order by EventId desc")
    names = sorted(transformed[0]) if transformed else []
    want_names = sorted(c["name"] for c in solution["tableColumns"])
    if names != want_names:
        failures.append(f"transform: columns {names}, expected {want_names}")
    else:
        fresh, stale = transformed
        naive_now = now.replace(tzinfo=None)
        event_time = datetime.datetime.fromisoformat(recent["timestamp"].replace("Z", ""))
        if (fresh["TimeGenerated"], fresh["Timestamp"], fresh["AuditEvent"], fresh["EventId"]) != (event_time, event_time, recent["audit_event"], "recent"):
            failures.append(f"transform: recent event became {fresh}")
        if stale["TimeGenerated"] != naive_now or stale["Timestamp"] != datetime.datetime(2025, 1, 11, 10, 0):
            failures.append(f"transform: 4-day-old event became {stale}")

    ran = 0
    for name, case in expected["rules"].items():
        query = (SENTINEL / "rules" / f"{name}.kql").read_text()
        got = [[row[c] for c in case["columns"]] for row in run(query)]
        ran += 1
        if got != case["rows"]:
            failures.append(f"{name}: got {got}, expected {case['rows']}")
        for line, replacement in case.get("with", {}).items():
            if query.count(line) != 1:
                failures.append(f"{name}: '{line}' is not in the query once")
                continue
            quiet = run(query.replace(line, replacement))
            ran += 1
            if quiet:
                failures.append(f"{name} with '{replacement}': expected no alert, got {quiet}")
    for reason in not_run:
        print(f"run_rules: not run offline: {reason}")
    for failure in failures:
        print(f"run_rules: {failure}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"run_rules: {ran} rule runs on {want_rows} sample events (duckdb-kql): every alert as expected")


if __name__ == "__main__":
    main()
