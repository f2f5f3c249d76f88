"""The reconcile decision on hand-made cluster states (pure; the cluster tests drive the real thing)."""

from __future__ import annotations

import base64
import gzip
import json
import random
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from quantbench import sizes
from quantbench.api.v1alpha1 import ProbePhase, ProbeStatus, QuantBenchmarkSpec, VariantPhase, VariantStatus
from quantbench.collect import run_results
from quantbench.failures import Failure, Reason
from quantbench.manifests.common import Owner
from quantbench.manifests.run import RunSnapshot
from quantbench.plan import PoolInfo, StepKind, plan_run
from quantbench.reconcile import (
    Create,
    Delete,
    Observed,
    RunContext,
    decide,
    ended,
    has_result,
    result_of,
    screening_of,
    validate_result,
)
from quantbench.settings import OperatorSettings
from quantbench_loadgen.accuracy.screening import BaselineResponse, BaselineResponses, read_responses
from quantbench_loadgen.publish import RESPONSES_ANNOTATION, split_parts
from tests.operator import factories

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
POOLS = {
    "h100": PoolInfo("h100", "quantbench.dev/pool", 2, 8, "NVIDIA-H100-80GB-HBM3"),
    "a100": PoolInfo("a100", "quantbench.dev/pool", 1, 8, "NVIDIA-A100-SXM4-80GB"),
    "cpu": PoolInfo("cpu", "quantbench.dev/pool", 2, 0, None),
}


class World:
    """Children in memory; actions applied as the API would."""

    def __init__(self, spec: QuantBenchmarkSpec, settings: OperatorSettings | None = None) -> None:
        self.ctx = RunContext(
            Owner("b", "ns", "uid"), "r1", 1, spec, plan_run(spec, POOLS), settings or OperatorSettings()
        )
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.statuses: list[VariantStatus] = []
        self.probes: list[ProbeStatus] = []
        self.now = T0
        self.rejected: dict[str, Failure] = {}
        self.pod_create_errors: dict[str, str] = {}

    def step(self, pools: bool = False) -> Any:
        obs = Observed(
            now=self.now,
            deployments={n: o for (k, n), o in self.objects.items() if k == "Deployment"},
            services={n for (k, n) in self.objects if k == "Service"},
            jobs={n: o for (k, n), o in self.objects.items() if k == "Job"},
            configmaps={n: o for (k, n), o in self.objects.items() if k == "ConfigMap"},
            pods=list(self.pods.values()),
            pools=POOLS if pools else None,
            rejected=self.rejected,
            pod_create_errors=self.pod_create_errors,
        )
        d = decide(self.ctx, self.statuses, obs, self.probes)
        for a in d.actions:
            if isinstance(a, Create):
                o = a.obj
                o.setdefault("metadata", {})["creationTimestamp"] = self.now.isoformat()
                self.objects.setdefault((o["kind"], o["metadata"]["name"]), o)
            elif isinstance(a, Delete):
                self.objects.pop((a.kind, a.name), None)
                if a.kind == "Deployment":
                    self.pods.pop(a.name, None)
        self.statuses, self.probes = d.variants, d.probes
        return d

    def server_pod(self, variant: str, **status: Any) -> None:
        name = f"b-r1-{variant}-server"
        labels = self.objects[("Deployment", name)]["spec"]["template"]["metadata"]["labels"]
        self.pods[name] = {
            "metadata": {"name": name + "-x", "labels": labels},
            "spec": {"nodeName": "h100-0"},
            "status": status,
        }

    def ready(self, variant: str) -> None:
        t = (self.now + timedelta(seconds=42)).isoformat()
        self.server_pod(
            variant,
            phase="Running",
            conditions=[{"type": "Ready", "status": "True", "lastTransitionTime": t}],
        )

    def finish_job(self, variant: str, step: str, ok: bool = True, write: bool = True) -> None:
        name = f"b-r1-{variant}-{step}"
        if write and step == "fidelity" and variant == self.ctx.spec.baseline:  # the reference, gzipped
            packed = factories.gzipped_base64(factories.fidelity_reference())
            self.objects[("ConfigMap", name)]["binaryData"] = {"result.json.gz": packed}
        elif write:
            workload = next((w.to_wire() for w in self.ctx.spec.workloads if f"wl-{w.name}" == step), None)
            if workload:
                text = factories.loadgen_result(variant, workload)
            elif step == "fidelity":
                text = factories.fidelity_result(variant)
            else:
                text = factories.accuracy_result(variant)
            self.objects[("ConfigMap", name)]["data"]["result.json"] = text
        cond = "Complete" if ok else "Failed"
        self.objects[("Job", name)]["status"] = {"conditions": [{"type": cond, "status": "True"}]}

    def phase(self, variant: str) -> str:
        return next(s.phase for s in self.statuses if s.name == variant)

    def kinds(self) -> list[tuple[str, str]]:
        return sorted(self.objects)


def one_variant_spec(**kw: Any) -> QuantBenchmarkSpec:
    return factories.spec(variants=[{"name": "bf16", "precision": "bf16"}], **kw)


