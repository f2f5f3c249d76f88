"""The same bad-spec table as test_validation.py, sent to a real apiserver with the generated CRD: every bad
spec is rejected (schema or CEL) with a message that names the field and carries the same hint words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from quantbench.api import v1alpha1 as api
from tests.api.bad_specs import BAD_SPECS, BadSpec, good_spec
from tests.cluster.kube import wait_for

pytestmark = pytest.mark.cluster

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "quantbench.dev_quantbenchmarks.yaml"


@pytest.fixture(scope="module")
def objects(cluster_api: k8s.ApiClient) -> k8s.CustomObjectsApi:
    crd = yaml.safe_load(CRD_FILE.read_text())
    ext = k8s.ApiextensionsV1Api(cluster_api)
    name = crd["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(crd)
    except ApiException as e:
        if e.status != 409:
            raise
        crd["metadata"]["resourceVersion"] = ext.read_custom_resource_definition(
            name
        ).metadata.resource_version
        ext.replace_custom_resource_definition(name, crd)

    def established() -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    wait_for(established, 30, "CRD Established")
    return k8s.CustomObjectsApi(cluster_api)


def _create(objects: k8s.CustomObjectsApi, namespace: str, doc: dict[str, object]) -> None:
    objects.create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, doc, field_validation="Strict"
    )


def test_good_spec_is_accepted(objects: k8s.CustomObjectsApi, cluster_namespace: str) -> None:
    _create(objects, cluster_namespace, good_spec())
    stored = objects.get_namespaced_custom_object(
        api.GROUP, api.VERSION, cluster_namespace, api.PLURAL, "bad-spec"
    )
    # Defaults from the models are applied by the apiserver, and the stored spec still validates in Python.
    assert stored["spec"]["accuracy"]["maxGenTokens"] == 256
    api.QuantBenchmarkSpec.model_validate(stored["spec"])


@pytest.mark.parametrize("bad", BAD_SPECS, ids=lambda b: b.id)
def test_apiserver_rejects_bad_spec(
    objects: k8s.CustomObjectsApi, cluster_namespace: str, bad: BadSpec
) -> None:
    doc = bad.doc()
    doc["metadata"]["name"] = bad.id
    with pytest.raises(ApiException) as info:
        _create(objects, cluster_namespace, doc)
    assert info.value.status in (400, 422), info.value.body
    message = json.loads(info.value.body)["message"]
    assert bad.field in message, f"apiserver message does not name {bad.field!r}: {message}"
    for word in bad.words:
        assert word.lower() in message.lower(), f"{word!r} missing from: {message}"
