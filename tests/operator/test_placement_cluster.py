"""CPU placement and the run-start source check on the real control plane (kwok plays the nodes).

A variant placed with gpus: 0 lands on the kwok `cpu` pool (tests/cluster/pools.yaml) with cpu and memory
requests and the CPU server image, FP8 there ends Unsupported; a spec whose dataset ConfigMap does not exist
fails every variant before any server (GPU) is asked for, and one whose ConfigMap exists mounts it as the
GSM8K folder.
"""

from __future__ import annotations

import pytest

from quantbench.naming import job_name
from tests.cluster.kube import wait_for
from tests.operator import factories
from tests.operator.conftest import OperatorFactory
from tests.operator.harness import Bench

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(180)]

CPU_IMAGE = "local/vllm-cpu:test"
ON_CPU = {"nodePool": "cpu", "gpus": 0, "cpu": "4", "memory": "16Gi"}
LATENCY = [{"name": "latency", "type": "latency", "inputLen": 128, "outputLen": 32}]
GSM8K_CM = {"kind": "gsm8k", "configMap": {"name": "gsm8k", "key": "test.jsonl"}}


def test_a_cpu_variant_runs_on_the_cpu_pool_and_fp8_there_is_unsupported(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    spec = factories.spec_dict(
        variants=[
            {"name": "bf16", "precision": "bf16", "placement": ON_CPU},
            {"name": "fp8", "precision": "fp8", "placement": ON_CPU},
        ],
        workloads=LATENCY,
        accuracy=False,
    )
    start_operator([bench.ns], env={"QUANTBENCH_CPU_SERVER_IMAGE": CPU_IMAGE})
    bench.create(spec)
    run = bench.run_id()
    fp8 = bench.wait_variant("fp8", ("Unsupported",), timeout=30)
    assert fp8["reason"] == "UnsupportedPrecision" and "no FP8 kernels" in fp8["message"]
    pod = wait_for(
        lambda: next(
            (p for p in bench.server_pods(run, "bf16") if (p.get("spec") or {}).get("nodeName")), None
        ),
        60,
        "the CPU server pod scheduled",
    )
    assert pod["spec"]["nodeName"].startswith("cpu-")  # the kwok cpu pool's nodes: cpu-0, cpu-1
    [container] = pod["spec"]["containers"]
    assert container["image"] == CPU_IMAGE
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert container["args"][container["args"].index("--kv-cache-memory-bytes") + 1] == str(4 * 2**30)
    assert {"name": "OMP_NUM_THREADS", "value": "4"} in container["env"]
    bench.wait_variant("bf16", ("Benchmarking",), timeout=60)
    assert bench.names("Deployment", run) == {f"llama-{run}-bf16-server"}  # fp8 never got a server
    bench.play_variant(run, "bf16", spec)
    status = bench.wait_phase(("PartiallySucceeded",))
    rows = {r["variant"]: r for r in status["summary"]["variants"]}
    assert rows["bf16"]["phase"] == "Succeeded" and rows["fp8"]["phase"] == "Unsupported"
    bench.wait_released(("Deployment",))  # recorded in the status first, torn down right after


def test_a_missing_dataset_configmap_fails_the_run_before_any_server(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    spec = factories.spec_dict(workloads=LATENCY, accuracy=False)
    spec["accuracy"] = {"limit": 20, "dataset": GSM8K_CM}
    start_operator([bench.ns])
    bench.create(spec)
    # The run fails in the reconcile that starts it: its id is read from the history, not while it runs.
    status = bench.wait_phase(("Failed",), timeout=60)
    run = status["history"][0]["id"]
    rows = status["summary"]["variants"]
    assert len(rows) == 3 and {r["phase"] for r in rows} == {"Failed"}, rows
    event = bench.wait_event("SourceUnavailable")
    assert f"ConfigMap gsm8k does not exist in namespace {bench.ns}" in event["message"]
    assert bench.names("Deployment", run) == set() and bench.names("Job", run) == set()
    assert "ServerCreated" not in bench.event_reasons()


def test_an_existing_gsm8k_configmap_is_mounted_as_the_folder(
    bench: Bench, start_operator: OperatorFactory
) -> None:
    bench.kube.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "gsm8k", "namespace": bench.ns},
            "data": {"test.jsonl": '{"question": "1+1?", "answer": "#### 2"}\n'},
        }
    )
    spec = factories.spec_dict(variants=[{"name": "bf16", "precision": "bf16"}], workloads=[], accuracy=False)
    spec["accuracy"] = {"limit": 20, "dataset": GSM8K_CM}
    start_operator([bench.ns])
    bench.create(spec)
    run = bench.run_id()
    name = bench.wait_job(run, "bf16", "accuracy")
    job = bench.kube.get("Job", bench.ns, name)
    assert job is not None and name == job_name("llama", run, "bf16", "accuracy")
    pod = job["spec"]["template"]["spec"]
    assert {"name": "dataset", "configMap": {"name": "gsm8k", "defaultMode": 420}} in pod["volumes"]
    env = {e["name"] for e in pod["containers"][0]["env"]}
    assert "HF_HUB_OFFLINE" in env  # every source is local
    bench.play_variant(run, "bf16", spec)
    bench.wait_phase(("Succeeded",))