def test_a_variant_goes_through_every_step() -> None:
    w = World(one_variant_spec())
    w.step()
    assert w.phase("bf16") == VariantPhase.STARTING
    assert w.kinds() == [("Deployment", "b-r1-bf16-server"), ("Service", "b-r1-bf16-server")]
    w.step()  # nothing new while the server starts
    assert len(w.objects) == 2
    w.ready("bf16")
    d = w.step()
    assert w.phase("bf16") == VariantPhase.BENCHMARKING
    assert ("Job", "b-r1-bf16-wl-latency") in w.objects and ("ConfigMap", "b-r1-bf16-wl-latency") in w.objects
    assert ("Job", "b-r1-bf16-wl-throughput") not in w.objects  # one Job at a time
    assert d.weights_from == {"bf16": "b-r1-bf16-server-x"}
    status = w.statuses[0]
    assert status.node == "h100-0" and status.startup_seconds == 42
    w.finish_job("bf16", "wl-latency")
    d = w.step()
    assert ("Job", "b-r1-bf16-wl-throughput") in w.objects
    assert [n.reason for n in d.notes] == ["ResultCollected", "JobCreated"]
    assert w.statuses[0].step == "wl-throughput"
    w.finish_job("bf16", "wl-throughput")
    w.step()
    assert w.phase("bf16") == VariantPhase.EVALUATING
    w.finish_job("bf16", "accuracy")
    d = w.step()
    assert w.phase("bf16") == VariantPhase.SUCCEEDED
    assert d.finished and ended(
        d, [VariantStatus(name="bf16", precision="bf16", phase=VariantPhase.EVALUATING)]
    )
    assert ("Deployment", "b-r1-bf16-server") not in w.objects and (
        "Service",
        "b-r1-bf16-server",
    ) not in w.objects
    assert ("ConfigMap", "b-r1-bf16-accuracy") in w.objects  # results stay


def test_same_decision_twice_creates_nothing_new() -> None:
    w = World(one_variant_spec())
    w.step()
    w.ready("bf16")
    first = w.step()
    again = w.step()
    assert any(isinstance(a, Create) for a in first.actions)
    assert not any(isinstance(a, Create) for a in again.actions)


def test_job_failure_ends_the_variant_and_frees_the_gpu() -> None:
    w = World(one_variant_spec())
    w.step()
    w.ready("bf16")
    w.step()
    w.finish_job("bf16", "wl-latency", ok=False, write=False)
    d = w.step()
    assert w.phase("bf16") == VariantPhase.FAILED and w.statuses[0].reason == "JobFailed"
    assert ("Deployment", "b-r1-bf16-server") not in w.objects
    assert [n.reason for n in d.notes] == ["JobFailed"]


def test_complete_job_without_result_is_a_failure() -> None:
    w = World(one_variant_spec())
    w.step()
    w.ready("bf16")
    w.step()
    w.finish_job("bf16", "wl-latency", ok=True, write=False)
    w.step()
    assert w.statuses[0].reason == "ResultMissing"


def test_invalid_result_is_a_failure() -> None:
    w = World(one_variant_spec(workloads=[], accuracy=True))
    w.step()
    w.ready("bf16")
    w.step()
    w.objects[("ConfigMap", "b-r1-bf16-accuracy")]["data"]["result.json"] = '{"not": "a result"}'
    w.step()
    assert w.phase("bf16") == VariantPhase.FAILED and "invalid result" in (w.statuses[0].message or "")


def test_startup_timeout() -> None:
    w = World(one_variant_spec(server={"startupTimeout": "60s"}))
    w.step()
    w.server_pod("bf16", phase="Running", conditions=[{"type": "Ready", "status": "False"}])
    w.now = T0 + timedelta(seconds=61)
    w.step()
    assert w.statuses[0].reason == "StartupTimeout" and "60 s" in (w.statuses[0].message or "")
    assert ("Deployment", "b-r1-bf16-server") not in w.objects


def test_unschedulable_asks_for_pools_then_fails_when_waiting_cannot_help() -> None:
    w = World(one_variant_spec(placement={"nodePool": "h100", "gpus": 9}))
    w.step()
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/9 nodes: Insufficient nvidia.com/gpu",
    }
    w.server_pod("bf16", phase="Pending", conditions=[cond])
    d = w.step()
    assert d.needs_pools and w.phase("bf16") != VariantPhase.FAILED
    w.step(pools=True)
    assert w.statuses[0].reason == "Unschedulable" and "not enough GPUs" in (w.statuses[0].message or "")


def test_waiting_for_gpus_when_the_pool_is_busy() -> None:
    w = World(one_variant_spec())
    w.step()
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/9 nodes: 2 Insufficient nvidia.com/gpu",
    }
    w.server_pod("bf16", phase="Pending", conditions=[cond])
    w.step(pools=True)
    assert w.phase("bf16") == VariantPhase.WAITING_FOR_GPU


def test_unsupported_variant_ends_at_once_others_go_on() -> None:
    w = World(factories.spec(pool="a100"))
    w.step()
    assert w.phase("fp8") == VariantPhase.UNSUPPORTED and w.statuses[1].reason == "UnsupportedPrecision"
    assert ("Deployment", "b-r1-fp8-server") not in w.objects
    assert ("Deployment", "b-r1-bf16-server") in w.objects and (
        "Deployment",
        "b-r1-awq-int4-server",
    ) in w.objects


