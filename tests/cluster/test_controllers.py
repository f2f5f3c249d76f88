# mypy: disable-error-code="union-attr,arg-type,index,misc,operator"
"""kube-controller-manager and kwok together: Jobs finish when a test says so, owners garbage-collect
their children."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.cluster.kube import JOB_NAME_LABEL, NEVER_READY, SUCCEED, Cluster, wait_for

pytestmark = pytest.mark.cluster


def job(name: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"quantbench.dev/pool": "cpu"},
                    "containers": [{"name": "loadgen", "image": "quantbench/job:dev"}],
                },
            },
        },
    }


def test_job_completes_when_its_pod_is_told_to_succeed(
    cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    batch = k8s.BatchV1Api(cluster_api)
    batch.create_namespaced_job(cluster_namespace, job("bench-ok"))
    pods = cluster.finish_job(cluster_namespace, "bench-ok", "succeeded")
    assert len(pods) == 1
    done = cluster.wait_job_condition(cluster_namespace, "bench-ok", "Complete")
    assert done.status.succeeded == 1
    pod = k8s.CoreV1Api(cluster_api).read_namespaced_pod(pods[0], cluster_namespace)
    assert pod.spec.node_name in cluster.pools.pool("cpu").node_names()
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_job_pod_runs_until_a_test_decides(
    cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    batch = k8s.BatchV1Api(cluster_api)
    core = k8s.CoreV1Api(cluster_api)
    batch.create_namespaced_job(cluster_namespace, job("bench-hold"))

    def running() -> list[k8s.V1Pod]:
        pods = core.list_namespaced_pod(
            cluster_namespace, label_selector=f"{JOB_NAME_LABEL}=bench-hold"
        ).items
        return [p for p in pods if p.status.phase == "Running"]

    (pod,) = wait_for(running, 30, "job pod running")
    status = batch.read_namespaced_job_status("bench-hold", cluster_namespace).status
    assert status.active == 1 and not status.succeeded and not status.failed
    cluster.succeed_pod(cluster_namespace, pod.metadata.name)
    cluster.wait_job_condition(cluster_namespace, "bench-hold", "Complete")


def test_job_with_succeed_annotation_in_template_completes_by_itself(
    cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    k8s.BatchV1Api(cluster_api).create_namespaced_job(cluster_namespace, job("bench-auto", SUCCEED))
    cluster.wait_job_condition(cluster_namespace, "bench-auto", "Complete")


def test_failed_job_pod_reports_exit_code_and_reason(
    cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    k8s.BatchV1Api(cluster_api).create_namespaced_job(cluster_namespace, job("bench-oom"))
    (name,) = cluster.finish_job(cluster_namespace, "bench-oom", "failed", exit_code=137, reason="OOMKilled")
    failed = cluster.wait_job_condition(cluster_namespace, "bench-oom", "Failed")
    assert failed.status.failed == 1
    terminated = k8s.CoreV1Api(cluster_api).read_namespaced_pod(name, cluster_namespace).status
    state = terminated.container_statuses[0].state.terminated
    assert (terminated.phase, state.exit_code, state.reason) == ("Failed", 137, "OOMKilled")


def test_deleting_an_owner_garbage_collects_its_children(
    cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    core = k8s.CoreV1Api(cluster_api)
    batch = k8s.BatchV1Api(cluster_api)
    owner = core.create_namespaced_config_map(cluster_namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(
        cluster_namespace, {"metadata": {"name": "child", "ownerReferences": [ref]}}
    )
    child_job = job("child-job")
    child_job["metadata"]["ownerReferences"] = [ref]
    batch.create_namespaced_job(cluster_namespace, child_job)
    wait_for(
        lambda: (
            core.list_namespaced_pod(cluster_namespace, label_selector=f"{JOB_NAME_LABEL}=child-job").items
        ),
        30,
        "child job's pod",
    )

    core.delete_namespaced_config_map("owner", cluster_namespace, propagation_policy="Background")

    def gone() -> bool:
        remaining = []
        for read in (
            lambda: core.read_namespaced_config_map("child", cluster_namespace),
            lambda: batch.read_namespaced_job("child-job", cluster_namespace),
        ):
            try:
                remaining.append(read())
            except ApiException as e:
                if e.status != 404:
                    raise
        pods = core.list_namespaced_pod(cluster_namespace, label_selector=f"{JOB_NAME_LABEL}=child-job").items
        return not remaining and not pods

    wait_for(gone, 60, "garbage collection of the owner's children (config map, job and its pod)")


def test_pod_marked_never_ready_runs_but_is_not_ready(
    cluster: Cluster, cluster_api: k8s.ApiClient, cluster_namespace: str
) -> None:
    k8s.CoreV1Api(cluster_api).create_namespaced_pod(
        cluster_namespace,
        {
            "metadata": {"name": "stuck", "annotations": NEVER_READY},
            "spec": {
                "nodeSelector": {"quantbench.dev/pool": "cpu"},
                "containers": [{"name": "server", "image": "vllm/vllm-openai:latest"}],
            },
        },
    )
    pod = cluster.wait_pod_phase(cluster_namespace, "stuck", ("Running",))
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    assert ready.status == "False"
    assert not pod.status.container_statuses[0].ready
