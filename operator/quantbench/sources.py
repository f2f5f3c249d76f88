"""Can a run's datasets and model be had where its pods run? Decided when the run starts, before any GPU
is held; a variant that cannot have them ends Failed (reason SourceUnavailable) with the source and the fix
named, instead of failing after its server has started.

What is known up front, and checked here (pure functions over what the driver read from the API):
- a ConfigMap a dataset names exists in the benchmark's namespace and holds the key (for GSM8K: test.jsonl);
- a PersistentVolumeClaim a dataset or server.modelCache names exists;
- a source on the Hugging Face Hub (dataset.huggingFace, the accuracy task's public GSM8K default, a model
  id that no model cache volume holds) is usable only where the cluster's pods may reach the Hub: the
  operator's hubAccess setting (chart value `hubAccess`) says so;
- a dataset `path` is a path on the machine of `quantbench run`: a benchmark Job sees only what is mounted.
What is not known up front: whether the Hub answers from the pods' network (a Job that cannot download
fails with the downloader's message naming the source), what a volume holds, a path inside a hostPath cache.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from quantbench.api.v1alpha1 import QuantBenchmarkSpec, Variant
from quantbench_loadgen.specs import DatasetKind, DatasetSource

GSM8K_TEST_KEY = "test.jsonl"
PUBLIC_GSM8K = "openai/gsm8k"
NO_HUB = "this cluster's pods cannot reach the Hugging Face Hub (operator setting hubAccess: false)"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class SourceFacts:
    """What the API says about the objects a spec names, in the benchmark's namespace."""

    namespace: str
    configmaps: Mapping[str, frozenset[str] | None] = field(default_factory=dict)  # keys; None: absent
    claims: Mapping[str, bool] = field(default_factory=dict)  # PersistentVolumeClaim name -> exists


def is_hub_id(model: str) -> bool:
    """Whether ``model`` names a Hub repository (``org/name``) rather than a path."""
    return bool(_HUB_ID.match(model)) and not model.startswith(".")


def dataset_sources(spec: QuantBenchmarkSpec) -> Iterator[tuple[str, DatasetSource]]:
    """Every dataset the run's Jobs read, with the field that names it."""
    for i, w in enumerate(spec.workloads):
        dataset = getattr(w, "dataset", None)
        if isinstance(dataset, DatasetSource) and dataset.kind != DatasetKind.RANDOM:
            yield f"workloads[{i}].dataset", dataset
    if spec.accuracy is not None and spec.accuracy.dataset is not None:
        yield "accuracy.dataset", spec.accuracy.dataset


def referenced(spec: QuantBenchmarkSpec) -> tuple[set[str], set[str]]:
    """(ConfigMap names, PersistentVolumeClaim names) the spec's sources name: what the driver reads."""
    configmaps = {d.config_map.name for _, d in dataset_sources(spec) if d.config_map is not None}
    claims = {d.volume.claim_name for _, d in dataset_sources(spec) if d.volume is not None}
    cache = spec.server.model_cache
    if cache is not None and cache.claim_name is not None:
        claims.add(cache.claim_name)
    return configmaps, claims