def test_lane_runs_the_next_variant_after_one_fails() -> None:
    w = World(factories.spec(placement={"nodePool": "h100", "gpus": 8}, parallelism="Sequential"))
    w.step()
    assert [k for k in w.kinds() if k[0] == "Deployment"] == [("Deployment", "b-r1-bf16-server")]
    w.server_pod(
        "bf16", phase="Running", containerStatuses=[{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]
    )
    w.step()
    assert w.phase("bf16") == VariantPhase.FAILED
    w.step()
    assert [k for k in w.kinds() if k[0] == "Deployment"] == [("Deployment", "b-r1-fp8-server")]


# ------------------------------------------------------------------------------------------ probes
PROBE = "b-r1-probe-h100"


def probe_pod(w: World, **status: Any) -> None:
    labels = w.objects[("Job", PROBE)]["spec"]["template"]["metadata"]["labels"]
    w.pods[PROBE] = {"metadata": {"name": PROBE + "-x", "labels": labels}, "spec": {}, "status": status}


def test_the_probe_runs_before_the_pools_servers() -> None:
    w = World(one_variant_spec(probe=True))
    d = w.step()
    assert w.kinds() == [
        ("ConfigMap", PROBE),
        ("Job", PROBE),
        ("Role", PROBE),
        ("RoleBinding", PROBE),
        ("ServiceAccount", PROBE),
    ]
    assert [n.reason for n in d.notes] == ["ProbeStarted"]
    assert w.probes[0].phase == ProbePhase.RUNNING
    assert w.phase("bf16") == VariantPhase.PENDING and w.statuses[0].step == "probe"
    probe_pod(w, phase="Running")
    w.pods[PROBE]["spec"]["nodeName"] = "h100-1"
    w.step()
    assert ("Deployment", "b-r1-bf16-server") not in w.objects and w.probes[0].node == "h100-1"
    w.objects[("ConfigMap", PROBE)]["data"]["result.json"] = factories.probe_result()
    w.objects[("Job", PROBE)]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    d = w.step()
    probe = w.probes[0]
    assert probe.phase == ProbePhase.SUCCEEDED and probe.gpu == "NVIDIA H100 80GB HBM3"
    assert probe.memory_bandwidth_bytes_per_s == pytest.approx(3.187e12, rel=0.01)
    assert probe.node == "h100-1" and probe.message is not None and "3.19 TB/s" in probe.message
    # The server starts in the same pass the probe ends.
    assert [n.reason for n in d.notes] == ["ProbeSucceeded", "ServerCreated"]
    assert ("Deployment", "b-r1-bf16-server") in w.objects and w.phase("bf16") == VariantPhase.STARTING
    d = w.step()
    assert not [n for n in d.notes if n.reason.startswith("Probe")] and w.probes[0] == probe


@pytest.mark.parametrize(
    ("case", "reason"),
    [("job-failed", "JobFailed"), ("no-result", "ResultMissing"), ("bad-result", "ResultMissing")],
)
def test_a_failed_probe_is_recorded_and_the_variants_go_on(case: str, reason: str) -> None:
    w = World(one_variant_spec(probe=True))
    w.step()
    if case == "bad-result":
        w.objects[("ConfigMap", PROBE)]["data"]["result.json"] = '{"schemaVersion": 1}'
    else:
        ok = case == "no-result"
        cond = "Complete" if ok else "Failed"
        w.objects[("Job", PROBE)]["status"] = {"conditions": [{"type": cond, "status": "True"}]}
    d = w.step()
    probe = w.probes[0]
    assert probe.phase == ProbePhase.FAILED and probe.reason == reason
    warning = next(n for n in d.notes if n.reason == "ProbeFailed")
    assert warning.type == "Warning" and "the variants go on without it" in warning.message
    assert ("Deployment", "b-r1-bf16-server") in w.objects


def test_an_image_pull_error_ends_the_probe_and_deletes_its_job() -> None:
    w = World(one_variant_spec(probe=True))
    w.step()
    waiting = {"waiting": {"reason": "ErrImagePull", "message": "not found"}}
    probe_pod(
        w, phase="Pending", initContainerStatuses=[{"name": "quantbench", "image": "q:1", "state": waiting}]
    )
    d = w.step()
    assert w.probes[0].phase == ProbePhase.FAILED and w.probes[0].reason == "ImagePullBackOff"
    assert any(isinstance(a, Delete) and a.name == PROBE for a in d.actions)
    assert ("Job", PROBE) not in w.objects and ("Deployment", "b-r1-bf16-server") in w.objects


def test_a_probe_waits_for_a_gpu_until_the_startup_timeout() -> None:
    w = World(one_variant_spec(probe=True))  # server.startupTimeout: 10m
    w.step()
    unschedulable = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes: Insufficient nvidia.com/gpu",
        }
    ]
    probe_pod(w, phase="Pending", conditions=unschedulable)
    w.now = T0 + timedelta(minutes=5)
    w.step()
    assert w.probes[0].phase == ProbePhase.RUNNING
    assert w.probes[0].message == "waiting for a GPU: 0/3 nodes: Insufficient nvidia.com/gpu"
    assert ("Deployment", "b-r1-bf16-server") not in w.objects
    w.now = T0 + timedelta(minutes=11)
    w.step()
    assert w.probes[0].phase == ProbePhase.FAILED and w.probes[0].reason == "Unschedulable"
    assert ("Job", PROBE) not in w.objects and ("Deployment", "b-r1-bf16-server") in w.objects


def test_a_pool_without_gpus_skips_its_probe() -> None:
    spec = factories.spec(variants=[{"name": "bf16", "precision": "bf16"}], pool="h300", probe=True)
    w = World(spec)
    d = w.step()
    assert w.probes[0].phase == ProbePhase.SKIPPED and w.probes[0].reason == "NoGPU"
    assert [n.reason for n in d.notes][:1] == ["ProbeSkipped"]
    assert ("Job", "b-r1-probe-h300") not in w.objects and ("Deployment", "b-r1-bf16-server") in w.objects


def test_cpu_variants_serve_one_after_another_with_the_cpu_image_and_fp8_is_unsupported() -> None:
    on_cpu = {"nodePool": "cpu", "gpus": 0, "cpu": "2", "memory": "8Gi"}
    w = World(
        factories.spec(
            variants=[
                {"name": "bf16", "precision": "bf16", "placement": on_cpu},
                {"name": "int4", "precision": "awq-int4", "quantizationKernel": "awq", "placement": on_cpu},
                {"name": "fp8", "precision": "fp8", "placement": on_cpu},
            ],
            accuracy=False,
            workloads=[{"name": "latency", "type": "latency"}],
        ),
        OperatorSettings(cpu_server_image="local/vllm-cpu:test"),
    )
    d = w.step()
    assert w.phase("fp8") == VariantPhase.UNSUPPORTED and "no FP8 kernels" in (w.statuses[2].message or "")
    assert [n.reason for n in d.notes if n.type == "Warning"] == ["UnsupportedPrecision"]
    assert [k for k in w.kinds() if k[0] == "Deployment"] == [("Deployment", "b-r1-bf16-server")]
    c = w.objects[("Deployment", "b-r1-bf16-server")]["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "local/vllm-cpu:test" and c["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "Insufficient cpu",
    }
    w.server_pod("bf16", phase="Pending", conditions=[cond])
    w.step()
    d = w.step(pools=True)
    assert w.phase("bf16") == VariantPhase.WAITING_FOR_GPU
    assert [n.message for n in d.notes] == ["variant bf16: waiting for CPUs: Insufficient cpu"]
    w.now += timedelta(minutes=11)
    w.step(pools=True)
    assert w.phase("bf16") == VariantPhase.FAILED
    assert "for 2 free CPUs and 8Gi of memory in pool cpu" in (w.statuses[0].message or "")
    w.step()  # the lane's next variant (the driver passes again when one ends)
    assert [k for k in w.kinds() if k[0] == "Deployment"] == [("Deployment", "b-r1-int4-server")]


