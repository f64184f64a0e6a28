#!/usr/bin/env python3
"""Checks that main.bicep parses, that main.json is the same template, and that both carry
exactly the table `logrelay schema` prints.

Usage: check_azure.py main.bicep main.json schema.json

No Bicep compiler runs offline (offline-toolbox.md section 6), so main.json is written by hand.
This compares what matters between the two: resources (type, apiVersion, conditional or not,
existing or not), parameters (type, secure, default literals, allowed values, bounds), outputs
(names, types), and the column lists, stream, transform and output stream of the DCR and
table against the schema document.
"""

import json
import re
import sys

from pycep import BicepParser


def fail(problems):
    for problem in problems:
        print(f"check_azure: {problem}", file=sys.stderr)
    sys.exit(1)


def unescape(value):
    """pycep keeps Bicep's escapes in string literals."""
    if isinstance(value, str):
        return value.replace("\\'", "'").replace("\\\\", "\\")
    if isinstance(value, list):
        return [unescape(item) for item in value]
    if isinstance(value, dict):
        return {key: unescape(item) for key, item in value.items()}
    return value


def decorators(node):
    return {d["type"]: d.get("argument") for d in node.get("decorators", [])}


def literal(value):
    """A default that is a plain literal (not an expression or interpolation)."""
    if isinstance(value, (bool, int)) or value is None:
        return True
    return isinstance(value, str) and "${" not in value and not value.startswith("[")


def bicep_resources(tree):
    found = {}
    for name, node in tree["resources"].items():
        if node.get("existing"):
            continue
        config = node["config"]
        conditional = "condition" in config and "config" in config
        found[name] = (node["type"], node["api_version"], conditional)
    # A module compiles to a nested deployment (Bicep emits Microsoft.Resources/deployments@2022-09-01).
    for name, node in tree.get("modules", {}).items():
        config = node["config"]
        found[name] = ("Microsoft.Resources/deployments", "2022-09-01", "condition" in config and "config" in config)
    return found


