"""The whole run on the real node, with no step played by the test: the images `make images` built are
imported into the node's containerd, the chart is installed with `helm install` (the operator in a pod,
under the chart's RBAC, with no Hub access), a QuantBenchmark of the tiny model is applied with kubectl and
placed on the node's CPU pool (`gpus: 0`), the weights reach the vLLM CPU server pods through a hostPath
model cache, the load-generator and lm-eval Jobs (the jobs image) measure them and publish their results,
and the operator writes the summary, which `kubectl get qb` and Debian's Prometheus (scraping the operator
through its metrics Service) read back.

Also on the node: a server image the node cannot pull fails its variant with the pull error named, in its
status and an Event, while its sibling finishes; deleting a QuantBenchmark mid-run removes every pod it
started.

Everything is sized for a 2-core machine: one core per server, a 256 MiB KV cache, no torch.compile, a
few short requests and four GSM8K questions. The figures (image import, apply -> first server Ready, the
run's wall time, the node's peak memory) are printed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from quantbench.naming import LABEL_BENCHMARK, LABEL_STEP, STEP_SERVER
from tests.cluster.kube import Cluster, wait_for
from tests.cluster.node.node import NODE_NAME, POOL, MemoryPeak, NodeState
from tests.e2e.chart import HELM_POOL_KEY, installed_chart, run
from tests.fixtures.cluster import report_line
from tests.fixtures.images import archive_path, build_images, image_ref, load_images, unpacked_bytes
from tests.fixtures.node import NodePrometheus
from tests.fixtures.vllm import VllmServerPool
from tests.models.manifest import Manifest, Precision

IMAGES = ("operator", "jobs", "vllm-cpu")
MODELS_MOUNT = "/models"
GROUP, VERSION, PLURAL = "quantbench.dev", "v1alpha1", "quantbenchmarks"
RUN_TIMEOUT_S = 1500
# The CPU variants of one pool are served one after another (plan.py): one core for the server, the other
# for the operator and the Job pods.
SERVER_CPU = "1"
TERMINAL = ("Succeeded", "PartiallySucceeded", "Failed")

pytestmark = [pytest.mark.cluster, pytest.mark.node, pytest.mark.slow, pytest.mark.timeout(2400)]


@dataclass
class Installed:
    """The chart installed on the node, and what the benchmarks need."""

    cluster: Cluster
    api: k8s.ApiClient
    release_ns: str
    models_dir: Path  # on the host = the hostPath of the model cache
    gsm8k_test: Path
    import_seconds: float

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api)

    def benchmark(self, ns: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = k8s.CustomObjectsApi(self.api).get_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name
        )
        return obj

    def pods(self, ns: str, name: str) -> list[k8s.V1Pod]:
        items: list[k8s.V1Pod] = self.core.list_namespaced_pod(
            ns, label_selector=f"{LABEL_BENCHMARK}={name}"
        ).items
        return items

    def dataset(self, ns: str) -> None:
        """GSM8K's test split as ConfigMap `gsm8k` (the few-shot examples then come from it too)."""
        run(
            self.cluster, "kubectl", "create", "configmap", "gsm8k", "-n", ns,
            f"--from-file=test.jsonl={self.gsm8k_test}",
        )  # fmt: skip

    def apply(self, ns: str, body: dict[str, Any]) -> None:
        run(self.cluster, "kubectl", "apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(body))


def _world_readable_copy(tiny_models: Manifest, models_dir: Path) -> Path:
    """The tiny models, copied where the images' non-root user may read them (a user's model cache is
    readable by the server's user; the factory's files are private to root)."""
    out = Path(tempfile.mkdtemp(prefix="quantbench-e2e-models-", dir="/var/tmp"))
    for precision in (Precision.BF16, Precision.AWQ_INT4):
        shutil.copytree(tiny_models.model_dir(models_dir, precision), out / str(precision))
    for path in [out, *out.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return out


@pytest.fixture(scope="module")
def installed(
    request: pytest.FixtureRequest,
    real_node: NodeState,
    cluster: Cluster,
    cluster_api: k8s.ApiClient,
    tiny_models: Manifest,
    vllm_pool: VllmServerPool,
    gsm8k_dir: Path,
) -> Iterator[Installed]:
    missing = [str(archive_path(n)) for n in IMAGES if not archive_path(n).is_file()]
    if missing:
        pytest.skip(f"no image archives {', '.join(missing)}: build them with `make images`")
    build_images(IMAGES)  # rebuilds only an image whose inputs changed since `make images`: never a stale one
    # containerd keeps each imported archive's (compressed) blobs and the layers unpacked.
    need = sum(archive_path(n).stat().st_size + unpacked_bytes(n) for n in IMAGES) + 2 * 2**30
    free = shutil.disk_usage(Path(real_node.containerd_socket).parent).free
    if free < need:
        pytest.fail(
            f"the node's containerd needs about {need / 2**30:.0f} GiB free to import the images; "
            f"{free / 2**30:.0f} GiB are free under {Path(real_node.containerd_socket).parent}"
        )
    start = time.monotonic()
    load_images(Path(real_node.containerd_socket), IMAGES)
    import_seconds = time.monotonic() - start
    report_line(
        request.config,
        f"[e2e] images {', '.join(IMAGES)} in the node's containerd after {import_seconds:.0f} s",
    )
    models = _world_readable_copy(tiny_models, vllm_pool.models_dir)
    try:
        with installed_chart(
            cluster, "quantbench-e2e",
            "--set", "jobImage.pullPolicy=Never", "--set", "hubAccess=false",
            "--set", "settings.resyncSeconds=2",
            "--set", "policy.allowHostPath=true", "--set-json", f'policy.hostPathPrefixes=["{models.parent}"]',
            "--set-string", f"settings.jobNodeSelector.{HELM_POOL_KEY}={POOL}",
        ) as release_ns:  # fmt: skip
            yield Installed(
                cluster, cluster_api, release_ns, models, gsm8k_dir / "test.jsonl", import_seconds
            )
    finally:
        shutil.rmtree(models, ignore_errors=True)


def _spec(inst: Installed, variants: list[dict[str, Any]]) -> dict[str, Any]:
    server: dict[str, Any] = {
        "maxModelLen": 512,
        "startupTimeout": "10m",
        "modelCache": {"hostPath": str(inst.models_dir), "mountPath": MODELS_MOUNT},
        "extraArgs": [
            "--kv-cache-memory-bytes", "268435456", "--distributed-executor-backend", "uni", "-O0",
            "--seed", "0",
        ],
        "env": [
            {"name": "VLLM_ENABLE_V1_MULTIPROCESSING", "value": "0"},  # engine in the server process
            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        ],
    }  # fmt: skip
    return {
        "model": f"{MODELS_MOUNT}/{Precision.BF16}",
        "baseline": variants[0]["name"],
        "placement": {"nodePool": POOL, "gpus": 0, "cpu": SERVER_CPU, "memory": "4Gi"},
        "variants": variants,
        "server": server,
        "workloads": [
            {"name": "latency", "type": "latency", "inputLen": 16, "outputLen": 8, "iterations": 3,
             "warmupIterations": 1},
            {"name": "throughput", "type": "throughput", "batchSizes": [1, 2], "inputLen": 16, "outputLen": 8,
             "iterations": 1},
            {"name": "serving", "type": "serving", "dataset": {"kind": "random", "inputLen": 16, "outputLen": 8},
             "numPrompts": 4, "requestRates": ["inf"]},
        ],
        "accuracy": {
            "task": "gsm8k", "numFewshot": 1, "limit": 4, "maxGenTokens": 32, "concurrency": 2,
            "dataset": {"kind": "gsm8k", "configMap": {"name": "gsm8k", "key": "test.jsonl"}},
            "fidelity": {"prompts": 2, "maxTokens": 8, "topK": 5},
        },
    }  # fmt: skip


BF16 = {"name": "bf16", "precision": "bf16"}
AWQ = {
    "name": "awq-int4",
    "precision": "awq-int4",
    "model": f"{MODELS_MOUNT}/{Precision.AWQ_INT4}",
    "quantizationKernel": "awq",
}
FP8 = {"name": "fp8", "precision": "fp8"}
MISSING_IMAGE = "quantbench/vllm-cpu-missing:0.0.0"  # in no registry, and the node cannot reach one anyway
NO_IMAGE = {"name": "no-image", "precision": "bf16", "image": MISSING_IMAGE}


def _body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "QuantBenchmark",
        "metadata": {"name": name},
        "spec": spec,
    }


def _ready(pod: k8s.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def _active(pods: list[k8s.V1Pod]) -> list[str]:
    return [f"{p.metadata.name} ({p.status.phase})" for p in pods if p.status.phase in ("Pending", "Running")]


def _finished(inst: Installed, ns: str, name: str) -> Callable[[], dict[str, Any] | None]:
    def check() -> dict[str, Any] | None:
        obj = inst.benchmark(ns, name)
        status = obj.get("status", {})
        return obj if status.get("phase") in TERMINAL and status.get("summary") else None

    return check


def _describe(inst: Installed, ns: str, name: str) -> str:
    """What to look at when a wait fails: the status and the pods' states."""
    status = inst.benchmark(ns, name).get("status", {})
    pods = [(p.metadata.name, p.status.phase, p.spec.node_name) for p in inst.pods(ns, name)]
    return f"status: {json.dumps(status, default=str)[:4000]}\npods: {pods}"


def test_benchmark_runs_in_real_pods_and_reports(
    installed: Installed,
    cluster_namespace: str,
    real_node: NodeState,
    node_prometheus: Callable[[list[str]], NodePrometheus],
    request: pytest.FixtureRequest,
) -> None:
    inst, ns, name = installed, cluster_namespace, "tiny-e2e"
    inst.dataset(ns)
    with MemoryPeak(real_node.cgroup) as memory:
        run_s, first_ready_s = _run_and_check(inst, ns, name, node_prometheus)
    report_line(
        request.config,
        f"[e2e] apply -> first server Ready {first_ready_s:.0f} s; apply -> summary {run_s:.0f} s; "
        f"image import {inst.import_seconds:.0f} s; node peak memory in use {memory.peak_mib:.0f} MiB",
    )


def _run_and_check(
    inst: Installed, ns: str, name: str, node_prometheus: Callable[[list[str]], NodePrometheus]
) -> tuple[float, float]:
    """Apply the benchmark, check every part of the run; (apply -> summary, apply -> first server Ready) s."""
    start = time.monotonic()
    inst.apply(ns, _body(name, _spec(inst, [BF16, AWQ, FP8, NO_IMAGE])))

    def first_ready_server() -> k8s.V1Pod | None:
        servers = inst.core.list_namespaced_pod(
            ns, label_selector=f"{LABEL_BENCHMARK}={name},{LABEL_STEP}={STEP_SERVER}"
        ).items
        return next((p for p in servers if _ready(p)), None)

    try:
        server = wait_for(first_ready_server, 900, "a vLLM server pod Ready")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_describe(inst, ns, name)}") from exc
    first_ready_s = time.monotonic() - start
    assert server.spec.node_name == NODE_NAME
    [container] = server.spec.containers
    assert container.image == image_ref("vllm-cpu").removeprefix("docker.io/")  # the chart's short name
    assert container.resources.requests == {"cpu": SERVER_CPU, "memory": "4Gi"}

    try:
        obj = wait_for(_finished(inst, ns, name), RUN_TIMEOUT_S, "the run's summary")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_describe(inst, ns, name)}") from exc
    run_s = time.monotonic() - start
    status = obj["status"]
    phases = {v["name"]: v["phase"] for v in status["variants"]}
    assert phases == {
        "bf16": "Succeeded",
        "awq-int4": "Succeeded",
        "fp8": "Unsupported",
        "no-image": "Failed",
    }, _describe(inst, ns, name)
    assert status["phase"] == "PartiallySucceeded"
    [fp8] = [v for v in status["variants"] if v["name"] == "fp8"]
    assert "FP8" in fp8["message"] or "fp8" in fp8["message"], fp8

    summary = status["summary"]
    rows = {row["variant"]: row for row in summary["variants"]}
    # The variant whose server image cannot be pulled failed with the pull error named, in its status, the
    # Degraded condition and an Event, while its siblings finished.
    [broken] = [v for v in status["variants"] if v["name"] == "no-image"]
    assert broken["reason"] == "ImagePullBackOff" and MISSING_IMAGE in broken["message"], broken
    [degraded] = [c for c in status["conditions"] if c["type"] == "Degraded"]
    assert degraded["status"] == "True" and MISSING_IMAGE in degraded["message"], degraded
    events = inst.core.list_namespaced_event(ns).items
    assert any(
        MISSING_IMAGE in (e.message or "") for e in events if e.involved_object.kind == "QuantBenchmark"
    ), [(e.involved_object.kind, e.reason, e.message) for e in events]
    assert set(rows) == {"bf16", "awq-int4", "fp8", "no-image"}
    assert rows["fp8"]["phase"] == "Unsupported"
    for variant in ("bf16", "awq-int4"):
        row = rows[variant]
        assert row["verdict"], row
        assert row["msPerTokenBs1"] > 0, row
        assert [p["batchSize"] for p in row["throughput"]] == [1, 2], row
        assert row["serving"], row
        assert row["accuracy"]["questions"] == 4, row
    # Fidelity in real pods: the baseline's Job published its reference (gzip-compressed), the AWQ variant's
    # Job read it through the mounted ConfigMap and compared its own token distributions with it.
    fidelity = rows["awq-int4"]["fidelity"]
    assert fidelity["prompts"] == 2 and fidelity["positions"] > 0 and fidelity["meanKl"] >= 0, fidelity
    assert rows["bf16"].get("fidelity") is None, rows["bf16"]
    assert rows["awq-int4"]["kernel"] == "awq"
    assert status["best"] == summary["best"]

    table = run(inst.cluster, "kubectl", "get", "qb", name, "-n", ns).splitlines()
    header, line = table[0].split(), table[1].split()
    assert header[:2] == ["NAME", "PHASE"] and "BEST" in header, table
    assert line[:2] == [name, "PartiallySucceeded"], table
    if status["best"]:
        assert status["best"] in line, table

    # Every pod ran on the real node (the Jobs by the chart's jobNodeSelector, not on a kwok node).
    ran = {(p.metadata.labels or {}).get(LABEL_STEP): p.spec.node_name for p in inst.pods(ns, name)}
    assert set(ran.values()) == {NODE_NAME}, ran
    # Nothing left running: the servers are torn down, the Jobs' pods have ended.
    left = wait_for(lambda: not _active(inst.pods(ns, name)) or None, 120, "no running pod left")
    assert left

    # Prometheus scrapes the operator through its metrics Service and reads the summary gauges.
    svc = inst.core.read_namespaced_service("qb-quantbench-metrics", inst.release_ns)
    [port] = [p.port for p in svc.spec.ports if p.name == "metrics"]
    prom = node_prometheus([f"{svc.spec.cluster_ip}:{port}"])
    verdicts = prom.wait_for(f'quantbench_verdict_info{{benchmark="{name}",namespace="{ns}"}}', timeout_s=60)
    assert {s["metric"]["variant"] for s in verdicts} >= {"bf16", "awq-int4"}
    latency = prom.wait_for(f'quantbench_decode_seconds_per_token{{benchmark="{name}"}}', timeout_s=30)
    assert all(float(s["value"][1]) > 0 for s in latency)
    agreement = prom.wait_for(f'quantbench_fidelity_top1_agreement_ratio{{benchmark="{name}"}}', timeout_s=30)
    assert [s["metric"]["variant"] for s in agreement] == ["awq-int4"], agreement
    assert float(agreement[0]["value"][1]) == pytest.approx(fidelity["top1Agreement"]), agreement
    return run_s, first_ready_s


def test_deleting_the_benchmark_mid_run_removes_its_pods(
    installed: Installed, cluster_namespace: str
) -> None:
    inst, ns, name = installed, cluster_namespace, "deleted"
    inst.dataset(ns)
    inst.apply(ns, _body(name, _spec(inst, [BF16])))
    wait_for(lambda: inst.pods(ns, name) or None, 120, "a server pod")
    run(inst.cluster, "kubectl", "delete", "qb", name, "-n", ns, "--wait=true")
    wait_for(lambda: not inst.pods(ns, name) or None, 120, "every pod of the deleted benchmark gone")
