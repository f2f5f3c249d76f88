"""Generate the QuantBenchmark CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema (draft 2020-12); Kubernetes wants a *structural* OpenAPI v3 schema: every node
typed, no $ref, no nullable unions, no oneOf with differing shapes. This module converts one into the other:
references are inlined, `X | None` becomes an optional X, a discriminated union becomes one object holding
every branch's properties plus CEL rules that keep each property to its own branch (the same strictness as
pydantic's `extra="forbid"`), `const` becomes a one-value enum and draft-2020 exclusive bounds become
OpenAPI 3.0 ones. Cross-field rules come from `CROSS_FIELD_RULES`.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from quantbench.api import v1alpha1 as api

Schema = dict[str, Any]

_DROP_KEYS = {"title", "examples", "discriminator", "$defs"}


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Inline a $ref, keeping the referring node's own keys (description, default) on top."""
    ref = node["$ref"]
    target = copy.deepcopy(defs[ref.rsplit("/", 1)[-1]])
    target.update({k: v for k, v in node.items() if k != "$ref"})
    return target


def _merge_union(branches: list[Schema], discriminator: str) -> Schema:
    """One object schema for a discriminated union, with CEL rules for branch-only properties.

    A default is kept only where every branch has the property with the same default: the apiserver
    applies defaults before it knows the branch, and must not add a property another branch forbids."""
    values: list[str] = []
    props: dict[str, Schema] = {}
    owners: dict[str, list[str]] = {}
    required_by: dict[str, set[str]] = {}
    for branch in branches:
        tag_schema = branch["properties"][discriminator]
        tag = tag_schema["enum"][0]
        values.append(tag)
        required_by[tag] = set(branch.get("required", []))
        for name, prop in branch["properties"].items():
            owners.setdefault(name, []).append(tag)
            if name != discriminator:
                props.setdefault(name, copy.deepcopy(prop))
                if props[name].get("default") != prop.get("default"):
                    props[name].pop("default", None)
    shared_required = set.intersection(*required_by.values())
    props[discriminator] = {
        "type": "string",
        "enum": values,
        "description": f"One of: {', '.join(values)}.",
    }
    rules: list[Schema] = []
    for name, tags in owners.items():
        if len(tags) < len(values):
            props[name].pop("default", None)
            allowed = " || ".join(f"self.{discriminator} == '{t}'" for t in tags)
            rules.append(
                {
                    "rule": f"!has(self.{name}) || {allowed}",
                    "message": f"{name} applies only to {discriminator} {' or '.join(tags)}",
                }
            )
    for branch, tag in zip(branches, values, strict=True):
        for own in branch.get("x-kubernetes-validations", []):
            rules.append({**own, "rule": f"self.{discriminator} != '{tag}' || ({own['rule']})"})
        for name in sorted(required_by[tag] - shared_required):
            rules.append(
                {
                    "rule": f"self.{discriminator} != '{tag}' || has(self.{name})",
                    "message": f"{discriminator} {tag} needs {name}",
                }
            )
    merged: Schema = {
        "type": "object",
        "properties": props,
        "required": sorted(shared_required | {discriminator}),
    }
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


def structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Convert one pydantic JSON Schema node (and its children) into a structural OpenAPI v3 node."""
    if "$ref" in node:
        node = _resolve(node, defs)
    node = dict(node)
    if "anyOf" in node:
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if node.get("default", 0) is None:
            node.pop("default")
        if len(branches) != 1:
            raise ValueError(f"cannot express a union of {len(branches)} types structurally: {branches}")
        branch = branches[0]
        if "$ref" in branch:
            branch = _resolve(branch, defs)
        node = {**branch, **node}
    if "oneOf" in node:
        disc = node["discriminator"]["propertyName"]
        branches = [_resolve(b, defs) if "$ref" in b else b for b in node.pop("oneOf")]
        branches = [structural(b, defs) for b in branches]
        merged = _merge_union(branches, disc)
        node = {**merged, **{k: v for k, v in node.items() if k in ("description",)}}
        return node
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
        node["minimum"] = node.pop("exclusiveMinimum")
        node["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node and not isinstance(node["exclusiveMaximum"], bool):
        node["maximum"] = node.pop("exclusiveMaximum")
        node["exclusiveMaximum"] = True
    for key in _DROP_KEYS:
        node.pop(key, None)
    if node.get("format") == "date-time":
        node.pop("default", None)
    if "properties" in node:
        node["properties"] = {k: structural(v, defs) for k, v in node["properties"].items()}
        node.setdefault("type", "object")
        if "additionalProperties" in node and node["additionalProperties"] is False:
            node.pop("additionalProperties")
        if not node.get("required"):
            node.pop("required", None)
    if "items" in node:
        node["items"] = structural(node["items"], defs)
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = structural(node["additionalProperties"], defs)
    if node.get("x-kubernetes-preserve-unknown-fields"):
        node.pop("additionalProperties", None)
        node["type"] = "object"
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
    elif "type" not in node:
        raise ValueError(f"schema node without a type is not structural: {node}")
    return node


def model_schema(model: type[api.ApiModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def spec_schema() -> Schema:
    schema = model_schema(api.QuantBenchmarkSpec)
    rules = [
        {k: v for k, v in r.to_wire().items() if k in ("rule", "message", "fieldPath")}
        for r in api.CROSS_FIELD_RULES.values()
    ]
    schema["x-kubernetes-validations"] = rules
    _add_item_rules(schema)
    return schema


def _add_item_rules(spec: Schema) -> None:
    """Rules on list items that JSON Schema cannot say: request rates > 0 when given as numbers."""
    workloads = spec["properties"]["workloads"]["items"]
    rates = workloads["properties"]["requestRates"]
    rates.setdefault("x-kubernetes-validations", []).append(
        {
            "rule": "self.all(r, type(r) == string || r > 0)",
            "message": "each request rate must be > 0 requests/s, or 'inf' for a closed loop",
        }
    )


PRINTER_COLUMNS: list[Schema] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
    {"name": "Variants", "type": "string", "jsonPath": ".status.variantNames"},
    {"name": "Best", "type": "string", "jsonPath": ".status.best"},
    {"name": "Last Run", "type": "date", "jsonPath": ".status.lastRunTime"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> Schema:
    """The whole CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": ["quantbench"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": (
                                "QuantBenchmark compares one model served by vLLM in several precisions "
                                "(BF16, FP8, AWQ-INT4, ...): latency, throughput, serving load and accuracy, "
                                "with verdicts against a baseline."
                            ),
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": model_schema(api.QuantBenchmarkStatus),
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `make crds` from operator/quantbench/api (pydantic models). Do not edit.\n"


def render() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=120)
