#!/usr/bin/env python3
"""Reads checkov's JSON report and fails on any failed check or parse error; and proves each
Bicep skip marked "False positive ... verified on main.json" really passes on main.json.

Usage: check_checkov.py main.bicep report.json [report.json ...]

checkov's Bicep parser reads no properties of a conditional resource (`= if (...) {}`), so it
reports checks like "FTP disabled" as failed on the optional Function App even though the
template sets them. Those checks are skipped in main.bicep, and this script requires that the
same check passed on the same resource type in main.json, where checkov does see the properties.
"""

import json
import re
import sys

MARKER = "verified on main.json"


def resource_type(resource):
    """`Microsoft.Web/sites.functionApp` -> `Microsoft.Web/sites` (ARM names may contain dots)."""
    match = re.match(r"[A-Za-z]+\.[A-Za-z]+/[A-Za-z/]+", resource)
    return match.group(0) if match else resource


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: check_checkov.py main.bicep report.json [report.json ...]")
    bicep_path, report_paths = sys.argv[1], sys.argv[2:]
    reports = []
    for report_path in report_paths:
        # checkov may print several JSON documents back to back.
        text = open(report_path, encoding="utf-8").read()
        decoder, position = json.JSONDecoder(), 0
        while position < len(text):
            if text[position].isspace():
                position += 1
                continue
            document, position = decoder.raw_decode(text, position)
            reports.extend(document if isinstance(document, list) else [document])
    missing = {"cloudformation", "arm", "bicep"} - {r.get("check_type") for r in reports}
    if missing:
        sys.exit(f"check_checkov: checkov produced no {', '.join(sorted(missing))} report")
    problems = []
    passed = {}
    skipped_bicep = []
    for report in reports:
        summary = report.get("summary", {})
        kind = report.get("check_type")
        if summary.get("failed") or summary.get("parsing_errors"):
            problems.append(f"{kind}: {summary.get('failed')} failed, {summary.get('parsing_errors')} parsing errors")
        results = report.get("results", {})
        for check in results.get("failed_checks", []):
            problems.append(f"{kind}: {check['check_id']} failed on {check['resource']} ({check['file_path']})")
        for check in results.get("passed_checks", []):
            passed.setdefault(check["check_id"], set()).add(resource_type(check["resource"]))
        if kind == "bicep":
            skipped_bicep.extend(results.get("skipped_checks", []))
    false_positives = set()
    for line in open(bicep_path, encoding="utf-8"):
        match = re.search(r"checkov:skip=([A-Z0-9_]+):.*" + re.escape(MARKER), line)
        if match:
            false_positives.add(match.group(1))
    verified = 0
    for check in skipped_bicep:
        if check["check_id"] not in false_positives:
            continue
        kind = resource_type(check["resource"])
        if kind not in passed.get(check["check_id"], set()):
            problems.append(f"{check['check_id']} is skipped in main.bicep as a false positive, but did not pass on {kind} in main.json")
        else:
            verified += 1
    for problem in problems:
        print(f"check_checkov: {problem}", file=sys.stderr)
    if problems:
        sys.exit(1)
    kinds = sorted({report.get("check_type") for report in reports})
    print(f"check_checkov: no failures in {len(reports)} reports ({', '.join(kinds)}); {verified} Bicep false-positive skips pass on main.json")


if __name__ == "__main__":
    main()
