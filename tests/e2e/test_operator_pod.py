"""The first leg of the end-to-end run on the real node: the operator image `make images` built, installed with
`helm install` as a user would (the operator in a pod, under exactly the chart's RBAC), reaches the apiserver
through the `kubernetes` Service, reconciles a QuantBenchmark applied with kubectl, and Debian's Prometheus
scrapes its metrics port from inside the cluster network.

The image comes from build/images/operator.tar (`make images`); without it the test is skipped with that
reason. Serving and the benchmark Jobs on the real node follow once the CPU placement and the vLLM CPU
image are in (issue 12, item 4).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.cluster.kube import Cluster, wait_for
from tests.cluster.node.node import NODE_NAME, POOL, POOL_LABEL, NodeState, import_image
from tests.fixtures.node import NodePrometheus

REPO = Path(__file__).resolve().parents[2]
OPERATOR_ARCHIVE = REPO / "build" / "images" / "operator.tar"
CHART = REPO / "charts" / "quantbench"
EXAMPLE = REPO / "examples" / "bench.yaml"
HELM_POOL_KEY = POOL_LABEL.replace(".", "\\.")  # a --set path: the label's dots escaped

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.slow]


def _run(cluster: Cluster, *args: str, timeout: float = 180) -> str:
    proc = subprocess.run(
        list(args), env=cluster.env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


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
    if not OPERATOR_ARCHIVE.exists():
        pytest.skip(f"no operator image at {OPERATOR_ARCHIVE}: build it with `make images`")
    import_image(Path(real_node.containerd_socket), OPERATOR_ARCHIVE)
    release_ns = cluster.create_namespace(f"{cluster_namespace[:50]}-op")
    try:
        _run(
            cluster, "helm", "install", "qb", str(CHART), "--namespace", release_ns,
            "--set", "image.pullPolicy=Never", "--set-string", f"nodeSelector.{HELM_POOL_KEY}={POOL}",
            "--wait", "--timeout", "180s",
        )  # fmt: skip
        core = k8s.CoreV1Api(cluster_api)
        pod = wait_for(lambda: _ready_pod(core, release_ns), 180, "operator pod Ready")
        assert pod.spec.node_name == NODE_NAME
        assert pod.spec.service_account_name == "qb-quantbench"

        _run(cluster, "kubectl", "apply", "-n", cluster_namespace, "-f", str(EXAMPLE))
        custom = k8s.CustomObjectsApi(cluster_api)

        def phase() -> str | None:
            obj: dict[str, Any] = custom.get_namespaced_custom_object(
                "quantbench.dev", "v1alpha1", cluster_namespace, "quantbenchmarks", "llama31-8b"
            )
            return obj.get("status", {}).get("phase")

        assert wait_for(phase, 120, "a phase written by the operator pod") in ("Pending", "Running", "Failed")
        table = _run(cluster, "kubectl", "get", "qb", "-n", cluster_namespace)
        assert table.splitlines()[0].split()[:2] == ["NAME", "PHASE"]

        metrics_port = next(p.container_port for p in pod.spec.containers[0].ports if p.name == "metrics")
        prom = node_prometheus([f"{pod.status.pod_ip}:{metrics_port}"])
        [up] = prom.wait_for('up{job="quantbench"} == 1', timeout_s=60)
        assert up["value"][1] == "1"
    finally:
        subprocess.run(
            ["helm", "uninstall", "qb", "--namespace", release_ns, "--wait", "--timeout", "60s"],
            env=cluster.env(), capture_output=True, timeout=90, check=False,
        )  # fmt: skip
        cluster.delete_namespace(release_ns)
