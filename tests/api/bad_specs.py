"""The table of bad QuantBenchmark specs. Each one must be rejected by `quantbench validate` (pydantic) and by
the apiserver (CRD schema + CEL), and both messages must name the field and carry the hint words."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Doc = dict[str, Any]


def good_spec() -> Doc:
    return {
        "apiVersion": "quantbench.dev/v1alpha1",
        "kind": "QuantBenchmark",
        "metadata": {"name": "bad-spec"},
        "spec": {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "baseline": "bf16",
            "variants": [{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}],
            "placement": {"nodePool": "h100", "gpus": 1},
            "workloads": [
                {"name": "latency", "type": "latency", "inputLen": 512, "outputLen": 128},
                {"name": "sweep", "type": "throughput", "batchSizes": [1, 16, 64]},
                {
                    "name": "serving",
                    "type": "serving",
                    "dataset": {"kind": "sharegpt", "path": "/data/sharegpt.json"},
                    "numPrompts": 200,
                    "requestRates": [1, 4, "inf"],
                },
            ],
            "accuracy": {"task": "gsm8k", "numFewshot": 8, "limit": 100},
        },
    }


@dataclass(frozen=True)
class BadSpec:
    id: str
    change: Callable[[Doc], None]
    field: str  # the path both messages must name
    words: tuple[str, ...] = field(default=())  # words both messages must contain (case-insensitive)

    def doc(self) -> Doc:
        d = copy.deepcopy(good_spec())
        self.change(d)
        return d


def _spec(**kw: Any) -> Callable[[Doc], None]:
    def change(d: Doc) -> None:
        d["spec"].update(kw)

    return change


def _at(path: str, value: Any) -> Callable[[Doc], None]:
    """Set a value at a dotted path with [i] indexes, under spec."""

    def change(d: Doc) -> None:
        node: Any = d["spec"]
        parts = path.replace("[", ".[").split(".")
        for part in parts[:-1]:
            node = node[int(part[1:-1])] if part.startswith("[") else node.setdefault(part, {})
        last = parts[-1]
        if last.startswith("["):
            node[int(last[1:-1])] = value
        else:
            node[last] = value

    return change


def _delete(path: str) -> Callable[[Doc], None]:
    def change(d: Doc) -> None:
        node: Any = d["spec"]
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[part]
        del node[parts[-1]]

    return change


def _workload(i: int, **kw: Any) -> Callable[[Doc], None]:
    def change(d: Doc) -> None:
        d["spec"]["workloads"][i].update(kw)

    return change


def _drop_workload_key(i: int, key: str) -> Callable[[Doc], None]:
    def change(d: Doc) -> None:
        del d["spec"]["workloads"][i][key]

    return change


def _capacity(i: int, **kw: Any) -> Callable[[Doc], None]:
    """Turn serving workload i into a capacity workload with these fields."""

    def change(d: Doc) -> None:
        w = d["spec"]["workloads"][i]
        del w["requestRates"]
        w.update(type="capacity", **kw)

    return change


def _nothing_to_run(d: Doc) -> None:
    d["spec"]["workloads"] = []
    del d["spec"]["accuracy"]


BAD_SPECS: list[BadSpec] = [
    BadSpec("model-missing", _delete("model"), "spec.model", ("required",)),
    BadSpec("model-empty", _spec(model=""), "spec.model", ("at least 1",)),
    BadSpec("baseline-unknown", _spec(baseline="int4"), "spec.baseline", ("baseline must name one of",)),
    BadSpec(
        "variant-names-repeat",
        _spec(variants=[{"name": "a", "precision": "bf16"}, {"name": "a", "precision": "fp8"}], baseline="a"),
        "spec.variants",
        ("variant names must be unique",),
    ),
    BadSpec("variants-empty", _spec(variants=[]), "spec.variants", ("at least 1 item",)),
    BadSpec(
        "precision-unknown", _at("variants[1].precision", "int3"), "spec.variants[1].precision", ("awq-int4",)
    ),
    BadSpec("variant-name-case", _at("variants[1].name", "FP8"), "spec.variants[1].name", ("should match",)),
    BadSpec("variant-name-long", _at("variants[1].name", "f" * 21), "spec.variants[1].name", ("20",)),
    BadSpec(
        "variant-field-typo",
        _spec(variants=[{"name": "bf16", "precision": "bf16", "precison": "fp8"}]),
        "spec.variants[0].precison",
        ("precison",),
    ),
    BadSpec(
        "kernel-unknown",
        _at("variants[1].quantizationKernel", "exllama"),
        "quantizationKernel",
        ("awq_marlin",),
    ),
    BadSpec(
        "kernel-does-not-fit-precision",
        _at("variants[1].quantizationKernel", "awq"),
        "spec.variants[1]",
        ("quantizationKernel must fit the precision", "fp8: fp8, compressed-tensors"),
    ),
    BadSpec("kv-dtype-unknown", _at("variants[1].kvCacheDtype", "int4"), "kvCacheDtype", ("fp8_e4m3",)),
    BadSpec(
        "gpus-negative", _at("placement.gpus", -1), "spec.placement.gpus", ("greater than or equal to 0",)
    ),
    BadSpec("cpu-not-a-quantity", _at("placement.cpu", "four"), "spec.placement.cpu", ("should match",)),
    BadSpec(
        "memory-not-a-quantity", _at("placement.memory", "16 GB"), "spec.placement.memory", ("should match",)
    ),
    BadSpec("gpus-too-many", _at("placement.gpus", 17), "spec.placement.gpus", ("less than or equal to 16",)),
    BadSpec(
        "pool-with-space",
        _at("placement.nodePool", "h100 pool"),
        "spec.placement.nodePool",
        ("should match",),
    ),
    BadSpec(
        "toleration-operator",
        _at("placement.tolerations", [{"key": "nvidia.com/gpu", "operator": "Maybe"}]),
        "spec.placement.tolerations[0].operator",
        ("Exists",),
    ),
    BadSpec(
        "gpu-memory-utilization",
        _at("server", {"gpuMemoryUtilization": 1.5}),
        "spec.server.gpuMemoryUtilization",
        ("less than or equal to 0.99",),
    ),
    BadSpec("max-model-len", _at("server", {"maxModelLen": 100}), "spec.server.maxModelLen", ("256",)),
    BadSpec(
        "startup-timeout",
        _at("server", {"startupTimeout": "20 minutes"}),
        "spec.server.startupTimeout",
        ("should match",),
    ),
    BadSpec(
        "model-cache-two-volumes",
        _at("server", {"modelCache": {"claimName": "cache", "hostPath": "/models"}}),
        "spec.server.modelCache",
        ("set claimName or hostPath, not both",),
    ),
    BadSpec(
        "toleration-exists-with-value",
        _at("placement.tolerations", [{"key": "nvidia.com/gpu", "operator": "Exists", "value": "yes"}]),
        "spec.placement.tolerations[0]",
        ("operator Exists takes no value",),
    ),
    BadSpec(
        "model-cache-over-shm",
        _at("server", {"modelCache": {"claimName": "cache", "mountPath": "/dev/shm"}}),
        "spec.server.modelCache",
        ("other than /dev/shm",),
    ),
    BadSpec(
        "model-cache-relative",
        _at("server", {"modelCache": {"claimName": "cache", "mountPath": "models"}}),
        "spec.server.modelCache",
        ("absolute path",),
    ),
    BadSpec("workload-type", _workload(0, type="stress"), "spec.workloads[0]", ("latency", "throughput")),
    BadSpec("throughput-no-sizes", _drop_workload_key(1, "batchSizes"), "spec.workloads[1]", ("batchSizes",)),
    BadSpec("latency-with-sizes", _workload(0, batchSizes=[1, 2]), "spec.workloads[0]", ("batchSizes",)),
    BadSpec("batch-size-zero", _workload(1, batchSizes=[0, 16]), "spec.workloads[1].batchSizes[0]", ("1",)),
    BadSpec(
        "batch-sizes-repeat", _workload(1, batchSizes=[1, 16, 16]), "spec.workloads[1].batchSizes", ("16",)
    ),
    BadSpec("rate-zero", _workload(2, requestRates=[0, 4]), "spec.workloads[2].requestRates", ("> 0",)),
    BadSpec("rate-word", _workload(2, requestRates=[1, "fast"]), "spec.workloads[2].requestRates", ("inf",)),
    BadSpec(
        "serving-prompts-and-duration",
        _workload(2, duration="5m"),
        "spec.workloads[2]",
        ("set exactly one of numPrompts and duration",),
    ),
    BadSpec(
        "random-dataset-lengths",
        _workload(2, dataset={"kind": "random", "inputLen": 512}),
        "spec.workloads[2].dataset",
        ("a random dataset needs inputLen and outputLen",),
    ),
    BadSpec(
        "dataset-two-sources",
        _workload(2, dataset={"kind": "sharegpt", "path": "/a.json", "huggingFace": "x/y"}),
        "spec.workloads[2].dataset",
        ("give one dataset source",),
    ),
    BadSpec("slo-zero", _workload(2, slo={"ttftMs": 0}), "spec.workloads[2].slo.ttftMs", ("greater than 0",)),
    BadSpec(
        "capacity-without-slo",
        _capacity(2, slo={}),
        "spec.workloads[2]",
        ("a capacity workload needs slo",),
    ),
    BadSpec(
        "capacity-start-above-max",
        _capacity(2, slo={"ttftMs": 500}, startRate=2000),
        "spec.workloads[2]",
        ("startRate must be at most maxRate",),
    ),
    BadSpec(
        "capacity-floor-above-start",
        _capacity(2, slo={"ttftMs": 500}, startRate=1, minRate=2),
        "spec.workloads[2]",
        ("minRate must be at most startRate",),
    ),
    BadSpec(
        "workload-names-repeat",
        _workload(1, name="latency"),
        "spec.workloads",
        ("workload names must be unique",),
    ),
    BadSpec(
        "nothing-to-run",
        _nothing_to_run,
        "spec",
        ("give at least one workload or an accuracy task",),
    ),
    BadSpec("fewshot-too-many", _at("accuracy.numFewshot", 40), "spec.accuracy.numFewshot", ("16",)),
    BadSpec(
        "accuracy-dataset-kind",
        _at("accuracy.dataset", {"kind": "sharegpt", "path": "/x"}),
        "spec.accuracy",
        ("must be gsm8k",),
    ),
    BadSpec(
        "gsm8k-configmap-key",
        _at("accuracy.dataset", {"kind": "gsm8k", "configMap": {"name": "gsm8k", "key": "gsm8k.jsonl"}}),
        "spec.accuracy.dataset",
        ("set configMap.key to test.jsonl", "1 MiB"),
    ),
    BadSpec("schedule-words", _spec(schedule="every monday"), "spec.schedule", ("5 fields", "'0 3 * * 1'")),
    BadSpec("schedule-minute-99", _spec(schedule="99 3 * * 1"), "spec.schedule", ("5 fields", "e.g.")),
    BadSpec("time-zone", _spec(timeZone="Mars Base"), "spec.timeZone", ("IANA", "Europe/Berlin")),
    BadSpec(
        "concurrency-policy",
        _spec(concurrencyPolicy="Allow"),
        "spec.concurrencyPolicy",
        ("Forbid", "Replace"),
    ),
    BadSpec(
        "regression-reference",
        _spec(regression={"reference": "last-week"}),
        "spec.regression.reference",
        ("match",),
    ),
    BadSpec(
        "history-limit-zero", _spec(historyLimit=0), "spec.historyLimit", ("greater than or equal to 1",)
    ),
]