# ------------------------------------------------------------------ refused children, deadlines (issue 14)


def two_variant_spec(**kw: Any) -> QuantBenchmarkSpec:
    return factories.spec(
        variants=[{"name": "bf16", "precision": "bf16"}, {"name": "awq", "precision": "awq-int4"}], **kw
    )


def test_a_refused_child_fails_its_variant_with_the_api_message_and_the_others_go_on() -> None:
    w = World(two_variant_spec())
    w.step()
    assert w.phase("bf16") == w.phase("awq") == VariantPhase.STARTING
    message = (
        "the API server refused to create Deployment b-r1-awq-server (HTTP 422): spec.affinity: Required"
    )
    w.rejected = {"b-r1-awq-server": Failure(Reason.REJECTED, message)}
    d = w.step()
    assert w.phase("awq") == VariantPhase.FAILED and w.statuses[1].reason == "Rejected"
    assert w.statuses[1].message == message
    assert [(n.type, n.reason) for n in d.notes] == [("Warning", "Rejected")]
    assert ("Deployment", "b-r1-awq-server") not in w.objects  # what was made is released
    assert w.phase("bf16") == VariantPhase.STARTING and ("Deployment", "b-r1-bf16-server") in w.objects
    w.rejected = {}
    w.step()
    assert w.phase("awq") == VariantPhase.FAILED  # decided once, recorded: never retried


def test_a_refused_probe_fails_the_probe_only() -> None:
    w = World(one_variant_spec(probe=True))
    w.step()
    w.rejected = {"b-r1-probe-h100": Failure(Reason.REJECTED, "refused (HTTP 403): exceeded quota")}
    w.step()
    assert w.probes[0].phase == ProbePhase.FAILED and w.probes[0].reason == "Rejected"
    w.rejected = {}
    w.step()
    assert w.phase("bf16") == VariantPhase.STARTING


def test_every_job_has_a_deadline_sized_from_its_workload() -> None:
    w = World(one_variant_spec())
    w.step()
    w.ready("bf16")
    w.step()
    job = w.objects[("Job", "b-r1-bf16-wl-latency")]
    deadline = job["spec"]["activeDeadlineSeconds"]
    assert 600 < deadline < 3600
    fixed = World(one_variant_spec(timeouts={"step": "90s"}))
    fixed.step()
    fixed.ready("bf16")
    fixed.step()
    assert fixed.objects[("Job", "b-r1-bf16-wl-latency")]["spec"]["activeDeadlineSeconds"] == 90


def test_a_job_past_its_deadline_fails_the_variant_with_why_its_pod_never_started() -> None:
    w = World(one_variant_spec())
    w.step()
    w.ready("bf16")
    w.step()
    name = "b-r1-bf16-wl-latency"
    w.objects[("Job", name)]["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
    }
    w.pod_create_errors = {name: 'pods "x" is forbidden: exceeded quota: gpu, requested: cpu=1'}
    d = w.step()
    status = w.statuses[0]
    assert status.phase == VariantPhase.FAILED and status.reason == "DeadlineExceeded"
    assert "exceeded quota" in (status.message or "") and "spec.timeouts.step" in (status.message or "")
    assert ("Deployment", "b-r1-bf16-server") not in w.objects
    assert [n.reason for n in d.notes] == ["DeadlineExceeded"]


def test_a_job_pod_that_cannot_pull_its_image_fails_the_variant_at_once() -> None:
    w = World(one_variant_spec())
    w.step()
    w.ready("bf16")
    w.step()
    name = "b-r1-bf16-wl-latency"
    w.pods[name] = {
        "metadata": {
            "name": f"{name}-abc",
            "labels": w.objects[("Job", name)]["spec"]["template"]["metadata"]["labels"],
        },
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {"name": "benchmark", "image": "jobs:nope", "state": {"waiting": {"reason": "ErrImagePull"}}}
            ],
        },
    }
    w.step()
    assert w.statuses[0].reason == "ImagePullBackOff"
    assert ("Job", name) not in w.objects and ("Deployment", "b-r1-bf16-server") not in w.objects


def test_a_job_whose_pod_podsecurity_refuses_fails_at_once_a_quota_waits() -> None:
    w = World(one_variant_spec())
    w.step()
    w.ready("bf16")
    w.step()
    name = "b-r1-bf16-wl-latency"
    w.pod_create_errors = {name: 'Error creating: pods "x" is forbidden: exceeded quota: q'}
    w.step()
    assert w.phase("bf16") == VariantPhase.BENCHMARKING and "exceeded quota" in (w.statuses[0].message or "")
    w.pod_create_errors = {name: 'Error creating: pods "x" is forbidden: violates PodSecurity "restricted"'}
    w.step()
    assert w.statuses[0].reason == "Rejected" and "violates PodSecurity" in (w.statuses[0].message or "")


