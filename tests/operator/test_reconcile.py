"""The reconcile decision on hand-made cluster states (pure; the cluster tests drive the real thing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from quantbench.api.v1alpha1 import ProbePhase, ProbeStatus, QuantBenchmarkSpec, VariantPhase, VariantStatus
from quantbench.manifests.common import Owner
from quantbench.plan import PoolInfo, plan_run
from quantbench.reconcile import Create, Delete, Observed, RunContext, decide, ended
from quantbench.settings import OperatorSettings
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

    def step(self, pools: bool = False) -> Any:
        obs = Observed(
            now=self.now,
            deployments={n: o for (k, n), o in self.objects.items() if k == "Deployment"},
            services={n for (k, n) in self.objects if k == "Service"},
            jobs={n: o for (k, n), o in self.objects.items() if k == "Job"},
            configmaps={n: o for (k, n), o in self.objects.items() if k == "ConfigMap"},
            pods=list(self.pods.values()),
            pools=POOLS if pools else None,
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
        if write:
            workload = next((w.to_wire() for w in self.ctx.spec.workloads if f"wl-{w.name}" == step), None)
            text = (
                factories.loadgen_result(variant, workload)
                if workload
                else factories.accuracy_result(variant)
            )
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
    assert w.kinds() == [("ConfigMap", PROBE), ("Job", PROBE)]
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
