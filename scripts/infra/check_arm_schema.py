#!/usr/bin/env python3
"""Validates every resource of an ARM template against Azure's own resource schemas.

Usage: check_arm_schema.py SCHEMAS_DIR main.json [--self-test]

SCHEMAS_DIR is a snapshot of the public repository Azure/azure-resource-manager-schemas (its
`schemas/<apiVersion>/<Provider>.json` files). A resource `Microsoft.Web/sites` with apiVersion
`2024-11-01` validates against `#/resourceDefinitions/sites` of `schemas/2024-11-01/Microsoft.Web.json`
(child types join their segments with `_`: `storageAccounts_blobServices`). So the check catches:
a resource type or API version the schemas do not have, a property name the schema does not
declare, a value of the wrong type or outside an enum. ARM expressions (`[parameters('x')]`) pass
only where the schema offers its `expression` alternative, as Azure Resource Manager does.

Unknown properties are refused: the official schemas mostly omit `additionalProperties: false`, so
this script adds it to every object schema that declares `properties` and says nothing about other
properties itself (a schema that does say, e.g. a map of tags, keeps its own rule).

The template-level keys of a resource (`condition`, `dependsOn`, `scope`, `metadata`, `comments`,
`copy`) are ARM's, not the provider's, and are checked here against ARM's template grammar.
Nested deployments (`Microsoft.Resources/deployments`) with an inline template are checked by
walking into that template. Resource types the snapshot has no schema for are listed in
NO_SCHEMA_IN_SNAPSHOT with why; they are reported, never silently passed, and an entry no
resource uses fails the check (so the list cannot go stale).

--self-test also validates mutated copies of the template (an unknown property at three depths and
inside a nested deployment, an API version the schemas do not have, a wrong enum value) and fails
unless each copy is refused with the one expected problem.
"""

import copy
import json
import pathlib
import sys

from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SCHEMA_BASE = "https://schema.management.azure.com/schemas/"
TEMPLATE_KEYS = {"condition", "dependsOn", "scope", "metadata", "comments", "copy"}

# Types whose provider has no schema in the snapshot (its README lists the providers it holds).
NO_SCHEMA_IN_SNAPSHOT = {
    "Microsoft.EventGrid/systemTopics":
        "Microsoft.EventGrid is not in the snapshot; shape from Microsoft Learn, "
        "'Tutorial: Trigger Azure Functions on blob containers using an event subscription'",
    "Microsoft.EventGrid/systemTopics/eventSubscriptions":
        "Microsoft.EventGrid is not in the snapshot; shape from Microsoft Learn, "
        "'Tutorial: Trigger Azure Functions on blob containers using an event subscription'",
    "Microsoft.Resources/deployments":
        "Microsoft.Resources is not in the snapshot; the resources of its inline template are validated",
}

# Values Azure accepts beyond a schema's enum: (type, JSON path in the resource, value, source).
ACCEPTED_BEYOND_SCHEMA = [
    ("Microsoft.Insights/dataCollectionRules", ("kind",), "Direct",
     "Microsoft Learn, 'Structure of a data collection rule in Azure Monitor': kind Direct gives the "
     "DCR its own logs ingestion endpoint; the 2024-03-11 schema's enum lists only Linux and Windows"),
    ("Microsoft.Insights/dataCollectionRules", ("properties", "dataFlows", 0, "streams"), ["[parameters('streamName')]"],
     "Microsoft Learn, 'Structure of a data collection rule in Azure Monitor': a flow's streams may be the "
     "Custom- streams the DCR declares; the schema's enum lists only the Microsoft- streams and no expression"),
]


def strict(node, under_all_of=False):
    """Adds additionalProperties: false to object schemas that declare properties."""
    if isinstance(node, dict):
        if ("properties" in node and "additionalProperties" not in node
                and "patternProperties" not in node and not under_all_of):
            node["additionalProperties"] = False
        for key, value in node.items():
            if key in ("enum", "default", "example", "examples"):
                continue
            if key == "properties" and isinstance(value, dict):
                for item in value.values():
                    strict(item)
            else:
                strict(value, under_all_of=(key == "allOf"))
    elif isinstance(node, list):
        for item in node:
            strict(item, under_all_of)
    return node


