"""Sources checked when a run starts: a spec whose datasets or model cannot be had fails before any GPU."""

from __future__ import annotations

from typing import Any

from quantbench.api.v1alpha1 import QuantBenchmarkSpec, VariantPhase
from quantbench.plan import plan_run
from quantbench.sources import SourceFacts, facts_from_objects, is_hub_id, referenced, unavailable
from tests.operator import factories
from tests.operator.test_plan import POOLS
from tests.operator.test_reconcile import World

SERVING = {"name": "serving", "type": "serving", "numPrompts": 10, "requestRates": [1]}


def spec_with(
    dataset: dict[str, Any] | None = None, accuracy: dict[str, Any] | None = None, **kw: Any
) -> Any:
    workloads = [{**SERVING, "dataset": dataset}] if dataset else []
    s = factories.spec_dict(workloads=workloads, accuracy=accuracy is not None, **kw)
    if accuracy is not None:
        s["accuracy"] = accuracy
    return QuantBenchmarkSpec.model_validate(s)


FACTS = SourceFacts(
    namespace="team-a",
    configmaps={"prompts": frozenset({"chat.jsonl"}), "gsm8k": frozenset({"test.jsonl"})},
    claims={"datasets": True, "hf-cache": True},
)


def test_sources_that_exist_are_fine() -> None:
    s = spec_with(
        {"kind": "jsonl", "configMap": {"name": "prompts", "key": "chat.jsonl"}},
        {"dataset": {"kind": "gsm8k", "configMap": {"name": "gsm8k", "key": "test.jsonl"}}},
        server={"modelCache": {"claimName": "hf-cache"}},
    )
    assert referenced(s) == ({"prompts", "gsm8k"}, {"hf-cache"})
    assert unavailable(s, FACTS, hub_access=False) == {}  # nothing needs the Hub: the model is cached


def test_a_missing_configmap_or_key_or_claim_is_named_with_the_fix() -> None:
    s = spec_with(
        {"kind": "jsonl", "configMap": {"name": "prompts", "key": "other.jsonl"}},
        {"dataset": {"kind": "gsm8k", "volume": {"claimName": "gone", "subPath": "gsm8k"}}},
        server={"modelCache": {"claimName": "no-cache"}},
    )
    why = unavailable(s, FACTS, hub_access=True)
    assert set(why) == {"bf16", "fp8", "awq-int4"}
    message = why["bf16"]
    assert (
        "workloads[0].dataset.configMap: ConfigMap prompts has no key other.jsonl (it has chat.jsonl)"
        in message
    )
    assert "accuracy.dataset.volume: PersistentVolumeClaim gone does not exist in namespace team-a" in message
    assert "server.modelCache.claimName: PersistentVolumeClaim no-cache does not exist" in message
    absent = spec_with({"kind": "jsonl", "configMap": {"name": "nope", "key": "a.jsonl"}})
    assert (
        "kubectl -n team-a create configmap nope --from-file=a.jsonl"
        in unavailable(absent, FACTS, True)["bf16"]
    )


def test_hub_sources_need_hub_access() -> None:
    s = spec_with({"kind": "sharegpt", "huggingFace": "anon/ShareGPT"}, {"limit": 10})
    assert unavailable(s, FACTS, hub_access=True) == {}
    why = unavailable(s, FACTS, hub_access=False)
    message = why["awq-int4"]
    assert "workloads[0].dataset.huggingFace anon/ShareGPT: this cluster's pods cannot reach" in message
    assert (
        "accuracy.dataset is not set, so the accuracy Job would download the public openai/gsm8k" in message
    )
    assert "variants[awq-int4].model hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4" in message
    assert (
        "server.modelCache.claimName" in why["bf16"]
        and "model meta-llama/Llama-3.1-8B-Instruct" in why["bf16"]
    )


def test_a_dataset_path_is_not_seen_by_a_job() -> None:
    s = spec_with({"kind": "sharegpt", "path": "/home/me/sharegpt.json"})
    assert "set workloads[0].dataset.volume" in unavailable(s, FACTS, hub_access=True)["bf16"]


def test_hub_ids_and_paths() -> None:
    assert is_hub_id("meta-llama/Llama-3.1-8B-Instruct") and is_hub_id("org/name.v2")
    assert not is_hub_id("/models/llama") and not is_hub_id(".cache/models/tiny-llama/bf16")
    assert not is_hub_id("llama") and not is_hub_id("a/b/c")


def test_facts_from_api_objects() -> None:
    facts = facts_from_objects(
        "ns",
        {"a": {"data": {"test.jsonl": "x"}, "binaryData": {"b.bin": "eA=="}}, "gone": None},
        {"claim": {"metadata": {}}, "missing": None},
    )
    assert facts.configmaps == {"a": frozenset({"test.jsonl", "b.bin"}), "gone": None}
    assert facts.claims == {"claim": True, "missing": False}


def test_an_unavailable_source_fails_every_variant_before_any_server_or_probe() -> None:
    s = spec_with({"kind": "sharegpt", "huggingFace": "anon/ShareGPT"}, probe=True)
    plan = plan_run(s, POOLS, unavailable(s, FACTS, hub_access=False))
    assert plan.lanes == [] and plan.probes == []
    w = World(s)
    w.ctx = w.ctx.__class__(w.ctx.owner, w.ctx.run_id, 1, s, plan, w.ctx.settings)
    d = w.step()
    assert {v.phase for v in w.statuses} == {VariantPhase.FAILED} and d.finished
    assert {v.reason for v in w.statuses} == {"SourceUnavailable"}
    assert w.objects == {}  # no server, no probe, no Job
    assert [n.reason for n in d.notes] == ["SourceUnavailable"] * 3
