"""Every example in examples/ runs as written: the objects the operator makes for it carry what the Job's
program needs (its arguments parse, every path it reads is mounted with the right keys, the Hub's offline
mode only where every source is local), and the sources it names are checked before any GPU is held.
examples/local.yaml is for `quantbench run`: its commands are checked the same way there."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from quantbench.api.v1alpha1 import QuantBenchmark
from quantbench.api.validation import load_benchmarks
from quantbench.local.executor import LocalSettings, accuracy_argv, loadgen_argv, local_server_argv
from quantbench.manifests import jobs, server
from quantbench.manifests.common import Owner
from quantbench.plan import PoolInfo, plan_run
from quantbench.settings import OperatorSettings
from quantbench.sources import SourceFacts, referenced, unavailable
from quantbench_loadgen.accuracy.cli import build_parser as accuracy_parser
from quantbench_loadgen.accuracy.cli import request_from_args
from quantbench_loadgen.cli import build_parser as loadgen_parser
from quantbench_loadgen.cli import load_workload
from quantbench_loadgen.specs import AccuracySpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLUSTER_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("*.yaml") if p.name != "local.yaml")
OWNER = Owner("x", "team-a", "uid")
RUN = "r20261130-090000"
PRODUCTS = {"h100": "NVIDIA-H100-80GB-HBM3", "h200": "NVIDIA-H200", "l40s": "NVIDIA-L40S"}
POOLS = {
    **{name: PoolInfo(name, "quantbench.dev/pool", 2, 8, product) for name, product in PRODUCTS.items()},
    "cpu": PoolInfo("cpu", "quantbench.dev/pool", 2, 0, None),
}


def example(name: str) -> QuantBenchmark:
    [bench] = load_benchmarks(EXAMPLES / name)
    return bench


def all_present(bench: QuantBenchmark) -> SourceFacts:
    """The objects the example names, as a user following its comments creates them."""
    configmaps, claims = referenced(bench.spec)
    return SourceFacts(
        namespace="team-a",
        configmaps={name: frozenset({"test.jsonl"}) for name in configmaps},
        claims=dict.fromkeys(claims, True),
    )


class JobFiles:
    """A Job pod's file system as its manifest mounts it."""

    def __init__(self, pod: dict[str, Any]) -> None:
        self.volumes = {v["name"]: v for v in pod["volumes"]}
        [self.container] = pod["containers"]
        self.mounts = {m["mountPath"]: m for m in self.container["volumeMounts"]}
        self.env = {e["name"]: e.get("value") for e in self.container["env"]}

    def source(self, path: str) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(volume, mount, rest of the path) that ``path`` is read from; fails when nothing mounts it."""
        for mount_path, mount in sorted(self.mounts.items(), key=lambda kv: -len(kv[0])):
            if path == mount_path or path.startswith(mount_path.rstrip("/") + "/"):
                return self.volumes[mount["name"]], mount, path[len(mount_path) :].lstrip("/")
        raise AssertionError(f"{path} is read by the Job but nothing is mounted there: {sorted(self.mounts)}")

    def configmap_file(self, path: str) -> tuple[str, str]:
        """(ConfigMap, key) a file path is read from."""
        volume, _, rest = self.source(path)
        cm = volume["configMap"]
        items = cm.get("items")
        key = next(i["key"] for i in items if i["path"] == rest) if items else rest
        return cm["name"], key

    def writable(self, path: str) -> bool:
        volume, mount, _ = self.source(path)
        return "emptyDir" in volume and not mount.get("readOnly", False)


def script_argv(container: dict[str, Any]) -> list[str]:
    """The Job program's argv: the first command of the container's shell script."""
    assert container["command"][:2] == ["/bin/sh", "-c"]
    first = container["command"][2].removeprefix("set -e; ").split("; ")[0]
    return shlex.split(first)


@pytest.mark.parametrize("name", CLUSTER_EXAMPLES)
def test_each_jobs_program_gets_what_it_reads(name: str, tmp_path: Path) -> None:
    bench = example(name)
    spec = bench.spec
    plan = plan_run(spec, POOLS, unavailable(spec, all_present(bench), hub_access=True))
    assert all(vp.unavailable is None for vp in plan.variants), plan
    settings = OperatorSettings()
    runnable = [vp for vp in plan.variants if vp.unsupported is None]
    assert runnable
    for vp in runnable:
        variant = spec.variant(vp.variant)
        for step in vp.steps:
            job = jobs.job(spec, variant, OWNER, RUN, step, 1, settings)
            cm = jobs.results_configmap(OWNER, RUN, vp.variant, step.name, jobs.job_input(spec, step), 1)
            files = JobFiles(job["spec"]["template"]["spec"])
            argv = script_argv(files.container)
            # The Hub's offline mode exactly where every source of the Job is local.
            hub = jobs.uses_hub(spec, step)
            assert ("HF_HUB_OFFLINE" in files.env) is not hub, (name, step.name, files.env)
            if hub:
                assert files.writable(files.env["HF_HOME"] + "/hub")
            input_file = tmp_path / f"{vp.variant}-{step.name}.json"
            input_file.write_text(cm["data"]["input.json"])
            if step.name == "accuracy":
                assert argv[:3] == ["python", "-m", "quantbench_loadgen.accuracy"]
                args = accuracy_parser().parse_args(argv[3:])
                assert files.configmap_file(str(args.spec)) == (cm["metadata"]["name"], "input.json")
                assert files.writable(str(args.out))
                request = request_from_args(argparse.Namespace(**{**vars(args), "spec": input_file}))
                assert request.model == variant.model or spec.model
                dataset = AccuracySpec.model_validate(json.loads(cm["data"]["input.json"])).dataset
                if dataset is None:
                    assert request.dataset_dir is None and hub  # the public GSM8K, from the Hub
                else:
                    assert request.dataset_dir is not None
                    volume, _, rest = files.source(request.dataset_dir)
                    if dataset.config_map is not None:  # the ConfigMap is the folder, every key in it
                        assert volume["configMap"] == {"name": dataset.config_map.name} and rest == ""
                        assert files.configmap_file(request.dataset_dir + "/test.jsonl")[1] == "test.jsonl"
                    else:
                        assert dataset.volume is not None
                        assert volume["persistentVolumeClaim"]["claimName"] == dataset.volume.claim_name
                        assert rest == dataset.volume.sub_path
            else:
                assert argv[0] == "quantbench-loadgen"
                args = loadgen_parser().parse_args(argv[1:])
                assert files.configmap_file(args.workload) == (cm["metadata"]["name"], "input.json")
                assert files.writable(args.output)
                workload = load_workload(str(input_file), args.dataset_path)
                dataset = getattr(workload, "dataset", None)
                if args.dataset_path is not None:
                    files.source(args.dataset_path)
                    assert dataset is not None and dataset.path == args.dataset_path
                elif dataset is not None and dataset.kind != "random":
                    assert dataset.hugging_face is not None and hub  # downloaded into HF_HOME


@pytest.mark.parametrize("name", CLUSTER_EXAMPLES)
def test_each_server_runs_its_placement(name: str) -> None:
    bench = example(name)
    spec = bench.spec
    settings = OperatorSettings()
    for vp in plan_run(spec, POOLS).variants:
        if vp.unsupported is not None:
            continue
        variant = spec.variant(vp.variant)
        placement = spec.placement_for(variant)
        dep = server.deployment(spec, variant, OWNER, RUN, 1, cpu_image=settings.cpu_server_image)
        c = dep["spec"]["template"]["spec"]["containers"][0]
        if placement.on_cpu:
            assert (
                c["image"] == settings.cpu_server_image and "nvidia.com/gpu" not in c["resources"]["limits"]
            )
            assert {e["name"] for e in c["env"]} >= {"VLLM_CPU_OMP_THREADS_BIND", "OMP_NUM_THREADS"}
            assert "--kv-cache-memory-bytes" in c["args"] and "--gpu-memory-utilization" not in c["args"]
        else:
            assert c["image"] == spec.server.image
            assert c["resources"]["limits"][placement.gpu_resource] == str(placement.gpus)
        args = c["args"]
        assert args[args.index("--model") + 1] == (variant.model or spec.model)
        assert args[args.index("--port") + 1] == str(spec.server.port)


# What each example needs from the Hub, named when the cluster's pods cannot reach it.
HUB_NEEDS = {
    "bench.yaml": ["workloads[2].dataset.huggingFace", "accuracy.dataset is not set"],  # model: cached
    "cpu.yaml": ["model Qwen/Qwen2.5-0.5B-Instruct", "variants[awq-xeon].model"],
    "cross-gpu.yaml": ["model meta-llama/Llama-3.1-8B-Instruct", "variants[awq-l40s].model"],
    "scheduled.yaml": ["accuracy.dataset is not set", "variants[w8a8].model"],
}


@pytest.mark.parametrize("name", CLUSTER_EXAMPLES)
def test_without_hub_access_each_example_fails_before_any_gpu_naming_the_source(name: str) -> None:
    bench = example(name)
    why = unavailable(bench.spec, all_present(bench), hub_access=False)
    message = " ".join(why.values())
    for needle in HUB_NEEDS[name]:
        assert needle in message, (name, message)
    assert "hubAccess: false" in message
    assert set(why) == {v.name for v in bench.spec.variants}  # every example needs the Hub somewhere
    assert plan_run(bench.spec, POOLS, why).lanes == []


@pytest.mark.parametrize("name", CLUSTER_EXAMPLES)
def test_each_example_names_the_objects_it_needs(name: str) -> None:
    """Missing ConfigMaps and claims are named (the driver reads exactly these)."""
    bench = example(name)
    configmaps, claims = referenced(bench.spec)
    missing = SourceFacts(namespace="team-a", configmaps=dict.fromkeys(configmaps), claims={})
    why = unavailable(bench.spec, missing, hub_access=True)
    for obj in sorted(configmaps | claims):
        assert all(obj in message for message in why.values()), (name, obj, why)
    assert bool(why) == bool(configmaps | claims)


def test_the_local_example_runs_the_same_programs(tmp_path: Path) -> None:
    bench = example("local.yaml")
    spec = bench.spec
    settings = LocalSettings(out_dir=tmp_path, gsm8k_dir="/data/gsm8k")
    for variant in spec.variants:
        argv = local_server_argv(spec, variant, "/venv/bin/python", 8001)
        assert argv[argv.index("--model") + 1] == variant.model or spec.model
    model = spec.model
    load = loadgen_argv(settings, "http://127.0.0.1:8001", model, tmp_path / "w.yaml", tmp_path / "o.json")
    assert load[1:3] == ["-m", "quantbench_loadgen.cli"]
    loadgen_parser().parse_args(load[3:])
    acc = accuracy_argv(
        settings, spec, "http://127.0.0.1:8001", model, tmp_path / "a.yaml", tmp_path / "a.json"
    )
    args = accuracy_parser().parse_args(acc[3:])
    assert args.dataset == "/data/gsm8k" and args.max_length == spec.server.max_model_len
