"""The real node: registered Ready in its pool with no route out, pods run and pass readiness probes, reach
each other through Services by DNS name, reach the apiserver as their service account; `kubectl logs` and
`kubectl exec` work, a Prometheus in the node scrapes a pod through its Service, and an image the node does
not hold fails to pull there with the reason."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.cluster.kube import Cluster, wait_for
from tests.cluster.node.node import (
    NODE_IP,
    NODE_NAME,
    POOL,
    POOL_LABEL,
    TOOLBOX_IMAGE,
    NodeState,
)
from tests.fixtures.node import NodePrometheus

pytestmark = [pytest.mark.cluster, pytest.mark.node]


def toolbox_pod(name: str, args: list[str], **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": TOOLBOX_IMAGE,
        "imagePullPolicy": "Never",
        "args": args,
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "nodeSelector": {POOL_LABEL: POOL},
            "restartPolicy": spec.pop("restartPolicy", "Never"),
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
            **spec,
        },
    }


def pod_phase(
    core: k8s.CoreV1Api, ns: str, name: str, phases: tuple[str, ...], timeout: float = 90
) -> k8s.V1Pod:
    def current() -> k8s.V1Pod | None:
        pod = core.read_namespaced_pod(name, ns)
        return pod if pod.status and pod.status.phase in phases else None

    return wait_for(current, timeout, f"pod {ns}/{name} in {'/'.join(phases)}")


def finished_log(core: k8s.CoreV1Api, ns: str, name: str, timeout: float = 120) -> str:
    """Wait for the pod to finish; its log, with a clear failure when it did not succeed."""
    pod = pod_phase(core, ns, name, ("Succeeded", "Failed"), timeout)
    log: str = core.read_namespaced_pod_log(name, ns)
    assert pod.status.phase == "Succeeded", f"pod {name} failed; its log:\n{log}"
    return log


def test_node_is_ready_in_the_cpu_pool_beside_the_kwok_pools(
    real_node: NodeState, cluster_api: k8s.ApiClient, cluster: Cluster
) -> None:
    core = k8s.CoreV1Api(cluster_api)
    node = core.read_node(NODE_NAME)
    assert node.metadata.labels[POOL_LABEL] == POOL
    assert {(a.type, a.address) for a in node.status.addresses} >= {("InternalIP", NODE_IP)}
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
    assert node.status.node_info.container_runtime_version.startswith("containerd://")
    kwok = core.list_node(label_selector="type=kwok").items
    assert len(kwok) == cluster.pools.node_count()
    print(f"\n[node] start -> Ready {real_node.ready_seconds:.1f} s; steps: {real_node.ready_after_seconds}")


def test_node_namespace_has_no_route_out(real_node: NodeState) -> None:
    routes = subprocess.run(
        ["ip", "-n", real_node.netns, "route", "show", "default"], capture_output=True, text=True, check=True
    )
    assert routes.stdout.strip() == ""


def test_pod_becomes_ready_through_its_readiness_probe(
    real_node: NodeState, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    core = k8s.CoreV1Api(cluster_api)
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}
    pod = toolbox_pod("web", ["serve", ":8080", "hello", "2s"], container={"readinessProbe": probe})
    core.create_namespaced_pod(cluster_namespace, pod)

    def ready() -> k8s.V1Pod | None:
        p = core.read_namespaced_pod("web", cluster_namespace)
        conditions = (p.status and p.status.conditions) or []
        return p if any(c.type == "Ready" and c.status == "True" for c in conditions) else None

    p = wait_for(ready, 90, "pod web Ready")
    assert p.spec.node_name == NODE_NAME
    assert p.status.pod_ip.startswith("10.244.0.")
    events = core.list_namespaced_event(cluster_namespace, field_selector="involvedObject.name=web").items
    assert any(e.reason == "Unhealthy" for e in events), "the probe should fail before the server is ready"


def test_pod_reaches_another_through_a_service_by_dns_name(
    real_node: NodeState, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    core = k8s.CoreV1Api(cluster_api)
    ns = cluster_namespace
    core.create_namespaced_pod(ns, toolbox_pod("server", ["serve", ":8080", "hello from server"]))
    core.create_namespaced_service(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    core.create_namespaced_pod(ns, toolbox_pod("client", ["get", f"http://web.{ns}.svc/"]))
    assert "hello from server" in finished_log(core, ns, "client")
    core.create_namespaced_pod(ns, toolbox_pod("resolver", ["lookup", f"web.{ns}.svc.cluster.local"]))
    service_ip = core.read_namespaced_service("web", ns).spec.cluster_ip
    assert service_ip in finished_log(core, ns, "resolver")


def test_pod_lists_configmaps_through_the_apiserver_as_its_service_account(
    real_node: NodeState, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    core, rbac = k8s.CoreV1Api(cluster_api), k8s.RbacAuthorizationV1Api(cluster_api)
    ns = cluster_namespace
    core.create_namespaced_config_map(ns, {"metadata": {"name": "marker-7f3a"}, "data": {"k": "v"}})
    core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "read-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
    )
    core.create_namespaced_pod(
        ns, toolbox_pod("lister", ["kube-list", "configmaps"], serviceAccountName="reader")
    )
    assert "marker-7f3a" in finished_log(core, ns, "lister").split()


def test_kubectl_logs_returns_the_output_of_a_pod(
    real_node: NodeState, cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    core = k8s.CoreV1Api(cluster_api)
    core.create_namespaced_pod(
        cluster_namespace, toolbox_pod("printer", ["print", "first line", "second line"])
    )
    pod_phase(core, cluster_namespace, "printer", ("Succeeded",))
    out = subprocess.run(
        ["kubectl", "logs", "-n", cluster_namespace, "printer"],
        env=cluster.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "first line\nsecond line\n"


def test_prometheus_in_the_node_scrapes_a_pod_through_its_service(
    real_node: NodeState,
    cluster_api: k8s.ApiClient,
    cluster_namespace: str,
    node_prometheus: Callable[[list[str]], NodePrometheus],
) -> None:
    core = k8s.CoreV1Api(cluster_api)
    ns = cluster_namespace
    exporter = toolbox_pod("exporter", ["serve", ":9100", "quantbench_node_test_gauge 42\n"])
    exporter["spec"]["restartPolicy"] = "Always"
    core.create_namespaced_pod(ns, exporter)
    core.create_namespaced_service(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "metrics"},
            "spec": {"selector": {"app": "exporter"}, "ports": [{"port": 9090, "targetPort": 9100}]},
        },
    )
    pod_phase(core, ns, "exporter", ("Running",))
    service_ip = core.read_namespaced_service("metrics", ns).spec.cluster_ip
    prom = node_prometheus([f"{service_ip}:9090"])
    [sample] = prom.wait_for("quantbench_node_test_gauge", timeout_s=60)
    assert sample["value"][1] == "42"


def test_kubectl_exec_runs_a_command_in_a_pod(
    real_node: NodeState, cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    core = k8s.CoreV1Api(cluster_api)
    core.create_namespaced_pod(cluster_namespace, toolbox_pod("sleeper", ["sleep"]))
    pod_phase(core, cluster_namespace, "sleeper", ("Running",))
    out = subprocess.run(
        ["kubectl", "exec", "-n", cluster_namespace, "sleeper", "--", "/toolbox", "print", "inside"],
        env=cluster.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "inside\n"


def test_an_image_missing_from_the_node_fails_to_pull_with_the_reason(
    real_node: NodeState, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    """No registry is reachable from the node (it has no route out): the pull fails on the node, and the
    pod says so, as a server whose image does not exist would."""
    core = k8s.CoreV1Api(cluster_api)
    pod = toolbox_pod("absent", ["print", "x"])
    pod["spec"]["containers"][0] |= {"image": "quantbench.test/absent:1", "imagePullPolicy": "IfNotPresent"}
    core.create_namespaced_pod(cluster_namespace, pod)

    def waiting() -> k8s.V1ContainerStateWaiting | None:
        p = core.read_namespaced_pod("absent", cluster_namespace)
        for status in (p.status and p.status.container_statuses) or []:
            w = status.state and status.state.waiting
            if w and w.reason in ("ErrImagePull", "ImagePullBackOff"):
                return w
        return None

    state = wait_for(waiting, 90, "pod absent failing to pull")
    assert "quantbench.test/absent:1" in (state.message or "")
