# mypy: disable-error-code="union-attr,arg-type,index,misc,operator"
"""RBAC is enforced: a service account gets only what a Role grants it."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.cluster.kube import Cluster

pytestmark = pytest.mark.cluster


def test_service_account_without_role_is_forbidden(cluster: Cluster, cluster_namespace: str) -> None:
    with (
        cluster.service_account_client(cluster_namespace, "nobody") as api,
        pytest.raises(ApiException) as err,
    ):
        k8s.CoreV1Api(api).list_namespaced_config_map(cluster_namespace)
    assert err.value.status == 403
    assert f"system:serviceaccount:{cluster_namespace}:nobody" in str(err.value.body)


def test_role_grants_exactly_its_verbs(
    cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    rbac = k8s.RbacAuthorizationV1Api(cluster_api)
    rbac.create_namespaced_role(
        cluster_namespace,
        {
            "metadata": {"name": "results-writer"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "update", "patch"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        cluster_namespace,
        {
            "metadata": {"name": "results-writer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "results-writer"},
            "subjects": [{"kind": "ServiceAccount", "name": "writer", "namespace": cluster_namespace}],
        },
    )
    k8s.CoreV1Api(cluster_api).create_namespaced_config_map(
        cluster_namespace, {"metadata": {"name": "results"}}
    )
    with cluster.service_account_client(cluster_namespace, "writer") as api:
        core = k8s.CoreV1Api(api)
        core.patch_namespaced_config_map("results", cluster_namespace, {"data": {"result.json": "{}"}})
        assert core.read_namespaced_config_map("results", cluster_namespace).data == {"result.json": "{}"}
        with pytest.raises(ApiException) as err:
            core.list_namespaced_config_map(cluster_namespace)
        assert err.value.status == 403
        with pytest.raises(ApiException) as err:
            core.create_namespaced_config_map(cluster_namespace, {"metadata": {"name": "other"}})
        assert err.value.status == 403
