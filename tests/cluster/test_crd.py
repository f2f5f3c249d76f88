# mypy: disable-error-code="union-attr,arg-type,index,misc,operator"
"""The QuantBenchmark CRD on a real apiserver: it is served, and its schema and CEL rules are enforced."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.cluster.kube import wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "quantbench.dev_quantbenchmarks.yaml"
EXAMPLE = ROOT / "examples" / "bench.yaml"
GROUP, VERSION, PLURAL = "quantbench.dev", "v1alpha1", "quantbenchmarks"


def _install_crd(api: k8s.ApiClient) -> k8s.V1CustomResourceDefinition:
    assert CRD_FILE.exists(), f"{CRD_FILE} is missing: generate it with `make crds`"
    crd = yaml.safe_load(CRD_FILE.read_text())
    ext = k8s.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as e:
        if e.status != 409:
            raise
        current = ext.read_custom_resource_definition(crd["metadata"]["name"])
        crd["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(crd["metadata"]["name"], crd)

    def established() -> k8s.V1CustomResourceDefinition | None:
        got = ext.read_custom_resource_definition(crd["metadata"]["name"])
        conds = (got.status and got.status.conditions) or []
        return got if any(c.type == "Established" and c.status == "True" for c in conds) else None

    return wait_for(established, 30, "CRD Established")


@pytest.fixture(scope="module")
def crd(cluster_api: k8s.ApiClient) -> k8s.V1CustomResourceDefinition:
    return _install_crd(cluster_api)


def _example() -> dict[str, Any]:
    return dict(yaml.safe_load(EXAMPLE.read_text()))


def _baseline_rule_message() -> str:
    """The message of the CEL rule on spec that checks the baseline, as written in the CRD."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r for r in spec.get("x-kubernetes-validations", []) if "self.baseline" in r["rule"]]
    assert rules, "the CRD has no CEL rule on spec that checks self.baseline"
    return str(rules[0]["message"])


def test_crd_applies_and_is_established(crd: k8s.V1CustomResourceDefinition) -> None:
    assert crd.metadata.name == f"{PLURAL}.{GROUP}"
    assert [v.name for v in crd.spec.versions if v.served] == [VERSION]


def test_valid_benchmark_is_accepted(
    crd: k8s.V1CustomResourceDefinition, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    body = _example()
    created = k8s.CustomObjectsApi(cluster_api).create_namespaced_custom_object(
        GROUP, VERSION, cluster_namespace, PLURAL, body
    )
    assert created["spec"]["baseline"] == body["spec"]["baseline"]
    assert created["metadata"]["uid"]


def test_unknown_baseline_is_rejected_by_cel(
    crd: k8s.V1CustomResourceDefinition, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    body = copy.deepcopy(_example())
    body["spec"]["baseline"] = "int3-does-not-exist"
    with pytest.raises(ApiException) as err:
        k8s.CustomObjectsApi(cluster_api).create_namespaced_custom_object(
            GROUP, VERSION, cluster_namespace, PLURAL, body
        )
    assert err.value.status == 422
    message = _baseline_rule_message()
    assert "baseline" in message
    assert message in str(err.value.body), err.value.body
    assert "spec.baseline" in str(err.value.body)


def test_schema_rejects_unknown_precision(
    crd: k8s.V1CustomResourceDefinition, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    body = copy.deepcopy(_example())
    body["spec"]["variants"][0]["precision"] = "int3"
    with pytest.raises(ApiException) as err:
        k8s.CustomObjectsApi(cluster_api).create_namespaced_custom_object(
            GROUP, VERSION, cluster_namespace, PLURAL, body
        )
    assert err.value.status == 422
    assert "precision" in str(err.value.body)