def _dataset_problem(where: str, d: DatasetSource, facts: SourceFacts, hub_access: bool) -> str | None:
    ns = facts.namespace
    if d.path is not None:
        return (
            f"{where}.path {d.path}: a path is read on the machine of `quantbench run`; a benchmark Job sees "
            f"only what is mounted into it: set {where}.volume (a PersistentVolumeClaim) or {where}.configMap"
        )
    if d.config_map is not None:
        ref = d.config_map
        keys = facts.configmaps.get(ref.name)
        if keys is None:
            return (
                f"{where}.configMap: ConfigMap {ref.name} does not exist in namespace {ns}: create it "
                f"(kubectl -n {ns} create configmap {ref.name} --from-file={ref.key})"
            )
        if ref.key not in keys:
            has = ", ".join(sorted(keys)) or "no keys"
            return f"{where}.configMap: ConfigMap {ref.name} has no key {ref.key} (it has {has}): add it"
    if d.volume is not None and not facts.claims.get(d.volume.claim_name, False):
        return (
            f"{where}.volume: PersistentVolumeClaim {d.volume.claim_name} does not exist in namespace {ns}: "
            f"create it with the dataset at {d.volume.sub_path}, or fix claimName"
        )
    if d.hugging_face is not None and not hub_access:
        return (
            f"{where}.huggingFace {d.hugging_face}: {NO_HUB}: copy the file to a PersistentVolumeClaim and set "
            f"{where}.volume, or into a ConfigMap (1 MiB at most) and set {where}.configMap"
        )
    return None


def run_problems(spec: QuantBenchmarkSpec, facts: SourceFacts, hub_access: bool) -> list[str]:
    """Problems every variant shares: the Jobs' datasets and the model cache volume."""
    out = [p for where, d in dataset_sources(spec) if (p := _dataset_problem(where, d, facts, hub_access))]
    if spec.accuracy is not None and spec.accuracy.dataset is None and not hub_access:
        out.append(
            f"accuracy.dataset is not set, so the accuracy Job would download the public {PUBLIC_GSM8K} from "
            f"the Hub, and {NO_HUB}: set accuracy.dataset to {{kind: gsm8k, volume: {{claimName: ..., "
            "subPath: <folder with test.jsonl and train.jsonl>}}} or {kind: gsm8k, configMap: {name: ..., "
            "key: test.jsonl}}"
        )
    cache = spec.server.model_cache
    if cache is not None and cache.claim_name is not None and not facts.claims.get(cache.claim_name, False):
        out.append(
            f"server.modelCache.claimName: PersistentVolumeClaim {cache.claim_name} does not exist in "
            f"namespace {facts.namespace}: create it, or fix claimName"
        )
    return out


def model_problem(spec: QuantBenchmarkSpec, variant: Variant, hub_access: bool) -> str | None:
    """A variant whose model only the Hub has, where pods cannot reach it."""
    model = variant.model or spec.model
    cache = spec.server.model_cache
    cached = cache is not None and (cache.claim_name is not None or cache.host_path is not None)
    if hub_access or cached or not is_hub_id(model):
        return None
    field_name = f"variants[{variant.name}].model" if variant.model else "model"
    return (
        f"{field_name} {model}: the server would download it from the Hub, and {NO_HUB}: put the weights "
        "(the Hub's cache layout) on a PersistentVolumeClaim and set server.modelCache.claimName, so the "
        "server loads them offline"
    )


def unavailable(spec: QuantBenchmarkSpec, facts: SourceFacts, hub_access: bool) -> dict[str, str]:
    """Variant name -> why its run cannot have its sources (one message, problems joined); absent: fine."""
    shared = run_problems(spec, facts, hub_access)
    out: dict[str, str] = {}
    for v in spec.variants:
        problems = [*shared, *filter(None, [model_problem(spec, v, hub_access)])]
        if problems:
            out[v.name] = "; ".join(problems)
    return out


def facts_from_objects(
    namespace: str, configmaps: Mapping[str, dict[str, object] | None], claims: Mapping[str, object | None]
) -> SourceFacts:
    """SourceFacts from the objects as read from the API (None: not found)."""
    keys: dict[str, frozenset[str] | None] = {}
    for name, cm in configmaps.items():
        if cm is None:
            keys[name] = None
            continue
        data = cm.get("data") or {}
        binary = cm.get("binaryData") or {}
        keys[name] = frozenset(
            [*(data if isinstance(data, dict) else {}), *(binary if isinstance(binary, dict) else {})]
        )
    return SourceFacts(
        namespace=namespace, configmaps=keys, claims={name: obj is not None for name, obj in claims.items()}
    )
