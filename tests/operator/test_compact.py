"""A status that stays small (quantbench.compact): the largest spec the CRD allows, historyLimit 100."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

import pytest

from quantbench import regression
from quantbench.api.summary import (
    AccuracySummary,
    Interval,
    RunSummary,
    ServingPoint,
    ThroughputPoint,
    VariantSummary,
)
from quantbench.api.v1alpha1 import (
    Condition,
    Phase,
    QuantBenchmarkSpec,
    QuantBenchmarkStatus,
    RunProvenance,
    RunRecord,
    VariantPhase,
    VariantProvenance,
    VariantStatus,
)
from quantbench.compact import (
    CONFIGMAP_BUDGET,
    DETAILED_ENTRIES,
    REGRESSIONS_PER_VARIANT,
    STATUS_BUDGET,
    SUMMARY_BUDGET,
    SUMMARY_KEY,
    bounded_summary,
    compact_history,
    compact_record,
    decode_summary,
    summary_config_map,
    summary_config_map_name,
    wire_size,
    worst_regressions,
)
from quantbench.manifests.common import Owner
from quantbench.status import status_patch, with_history
from tests.operator import factories

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
MAX_VARIANTS, MAX_WORKLOADS, MAX_RATES = 16, 16, 32
EVIDENCE = [
    "decode is 38.2% faster than bf16 at batch 1 (1.84 vs 2.98 ms/token, 20 requests each)",
    "GSM8K accuracy 71.2% vs 72.0% (paired McNemar p = 0.41 over 1319 questions): no significant loss",
    "under load the TTFT ratio rises to 1.31 at 32 requests/s (serving workload chat)",
    "weights take 4.9 GiB vs 15.0 GiB (0.33 of the baseline)",
]


def largest_spec() -> QuantBenchmarkSpec:
    variants = [{"name": f"variant-{i:02d}-abcdefgh"[:20], "precision": "bf16"} for i in range(MAX_VARIANTS)]
    workloads = [
        {
            "name": f"serving-{w:02d}",
            "type": "serving",
            "dataset": {"kind": "random", "inputLen": 512, "outputLen": 128},
            "numPrompts": 1000,
            "requestRates": [*[float(r + 1) for r in range(MAX_RATES - 1)], "inf"],
        }
        for w in range(MAX_WORKLOADS)
    ]
    return factories.spec(
        variants=variants, workloads=workloads, historyLimit=100, baseline=variants[0]["name"]
    )


def largest_summary(spec: QuantBenchmarkSpec, rng: random.Random) -> RunSummary:
    """A summary with every point the spec can produce, each figure at full float precision."""

    def f() -> float:
        return rng.uniform(0.001, 5000.0)

    rows = []
    for v in spec.variants:
        serving = [
            ServingPoint(
                workload=w.name,
                request_rate=str(rate),
                ttft_median_ms=f(),
                ttft_p99_ms=f(),
                itl_median_ms=f(),
                e2e_median_ms=f(),
                output_tokens_per_second=f(),
                goodput_requests_per_second=f(),
                ttft_ratio_to_baseline=f(),
                itl_ratio_to_baseline=f(),
                throughput_ratio_to_baseline=f(),
            )
            for w in spec.workloads
            for rate in getattr(w, "request_rates", [])
        ]
        throughput = [
            ThroughputPoint(batch_size=b, output_tokens_per_second=f(), ratio_to_baseline=f())
            for b in range(1, 33)
        ]
        accuracy = AccuracySummary(
            task="gsm8k",
            questions=1319,
            correct=900,
            accuracy=rng.random(),
            flexible_accuracy=rng.random(),
            interval95=Interval(low=rng.random(), high=rng.random()),
            delta_to_baseline=rng.random(),
            paired_questions=1319,
            baseline_only_correct=12,
            variant_only_correct=9,
            paired_p_value=rng.random(),
            minimum_detectable_delta=rng.random(),
        )
        rows.append(
            VariantSummary(
                variant=v.name,
                precision=v.precision,
                phase=VariantPhase.SUCCEEDED,
                kernel="awq_marlin",
                ms_per_token_bs1=f(),
                tokens_per_second_bs1=f(),
                latency_ratio_to_baseline=f(),
                throughput=throughput,
                crossover_batch_size=f(),
                serving=serving,
                weights_gib=f(),
                weights_ratio_to_baseline=f(),
                startup_seconds=f(),
                bandwidth_floor_ms_per_token=f(),
                bandwidth_efficiency=rng.random(),
                accuracy=accuracy,
                verdict="SpeedupButInferior",
                evidence=EVIDENCE,
            )
        )
    return RunSummary(
        baseline=spec.baseline, gpu="NVIDIA-H100-80GB-HBM3", best=spec.variants[1].name, variants=rows
    )


def worse(summary: RunSummary) -> RunSummary:
    """Every figure of ``summary`` twice as bad, outside any noise interval."""
    rows = []
    for v in summary.variants:
        serving = [
            p.model_copy(
                update={
                    k: getattr(p, k) * 2
                    for k in ("ttft_median_ms", "ttft_p99_ms", "itl_median_ms", "itl_p99_ms")
                    if getattr(p, k) is not None
                }
            )
            for p in v.serving
        ]
        throughput = [
            t.model_copy(
                update={"output_tokens_per_second": t.output_tokens_per_second / 2, "interval95": None}
            )
            for t in v.throughput
        ]
        rows.append(
            v.model_copy(
                update={
                    "ms_per_token_bs1": (v.ms_per_token_bs1 or 1.0) * 2,
                    "serving": serving,
                    "throughput": throughput,
                }
            )
        )
    return summary.model_copy(update={"variants": rows})


def provenance(spec: QuantBenchmarkSpec) -> RunProvenance:
    """What each variant ran on, with every field at a realistic length."""
    return RunProvenance(
        generation=12,
        quantbench_version="0.1.0",
        variants=[
            VariantProvenance(
                variant=v.name,
                image="vllm/vllm-openai:v0.11.0",
                image_digest="docker.io/vllm/vllm-openai@sha256:" + "a" * 64,
                vllm_version="0.11.0",
                model="org/a-model-name-of-some-length-AWQ",
                revision="0123456789abcdef0123456789abcdef01234567",
                gpu="NVIDIA-H100-80GB-HBM3",
                gpu_driver="550.54.15",
                node="h100-node-0001",
            )
            for v in spec.variants
        ],
    )


def finished_status(spec: QuantBenchmarkSpec, runs: int) -> tuple[QuantBenchmarkStatus, RunSummary]:
    """The status after ``runs`` finished runs, each written as the operator's _finish writes it (every run
    with the same largest summary: the entries' size does not depend on the figures' values)."""
    status = QuantBenchmarkStatus()
    summary = largest_summary(spec, random.Random(7))
    in_status = bounded_summary(summary, "llama-rX-summary")
    slower = worse(summary)
    for i in range(runs):
        start = T0 + timedelta(hours=i)
        rid = f"r{start:%Y%m%d-%H%M%S}"
        kept_in = summary_config_map_name("llama", rid)
        record = RunRecord(
            id=rid,
            generation=1,
            phase=Phase.SUCCEEDED,
            started_at=start,
            finished_at=start,
            provenance=provenance(spec),
        )
        # Every run regressed on every figure against the one before: the most a history entry can hold.
        found = worst_regressions(regression.compare(summary, slower, spec.regression.tolerances, "r0"))
        record = compact_record(record, summary, kept_in)
        record = record.model_copy(update={"regressions": found, "reference_run": "r0"})
        history = compact_history(with_history(status.history, record, spec.history_limit), None)
        variants = [
            VariantStatus(
                name=v.name,
                precision=v.precision,
                phase=VariantPhase.SUCCEEDED,
                node_pool="h100",
                node="h100-node-0001",
                gpu="NVIDIA-H100-80GB-HBM3",
                kernel="awq_marlin",
                startup_seconds=123.4,
                weights_gib=4.9,
            )
            for v in spec.variants
        ]
        conditions = [
            Condition(
                type=t, status="True", reason="RunSucceeded", message="m" * 2000, last_transition_time=start
            )
            for t in ("Ready", "Progressing", "Degraded")
        ]
        status = status.model_copy(
            update={
                "phase": Phase.SUCCEEDED,
                "history": history,
                "summary": in_status,
                "variants": variants,
                "conditions": conditions,
                "best": summary.best,
            }
        )
    return status, summary


def test_the_largest_spec_with_history_limit_100_stays_under_the_status_budget() -> None:
    spec = largest_spec()
    assert spec.history_limit == 100 and len(spec.variants) == MAX_VARIANTS
    status, summary = finished_status(spec, 100)
    size = len(json.dumps(status_patch(status), separators=(",", ":")))
    full = wire_size(summary)
    print(f"full summary {full / 1024:.0f} KiB; status with 100 entries {size / 1024:.0f} KiB")
    assert full > 4 * SUMMARY_BUDGET  # the case that broke: an embedded summary per entry
    assert len(status.history) == 100 and size < STATUS_BUDGET
    assert status.summary is not None and wire_size(status.summary) <= SUMMARY_BUDGET
    assert any("full summary is in ConfigMap" in n for n in status.summary.notes)
    head = status.history[0]
    assert head.summary is None and len(head.variants) == MAX_VARIANTS and head.best == spec.variants[1].name
    assert head.variants[0].accuracy is not None and head.variants[0].verdict == "SpeedupButInferior"
    assert head.provenance is not None and len(head.regressions) == MAX_VARIANTS * REGRESSIONS_PER_VARIANT
    assert (
        status.history[DETAILED_ENTRIES].provenance is None
        and not status.history[DETAILED_ENTRIES].regressions
    )


def test_a_run_records_its_worst_regressions_per_variant() -> None:
    spec = largest_spec()
    summary = largest_summary(spec, random.Random(5))
    found = regression.compare(summary, worse(summary), spec.regression.tolerances, "r0")
    kept = worst_regressions(found)
    assert len(found) > 100 * MAX_VARIANTS  # every serving rate of every workload
    for v in spec.variants:
        mine = [r for r in kept if r.variant == v.name]
        assert len(mine) == REGRESSIONS_PER_VARIANT and mine[0].metric == "msPerTokenBs1"
        rest = sorted(abs(r.change) for r in found if r.variant == v.name and r.family != "latency")
        assert min(abs(r.change) for r in mine[1:]) >= rest[-(REGRESSIONS_PER_VARIANT - 1)]


def test_old_entries_keep_no_provenance_or_regressions_but_a_pinned_one_does() -> None:
    spec = largest_spec()
    entries = [
        RunRecord(
            id=f"r{i}",
            generation=1,
            phase=Phase.SUCCEEDED,
            started_at=T0,
            provenance=provenance(spec),
        )
        for i in range(DETAILED_ENTRIES + 2)
    ]
    history = compact_history(entries, pinned=f"r{DETAILED_ENTRIES + 1}")
    assert [h.provenance is not None for h in history] == [True] * DETAILED_ENTRIES + [False, True]


def test_the_full_summary_is_kept_compressed_in_its_configmap() -> None:
    spec = largest_spec()
    summary = largest_summary(spec, random.Random(3))
    cm = summary_config_map(Owner("llama", "ns", "uid"), "r1", 1, summary)
    assert cm is not None and cm["metadata"]["name"] == "llama-r1-summary"
    data = cm["binaryData"][SUMMARY_KEY]
    assert len(data) < CONFIGMAP_BUDGET
    decoded = decode_summary(data)
    assert [v.variant for v in decoded.variants] == [v.variant for v in summary.variants]
    first, original = decoded.variants[3].serving[100], summary.variants[3].serving[100]
    assert first.ttft_p99_ms == pytest.approx(original.ttft_p99_ms, rel=1e-4)
    print(f"summary ConfigMap: {len(data) / 1024:.0f} KiB (base64 of gzip)")


def test_a_small_summary_stays_whole_and_old_entries_are_compacted() -> None:
    spec = factories.spec()
    summary = largest_summary(spec, random.Random(1))
    assert bounded_summary(summary, "cm") == summary
    old = RunRecord(id="r0", generation=1, phase=Phase.SUCCEEDED, started_at=T0, summary=summary)
    (compacted,) = compact_history([old])
    assert compacted.summary is None and [d.variant for d in compacted.variants] == [
        v.name for v in spec.variants
    ]