def test_a_server_whose_pod_cannot_be_created_fails_for_podsecurity_waits_for_quota() -> None:
    w = World(two_variant_spec(server={"startupTimeout": "60s"}))
    w.step()
    quota = {
        "type": "ReplicaFailure",
        "status": "True",
        "message": 'pods "s" is forbidden: exceeded quota: q',
    }
    w.objects[("Deployment", "b-r1-bf16-server")]["status"] = {"conditions": [quota]}
    psa = {
        "type": "ReplicaFailure",
        "status": "True",
        "message": 'pods "s" is forbidden: violates PodSecurity',
    }
    w.objects[("Deployment", "b-r1-awq-server")]["status"] = {"conditions": [psa]}
    w.step()
    assert w.phase("awq") == VariantPhase.FAILED and "violates PodSecurity" in (w.statuses[1].message or "")
    assert w.phase("bf16") == VariantPhase.STARTING
    w.now = T0 + timedelta(seconds=61)
    w.step()
    assert w.phase("bf16") == VariantPhase.FAILED and "exceeded quota" in (w.statuses[0].message or "")


def test_a_run_past_its_deadline_stops_every_unfinished_variant() -> None:
    spec = two_variant_spec(timeouts={"run": "1h"})
    w = World(spec)
    w.ctx = RunContext(
        w.ctx.owner, "r1", 1, spec, w.ctx.plan, OperatorSettings(), started_at=T0, deadline_s=3600
    )
    w.step()
    w.ready("bf16")
    w.step()
    w.now = T0 + timedelta(hours=1, seconds=1)
    d = w.step()
    assert {s.reason for s in w.statuses} == {"RunTimeout"} and d.finished
    assert not [k for k in w.objects if k[0] in ("Deployment", "Job")]


def test_a_pool_with_no_node_waits_for_scale_up_until_the_startup_timeout() -> None:
    w = World(one_variant_spec(placement={"nodePool": "h300"}, server={"startupTimeout": "5m"}))
    w.step()
    cond = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/9 nodes are available: 9 node(s) didn't match Pod's node affinity/selector.",
    }
    w.server_pod("bf16", phase="Pending", conditions=[cond])
    w.step(pools=True)
    assert w.phase("bf16") == VariantPhase.WAITING_FOR_GPU  # before: failed at once
    assert "waiting for the pool to scale up" in (w.statuses[0].message or "")
    w.now = T0 + timedelta(minutes=5, seconds=1)
    w.step(pools=True)
    assert w.statuses[0].reason == "Unschedulable"
    assert "waited server.startupTimeout (300 s) for no node in pool h300" in (w.statuses[0].message or "")
    assert "didn't match" in (w.statuses[0].message or "")


# ------------------------------------------------------------- sequential accuracy against the baseline
SEQUENTIAL = {"numFewshot": 8, "limit": 20, "sequential": {"looks": 5, "discordance": 0.05}}


def _through_workloads(w: World, variants: tuple[str, ...]) -> None:
    """Start the servers, make them ready and finish every workload Job of ``variants``."""
    w.step()
    for v in variants:
        w.ready(v)
    for workload in ("wl-latency", "wl-throughput"):
        w.step()
        for v in variants:
            w.finish_job(v, workload)
    w.step()


