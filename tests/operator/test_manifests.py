from __future__ import annotations

import argparse
import json
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from quantbench.manifests import jobs, probe, rbac, server
from quantbench.manifests.common import Owner
from quantbench.manifests.run import RunSnapshot, run_configmap, snapshot_from_configmap
from quantbench.naming import responses_part_name
from quantbench.plan import PoolInfo, Step, StepKind, plan_run
from quantbench.settings import VERSION, OperatorSettings
from quantbench_loadgen.accuracy.cli import build_parser as accuracy_parser
from quantbench_loadgen.cli import build_parser
from quantbench_loadgen.specs import AccuracySpec
from tests.operator.factories import spec

OWNER = Owner(name="llama", namespace="team-a", uid="1234-uid")
RUN = "r20261123-030000"
LATENCY = Step(kind=StepKind.WORKLOAD, name="wl-latency", workload="latency")
ACCURACY = Step(kind=StepKind.ACCURACY, name="accuracy")


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ({"name": "bf16", "precision": "bf16"}, {"--dtype": "bfloat16", "--quantization": None}),
        ({"name": "fp16", "precision": "fp16"}, {"--dtype": "float16", "--quantization": None}),
        ({"name": "fp8", "precision": "fp8"}, {"--dtype": None, "--quantization": "fp8"}),
        ({"name": "awq", "precision": "awq-int4"}, {"--quantization": "awq_marlin"}),
        ({"name": "awq", "precision": "awq-int4", "quantizationKernel": "awq"}, {"--quantization": "awq"}),
        ({"name": "gptq", "precision": "gptq-int4"}, {"--quantization": "gptq_marlin"}),
        ({"name": "w8a8", "precision": "int8-w8a8"}, {"--quantization": None, "--dtype": None}),
        ({"name": "kv", "precision": "fp8", "kvCacheDtype": "fp8_e4m3"}, {"--kv-cache-dtype": "fp8_e4m3"}),
    ],
)
def test_server_flags_per_precision(variant: dict[str, Any], expected: dict[str, str | None]) -> None:
    s = spec(
        variants=[{"name": "bf16", "precision": "bf16"}, variant] if variant["name"] != "bf16" else [variant]
    )
    args = server.server_args(s, s.variant(variant["name"]))
    for name, value in expected.items():
        assert flag(args, name) == value, (name, args)


def test_common_server_flags_and_extra_args() -> None:
    s = spec(
        placement={"nodePool": "h100", "gpus": 2},
        server={"maxModelLen": 8192, "gpuMemoryUtilization": 0.85, "extraArgs": ["--enable-prefix-caching"]},
        variants=[{"name": "bf16", "precision": "bf16", "extraArgs": ["--max-num-seqs", "64"]}],
    )
    args = server.server_args(s, s.variants[0])
    assert flag(args, "--max-model-len") == "8192"
    assert flag(args, "--gpu-memory-utilization") == "0.85"
    assert flag(args, "--tensor-parallel-size") == "2"
    assert flag(args, "--model") == "meta-llama/Llama-3.1-8B-Instruct"
    assert args[-3:] == ["--enable-prefix-caching", "--max-num-seqs", "64"]


