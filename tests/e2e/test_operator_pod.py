"""The operator alone on the real node: the operator image `make images` built, installed with `helm install`
as a user would (the operator in a pod, under exactly the chart's RBAC), reaches the apiserver through the
`kubernetes` Service, reconciles the GPU example applied with kubectl (its pools do not exist here, so the run
waits or fails with the reason), and Debian's Prometheus scrapes its metrics port from the pod's address.

The image comes from build/images/operator.tar (`make images`); without it the test is skipped with that
reason. The whole run in real pods is tests/e2e/test_benchmark_on_node.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.cluster.kube import Cluster, wait_for
from tests.cluster.node.node import NODE_NAME, NodeState
from tests.e2e.chart import installed_chart, run
from tests.fixtures.images import archive_path, build_images, load_images
from tests.fixtures.node import NodePrometheus

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "bench.yaml"

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.slow]


def _ready_pod(core: k8s.CoreV1Api, ns: str) -> k8s.V1Pod | None:
    for pod in core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=quantbench").items:
        conditions = (pod.status and pod.status.conditions) or []
        if any(c.type == "Ready" and c.status == "True" for c in conditions):
            return pod
    return None


def test_helm_installed_operator_runs_on_the_real_node_and_reconciles(
    real_node: NodeState,
    cluster: Cluster,
    cluster_api: k8s.ApiClient,
    cluster_namespace: str,
    node_prometheus: Callable[[list[str]], NodePrometheus],
) -> None:
    if not archive_path("operator").exists():
        pytest.skip(f"no operator image at {archive_path('operator')}: build it with `make images`")
    build_images(["operator"])  # rebuilds it only if its inputs changed since `make images`
    load_images(Path(real_node.containerd_socket), ["operator"])
    with installed_chart(cluster, f"{cluster_namespace[:50]}-op") as release_ns:
        core = k8s.CoreV1Api(cluster_api)
        pod = wait_for(lambda: _ready_pod(core, release_ns), 180, "operator pod Ready")
        assert pod.spec.node_name == NODE_NAME
        assert pod.spec.service_account_name == "qb-quantbench"

        run(cluster, "kubectl", "apply", "-n", cluster_namespace, "-f", str(EXAMPLE))
        custom = k8s.CustomObjectsApi(cluster_api)

        def phase() -> str | None:
            obj: dict[str, Any] = custom.get_namespaced_custom_object(
                "quantbench.dev", "v1alpha1", cluster_namespace, "quantbenchmarks", "llama31-8b"
            )
            return obj.get("status", {}).get("phase")

        assert wait_for(phase, 120, "a phase written by the operator pod") in ("Pending", "Running", "Failed")
        table = run(cluster, "kubectl", "get", "qb", "-n", cluster_namespace)
        assert table.splitlines()[0].split()[:2] == ["NAME", "PHASE"]

        metrics_port = next(p.container_port for p in pod.spec.containers[0].ports if p.name == "metrics")
        prom = node_prometheus([f"{pod.status.pod_ip}:{metrics_port}"])
        [up] = prom.wait_for('up{job="quantbench"} == 1', timeout_s=60)
        assert up["value"][1] == "1"
