#!/usr/bin/env python3
"""Checks that main.bicep parses, that main.json is the same template, that both carry
exactly the table `logrelay schema` prints, and that the Function App is one the Flex
Consumption host can run with the function folders beside it.

Usage: check_azure.py main.bicep main.json schema.json

No Bicep compiler runs offline (none on PyPI, npm or crates.io works without downloading the
Bicep binary), so main.json is written by hand. main.bicep is parsed by two independent
grammars: pycep-parser and tree-sitter-bicep.
This compares what matters between the two: resources (type, apiVersion, conditional or not,
existing or not), parameters (type, secure, default literals, allowed values, bounds), outputs
(names, types), and the column lists, stream, transform and output stream of the DCR and
table against the schema document.
"""

import json
import pathlib
import re
import sys

import tree_sitter
import tree_sitter_bicep
from pycep import BicepParser

# App setting names: letters, digits, periods and underscores only (Microsoft Learn, "App settings
# reference for Azure Functions"; a name with a hyphen, e.g. AzureWebJobs.<fn>.Disabled, is ignored).
SETTING_NAME = re.compile(r"^[A-Za-z0-9._]+$")
# The functions the Function App package holds (function folder names, issue 13's names).
FUNCTIONS = {"events", "queue_events", "blob_events", "eventhub_events"}


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
    for name, node in tree.get("resources", {}).items():
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
    """Resources of main.json; its nested deployments are main.bicep's modules."""
    return sorted((r["type"], r["apiVersion"], "condition" in r) for r in template["resources"])


def tree_sitter_errors(text):
    """Syntax errors a second, independent Bicep grammar (tree-sitter-bicep) finds."""
    parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
    found = []

    def walk(node):
        if node.is_error or node.is_missing:
            found.append(f"line {node.start_point[0] + 1}, column {node.start_point[1] + 1}: {node.type}")
        for child in node.children:
            walk(child)
    walk(parser.parse(text.encode("utf-8")).root_node)
    return found


def is_json_expression(value):
    return isinstance(value, str) and value.startswith("[") and value.endswith("]")


def compare_shape(label, bicep, arm, problems, path=""):
    """Same keys at every level; every literal of main.json has the same literal in main.bicep
    (pycep cannot tell a Bicep literal from an identifier, so an expression is matched by place)."""
    if isinstance(arm, dict) and not is_json_expression(arm):
        if not isinstance(bicep, dict):
            problems.append(f"{label}{path}: object in main.json, {bicep!r} in main.bicep")
            return
        if set(bicep) != set(arm):
            problems.append(f"{label}{path}: keys differ: bicep {sorted(bicep)} vs json {sorted(arm)}")
        for key in set(bicep) & set(arm):
            compare_shape(label, bicep[key], arm[key], problems, f"{path}.{key}")
    elif isinstance(arm, list):
        if not isinstance(bicep, list) or len(bicep) != len(arm):
            problems.append(f"{label}{path}: list of {len(arm)} in main.json, {bicep!r} in main.bicep")
            return
        for index, (b, a) in enumerate(zip(bicep, arm)):
            compare_shape(label, b, a, problems, f"{path}[{index}]")
    elif not is_json_expression(arm) and unescape(bicep) != arm:
        problems.append(f"{label}{path}: {arm!r} in main.json, {bicep!r} in main.bicep")


def bicep_config(node):
    config = node["config"]
    return config["config"] if "condition" in config and "config" in config else config


def function_bindings(folder):
    """{function name: [bindings]} from the function folders of the package."""
    found = {}
    for path in sorted(pathlib.Path(folder).glob("*/function.json")):
        found[path.parent.name] = json.loads(path.read_text(encoding="utf-8")).get("bindings", [])
    return found