def test_deployment() -> None:
    s = spec(
        placement={
            "nodePool": "h100",
            "gpus": 2,
            "nodeSelector": {"zone": "a"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}
            ],
            "affinity": {"nodeAffinity": {"x": 1}},
        },
        server={
            "modelCache": {"claimName": "hf-cache"},
            "hfTokenSecret": {"name": "hf-token"},
            "startupTimeout": "20m",
            "env": [{"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"}],
        },
    )
    dep = server.deployment(s, s.variant("fp8"), OWNER, RUN, 3, {"a": "b"})
    meta = dep["metadata"]
    assert meta["name"] == "llama-r20261123-030000-fp8-server"
    assert meta["namespace"] == "team-a"
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "quantbench.dev/v1alpha1",
            "kind": "QuantBenchmark",
            "name": "llama",
            "uid": "1234-uid",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert (
        meta["labels"]["quantbench.dev/variant"] == "fp8"
        and meta["annotations"]["quantbench.dev/generation"] == "3"
    )
    pod = dep["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"a": "b"}
    assert dep["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    ps = pod["spec"]
    assert ps["nodeSelector"] == {"zone": "a", "quantbench.dev/pool": "h100"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in ps["tolerations"]
    assert {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"} in ps[
        "tolerations"
    ]
    assert ps["affinity"] == {"nodeAffinity": {"x": 1}}
    c = ps["containers"][0]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} in c[
        "env"
    ]
    assert {"name": "VLLM_LOGGING_LEVEL", "value": "DEBUG"} in c["env"]
    assert {"name": "model-cache", "persistentVolumeClaim": {"claimName": "hf-cache"}} in ps["volumes"]
    assert {"name": "model-cache", "mountPath": "/root/.cache/huggingface"} in c["volumeMounts"]
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] == 1200
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"


def cpu_variant_spec(**placement: Any) -> Any:
    on_cpu = {"nodePool": "xeon", "gpus": 0, **placement}
    return spec(
        variants=[
            {"name": "bf16", "precision": "bf16"},
            {"name": "bf16-cpu", "precision": "bf16", "placement": on_cpu},
        ],
        server={"env": [{"name": "OMP_NUM_THREADS", "value": "3"}]},
    )


def test_a_cpu_variant_requests_cpu_and_memory_and_runs_the_cpu_image() -> None:
    s = cpu_variant_spec(cpu="8", memory="48Gi")
    dep = server.deployment(s, s.variant("bf16-cpu"), OWNER, RUN, 1, cpu_image="registry.local/vllm-cpu:9")
    ps = dep["spec"]["template"]["spec"]
    c = ps["containers"][0]
    assert c["image"] == "registry.local/vllm-cpu:9"
    assert c["resources"] == {
        "requests": {"cpu": "8", "memory": "48Gi"},
        "limits": {"cpu": "8", "memory": "48Gi"},
    }
    assert ps["nodeSelector"] == {"quantbench.dev/pool": "xeon"} and "tolerations" not in ps
    env = {e["name"]: e.get("value") for e in c["env"]}
    # No core pinning; server.env's thread count wins; a quarter of the memory for the KV cache.
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "nobind"
    assert [e["value"] for e in c["env"] if e["name"] == "OMP_NUM_THREADS"] == ["3"]
    args = c["args"]
    assert flag(args, "--kv-cache-memory-bytes") == str(12 * 2**30)
    assert flag(args, "--gpu-memory-utilization") is None and flag(args, "--tensor-parallel-size") is None
    assert flag(args, "--dtype") == "bfloat16"
    # The GPU variant of the same benchmark is unchanged.
    gpu = server.deployment(s, s.variant("bf16"), OWNER, RUN, 1)["spec"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"] == {"nvidia.com/gpu": "1"} and gpu["image"] == s.server.image
    assert not any(e["name"].startswith("VLLM_CPU") for e in gpu["env"])


def test_cpu_server_defaults_and_the_specs_own_cpu_image() -> None:
    s = cpu_variant_spec()
    c = server.deployment(s, s.variant("bf16-cpu"), OWNER, RUN, 1)["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert c["image"] == OperatorSettings().cpu_server_image == f"quantbench/vllm-cpu:{VERSION}"
    assert c["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert flag(c["args"], "--kv-cache-memory-bytes") == str(4 * 2**30)
    # A KV cache size the spec gives (flag or vLLM's legacy variable) is left alone.
    sized = spec(
        baseline="c",
        variants=[
            {
                "name": "c",
                "precision": "bf16",
                "placement": {"gpus": 0},
                "extraArgs": ["--kv-cache-memory-bytes=9"],
            }
        ],
    )
    assert server.server_args(sized, sized.variant("c")).count("--kv-cache-memory-bytes") == 0
    legacy = spec(
        baseline="c",
        variants=[{"name": "c", "precision": "bf16", "placement": {"gpus": 0}}],
        server={"env": [{"name": "VLLM_CPU_KVCACHE_SPACE", "value": "2"}]},
    )
    assert "--kv-cache-memory-bytes" not in server.server_args(legacy, legacy.variant("c"))
    s2 = s.model_copy(update={"server": s.server.model_copy(update={"cpu_image": "mine/vllm-cpu:1"})})
    assert server.server_image(s2, s2.variant("bf16-cpu"), "ignored") == "mine/vllm-cpu:1"
    assert server.server_image(s2, s2.variant("bf16"), "ignored") == s2.server.image
    # A variant's own image wins on either kind of placement.
    for name in ("bf16-cpu", "bf16"):
        own = s2.model_copy(
            update={"variants": [v.model_copy(update={"image": "other/vllm:2"}) for v in s2.variants]}
        )
        assert server.server_image(own, own.variant(name), "ignored") == "other/vllm:2"


@pytest.mark.parametrize(
    ("value", "amount"),
    [("4", 4.0), ("500m", 0.5), ("16Gi", 16 * 2**30), ("64G", 64e9), ("1.5", 1.5)],
)
def test_quantities(value: str, amount: float) -> None:
    assert server.quantity(value) == amount


def test_a_gpu_server_may_also_request_cpu_and_memory() -> None:
    s = spec(placement={"nodePool": "h100", "gpus": 1, "cpu": "12", "memory": "96Gi"})
    c = server.deployment(s, s.variant("bf16"), OWNER, RUN, 1)["spec"]["template"]["spec"]["containers"][0]
    assert c["resources"] == {
        "requests": {"nvidia.com/gpu": "1", "cpu": "12", "memory": "96Gi"},
        "limits": {"nvidia.com/gpu": "1", "memory": "96Gi"},
    }


def test_cache_volume_kinds() -> None:
    s = spec(server={"modelCache": {"hostPath": "/mnt/models"}})
    vols = server.deployment(s, s.variants[0], OWNER, RUN, 1)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-cache", "hostPath": {"path": "/mnt/models", "type": "DirectoryOrCreate"}} in vols
    s = spec(server={"modelCache": {"sizeLimit": "50Gi"}})
    vols = server.deployment(s, s.variants[0], OWNER, RUN, 1)["spec"]["template"]["spec"]["volumes"]
    assert {"name": "model-cache", "emptyDir": {"sizeLimit": "50Gi"}} in vols


def test_service_matches_the_server_pods() -> None:
    s = spec()
    svc = server.service(s, s.variants[0], OWNER, RUN, 1)
    dep = server.deployment(s, s.variants[0], OWNER, RUN, 1)
    assert svc["metadata"]["name"] == dep["metadata"]["name"]
    assert svc["spec"]["selector"] == dep["spec"]["template"]["metadata"]["labels"]
    assert (
        server.server_url(s, OWNER, RUN, "bf16")
        == "http://llama-r20261123-030000-bf16-server.team-a.svc:8000"
    )


def test_workload_job_and_its_configmap() -> None:
    s = spec()
    settings = OperatorSettings(
        job_image="quantbench/jobs:test", job_pod_annotations={"x": "y"}, job_node_selector={"pool": "cpu"}
    )
    job = jobs.job(s, s.variant("fp8"), OWNER, RUN, LATENCY, 1, settings)
    name = "llama-r20261123-030000-fp8-wl-latency"
    assert job["metadata"]["name"] == name
    pod = job["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"x": "y"}
    ps = pod["spec"]
    assert ps["nodeSelector"] == {"pool": "cpu"}
    default = jobs.job(s, s.variant("fp8"), OWNER, RUN, LATENCY, 1, OperatorSettings())
    assert "nodeSelector" not in default["spec"]["template"]["spec"]  # any node unless the chart says
    assert ps["serviceAccountName"] == name  # its own account: it may publish its own result only
    assert ps["restartPolicy"] == "Never"
    c = ps["containers"][0]
    assert c["image"] == "quantbench/jobs:test"
    script = c["command"][-1]
    assert "quantbench-loadgen run --url http://llama-r20261123-030000-fp8-server.team-a.svc:8000" in script
    assert "--workload /etc/quantbench/input.json" in script
    assert (
        f"python -m quantbench_loadgen.publish --configmap {name} --key result.json "
        "--alongside /etc/quantbench/input.json /results/result.json" in script
    )
    assert {
        "name": "input",
        "configMap": {"name": name, "items": [{"key": "input.json", "path": "input.json"}]},
    } in ps["volumes"]
    cm = jobs.results_configmap(OWNER, RUN, "fp8", "wl-latency", jobs.job_input(s, LATENCY), 1)
    assert cm["metadata"]["name"] == name
    assert json.loads(cm["data"]["input.json"])["type"] == "latency"
    assert "result.json" not in cm["data"]


def test_accuracy_job_and_dataset_mounts() -> None:
    dataset = {"kind": "gsm8k", "volume": {"claimName": "datasets", "subPath": "gsm8k"}}
    s = spec(accuracy=False).model_copy(
        update={"accuracy": AccuracySpec.model_validate({"limit": 50, "dataset": dataset})}
    )
    job = jobs.job(s, s.variant("bf16"), OWNER, RUN, ACCURACY, 1, OperatorSettings())
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "python -m quantbench_loadgen.accuracy --base-url http://" in script
    assert "--dataset /data/gsm8k" in script and "--max-length 4096" in script
    vols = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "dataset", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}} in vols
    assert (
        json.loads(
            jobs.results_configmap(OWNER, RUN, "bf16", "accuracy", jobs.job_input(s, ACCURACY), 1)["data"][
                "input.json"
            ]
        )["limit"]
        == 50
    )


def assert_mounts_baseline(job: Any, configmap: str, key: str, path: str) -> Any:
    """The Job's pod is restricted and mounts `key` of the baseline's results ConfigMap read-only as
    `path` under BASELINE_DIR; its container."""
    pod = job["spec"]["template"]["spec"]
    assert_restricted(pod)
    volume = {"name": "baseline", "configMap": {"name": configmap, "items": [{"key": key, "path": path}]}}
    assert volume in pod["volumes"]
    container = pod["containers"][0]
    assert {"name": "baseline", "mountPath": jobs.BASELINE_DIR, "readOnly": True} in container["volumeMounts"]
    return container


def test_a_sequential_accuracy_job_mounts_the_baselines_result_read_only() -> None:
    s = spec()
    settings = OperatorSettings(pod_user=2000)
    job = jobs.job(s, s.variant("fp8"), OWNER, RUN, ACCURACY, 1, settings, "llama-r1-bf16-accuracy")
    container = assert_mounts_baseline(job, "llama-r1-bf16-accuracy", "result.json", "accuracy.json")
    script = container["command"][-1]
    assert f"--baseline-result {jobs.BASELINE_FILE}" in script
    assert script.index("--baseline-result") < script.index("quantbench_loadgen.publish")
    # Only the accuracy step reads the baseline's outcomes.
    workload = Step(kind=StepKind.WORKLOAD, name="wl-latency", workload="latency")
    with pytest.raises(ValueError, match="accuracy step"):
        jobs.job(s, s.variant("fp8"), OWNER, RUN, workload, 1, settings, "llama-r1-bf16-accuracy")


def accuracy_cli(job: dict[str, Any]) -> tuple[argparse.Namespace, list[str]]:
    """The accuracy command line of the Job's script, as the runner's own parser reads it, and the commands
    after it."""
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    head, run, *after = script.split("; ")
    assert head == "set -e"
    argv = shlex.split(run)
    assert argv[:3] == ["python", "-m", "quantbench_loadgen.accuracy"]
    return accuracy_parser().parse_args(argv[3:]), after


def test_a_sequential_baseline_publishes_its_responses_into_its_part_configmaps_before_its_result() -> None:
    s = spec()
    parts = tuple(responses_part_name("llama", RUN, "bf16", i) for i in range(2))
    assert parts[1] == f"llama-{RUN}-bf16-accuracy-responses-1"
    screening = jobs.Screening(publish_to=parts)
    job = jobs.job(s, s.variant("bf16"), OWNER, RUN, ACCURACY, 1, OperatorSettings(), screening=screening)
    args, (responses, result) = accuracy_cli(job)
    assert args.responses_out == Path(jobs.RESPONSES_OUT) and args.baseline_result is None
    # Never failing the Job for them: the publisher records what it could not publish, `|| true` the rest.
    assert responses.endswith(" || true")
    argv = shlex.split(responses.removesuffix(" || true"))
    assert argv[:3] == ["python", "-m", "quantbench_loadgen.publish"]
    assert argv[3:] == [
        "--configmap", job["metadata"]["name"], "--key", "responses.json", "--part", parts[0], "--part", parts[1],
        jobs.RESPONSES_OUT,
    ]  # fmt: skip
    assert "--key result.json" in result
    # The Job may write those ConfigMaps too, and nothing else; they are labelled like its results ConfigMap.
    role = rbac.role(OWNER, RUN, "bf16", "accuracy", 1, parts)
    assert role["rules"][0]["resourceNames"] == [job["metadata"]["name"], *parts]
    cm = jobs.responses_configmap(OWNER, RUN, "bf16", 1, 1)
    assert cm["metadata"]["name"] == parts[1] and "data" not in cm
    assert cm["metadata"]["labels"] == job["metadata"]["labels"]
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
    # Without parts (no screening) the baseline keeps no responses.
    plain, after = accuracy_cli(jobs.job(s, s.variant("bf16"), OWNER, RUN, ACCURACY, 1, OperatorSettings()))
    assert plain.responses_out is None and len(after) == 1


def screening_job(
    screening: jobs.Screening, baseline: str | None = "llama-r1-bf16-accuracy", step: Step = ACCURACY
) -> Any:
    """fp8's Job of `step` (a sequential accuracy Job against the baseline bf16's results) with `screening`."""
    s = spec()
    return jobs.job(s, s.variant("fp8"), OWNER, RUN, step, 1, OperatorSettings(), baseline, None, screening)


def test_a_sequential_variant_mounts_every_piece_of_the_baselines_responses_through_one_projected_volume() -> (
    None
):
    parts = ("llama-r1-bf16-accuracy-responses-0", "llama-r1-bf16-accuracy-responses-1")
    job = screening_job(jobs.Screening(mount=parts))
    pod = job["spec"]["template"]["spec"]
    assert_restricted(pod)
    volume = next(v for v in pod["volumes"] if v["name"] == "responses")
    assert volume == {
        "name": "responses",
        "projected": {
            "sources": [
                {
                    "configMap": {
                        "name": parts[0],
                        "items": [{"key": "responses.json.gz", "path": "responses.json.gz.0"}],
                    }
                },
                {
                    "configMap": {
                        "name": parts[1],
                        "items": [{"key": "responses.json.gz", "path": "responses.json.gz.1"}],
                    }
                },
            ]
        },
    }
    mount = {"name": "responses", "mountPath": jobs.RESPONSES_DIR, "readOnly": True}
    assert mount in pod["containers"][0]["volumeMounts"]
    args, after = accuracy_cli(job)
    assert args.baseline_result == Path(jobs.BASELINE_FILE)
    pieces = [
        Path(f"{jobs.RESPONSES_DIR}/responses.json.gz.0"),
        Path(f"{jobs.RESPONSES_DIR}/responses.json.gz.1"),
    ]
    assert args.baseline_responses == pieces and args.unscreened_reason is None
    assert args.responses_out is None and len(after) == 1  # a variant publishes only its result
    # None published: no volume, the reason told to the runner.
    why = "the baseline's responses were not published: too large"
    job = screening_job(jobs.Screening(unscreened=why))
    assert all(v["name"] != "responses" for v in job["spec"]["template"]["spec"]["volumes"])
    args, _ = accuracy_cli(job)
    assert args.baseline_responses is None and args.unscreened_reason == why
    # Only a sequential evaluation against the baseline reads its responses; only the accuracy step screens.
    with pytest.raises(ValueError, match="only a sequential evaluation"):
        screening_job(jobs.Screening(mount=parts), baseline=None)
    with pytest.raises(ValueError, match="only the accuracy step screens"):
        screening_job(jobs.Screening(), baseline=None, step=LATENCY)


def test_quantbench_run_and_the_jobs_build_the_sequential_arguments_alike() -> None:
    assert jobs.sequential_args(responses_out="r.json") == ["--responses-out", "r.json"]
    assert jobs.sequential_args() == [] and jobs.sequential_args(unscreened="x") == []
    assert jobs.sequential_args(baseline_result="b", baseline_responses=["p0", "p1"], unscreened="x") == [
        "--baseline-result", "b", "--baseline-responses", "p0", "p1",
    ]  # fmt: skip
    assert jobs.sequential_args(baseline_result="b", unscreened="x", fidelity_result="f") == [
        "--baseline-result", "b", "--unscreened-reason", "x", "--fidelity-result", "f",
    ]  # fmt: skip


FIDELITY = Step(kind=StepKind.FIDELITY, name="fidelity")
FIDELITY_SPEC = {"prompts": 8, "maxTokens": 16, "topK": 5}


def fidelity_cli(job: dict[str, Any]) -> tuple[Any, str]:
    """The fidelity command line of the Job's script, as the load generator's own parser reads it, and the
    publish command after it."""
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    head, run, publish = script.split("; ")
    assert head == "set -e"
    argv = shlex.split(run)
    assert argv[0] == "quantbench-loadgen"
    return build_parser().parse_args(argv[1:]), publish


def test_the_baselines_fidelity_job_writes_the_reference_on_the_accuracy_tasks_gsm8k_and_publishes_it_gzipped() -> (
    None
):
    dataset = {"kind": "gsm8k", "configMap": {"name": "gsm8k", "key": "test.jsonl"}}
    s = spec(accuracy={"limit": 20, "dataset": dataset, "fidelity": FIDELITY_SPEC})
    job = jobs.job(s, s.variant("bf16"), OWNER, RUN, FIDELITY, 1, OperatorSettings(pod_user=2000))
    pod = job["spec"]["template"]["spec"]
    assert_restricted(pod)
    args, publish = fidelity_cli(job)
    assert (args.phase, args.gsm8k, args.gsm8k_public) == ("reference", jobs.DATA_DIR, False)
    assert (args.count, args.max_tokens, args.top_k) == (8, 16, 5)
    assert args.reference == f"{jobs.OUTPUT_DIR}/{jobs.RESULT_KEY}"
    assert "--gzip" in publish and "accuracy.fidelity" in publish  # the size error names what to lower
    assert (
        pod["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"
    )  # it reaches the status
    assert {"name": "dataset", "configMap": {"name": "gsm8k"}} in pod["volumes"]
    assert not [v for v in pod["volumes"] if v["name"] == "baseline"]
    assert "ports" not in pod["containers"][0]
    assert (
        json.loads(
            jobs.results_configmap(OWNER, RUN, "bf16", "fidelity", jobs.job_input(s, FIDELITY), 1)["data"][
                "input.json"
            ]
        )
        == FIDELITY_SPEC
    )
    # Without a GSM8K source in the spec: the public GSM8K, as the accuracy task reads it, from the Hub.
    public = spec(accuracy={"limit": 20, "fidelity": FIDELITY_SPEC})
    settings = OperatorSettings(pod_user=2000, hub_access=True)
    args, _ = fidelity_cli(jobs.job(public, public.variant("bf16"), OWNER, RUN, FIDELITY, 1, settings))
    assert args.gsm8k is None and args.gsm8k_public
    assert jobs.uses_hub(public, FIDELITY) and not jobs.uses_hub(s, FIDELITY)


def test_a_variants_fidelity_job_mounts_the_baselines_reference_read_only_and_compares() -> None:
    s = spec(accuracy={"limit": 20, "fidelity": FIDELITY_SPEC})
    settings = OperatorSettings(pod_user=2000)
    job = jobs.job(s, s.variant("fp8"), OWNER, RUN, FIDELITY, 1, settings, "llama-r1-bf16-fidelity")
    assert_mounts_baseline(job, "llama-r1-bf16-fidelity", "result.json.gz", "fidelity-reference.json.gz")
    args, publish = fidelity_cli(job)
    assert (args.phase, args.reference) == ("compare", jobs.REFERENCE_FILE)
    assert args.output == f"{jobs.OUTPUT_DIR}/{jobs.RESULT_KEY}" and "--gzip" not in publish
    # A variant's comparison cannot run without the reference.
    with pytest.raises(ValueError, match="baseline's reference"):
        jobs.job(s, s.variant("fp8"), OWNER, RUN, FIDELITY, 1, settings)
    # Only a sequential evaluation against the baseline reads the variant's own fidelity.
    with pytest.raises(ValueError, match="sequential evaluation"):
        jobs.job(s, s.variant("fp8"), OWNER, RUN, ACCURACY, 1, settings, None, "llama-r1-fp8-fidelity")


def test_each_job_may_update_only_its_own_configmap() -> None:
    sa, role, binding = rbac.job_account(OWNER, RUN, "bf16", "accuracy", 1)
    name = sa["metadata"]["name"]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [name],
            "verbs": ["update", "patch"],
        }
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == name
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": "team-a"}]
    for obj in (role, binding, sa):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "1234-uid"
        assert obj["metadata"]["labels"]["quantbench.dev/step"] == "accuracy"
    accuracy = next(st for st in plan_run(spec(), {}).variants[0].steps if st.name == "accuracy")
    job = jobs.job(spec(), spec().variant("bf16"), OWNER, RUN, accuracy, 1, OperatorSettings())
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == name == job["metadata"]["name"]


def test_run_snapshot_round_trip() -> None:
    from datetime import UTC, datetime

    s = spec()
    snap = RunSnapshot(
        run_id=RUN, generation=2, started_at=datetime(2026, 11, 23, tzinfo=UTC), spec=s, plan=plan_run(s, {})
    )
    cm = run_configmap(OWNER, snap)
    assert cm["metadata"]["name"] == "llama-r20261123-030000-run"
    assert snapshot_from_configmap(cm) == snap


def test_probe_job_takes_one_gpu_of_its_pool_in_the_server_image() -> None:
    s = spec(
        probe=True,
        variants=[
            {"name": "bf16", "precision": "bf16"},
            {"name": "bf16-l40s", "precision": "bf16", "placement": {"nodePool": "l40s", "gpus": 2}},
        ],
        server={
            "image": "vllm/vllm-openai:v9",
            "hfTokenSecret": {"name": "hf"},
            "modelCache": {"claimName": "models"},
        },
    )
    pools = {name: PoolInfo(name, "quantbench.dev/pool", 1, 4, None) for name in ("h100", "l40s")}
    plan = plan_run(s, pools)
    l40s = plan.probes[1]
    settings = OperatorSettings(probe_source_image="quantbench/operator:test", probe_timeout_seconds=900)
    job = probe.probe_job(s, l40s, OWNER, RUN, 1, settings)
    name = "llama-r20261123-030000-probe-l40s"
    assert job["metadata"]["name"] == name
    assert job["metadata"]["labels"]["quantbench.dev/step"] == "probe-l40s"
    assert "quantbench.dev/variant" not in job["metadata"]["labels"]
    assert job["spec"]["activeDeadlineSeconds"] == 900 and job["spec"]["backoffLimit"] == 0
    ps = job["spec"]["template"]["spec"]
    assert ps["nodeSelector"] == {"quantbench.dev/pool": "l40s"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in ps["tolerations"]
    assert ps["serviceAccountName"] == name
    init = ps["initContainers"][0]
    assert init["image"] == "quantbench/operator:test"
    assert init["command"] == ["python", "-m", "quantbench.probe.lend", "/opt/quantbench-src"]
    c = ps["containers"][0]
    assert c["image"] == "vllm/vllm-openai:v9"  # the servers' own vLLM, for its kernels
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}  # one GPU, whatever the variants ask
    env = {e["name"]: e for e in c["env"]}
    assert env["PYTHONPATH"]["value"] == "/opt/quantbench-src"
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/opt/quantbench-src", "/results", "/root/.cache/huggingface"} <= mounts
    script = c["command"][-1]
    assert script.startswith(
        "set -e; python3 -m quantbench.probe --model-config meta-llama/Llama-3.1-8B-Instruct"
    )
    assert script.endswith(
        f"python3 -m quantbench_loadgen.publish --configmap {name} --key result.json /results/result.json"
    )
    other = OperatorSettings(probe_image="registry.example/torch:cuda")
    assert (
        probe.probe_job(s, l40s, OWNER, RUN, 1, other)["spec"]["template"]["spec"]["containers"][0]["image"]
        == "registry.example/torch:cuda"
    )
    cm = probe.probe_configmap(OWNER, RUN, l40s, 1)
    assert cm["metadata"]["name"] == name and json.loads(cm["data"]["input.json"])["pool"] == "l40s"


def test_a_run_configmap_of_the_previous_plan_shape_still_reads() -> None:
    """Plans used to list server/collect/teardown steps around the Jobs; a run in progress across an
    operator upgrade keeps its Jobs."""
    s = spec()
    snap = RunSnapshot(
        run_id=RUN,
        generation=1,
        started_at=datetime(2026, 11, 23, 3, tzinfo=UTC),
        spec=s,
        plan=plan_run(s, {}),
    )
    cm = run_configmap(OWNER, snap)
    doc = json.loads(cm["data"]["run.json"])
    for v in doc["plan"]["variants"]:
        v["steps"] = [
            {"kind": "server", "name": "server"},
            *v["steps"],
            {"kind": "teardown", "name": "teardown"},
        ]
    cm["data"]["run.json"] = json.dumps(doc)
    assert snapshot_from_configmap(cm) == snap


def test_the_hubs_offline_mode_only_where_every_source_is_local() -> None:
    serving = {
        "name": "chat",
        "type": "serving",
        "numPrompts": 5,
        "requestRates": [1],
        "dataset": {"kind": "sharegpt", "huggingFace": "anon/ShareGPT"},
    }
    s = spec(
        workloads=[{"name": "latency", "type": "latency"}, serving],
        server={"hfTokenSecret": {"name": "hf", "key": "t"}},
    )
    v = s.variant("bf16")

    steps = {st.name: st for st in plan_run(s, {}).variants[0].steps}

    def container(step: str, settings: OperatorSettings) -> dict[str, Any]:
        c: dict[str, Any] = jobs.job(s, v, OWNER, RUN, steps[step], 1, settings)["spec"]["template"]["spec"][
            "containers"
        ][0]
        return c

    latency = container("wl-latency", OperatorSettings())
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in latency["env"]
    for step in ("wl-chat", "accuracy"):  # a huggingFace dataset; GSM8K's public default
        c = container(step, OperatorSettings())
        names = {e["name"] for e in c["env"]}
        assert "HF_HUB_OFFLINE" not in names and "HF_DATASETS_OFFLINE" not in names
        assert {"name": "HF_HOME", "value": "/hub-cache"} in c["env"]
        assert {"name": "hub-cache", "mountPath": "/hub-cache"} in c["volumeMounts"]
        assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "t"}}} in c["env"]
    # A cluster without Hub access: offline everywhere (such a spec is stopped when its run starts anyway).
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in container(
        "wl-chat", OperatorSettings(hub_access=False)
    )["env"]
    dep = server.deployment(s, v, OWNER, RUN, 1, hub_access=False)
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in dep["spec"]["template"]["spec"]["containers"][0]["env"]


