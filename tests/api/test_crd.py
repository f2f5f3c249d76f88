"""The committed CRD is generated from the models, is structural, and carries the rules and columns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from quantbench.api import crd as gen
from quantbench.api.v1alpha1 import CROSS_FIELD_RULES

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "quantbench.dev_quantbenchmarks.yaml"


def test_committed_crd_matches_the_models() -> None:
    assert CRD_FILE.read_text() == gen.render(), "crds/ drifted from the models: run `make crds` and commit"


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def _schema() -> dict[str, Any]:
    doc = yaml.safe_load(CRD_FILE.read_text())
    version = doc["spec"]["versions"][0]
    schema: dict[str, Any] = (
        version["openAPIV3Schema"] if "openAPIV3Schema" in version else version["schema"]["openAPIV3Schema"]
    )
    return schema


def test_schema_is_structural() -> None:
    for path, node in _nodes(_schema()):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "const", "title", "$defs"} & node.keys(), path
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{path} has no type"
        if node.get("type") == "object" and "properties" not in node:
            assert (
                "additionalProperties" in node
                or node.get("x-kubernetes-preserve-unknown-fields")
                or path in (".metadata",)
            ), path


def test_descriptions_for_kubectl_explain() -> None:
    spec = _schema()["properties"]["spec"]
    undocumented = [
        p for p, n in _nodes(spec) if p and not p.endswith(("[]", "{}")) and "description" not in n
    ]
    assert undocumented == []


def test_cross_field_rules_and_union_rules() -> None:
    spec = _schema()["properties"]["spec"]
    messages = {r["message"] for r in spec["x-kubernetes-validations"]}
    assert messages == {r.message for r in CROSS_FIELD_RULES.values()}
    workload = spec["properties"]["workloads"]["items"]
    assert workload["properties"]["type"]["enum"] == ["latency", "throughput", "serving", "capacity"]
    union_rules = {r["message"]: r["rule"] for r in workload["x-kubernetes-validations"]}
    assert (
        union_rules["type throughput needs batchSizes"] == "self.type != 'throughput' || has(self.batchSizes)"
    )
    assert "batchSizes applies only to type throughput" in union_rules
    assert union_rules["set exactly one of numPrompts and duration"].startswith("self.type != 'serving' || (")
    # A default that only one branch has would be applied to every branch by the apiserver.
    assert "default" not in workload["properties"]["inputLen"]
    rates = workload["properties"]["requestRates"]
    assert rates["items"]["x-kubernetes-int-or-string"] is True
    assert rates["x-kubernetes-list-type"] == "set"


def test_enums_defaults_and_bounds() -> None:
    spec = _schema()["properties"]["spec"]["properties"]
    precision = spec["variants"]["items"]["properties"]["precision"]
    assert precision["enum"] == ["bf16", "fp16", "fp8", "int8-w8a8", "awq-int4", "gptq-int4"]
    server = spec["server"]["properties"]
    assert server["maxModelLen"]["default"] == 4096
    assert server["gpuMemoryUtilization"] == {
        **server["gpuMemoryUtilization"],
        "minimum": 0.05,
        "exclusiveMinimum": True,
        "maximum": 0.99,
    }
    assert spec["placement"]["properties"]["gpus"]["maximum"] == 16


def test_names_columns_and_status_subresource() -> None:
    doc = yaml.safe_load(CRD_FILE.read_text())
    assert doc["metadata"]["name"] == "quantbenchmarks.quantbench.dev"
    assert doc["spec"]["names"]["shortNames"] == ["qb"]
    assert doc["spec"]["scope"] == "Namespaced"
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Model", "Variants", "Best", "Last Run", "Age"]
