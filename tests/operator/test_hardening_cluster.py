"""The operator under what production clusters do to it, on the real control plane: children the API server
refuses, Jobs that cannot progress, runs past their deadline, status writes that fail, names that collide.

Refusals come from the apiserver itself: its own validation (an affinity the CRD passes through as
written), a ResourceQuota and a ValidatingAdmissionPolicy.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from quantbench.driver import RUN_NOW_ANNOTATION
from quantbench.kube import ApiError, Kube
from quantbench.naming import probe_name
from quantbench_loadgen.specs import MAX_ACCURACY_QUESTIONS
from tests.cluster.kube import wait_for
from tests.cluster.pools import build_node, load_pools
from tests.operator import factories
from tests.operator.conftest import OperatorFactory
from tests.operator.harness import (
    OPERATOR_NS,
    Bench,
    admission_policy,
    install_operator_rbac,
    label_namespace,
    policy_active,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(240)]

SMALL_WORKLOADS = [{"name": "latency", "type": "latency", "inputLen": 512, "outputLen": 128}]
# nodeAffinity with operator In and no values: the CRD passes affinity through, the Deployment's own
# validation refuses it (HTTP 422).
BAD_AFFINITY = {
    "nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "quantbench.dev/pool", "operator": "In"}]}]
        }
    }
}


def spec_of(*variants: dict[str, Any], **kw: Any) -> dict[str, Any]:
    kw.setdefault("workloads", SMALL_WORKLOADS)
    return factories.spec_dict(variants=list(variants), **kw)


# ----------------------------------------------------------------------------------- item 1: refusals


def test_a_child_the_api_refuses_fails_its_variant_with_the_api_message(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    spec = spec_of(
        {"name": "bf16", "precision": "bf16"},
        {"name": "bad", "precision": "bf16", "placement": {"affinity": BAD_AFFINITY}},
    )
    op = start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    bad = bench.wait_variant("bad", ("Failed",), timeout=30)
    assert bad["reason"] == "Rejected" and "HTTP 422" in bad["message"], bad
    assert "Required value" in bad["message"] and "affinity" in bad["message"], bad
    event = bench.wait_event("Rejected")
    assert "variant bad" in event["message"] and "HTTP 422" in event["message"]
    # The healthy variant goes on to the end; the refused one was decided once, not retried in a loop.
    bench.play_variant(run, "bf16", spec)
    status = bench.wait_phase(("PartiallySucceeded",))
    rows = {r["variant"]: r for r in status["summary"]["variants"]}
    assert rows["bf16"]["phase"] == "Succeeded" and rows["bad"]["phase"] == "Failed"
    assert "Traceback" not in op.logs() and len([e for e in bench.events() if e["reason"] == "Rejected"]) == 1
    bench.wait_released()


def test_a_quota_refusal_fails_one_variant_not_the_run(bench: Bench, start_operator: OperatorFactory) -> None:
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "one-service", "namespace": bench.ns},
        "spec": {"hard": {"services": "1"}},
    }
    bench.kube.request("POST", f"/api/v1/namespaces/{bench.ns}/resourcequotas", body=quota)
    wait_for(
        lambda: (
            (bench.kube.request("GET", f"/api/v1/namespaces/{bench.ns}/resourcequotas/one-service"))
            .get("status", {})
            .get("hard")
        ),
        30,
        "quota status computed",
    )
    spec = spec_of({"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"})
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()

    def one_refused() -> str | None:
        for v in ("bf16", "fp8"):
            if bench.variant(v).get("reason") == "Rejected":
                return v
        return None

    refused = wait_for(one_refused, 30, "one variant refused by the quota")
    other = "fp8" if refused == "bf16" else "bf16"
    message = bench.variant(refused)["message"]
    assert "HTTP 403" in message and "exceeded quota" in message, message
    bench.play_variant(run, other, spec)
    status = bench.wait_phase(("PartiallySucceeded",))
    assert {v["name"]: v["phase"] for v in status["variants"]} == {refused: "Failed", other: "Succeeded"}


def test_a_refused_run_object_fails_the_run_with_why(bench: Bench, start_operator: OperatorFactory) -> None:
    with admission_policy(
        bench.kube,
        "rbac.authorization.k8s.io",
        "roles",
        "false",
        "roles are managed by the platform team",
    ) as name:
        label_namespace(bench.kube, bench.ns, {"quantbench.dev/test-policy": name})
        policy_active(
            bench,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "x"},
                "rules": [],
            },
        )
        start_operator([bench.ns])
        bench.create(spec_of({"name": "bf16", "precision": "bf16"}))
        status = bench.wait_phase(("Failed",), timeout=30)
    variant = status["variants"][0]
    assert variant["reason"] == "Rejected" and "managed by the platform team" in variant["message"]
    assert status["history"][0]["phase"] == "Failed"
    bench.wait_event("Rejected")
    bench.wait_released()


# -------------------------------------------------------------------------- item 2: Jobs cannot hang


def test_a_job_past_its_step_deadline_fails_its_variant_and_frees_the_gpu(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    spec = spec_of({"name": "bf16", "precision": "bf16"}, timeouts={"step": "3s"}, accuracy=False)
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    name = bench.wait_job(run, "bf16", "wl-latency")
    assert (bench.kube.get("Job", bench.ns, name) or {})["spec"]["activeDeadlineSeconds"] == 3
    status = bench.wait_phase(("Failed",), timeout=60)  # the Job controller ends it; nobody plays the Job
    variant = status["variants"][0]
    assert variant["reason"] == "DeadlineExceeded" and "3 s, spec.timeouts.step" in variant["message"]
    bench.wait_released()
    bench.wait_event("DeadlineExceeded")


def test_a_job_whose_pods_admission_refuses_fails_at_once(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    with admission_policy(
        bench.kube,
        "",
        "pods",
        "!has(object.metadata.labels) || !('batch.kubernetes.io/job-name' in object.metadata.labels)",
        "no batch pods in this namespace",
    ) as name:
        label_namespace(bench.kube, bench.ns, {"quantbench.dev/test-policy": name})
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "x", "labels": {"batch.kubernetes.io/job-name": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }
        policy_active(bench, probe)
        spec = spec_of({"name": "bf16", "precision": "bf16"}, accuracy=False)
        start_operator([bench.ns])
        bench.create(spec)
        status = bench.wait_phase(("Failed",), timeout=60)
    variant = status["variants"][0]
    assert variant["reason"] == "Rejected", variant
    assert "cannot create its pod" in variant["message"] and "no batch pods" in variant["message"], variant
    bench.wait_released()


def test_a_run_past_its_deadline_releases_every_gpu(bench: Bench, start_operator: OperatorFactory) -> None:
    spec = spec_of(
        {"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}, timeouts={"run": "5s"}
    )
    # Servers that never become Ready: without the run deadline they would wait for startupTimeout (20m).
    start_operator(
        [bench.ns],
        env={"QUANTBENCH_SERVER_POD_ANNOTATIONS": json.dumps({"kwok.quantbench.dev/ready": "false"})},
    )
    bench.create(spec)
    status = bench.wait_phase(("Failed",), timeout=60)
    assert {(v["phase"], v["reason"]) for v in status["variants"]} == {("Failed", "RunTimeout")}
    bench.wait_released()
    bench.wait_event("RunTimeout")


# -------------------------------------------------------------------- item 7: names never collide


def test_a_spec_whose_child_names_collide_is_refused_before_anything_runs(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    spec = factories.spec_dict(
        variants=[{"name": "a", "precision": "bf16"}, {"name": "a-wl-b", "precision": "bf16"}],
        workloads=[{"name": "b-accuracy", "type": "latency"}],
    )
    spec["baseline"] = "a"
    start_operator([bench.ns])
    bench.create(spec)
    status = wait_for(
        lambda: bench.status() if bench.status().get("phase") == "Failed" else None, 30, "Failed"
    )
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert degraded["reason"] == "InvalidSpec" and "names collide" in degraded["message"]
    assert "a-wl-b-accuracy" in degraded["message"]
    assert bench.names("Deployment") == set() and not status.get("currentRun")


# --------------------------------------------------------------- item 8: results of any allowed size


def test_an_accuracy_result_at_the_largest_limit_lands(bench: Bench, start_operator: OperatorFactory) -> None:
    limit = MAX_ACCURACY_QUESTIONS
    spec = spec_of({"name": "bf16", "precision": "bf16"}, workloads=[], accuracy=True)
    spec["accuracy"]["limit"] = limit
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    # The Job's own account publishes ~0.7 MB of per-question outcomes beside its input.
    bench.play_variant(run, "bf16", spec)
    status = bench.wait_phase(("Succeeded",), timeout=90)
    assert status["summary"]["variants"][0]["accuracy"]["questions"] == limit


# ------------------------------------------------------------------- item 3: pools that autoscale


def test_a_pool_with_no_node_is_waited_for_until_it_scales_up(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    pools = load_pools()
    template = pools.pool("h100")
    name = f"scaled-{uuid.uuid4().hex[:6]}"
    pool = template.model_copy(update={"name": name, "nodes": 1})
    spec = spec_of(
        {"name": "bf16", "precision": "bf16", "placement": {"nodePool": name}},
        accuracy=False,
        server={"startupTimeout": "120s"},
    )
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    waiting = bench.wait_variant("bf16", ("WaitingForGPU",), timeout=30)
    assert "waiting for the pool to scale up" in waiting["message"], waiting
    node = build_node(pools, pool, f"{name}-0")
    bench.kube.create(node)  # the autoscaler's part: a node joins the pool
    try:
        bench.wait_variant("bf16", ("Benchmarking",), timeout=60)
        assert bench.server_pods(run, "bf16")[0]["spec"]["nodeName"] == f"{name}-0"
        bench.play_variant(run, "bf16", spec)
        bench.wait_phase(("Succeeded",))
    finally:
        bench.kube.delete("Node", None, f"{name}-0")


# ------------------------------------------------------------ item 10: PodSecurity restricted


def test_a_run_in_a_namespace_that_enforces_podsecurity_restricted_succeeds(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    label_namespace(
        bench.kube,
        bench.ns,
        {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    )
    # The apiserver enforces it: a root pod is refused.
    root_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "root"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    with pytest.raises(ApiError, match="violates PodSecurity"):
        bench.kube.request("POST", bench.kube.path("Pod", bench.ns), body=root_pod, query={"dryRun": "All"})
    spec = spec_of({"name": "bf16", "precision": "bf16"}, probe=True)
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    probe = probe_name("llama", run, "h100")
    bench.wait_job(run, None, "probe-h100")
    bench.publish_result(run, None, "probe-h100", factories.probe_result())
    bench.cluster.finish_job(bench.ns, probe, "succeeded")
    bench.play_variant(run, "bf16", spec)  # every server and Job pod was admitted
    status = bench.wait_phase(("Succeeded",))
    assert status["probes"][0]["phase"] == "Succeeded"
    assert "Rejected" not in bench.event_reasons()


# -------------------------------------------- item 9: edits that change nothing measured; uninstall


def test_edits_that_change_nothing_measured_start_no_run(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    spec = spec_of({"name": "bf16", "precision": "bf16"}, accuracy=False)
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    bench.play_variant(run, "bf16", spec)
    bench.wait_phase(("Succeeded",))
    edits: list[dict[str, Any]] = [
        {"historyLimit": 3},
        {"suspend": True},
        {"suspend": False},
        {"timeouts": {"run": "3h"}},
        {"concurrencyPolicy": "Replace", "startingDeadlineSeconds": 600},
        {"regression": {"tolerances": {"latency": 0.2}}},
    ]
    for edit in edits:
        generation = (bench.get() or {})["metadata"]["generation"]
        bench.kube.merge_patch("QuantBenchmark", bench.ns, "llama", {"spec": edit})
        wait_for(
            lambda g=generation: bench.status().get("observedGeneration") == g + 1,  # type: ignore[misc]
            30,
            f"generation after {edit} observed",
        )
    status = bench.status()
    assert [h["id"] for h in status["history"]] == [run] and not status.get("currentRun")
    assert status["phase"] == "Succeeded"  # back from Suspended without a run
    assert len([e for e in bench.events() if e["reason"] == "RunStarted"]) == 1
    wait_for(
        lambda: any(
            "nothing measured changed" in e["message"] for e in bench.events() if e["reason"] == "SpecChanged"
        ),
        30,
        "a SpecChanged event saying nothing measured changed",
    )
    # The run-now annotation still starts one (and is taken).
    bench.kube.merge_patch(
        "QuantBenchmark", bench.ns, "llama", {"metadata": {"annotations": {RUN_NOW_ANNOTATION: "1"}}}
    )
    wait_for(lambda: (bench.status().get("currentRun") or {}).get("id") not in (None, run), 30, "run-now")
    current = bench.status()["currentRun"]
    assert current["trigger"] == "RunNow"
    # Taken right after the run's status is written (status first, so a crash cannot start two runs).
    wait_for(
        lambda: RUN_NOW_ANNOTATION not in ((bench.get() or {})["metadata"].get("annotations") or {}),
        30,
        "the run-now annotation taken",
    )
    bench.play_variant(current["id"], "bf16", spec)
    bench.wait_phase(("Succeeded",))
    # A measured change does start one.
    ran = {run, current["id"]}
    bench.kube.merge_patch("QuantBenchmark", bench.ns, "llama", {"spec": {"probe": True}})
    wait_for(lambda: (bench.status().get("currentRun") or {}).get("id") not in (None, *ran), 30, "a new run")


def test_uninstalling_the_operator_leaves_everything_deletable(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    other = bench.cluster.create_namespace(f"{bench.ns[:50]}-u")
    spec = spec_of({"name": "bf16", "precision": "bf16"})
    op = start_operator([other])
    stuck = Bench(bench.cluster, bench.kube, other, "llama", bench.ca_file).create(spec)
    run = stuck.run_id()
    stuck.wait_job(run, "bf16", "wl-latency")
    op.stop()  # uninstalled mid-run
    stuck.kube.delete("QuantBenchmark", other, "llama")
    wait_for(lambda: stuck.get() is None, 30, "QuantBenchmark deleted without an operator")
    wait_for(lambda: not stuck.names("Deployment") and not stuck.names("Job"), 30, "children collected")
    bench.cluster.delete_namespace(other)
    wait_for(
        lambda: (
            not any(
                n["metadata"]["name"] == other
                for n in bench.kube.request("GET", "/api/v1/namespaces")["items"]
            )
        ),
        60,
        "namespace deleted",
    )


# ------------------------------------------------------------------ item 12: least privilege for real


def test_with_watch_namespaces_the_operator_writes_only_in_those(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    account = "quantbench-operator-ns"
    install_operator_rbac(bench.kube, account=account, namespaces=[bench.ns])
    spec = spec_of({"name": "bf16", "precision": "bf16"}, accuracy=False)
    start_operator([bench.ns], account=account)
    bench.create(spec)
    run = bench.run_id()
    bench.play_variant(run, "bf16", spec)
    bench.wait_phase(("Succeeded",))
    # The same account cannot write anywhere else: no cluster-wide write.
    from kubernetes import client as k8s

    with bench.cluster.service_account_client(OPERATOR_NS, account, create=False) as api:
        core = k8s.CoreV1Api(api)
        with pytest.raises(k8s.ApiException) as exc:
            core.create_namespaced_config_map("default", {"metadata": {"name": "x"}, "data": {}})
        assert exc.value.status == 403
        with pytest.raises(k8s.ApiException) as exc:
            k8s.AppsV1Api(api).list_namespaced_deployment("default")
        assert exc.value.status == 403


# ----------------------------------------------------------------------- item 11: no host access


def test_host_path_and_images_beyond_the_operators_policy_are_refused_with_why(
    bench: Bench, start_operator: OperatorFactory, kube_admin: Kube, ca_file: Path
) -> None:
    start_operator(
        [bench.ns],
        env={"QUANTBENCH_ALLOW_HOST_PATH": "true", "QUANTBENCH_HOST_PATH_PREFIXES": '["/models"]'},
    )
    outside = spec_of({"name": "bf16", "precision": "bf16"}, server={"modelCache": {"hostPath": "/etc"}})
    bench.create(outside)
    status = wait_for(
        lambda: bench.status() if bench.status().get("phase") == "Failed" else None, 30, "Failed"
    )
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert (
        degraded["reason"] == "InvalidSpec"
        and "outside the host paths this operator allows" in degraded["message"]
    )
    assert bench.names("Deployment") == set()
    bench.wait_event("InvalidSpec")
    inside = Bench(bench.cluster, kube_admin, bench.ns, "inside", ca_file).create(
        spec_of({"name": "bf16", "precision": "bf16"}, server={"modelCache": {"hostPath": "/models/llama"}})
    )
    run = inside.run_id()
    dep = wait_for(lambda: inside.children("Deployment", run), 30, "server of the allowed host path")[0]
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "model-cache",
        "hostPath": {"path": "/models/llama", "type": "DirectoryOrCreate"},
    } in volumes


# ----------------------------------------------------------------------------- item 6: one writer


def test_two_operator_processes_one_benchmark_one_set_of_servers(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    spec = spec_of({"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}, accuracy=False)
    first = start_operator([bench.ns])
    second = start_operator(None)  # e.g. a local `quantbench operator -A` beside the in-cluster one
    bench.create(spec)
    run = bench.run_id()
    wait_for(lambda: len(bench.names("Deployment", run)) == 2, 30, "two servers")
    bench.play_job(run, "bf16", "wl-latency", spec)
    # Whichever acts, there is one run and one server per variant; now stop the one holding the Lease.
    lease = bench.kube.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{OPERATOR_NS}/leases/quantbench-operator"
    )
    holder = lease["spec"]["holderIdentity"]
    leader, standby = (
        (first, second) if str(first.proc.pid if first.proc else "") in holder else (second, first)
    )
    leader.kill()
    bench.play_job(run, "fp8", "wl-latency", spec)
    status = bench.wait_phase(("Succeeded",), timeout=90)  # the standby took over
    standby.assert_alive()
    assert [h["id"] for h in status["history"]] == [run]
    assert len([e for e in bench.events() if e["reason"] == "RunStarted"]) == 1
    assert len([e for e in bench.events() if e["reason"] == "ServerCreated"]) == 2
    assert len(bench.names("ConfigMap", run)) == 4  # run, summary and one result per variant: no other run
