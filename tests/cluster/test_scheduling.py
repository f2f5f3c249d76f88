# mypy: disable-error-code="union-attr,arg-type,index,misc,operator"
"""The real scheduler places pods on the simulated GPU pools by node selector, toleration and capacity."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from tests.cluster.kube import Cluster, wait_for

pytestmark = pytest.mark.cluster


def gpu_pod(cluster: Cluster, name: str, pool: str, gpus: int) -> dict[str, Any]:
    pools = cluster.pools
    taint = pools.gpu_taint
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {pools.pool_label: pool},
            "tolerations": [
                {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}
            ],
            "containers": [
                {
                    "name": "server",
                    "image": "vllm/vllm-openai:latest",
                    "resources": {"limits": {pools.gpu_resource: str(gpus)}},
                }
            ],
        },
    }


def test_every_pool_has_ready_kwok_nodes(cluster: Cluster, cluster_api: k8s.ApiClient) -> None:
    nodes = k8s.CoreV1Api(cluster_api).list_node(label_selector="type=kwok").items
    by_pool: dict[str, list[k8s.V1Node]] = {}
    for n in nodes:
        by_pool.setdefault(n.metadata.labels[cluster.pools.pool_label], []).append(n)
    assert {p.name: p.nodes for p in cluster.pools.pools} == {k: len(v) for k, v in by_pool.items()}
    for pool in cluster.pools.pools:
        for node in by_pool[pool.name]:
            assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
            assert node.status.allocatable.get(cluster.pools.gpu_resource, "0") == str(pool.gpus)
            assert node.metadata.labels["node.kubernetes.io/instance-type"] == pool.instance_type
            if pool.gpus:
                assert node.metadata.labels["nvidia.com/gpu.product"] == pool.gpu_product
                assert [t.key for t in node.spec.taints or []] == [cluster.pools.gpu_taint.key]


def test_gpu_pod_lands_on_h100_node_and_runs(
    cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    core = k8s.CoreV1Api(cluster_api)
    core.create_namespaced_pod(cluster_namespace, gpu_pod(cluster, "h100-server", "h100", 1))
    pod = cluster.wait_pod_phase(cluster_namespace, "h100-server", ("Running",))
    assert pod.spec.node_name in cluster.pools.pool("h100").node_names()
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    assert pod.status.pod_ip


def test_gpu_pod_without_toleration_is_not_placed_on_gpu_nodes(
    cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    body = gpu_pod(cluster, "no-toleration", "h100", 1)
    del body["spec"]["tolerations"]
    k8s.CoreV1Api(cluster_api).create_namespaced_pod(cluster_namespace, body)
    cond = _wait_unschedulable(cluster_api, cluster_namespace, "no-toleration")
    assert "untolerated taint" in cond.message


def test_pod_asking_for_more_gpus_than_any_node_stays_pending(
    cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    too_many = cluster.pools.max_gpus_per_node() + 1
    k8s.CoreV1Api(cluster_api).create_namespaced_pod(
        cluster_namespace, gpu_pod(cluster, "greedy", "h100", too_many)
    )
    cond = _wait_unschedulable(cluster_api, cluster_namespace, "greedy")
    assert f"Insufficient {cluster.pools.gpu_resource}" in cond.message
    pod = k8s.CoreV1Api(cluster_api).read_namespaced_pod("greedy", cluster_namespace)
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def _wait_unschedulable(api: k8s.ApiClient, namespace: str, name: str) -> k8s.V1PodCondition:
    core = k8s.CoreV1Api(api)

    def condition() -> k8s.V1PodCondition | None:
        pod = core.read_namespaced_pod(name, namespace)
        for c in pod.status.conditions or []:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                return c
        return None

    return wait_for(condition, 30, f"pod {namespace}/{name} marked Unschedulable")