def check_function_app(tree, template, folder, problems):
    """Flex Consumption, the settings each function needs, names the host honours, and the
    Event Grid wiring of blob_events; main.bicep and main.json alike."""
    resources = {r["type"]: r for r in template["resources"]}
    bicep = {node["type"]: bicep_config(node) for node in tree["resources"].values() if not node.get("existing")}
    for kind in ("Microsoft.Web/serverfarms", "Microsoft.Web/sites", "Microsoft.Storage/storageAccounts",
                 "Microsoft.EventGrid/systemTopics", "Microsoft.EventGrid/systemTopics/eventSubscriptions"):
        if kind not in resources or kind not in bicep:
            problems.append(f"{kind} missing from main.json or main.bicep")
            return
        for key in ("kind", "sku", "identity", "properties"):
            if key in resources[kind] or key in bicep[kind]:
                compare_shape(f"{kind}.{key}", bicep[kind].get(key), resources[kind].get(key), problems)
    plan = resources["Microsoft.Web/serverfarms"]
    if plan["sku"] != {"name": "FC1", "tier": "FlexConsumption"}:
        problems.append(f"the plan is {plan['sku']}, not Flex Consumption FC1")
    site = resources["Microsoft.Web/sites"]["properties"]
    config = site.get("functionAppConfig", {})
    if config.get("runtime", {}).get("name") != "custom":
        problems.append("functionAppConfig.runtime.name is not custom")
    storage = config.get("deployment", {}).get("storage", {})
    if storage.get("type") != "blobContainer" or storage.get("authentication", {}).get("type") != "SystemAssignedIdentity":
        problems.append("the deployment storage is not a blob container reached with the system-assigned identity")
    if resources["Microsoft.Storage/storageAccounts"]["properties"].get("allowSharedKeyAccess") is not False:
        problems.append("the storage account still allows shared keys, though nothing here uses them")
    settings = {a["name"]: a["value"] for a in site["siteConfig"]["appSettings"]}
    bicep_names = [a["name"] for a in bicep["Microsoft.Web/sites"]["properties"]["siteConfig"]["appSettings"]]
    if bicep_names != list(settings):
        problems.append(f"app settings differ: bicep {bicep_names} vs json {list(settings)}")
    for name in settings:
        if not SETTING_NAME.match(name):
            problems.append(f"app setting {name} has a character other than letters, digits, periods, underscores")
        match = re.fullmatch(r"AzureWebJobs\.(.+)\.Disabled", name)
        if match and match.group(1) not in FUNCTIONS:
            problems.append(f"{name} names no function of the package ({sorted(FUNCTIONS)})")
    for deprecated in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_CONTENTSHARE",
                       "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_RUN_FROM_PACKAGE", "AzureWebJobsStorage"):
        if deprecated in settings:
            problems.append(f"app setting {deprecated} is deprecated on Flex Consumption or holds a key")

    # Every %SETTING% and connection a function.json names is set (a placeholder while the
    # trigger is off); functions whose trigger needs a resource this template may not have are
    # disabled by name. Folder names not yet renamed (hyphens) are checked under their new names.
    bindings = function_bindings(folder)
    renamed = {name.replace("-", "_"): name for name in bindings}
    if set(renamed) != FUNCTIONS:
        problems.append(f"function folders {sorted(bindings)} are not the package's functions {sorted(FUNCTIONS)}")
    for function, folder_name in sorted(renamed.items()):
        if folder_name != function:
            print(f"check_azure: note: function folder {folder_name} is checked as {function} (its new name)")
        for binding in bindings[folder_name]:
            for value in binding.values():
                for setting in re.findall(r"%([^%]+)%", value) if isinstance(value, str) else []:
                    if setting not in settings:
                        problems.append(f"{function} references %{setting}%, which no app setting sets")
            connection = binding.get("connection")
            if connection and not any(n == connection or n.startswith(connection + "__") for n in settings):
                problems.append(f"{function}'s connection {connection} has no setting {connection} or {connection}__*")
            if binding.get("type") == "blobTrigger":
                if binding.get("source") != "EventGrid":
                    print(f"check_azure: note: {function}'s blobTrigger has no source EventGrid yet; "
                          "Flex Consumption runs blob triggers only with the Event Grid source")
                container = binding.get("path", "").split("/")[0]
                subscription = resources["Microsoft.EventGrid/systemTopics/eventSubscriptions"]["properties"]
                if subscription["filter"]["subjectBeginsWith"] != f"/blobServices/default/containers/{container}/":
                    problems.append(f"the Event Grid subscription does not filter on {function}'s container {container}")
                webhook = f"/runtime/webhooks/blobs?functionName=Host.Functions.{function}&"
                if webhook not in subscription["destination"]["properties"]["endpointUrl"] \
                        or webhook not in str(tree["variables"].get("blobEventsWebhook", {}).get("value")):
                    problems.append(f"the Event Grid subscription does not deliver to Host.Functions.{function} in both templates")
            if binding.get("type") == "eventHubTrigger" and f"AzureWebJobs.{function}.Disabled" not in settings:
                problems.append(f"{function} has no AzureWebJobs.{function}.Disabled setting for when no Event Hub is named")


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
    for error in tree_sitter_errors(open(bicep_path, encoding="utf-8").read()):
        problems.append(f"{bicep_path}: tree-sitter-bicep: syntax error at {error}")
    check_function_app(tree, template, pathlib.Path(json_path).parent / "function-app", problems)

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
    print(f"check_azure: {bicep_path} parses (pycep, tree-sitter-bicep); {len(from_json)} resources, {len(json_params)} parameters, "
          f"{len(json_outputs)} outputs match {json_path}; {len(expected_table)} columns equal `logrelay schema`")


if __name__ == "__main__":
    main()