class Schemas:
    def __init__(self, root):
        self.root = pathlib.Path(root) / "schemas"
        if not self.root.is_dir():
            sys.exit(f"check_arm_schema: {self.root} is not a schema snapshot (see ../shared/arm-schemas/README.md)")
        self.loaded = {}
        self.registry = Registry(retrieve=self.retrieve)

    def contents(self, relative):
        if relative not in self.loaded:
            path = self.root / relative
            if not path.is_file():
                return None
            self.loaded[relative] = strict(json.loads(path.read_text(encoding="utf-8")))
        return self.loaded[relative]

    def retrieve(self, uri):
        if not uri.startswith(SCHEMA_BASE):
            raise LookupError(f"{uri} is outside the snapshot")
        contents = self.contents(uri[len(SCHEMA_BASE):].split("#")[0])
        if contents is None:
            raise LookupError(f"{uri} is not in the snapshot")
        return Resource.from_contents(contents, default_specification=DRAFT4)

    def definition(self, kind, api_version):
        """The schema URI of a resource type at an API version, or an error message."""
        provider, _, rest = kind.partition("/")
        relative = f"{api_version}/{provider}.json"
        document = self.contents(relative)
        if document is None:
            versions = sorted(p.parent.name for p in self.root.glob(f"*/{provider}.json"))
            if not versions:
                return None, f"no schema for provider {provider} in the snapshot"
            return None, f"API version {api_version} of {provider} is not in the schemas (have: {', '.join(versions[-6:])} ...)"
        name = rest.replace("/", "_")
        for section in ("resourceDefinitions", "extension_resourceDefinitions"):
            if name in document.get(section, {}):
                return f"{SCHEMA_BASE}{relative}#/{section}/{name}", None
        return None, f"{kind} has no definition in {relative}"