def test_a_gsm8k_configmap_is_mounted_as_the_folder() -> None:
    dataset = {"kind": "gsm8k", "configMap": {"name": "gsm8k", "key": "test.jsonl"}}
    s = spec(accuracy=False).model_copy(
        update={"accuracy": AccuracySpec.model_validate({"dataset": dataset})}
    )
    accuracy = Step(kind=StepKind.ACCURACY, name="accuracy")
    ps = jobs.job(s, s.variant("bf16"), OWNER, RUN, accuracy, 1, OperatorSettings())["spec"]["template"][
        "spec"
    ]
    assert {"name": "dataset", "configMap": {"name": "gsm8k"}} in ps["volumes"]  # every key: test and train
    assert "--dataset /data;" in ps["containers"][0]["command"][-1]
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in ps["containers"][0]["env"]


def assert_restricted(pod_spec: dict[str, Any]) -> None:
    """What PodSecurity `restricted` checks, on one pod spec."""
    psc = pod_spec["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    allowed = {"configMap", "emptyDir", "persistentVolumeClaim", "secret", "projected", "downwardAPI"}
    for volume in pod_spec["volumes"]:
        assert set(volume) - {"name"} <= allowed, volume
    for c in pod_spec["containers"] + pod_spec.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert {"name": "HOME", "value": "/home/quantbench"} in c["env"]


def test_every_pod_meets_podsecurity_restricted() -> None:
    s = spec(probe=True, server={"modelCache": {"claimName": "models", "mountPath": "/models"}})
    settings = OperatorSettings(pod_user=2000)
    dep = server.deployment(s, s.variant("bf16"), OWNER, RUN, 1, None, pod_user=settings.pod_user)
    pod = dep["spec"]["template"]["spec"]
    assert_restricted(pod)
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsUser"] == 2000
    assert {"name": "HF_HOME", "value": "/models"} in pod["containers"][0]["env"]
    pools = {"h100": PoolInfo("h100", "quantbench.dev/pool", 1, 8, None)}
    plan = plan_run(s, pools)
    for step in plan.variants[0].steps:
        assert_restricted(
            jobs.job(s, s.variant("bf16"), OWNER, RUN, step, 1, settings)["spec"]["template"]["spec"]
        )
    probe_pod = probe.probe_job(s, plan.probes[0], OWNER, RUN, 1, settings)["spec"]["template"]["spec"]
    assert_restricted(probe_pod)
    assert len(probe_pod["initContainers"]) == 1