def test_a_variants_accuracy_job_waits_for_the_baseline_result_then_mounts_it() -> None:
    w = World(_sequential_spec())
    _through_workloads(w, ("bf16", "fp8"))
    # The baseline's accuracy Job runs; the variant's waits (no Job, no ConfigMap), its server kept.
    assert ("Job", "b-r1-bf16-accuracy") in w.objects
    assert ("Job", "b-r1-fp8-accuracy") not in w.objects and (
        "ConfigMap",
        "b-r1-fp8-accuracy",
    ) not in w.objects
    fp8 = next(s for s in w.statuses if s.name == "fp8")
    assert fp8.phase == VariantPhase.EVALUATING and fp8.step == "accuracy"
    assert fp8.message is not None and "baseline bf16's accuracy result" in fp8.message
    assert ("Deployment", "b-r1-fp8-server") in w.objects
    w.step()
    assert ("Job", "b-r1-fp8-accuracy") not in w.objects
    # The baseline's result lands: the variant's Job mounts the baseline's results ConfigMap.
    w.finish_job("bf16", "accuracy")
    d = w.step()
    job = w.objects[("Job", "b-r1-fp8-accuracy")]
    pod = job["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "baseline")
    assert volume["configMap"] == {
        "name": "b-r1-bf16-accuracy",
        "items": [{"key": "result.json", "path": "accuracy.json"}],
    }
    container = pod["containers"][0]
    assert {"name": "baseline", "mountPath": "/etc/quantbench-baseline", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert "--baseline-result /etc/quantbench-baseline/accuracy.json" in container["command"][-1]
    created = [n.message for n in d.notes if n.reason == "JobCreated"]
    assert any("stops early against the baseline's outcomes" in m for m in created)
    # The baseline's own accuracy Job never waits and never mounts anything.
    base_pod = w.objects[("Job", "b-r1-bf16-accuracy")]["spec"]["template"]["spec"]
    assert all(v["name"] != "baseline" for v in base_pod["volumes"])
    assert "--baseline-result" not in base_pod["containers"][0]["command"][-1]


def _sequential_spec(**kw: Any) -> QuantBenchmarkSpec:
    return factories.spec(
        variants=[{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}],
        accuracy=SEQUENTIAL,
        **kw,
    )


def test_a_baseline_that_fails_releases_the_waiting_variant_to_ask_every_question() -> None:
    w = World(_sequential_spec())
    _through_workloads(w, ("bf16", "fp8"))
    assert ("Job", "b-r1-fp8-accuracy") not in w.objects
    w.finish_job("bf16", "accuracy", ok=False, write=False)
    d = w.step()  # the same pass that records the baseline's failure starts the variant's Job
    assert w.phase("bf16") == VariantPhase.FAILED
    pod = w.objects[("Job", "b-r1-fp8-accuracy")]["spec"]["template"]["spec"]
    assert all(v["name"] != "baseline" for v in pod["volumes"])
    assert any("every planned question" in n.message for n in d.notes if n.reason == "JobCreated")


def test_without_sequential_evaluation_no_accuracy_job_waits() -> None:
    spec = factories.spec(
        variants=[{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}]
    )
    w = World(spec)
    _through_workloads(w, ("bf16", "fp8"))
    assert ("Job", "b-r1-bf16-accuracy") in w.objects and ("Job", "b-r1-fp8-accuracy") in w.objects


def test_in_one_lane_the_baseline_runs_first_so_nothing_waits_behind_a_waiting_variant() -> None:
    """One lane (Sequential parallelism): the spec lists fp8 first, the baseline still runs first, and
    fp8's accuracy Job finds the baseline's result."""
    spec = factories.spec(
        variants=[{"name": "fp8", "precision": "fp8"}, {"name": "bf16", "precision": "bf16"}],
        accuracy=SEQUENTIAL,
        placement={"nodePool": "h100", "gpus": 8},
        parallelism="Sequential",
    )
    w = World(spec)
    w.step()
    assert [k for k in w.kinds() if k[0] == "Deployment"] == [("Deployment", "b-r1-bf16-server")]
    w.ready("bf16")
    for step in ("wl-latency", "wl-throughput", "accuracy"):
        w.step()
        w.finish_job("bf16", step)
    w.step()
    assert w.phase("bf16") == VariantPhase.SUCCEEDED
    w.step()
    w.ready("fp8")
    for step in ("wl-latency", "wl-throughput"):
        w.step()
        w.finish_job("fp8", step)
    w.step()
    pod = w.objects[("Job", "b-r1-fp8-accuracy")]["spec"]["template"]["spec"]
    assert any(v["name"] == "baseline" for v in pod["volumes"])


# ------------------------------------------------------------- fidelity to the baseline
FIDELITY = {"numFewshot": 8, "limit": 20, "fidelity": {"prompts": 4, "maxTokens": 8, "topK": 5}}


def _fidelity_spec(accuracy: dict[str, Any] = FIDELITY) -> QuantBenchmarkSpec:
    return factories.spec(
        variants=[{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}],
        accuracy=accuracy,
    )


def test_a_variants_fidelity_job_waits_for_the_baselines_reference_then_mounts_it_and_the_summary_has_it() -> (
    None
):
    w = World(_fidelity_spec())
    _through_workloads(w, ("bf16", "fp8"))
    # The baseline's fidelity Job writes the reference; the variant's waits (no Job, no ConfigMap), server kept.
    assert ("Job", "b-r1-bf16-fidelity") in w.objects
    assert ("Job", "b-r1-fp8-fidelity") not in w.objects
    assert ("ConfigMap", "b-r1-fp8-fidelity") not in w.objects
    fp8 = next(s for s in w.statuses if s.name == "fp8")
    assert fp8.phase == VariantPhase.EVALUATING and fp8.step == "fidelity"
    assert fp8.message is not None and "baseline bf16's fidelity reference" in fp8.message
    assert ("Deployment", "b-r1-fp8-server") in w.objects
    w.step()
    assert ("Job", "b-r1-fp8-fidelity") not in w.objects
    # The reference lands (gzip-compressed, in binaryData): the variant's Job mounts it.
    w.finish_job("bf16", "fidelity")
    d = w.step()
    pod = w.objects[("Job", "b-r1-fp8-fidelity")]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "baseline")
    assert volume["configMap"] == {
        "name": "b-r1-bf16-fidelity",
        "items": [{"key": "result.json.gz", "path": "fidelity-reference.json.gz"}],
    }
    assert "compare" in pod["containers"][0]["command"][-1]
    created = [n.message for n in d.notes if n.reason == "JobCreated"]
    assert any("b-r1-fp8-fidelity" in m and "compares with the baseline's reference" in m for m in created)
    # The baseline's own fidelity Job mounts nothing; fidelity alone does not make accuracy wait.
    base_pod = w.objects[("Job", "b-r1-bf16-fidelity")]["spec"]["template"]["spec"]
    assert all(v["name"] != "baseline" for v in base_pod["volumes"])
    assert ("Job", "b-r1-bf16-accuracy") in w.objects
    w.finish_job("fp8", "fidelity")
    w.step()
    for v in ("bf16", "fp8"):
        w.finish_job(v, "accuracy")
    w.step()
    assert w.phase("bf16") == VariantPhase.SUCCEEDED and w.phase("fp8") == VariantPhase.SUCCEEDED
    # The collected results: the variant's comparison; the baseline's reference is no comparison.
    configmaps = {n: o for (k, n), o in w.objects.items() if k == "ConfigMap"}
    snapshot = RunSnapshot(run_id="r1", generation=1, started_at=T0, spec=w.ctx.spec, plan=w.ctx.plan)
    results = run_results("b", snapshot, w.statuses, configmaps, T0)
    fidelity = results.variants["fp8"].fidelity
    assert fidelity is not None and fidelity.mean_kl == pytest.approx(0.004)
    assert results.variants["bf16"].fidelity is None


def test_a_baseline_without_a_reference_releases_the_variant_whose_fidelity_step_is_skipped() -> None:
    w = World(_fidelity_spec())
    _through_workloads(w, ("bf16", "fp8"))
    w.finish_job("bf16", "fidelity", ok=False, write=False)
    d = w.step()  # the pass that records the baseline's failure skips the variant's fidelity step
    assert w.phase("bf16") == VariantPhase.FAILED
    assert ("Job", "b-r1-fp8-fidelity") not in w.objects
    skipped = [n.message for n in d.notes if n.reason == "StepSkipped"]
    assert skipped == [
        "variant fp8: fidelity skipped: the baseline bf16 ended without a fidelity reference to compare with"
    ]
    assert "skipped" in w.objects[("ConfigMap", "b-r1-fp8-fidelity")]["data"]
    assert ("Job", "b-r1-fp8-accuracy") in w.objects  # it goes on with its accuracy step
    w.finish_job("fp8", "accuracy")
    d = w.step()
    assert w.phase("fp8") == VariantPhase.SUCCEEDED
    assert not [n for n in d.notes if n.reason == "StepSkipped"]  # said once


def test_a_published_result_reads_as_text_or_gzip_and_a_corrupt_one_is_invalid() -> None:
    text = factories.fidelity_reference()
    assert result_of({"data": {"result.json": "x"}}) == "x"
    assert result_of({"binaryData": {"result.json.gz": factories.gzipped_base64(text)}}) == text
    assert has_result({"binaryData": {"result.json.gz": "AAAA"}}) and not has_result({"data": {}})
    corrupt = result_of({"binaryData": {"result.json.gz": "AAAA"}})
    assert corrupt is not None and validate_result(StepKind.FIDELITY, corrupt, baseline=True) is not None
    assert validate_result(StepKind.FIDELITY, text, baseline=True) is None
    assert validate_result(StepKind.FIDELITY, text) is not None  # a variant's result is a comparison
    assert validate_result(StepKind.FIDELITY, factories.fidelity_result("fp8")) is None


def test_with_sequential_evaluation_too_the_variants_accuracy_job_reads_its_own_fidelity() -> None:
    """As in `quantbench run`: the variant's greedy answer disagreement sizes its first chunks."""
    w = World(_fidelity_spec(accuracy={**FIDELITY, **SEQUENTIAL}))
    _through_workloads(w, ("bf16", "fp8"))
    w.finish_job("bf16", "fidelity")
    w.step()
    w.finish_job("fp8", "fidelity")
    w.step()
    assert ("Job", "b-r1-fp8-accuracy") not in w.objects  # waits for the baseline's outcomes
    w.finish_job("bf16", "accuracy")
    d = w.step()
    pod = w.objects[("Job", "b-r1-fp8-accuracy")]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "fidelity")
    assert volume["configMap"] == {
        "name": "b-r1-fp8-fidelity",
        "items": [{"key": "result.json", "path": "fidelity.json"}],
    }
    script = pod["containers"][0]["command"][-1]
    assert "--baseline-result /etc/quantbench-baseline/accuracy.json" in script
    assert "--fidelity-result /etc/quantbench-fidelity/fidelity.json" in script
    created = [n.message for n in d.notes if n.reason == "JobCreated"]
    assert any("its fidelity in configmap b-r1-fp8-fidelity sizes the first chunks;" in m for m in created)
    # The baseline's accuracy Job reads neither.
    base = w.objects[("Job", "b-r1-bf16-accuracy")]["spec"]["template"]["spec"]
    assert not {"baseline", "fidelity"} & {v["name"] for v in base["volumes"]}