def template_level_problems(resource):
    problems = []
    condition = resource.get("condition", True)
    if not isinstance(condition, bool) and not is_expression(condition):
        problems.append(f"condition {condition!r} is neither a boolean nor an expression")
    depends = resource.get("dependsOn", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        problems.append("dependsOn is not a list of strings")
    for key in ("scope", "comments"):
        if key in resource and not isinstance(resource[key], str):
            problems.append(f"{key} is not a string")
    if "metadata" in resource and not isinstance(resource["metadata"], dict):
        problems.append("metadata is not an object")
    return problems


def is_expression(value):
    return isinstance(value, str) and value.startswith("[") and value.endswith("]") and not value.startswith("[[")


def own_name(kind, name, variables):
    """A child resource declared at the top level is named `parent/child`, usually as
    `[format('{0}/{1}', ..., 'child')]`; the schema's name rules (length, characters) are the
    child's own name's, so check the last segment when it is a literal or a literal variable."""
    if kind.count("/") < 2 or not is_expression(name):
        return name
    body = name[1:-1]
    if not body.startswith("format('{0}/") or not body.endswith(")"):
        return name
    last = body[:-1].rsplit(", ", 1)[-1]
    if len(last) >= 2 and last[0] == last[-1] == "'" and "'" not in last[1:-1]:
        return last[1:-1]
    if last.startswith("variables('") and last.endswith("')"):
        value = variables.get(last[len("variables('"):-2])
        if isinstance(value, str) and not is_expression(value):
            return value
    return name


def leaves(error):
    """The errors that explain a failure: inside a oneOf, those of the branch that got furthest
    into the instance (the object branch rather than the expression branch)."""
    if not error.context:
        return [error]
    branches = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    best = max(branches.values(), key=lambda subs: max(len(e.absolute_path) for e in subs))
    return [leaf for sub in best for leaf in leaves(sub)]


def accepted(kind, leaf):
    """The ACCEPTED_BEYOND_SCHEMA entry that covers this error, if any."""
    path = tuple(leaf.absolute_path)
    for entry_kind, entry_path, value, _ in ACCEPTED_BEYOND_SCHEMA:
        if entry_kind != kind or path[:len(entry_path)] != entry_path:
            continue
        inner = value
        try:
            for step in path[len(entry_path):]:
                inner = inner[step]
        except (KeyError, IndexError, TypeError):
            continue
        if inner == leaf.instance:
            return (entry_kind, entry_path)
    return None


def path_of(leaf):
    return "/".join(str(p) for p in leaf.absolute_path) or "(resource)"


def schema_errors(validator, body):
    return [leaf for failure in validator.iter_errors(body) for leaf in leaves(failure)]


def validate(schemas, template, label="template"):
    """Returns (problems, report lines, types without a schema seen, acceptances used)."""
    problems, lines, unvalidated, acceptances = [], [], set(), set()
    for index, resource in enumerate(template.get("resources", [])):
        kind, api_version = resource.get("type", "?"), resource.get("apiVersion", "?")
        at = f"{label} resources[{index}] {kind}@{api_version}"
        problems += [f"{at}: {p}" for p in template_level_problems(resource)]
        if kind == "Microsoft.Resources/deployments":
            inner = resource.get("properties", {}).get("template")
            if isinstance(inner, dict):
                sub = validate(schemas, inner, f"{label} > {resource.get('name')}")
                problems += sub[0]
                lines += sub[1]
                unvalidated |= sub[2]
                acceptances |= sub[3]
        if kind in NO_SCHEMA_IN_SNAPSHOT:
            unvalidated.add(kind)
            lines.append(f"{at}: not schema-validated ({NO_SCHEMA_IN_SNAPSHOT[kind]})")
            continue
        uri, error = schemas.definition(kind, api_version)
        if error:
            problems.append(f"{at}: {error}")
            continue
        body = {key: value for key, value in resource.items() if key not in TEMPLATE_KEYS}
        validator = Draft4Validator({"$ref": uri}, registry=schemas.registry)
        found = schema_errors(validator, body)
        own = own_name(kind, body.get("name"), template.get("variables", {}))
        if own != body.get("name") and any(tuple(e.absolute_path) == ("name",) for e in found):
            # A child declared at the top level: some schemas want `parent/child`, others the
            # child's own name; the name is wrong only when both fail.
            if not any(tuple(e.absolute_path) == ("name",) for e in schema_errors(validator, dict(body, name=own))):
                found = [e for e in found if tuple(e.absolute_path) != ("name",)]
        count = 0
        for leaf in sorted(found, key=lambda e: list(map(str, e.absolute_path))):
            use = accepted(kind, leaf)
            if use:
                acceptances.add(use)
                continue
            count += 1
            problems.append(f"{at}: {path_of(leaf)}: {leaf.message}")
        if not count:
            lines.append(f"{at}: valid")
    return problems, lines, unvalidated, acceptances


def check(schemas, template):
    problems, lines, unvalidated, acceptances = validate(schemas, template)
    for kind in sorted(set(NO_SCHEMA_IN_SNAPSHOT) - unvalidated):
        if kind != "Microsoft.Resources/deployments":
            problems.append(f"NO_SCHEMA_IN_SNAPSHOT lists {kind}, which no resource uses: remove it")
    for kind, path, value, _ in ACCEPTED_BEYOND_SCHEMA:
        if (kind, path) not in acceptances:
            problems.append(f"ACCEPTED_BEYOND_SCHEMA lists {kind} {'/'.join(map(str, path))}={value!r}, which the schema no longer refuses or no resource uses: remove it")
    return problems, lines


def find(template, kind):
    for resource in template["resources"]:
        if resource["type"] == kind:
            return resource
    raise SystemExit(f"check_arm_schema: self-test needs a {kind} resource")


def mutations(template):
    """Copies of the template, each with one error the schemas must refuse."""
    def mutate(name, expected, change):
        mutated = copy.deepcopy(template)
        change(mutated)
        return name, expected, mutated
    yield mutate("unknown property in a Function App's properties", "'unknownProperty' was unexpected",
                 lambda t: find(t, "Microsoft.Web/sites")["properties"].update(unknownProperty=True))
    yield mutate("unknown property deep in functionAppConfig.scaleAndConcurrency (misspelt instanceMemoryMB)",
                 "'instanceMemoryMb' was unexpected",
                 lambda t: find(t, "Microsoft.Web/sites")["properties"]["functionAppConfig"]["scaleAndConcurrency"].update(instanceMemoryMb=2048))
    yield mutate("unknown top-level resource property on the DCR", "'unknownProperty' was unexpected",
                 lambda t: find(t, "Microsoft.Insights/dataCollectionRules").update(unknownProperty=True))
    yield mutate("API version the schemas do not have", "API version 2023-05-02 of Microsoft.Storage is not in the schemas",
                 lambda t: find(t, "Microsoft.Storage/storageAccounts").update(apiVersion="2023-05-02"))
    def nest(t):
        inner = copy.deepcopy(find(t, "Microsoft.OperationalInsights/workspaces"))
        inner["properties"]["unknownProperty"] = True
        t["resources"].append({"type": "Microsoft.Resources/deployments", "apiVersion": "2022-09-01", "name": "nested",
                               "properties": {"mode": "Incremental", "template": {"resources": [inner]}}})
    yield mutate("unknown property inside a nested deployment's inline template", "'unknownProperty' was unexpected", nest)
    yield mutate("value outside an enum (functionAppConfig runtime name)", "'rust' is not one of",
                 lambda t: find(t, "Microsoft.Web/sites")["properties"]["functionAppConfig"]["runtime"].update(name="rust"))


def main():
    args = [a for a in sys.argv[1:] if a != "--self-test"]
    if len(args) != 2:
        sys.exit("usage: check_arm_schema.py SCHEMAS_DIR main.json [--self-test]")
    schemas = Schemas(args[0])
    template = json.loads(pathlib.Path(args[1]).read_text(encoding="utf-8"))
    problems, lines = check(schemas, template)
    for line in lines:
        print(f"check_arm_schema: {line}")
    if problems:
        for problem in problems:
            print(f"check_arm_schema: {problem}", file=sys.stderr)
        sys.exit(1)
    if "--self-test" in sys.argv:
        for name, expected, mutated in mutations(template):
            refused, _ = check(schemas, mutated)
            if len(refused) != 1 or expected not in refused[0]:
                print(f"check_arm_schema: self-test: a template with an {name} gave {refused!r}, "
                      f"not the one problem {expected!r}", file=sys.stderr)
                sys.exit(1)
            print(f"check_arm_schema: self-test: refused {name}: {refused[0]}")
    validated = sum(1 for line in lines if line.endswith(": valid"))
    print(f"check_arm_schema: {args[1]}: {validated} resources valid against {args[0]}, "
          f"{len(lines) - validated} without a schema in the snapshot")


if __name__ == "__main__":
    main()