def json_resources(template):
    return sorted((r["type"], r["apiVersion"], "condition" in r) for r in template["resources"])


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: check_azure.py main.bicep main.json schema.json")
    bicep_path, json_path, schema_path = sys.argv[1:]
    problems = []
    try:
        tree = BicepParser().parse(text=open(bicep_path, encoding="utf-8").read())
    except Exception as error:  # pycep raises lark's UnexpectedToken/UnexpectedCharacters
        fail([f"{bicep_path} does not parse: {error}"])
    template = json.load(open(json_path, encoding="utf-8"))
    schema = json.load(open(schema_path, encoding="utf-8"))

    # Resources.
    from_bicep = sorted(bicep_resources(tree).values())
    from_json = json_resources(template)
    if from_bicep != from_json:
        problems.append(f"resources differ:\n  bicep {from_bicep}\n  json  {from_json}")

    # Parameters.
    bicep_params = tree["parameters"]
    json_params = template["parameters"]
    if list(bicep_params) != list(json_params):
        problems.append(f"parameter names/order differ: {list(bicep_params)} vs {list(json_params)}")
    for name in set(bicep_params) & set(json_params):
        b, j = bicep_params[name], json_params[name]
        marks = decorators(b)
        b_type = ("secure" + b["type"]) if "secure" in marks else b["type"]
        if b_type != j["type"]:
            problems.append(f"parameter {name}: type {b_type} vs {j['type']}")
        if literal(b.get("default")) and unescape(b.get("default")) != j.get("defaultValue"):
            problems.append(f"parameter {name}: default {b.get('default')!r} vs {j.get('defaultValue')!r}")
        for mark, key in (("allowed", "allowedValues"), ("min_value", "minValue"), ("max_value", "maxValue"),
                          ("min_length", "minLength"), ("max_length", "maxLength")):
            if marks.get(mark) != j.get(key):
                problems.append(f"parameter {name}: {key} {marks.get(mark)!r} vs {j.get(key)!r}")
        if unescape(marks.get("description")) != j.get("metadata", {}).get("description"):
            problems.append(f"parameter {name}: descriptions differ")

    # Outputs.
    bicep_outputs = {name: node["type"] for name, node in tree["outputs"].items()}
    json_outputs = {name: node["type"] for name, node in template["outputs"].items()}
    if bicep_outputs != json_outputs:
        problems.append(f"outputs differ: {bicep_outputs} vs {json_outputs}")
    for required in ("logsIngestionEndpoint", "dcrImmutableId", "workspaceId"):
        if required not in json_outputs:
            problems.append(f"output {required} missing")

    # Columns: Bicep variables, JSON variables and `logrelay schema` agree exactly, in order.
    stream = schema["stream"]
    table = schema["table"]
    expected_stream = schema["streamDeclaration"][stream]["columns"]
    expected_table = schema["tableColumns"]
    bicep_vars = tree["variables"]
    json_vars = template["variables"]
    for label, got in (("bicep tableColumns", unescape(bicep_vars["tableColumns"]["value"])),
                       ("json tableColumns", json_vars["tableColumns"])):
        if got != expected_table:
            problems.append(f"{label} differ from `logrelay schema` tableColumns")
    for label, got in (("bicep streamColumns", unescape(bicep_vars["streamColumns"]["value"])),
                       ("json streamColumns", json_vars["streamColumns"])):
        if got != expected_stream:
            problems.append(f"{label} differ from `logrelay schema` streamDeclaration")

    # Defaults name the schema's stream and table; the output stream is Custom-<table>.
    if bicep_params["streamName"].get("default") != stream or json_params["streamName"]["defaultValue"] != stream:
        problems.append(f"streamName default is not {stream}")
    if bicep_params["tableName"].get("default") != table or json_params["tableName"]["defaultValue"] != table:
        problems.append(f"tableName default is not {table}")
    if bicep_vars["outputStream"]["value"] != "Custom-${tableName}" \
            or json_vars["outputStream"] != "[format('Custom-{0}', parameters('tableName'))]" \
            or schema["outputStream"] != f"Custom-{table}":
        problems.append("outputStream is not Custom-<tableName> in both templates")

    # The DCR: kind Direct, stream declared from streamColumns, one flow with the schema's transform.
    dcr_json = next(r for r in template["resources"] if r["type"] == "Microsoft.Insights/dataCollectionRules")
    dcr_bicep = tree["resources"]["dcr"]["config"]
    for label, kind in (("json", dcr_json.get("kind")), ("bicep", dcr_bicep.get("kind"))):
        if kind != "Direct":
            problems.append(f"{label} DCR kind is {kind!r}, not Direct")
    flows = dcr_json["properties"]["dataFlows"]
    if len(flows) != 1 or flows[0]["transformKql"] != schema["transformKql"] \
            or flows[0]["outputStream"] != "[variables('outputStream')]" \
            or flows[0]["streams"] != ["[parameters('streamName')]"]:
        problems.append(f"json DCR data flow is not streamName -> outputStream with {schema['transformKql']!r}")
    if dcr_json["properties"]["streamDeclarations"] != {"[parameters('streamName')]": {"columns": "[variables('streamColumns')]"}}:
        problems.append("json DCR streamDeclarations is not {streamName: streamColumns}")
    bicep_flows = dcr_bicep["properties"]["dataFlows"]
    if len(bicep_flows) != 1 or bicep_flows[0]["transformKql"] != schema["transformKql"] \
            or bicep_flows[0]["outputStream"] != "outputStream" or bicep_flows[0]["streams"] != ["streamName"]:
        problems.append(f"bicep DCR data flow is not streamName -> outputStream with {schema['transformKql']!r}")
    if dcr_bicep["properties"]["streamDeclarations"] != {"'${streamName}'": {"columns": "streamColumns"}}:
        problems.append("bicep DCR streamDeclarations is not {streamName: streamColumns}")
    table_json = next(r for r in template["resources"] if r["type"] == "Microsoft.OperationalInsights/workspaces/tables")
    if table_json["properties"]["schema"]["columns"] != "[variables('tableColumns')]":
        problems.append("json table schema does not use tableColumns")
    if tree["resources"]["table"]["config"]["properties"]["schema"]["columns"] != "tableColumns":
        problems.append("bicep table schema does not use tableColumns")

    # The endpoint output follows the Logs Ingestion URL shape (azure-monitor-protocol.md 1.1).
    endpoint = template["outputs"]["logsIngestionEndpoint"]["value"]
    if not re.search(r"/dataCollectionRules/\{1\}/streams/\{2\}\?api-version=\{3\}", endpoint) \
            or json_vars["ingestionApiVersion"] != "2023-01-01":
        problems.append("json logsIngestionEndpoint is not <endpoint>/dataCollectionRules/<id>/streams/<stream>?api-version=2023-01-01")
    if "/dataCollectionRules/${dcr.properties.immutableId}/streams/${streamName}?api-version=${ingestionApiVersion}" \
            not in bicep_vars["logsIngestionEndpoint"]["value"]:
        problems.append("bicep logsIngestionEndpoint is not <endpoint>/dataCollectionRules/<id>/streams/<stream>?api-version=...")

    if problems:
        fail(problems)
    print(f"check_azure: {bicep_path} parses; {len(from_json)} resources, {len(json_params)} parameters, "
          f"{len(json_outputs)} outputs match {json_path}; {len(expected_table)} columns equal `logrelay schema`")


if __name__ == "__main__":
    main()