SCREENING = {
    "limit": 1319,
    "margin": 1,
    "sequential": {"looks": 5, "discordance": 0.05},
}  # GSM8K's test split


def _publish_responses(w: World, text: bytes, part_bytes: int) -> int:
    """What the baseline's accuracy Job does with its responses: gzip pieces into its part ConfigMaps, the
    record in its results ConfigMap's annotation (as quantbench_loadgen.publish --part writes them)."""
    names = sorted(n for k, n in w.objects if k == "ConfigMap" and "-accuracy-responses-" in n)
    names.sort(key=lambda n: int(n.rsplit("-", 1)[1]))
    parts = split_parts(text, len(names), part_bytes)
    for name, chunk in zip(names, parts.chunks, strict=False):
        w.objects[("ConfigMap", name)]["binaryData"] = {"responses.json.gz": base64.b64encode(chunk).decode()}
    meta = w.objects[("ConfigMap", "b-r1-bf16-accuracy")]["metadata"]
    meta.setdefault("annotations", {})[RESPONSES_ANNOTATION] = json.dumps(parts.record())
    return len(parts.chunks)


def test_a_sequential_baseline_publishes_its_responses_in_parts_and_the_variant_screens_with_them(
    tmp_path: Path,
) -> None:
    w = World(
        factories.spec(
            variants=[{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}],
            accuracy=SCREENING,
        )
    )
    planned = sizes.responses_parts(w.ctx.spec)
    assert (
        planned == 4
    )  # GSM8K's 1,319 8-shot prompts are 2 MB gzip-compressed: one ConfigMap cannot hold them
    _through_workloads(w, ("bf16", "fp8"))
    # The baseline's accuracy Job: empty ConfigMaps for its responses, made first, which it may write.
    parts = [f"b-r1-bf16-accuracy-responses-{i}" for i in range(planned)]
    for name in parts:
        cm = w.objects[("ConfigMap", name)]
        assert (
            cm["metadata"]["labels"] == w.objects[("ConfigMap", "b-r1-bf16-accuracy")]["metadata"]["labels"]
        )
    role = w.objects[("Role", "b-r1-bf16-accuracy")]
    assert role["rules"][0]["resourceNames"] == ["b-r1-bf16-accuracy", *parts]
    script = w.objects[("Job", "b-r1-bf16-accuracy")]["spec"]["template"]["spec"]["containers"][0]["command"][
        -1
    ]
    assert "--responses-out /results/responses.json" in script and f"--part {parts[3]}" in script
    # It publishes them (here in 3 pieces of the 4 made) and then its result.
    responses = BaselineResponses(
        max_gen_tokens=256,
        responses=[
            BaselineResponse(doc_id=i, key=f"{i:016x}", prompt=f"Q{i} " * 50, response=f"A{i}")
            for i in range(400)
        ],
    )
    text = responses.model_dump_json(by_alias=True).encode()
    used = _publish_responses(w, text, part_bytes=len(gzip.compress(text, mtime=0)) // 3 + 1)
    assert used == 3
    w.finish_job("bf16", "accuracy")
    d = w.step()
    pod = w.objects[("Job", "b-r1-fp8-accuracy")]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "responses")
    assert [s["configMap"]["name"] for s in volume["projected"]["sources"]] == parts[:3]
    script = pod["containers"][0]["command"][-1]
    pieces = [f"/etc/quantbench-responses/responses.json.gz.{i}" for i in range(3)]
    assert f"--baseline-responses {' '.join(pieces)}" in script and "--unscreened-reason" not in script
    created = [n.message for n in d.notes if n.reason == "JobCreated"]
    assert any(
        "b-r1-fp8-accuracy" in m and "screens with the baseline's responses in 3 configmap(s)" in m
        for m in created
    )
    # What the projected volume holds, read as the runner reads it: the baseline's responses, whole.
    for source in volume["projected"]["sources"]:
        (item,) = source["configMap"]["items"]
        packed = w.objects[("ConfigMap", source["configMap"]["name"])]["binaryData"][item["key"]]
        (tmp_path / item["path"]).write_bytes(base64.b64decode(packed))
    assert read_responses([tmp_path / Path(p).name for p in pieces]) == responses


def test_screening_without_the_baselines_responses_generates_every_question_and_says_why() -> None:
    spec = factories.spec(
        variants=[{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}],
        accuracy=SCREENING,
    )
    results = "b-r1-bf16-accuracy"

    def with_record(record: str | None, parts: dict[str, dict[str, str]] | None = None) -> Any:
        meta: dict[str, Any] = {"name": results}
        if record is not None:
            meta["annotations"] = {RESPONSES_ANNOTATION: record}
        cms: dict[str, Any] = {results: {"metadata": meta, "data": {"result.json": "{}"}}}
        for name, binary in (parts or {}).items():
            cms[name] = {"metadata": {"name": name}, "binaryData": binary}
        return screening_of(spec, "b", "r1", cms)

    assert with_record(None).unscreened == "the baseline's accuracy Job recorded nothing about its responses"
    refused = json.dumps(
        {"parts": 0, "bytes": 9, "gzipBytes": 9, "reason": "need 9 ConfigMaps, 4 were planned"}
    )
    assert with_record(refused).unscreened == (
        "the baseline's responses were not published: need 9 ConfigMaps, 4 were planned"
    )
    assert "is not valid" in (with_record('{"parts": -1}').unscreened or "")
    two = json.dumps({"parts": 2, "bytes": 9, "gzipBytes": 9, "sha256": "0" * 64})
    piece = {"responses.json.gz": "AAAA"}
    one_missing = with_record(
        two, {"b-r1-bf16-accuracy-responses-0": piece, "b-r1-bf16-accuracy-responses-1": {}}
    )
    assert one_missing.mount == () and one_missing.unscreened == (
        "configmap b-r1-bf16-accuracy-responses-1 holds no piece of the baseline's responses"
    )
    both = with_record(
        two, {"b-r1-bf16-accuracy-responses-0": piece, "b-r1-bf16-accuracy-responses-1": piece}
    )
    assert both.mount == ("b-r1-bf16-accuracy-responses-0", "b-r1-bf16-accuracy-responses-1")
    assert both.unscreened is None
    # Too large even in parts, known from the spec: the baseline keeps none, the variant is told why.
    huge = factories.spec(
        variants=[{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}],
        accuracy={
            "limit": 5000,
            "margin": 0.5,
            "maxGenTokens": 4096,
            "sequential": {"looks": 5, "discordance": 0.2},
        },
    )
    assert sizes.responses_parts(huge) == 0
    why = screening_of(huge, "b", "r1", {}).unscreened
    assert why is not None and why.startswith(
        "the baseline's responses to 5000 questions would take up to 51.1 MB"
    )


def test_a_variant_whose_baseline_published_no_responses_is_told_why_and_the_baseline_is_not_held_up() -> (
    None
):
    w = World(
        factories.spec(
            variants=[{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}],
            accuracy=SCREENING,
        )
    )
    _through_workloads(w, ("bf16", "fp8"))
    _publish_responses(w, random.Random(0).randbytes(4_500_000), part_bytes=990_000)  # needs 5: refused
    w.finish_job("bf16", "accuracy")
    d = w.step()
    script = w.objects[("Job", "b-r1-fp8-accuracy")]["spec"]["template"]["spec"]["containers"][0]["command"][
        -1
    ]
    assert "--baseline-responses" not in script
    argv = shlex.split(script.split("; ")[1])
    why = argv[argv.index("--unscreened-reason") + 1]
    assert (
        why.startswith("the baseline's responses were not published: ")
        and "(4500000 as text) need 5 ConfigMaps" in why
    )
    created = [n.message for n in d.notes if n.reason == "JobCreated" and "b-r1-fp8-accuracy" in n.message]
    assert len(created) == 1 and f"no screening: {why}, every question generated" in created[0]
    assert w.phase("bf16") == VariantPhase.SUCCEEDED  # the baseline's own result is all it owes


def test_with_screening_off_the_baseline_publishes_no_responses_and_the_variant_only_stops_early() -> None:
    accuracy = {**SCREENING, "sequential": {**SCREENING["sequential"], "screen": False}}
    w = World(
        factories.spec(
            variants=[{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}],
            accuracy=accuracy,
        )
    )
    _through_workloads(w, ("bf16", "fp8"))
    assert not any(kind == "ConfigMap" and "-responses-" in name for kind, name in w.objects)
    baseline = w.objects[("Job", "b-r1-bf16-accuracy")]["spec"]["template"]["spec"]["containers"][0][
        "command"
    ]
    assert "--responses-out" not in baseline[-1] and "quantbench_loadgen.publish --configmap" in baseline[-1]
    w.finish_job("bf16", "accuracy")
    d = w.step()
    pod = w.objects[("Job", "b-r1-fp8-accuracy")]["spec"]["template"]["spec"]
    script = pod["containers"][0]["command"][-1]
    assert "--baseline-result" in script
    assert "--baseline-responses" not in script and "--unscreened-reason" not in script
    assert all(v["name"] != "responses" for v in pod["volumes"])
    created = [n.message for n in d.notes if n.reason == "JobCreated" and "b-r1-fp8-accuracy" in n.message]
    assert len(created) == 1 and "screening off (accuracy.sequential.screen: false)" in created[0]
