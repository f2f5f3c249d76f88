"""Regression detection between two runs' summaries, and what changed between them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from quantbench.analysis.summary import answer_sheet
from quantbench.api.summary import (
    AccuracySummary,
    Interval,
    RunSummary,
    ServingPoint,
    ThroughputPoint,
    VariantSummary,
)
from quantbench.api.v1alpha1 import Phase, RunProvenance, RunRecord, Tolerances, VariantProvenance
from quantbench.regression import changes, compare, condition_message, reference_run, with_changes

TOL = Tolerances()


def row(ms: float = 7.0, tps: float = 1000.0, **kw: Any) -> VariantSummary:
    fields: dict[str, Any] = {
        "variant": "fp8",
        "precision": "fp8",
        "phase": "Succeeded",
        "ms_per_token_bs1": ms,
        "throughput": [ThroughputPoint(batch_size=16, output_tokens_per_second=tps)],
        "serving": [ServingPoint(request_rate="4", ttft_median_ms=40, ttft_p99_ms=90, itl_p99_ms=20)],
        "verdict": "FreeSpeedup",
        **kw,
    }
    return VariantSummary(**fields)


def summary(*rows: VariantSummary) -> RunSummary:
    return RunSummary(baseline="bf16", variants=list(rows))


def accuracy(correct: list[bool]) -> AccuracySummary:
    keys = {f"q{i:03d}": c for i, c in enumerate(correct)}
    n, k = len(correct), sum(correct)
    return AccuracySummary(
        task="gsm8k",
        questions=n,
        correct=k,
        accuracy=k / n,
        interval95=Interval(low=max(0, k / n - 0.1), high=min(1, k / n + 0.1)),
        answers=answer_sheet(keys),
    )


def test_same_figures_are_clean() -> None:
    assert compare(summary(row()), summary(row()), TOL, "r1") == []


def test_worse_latency_throughput_and_p99_ttft_are_named() -> None:
    after = row(
        ms=8.0, tps=850.0, serving=[ServingPoint(request_rate="4", ttft_median_ms=41, ttft_p99_ms=130)]
    )
    found = compare(summary(row()), summary(after), TOL, "r1")
    assert {(r.metric, r.at) for r in found} == {
        ("msPerTokenBs1", "batch 1"),
        ("outputTokensPerSecond", "batch 16"),
        ("ttftP99Ms", "rate 4"),
    }
    latency = next(r for r in found if r.family == "latency")
    assert latency.before == 7.0 and latency.after == 8.0 and "7 -> 8 ms/token" in latency.message


def test_tolerance_per_family() -> None:
    after = row(ms=7.6)  # 8.6% worse
    assert compare(summary(row()), summary(after), TOL, "r1") == []
    assert len(compare(summary(row()), summary(after), Tolerances(latency=0.05), "r1")) == 1


def test_change_inside_the_noise_interval_is_not_a_regression() -> None:
    before = row(
        throughput=[
            ThroughputPoint(
                batch_size=16, output_tokens_per_second=1000, interval95=Interval(low=820, high=1180)
            )
        ]
    )
    after = row(
        throughput=[
            ThroughputPoint(
                batch_size=16, output_tokens_per_second=860, interval95=Interval(low=700, high=1020)
            )
        ]
    )
    assert compare(summary(before), summary(after), TOL, "r1") == []
    tight = row(
        throughput=[
            ThroughputPoint(
                batch_size=16, output_tokens_per_second=860, interval95=Interval(low=850, high=870)
            )
        ]
    )
    tight_before = row(
        throughput=[
            ThroughputPoint(
                batch_size=16, output_tokens_per_second=1000, interval95=Interval(low=990, high=1010)
            )
        ]
    )
    assert [r.metric for r in compare(summary(tight_before), summary(tight), TOL, "r1")] == [
        "outputTokensPerSecond"
    ]


def test_accuracy_drop_must_be_significant_on_the_same_questions() -> None:
    base = [True] * 80 + [False] * 20
    small = [False] * 4 + [True] * 76 + [False] * 20  # 4 points, p = 0.125
    big = [False] * 15 + [True] * 65 + [False] * 20  # 15 points, p < 0.001
    assert (
        compare(summary(row(accuracy=accuracy(base))), summary(row(accuracy=accuracy(small))), TOL, "r1")
        == []
    )
    found = compare(summary(row(accuracy=accuracy(base))), summary(row(accuracy=accuracy(big))), TOL, "r1")
    assert [r.family for r in found] == ["accuracy"]
    assert found[0].p_value is not None and found[0].p_value < 0.001
    assert "80.0% -> 65.0%" in found[0].message and "15 now wrong" in found[0].message


def test_failed_variant_that_succeeded_before() -> None:
    found = compare(summary(row()), summary(row(phase="Failed", verdict="Failed")), TOL, "r1")
    assert [r.message for r in found] == ["fp8: Succeeded -> Failed"]


def prov(image: str, digest: str | None, vllm: str | None, generation: int = 1) -> RunProvenance:
    return RunProvenance(
        generation=generation,
        quantbench_version="0.1.0",
        variants=[
            VariantProvenance(variant="fp8", image=image, image_digest=digest, vllm_version=vllm, model="m")
        ],
    )


def test_what_changed_names_image_digest_and_vllm() -> None:
    before = prov("vllm/vllm-openai:v0.11.0", "docker.io/vllm/vllm-openai@sha256:" + "a" * 64, "0.11.0")
    after = prov("vllm/vllm-openai:v0.11.1", "docker.io/vllm/vllm-openai@sha256:" + "b" * 64, "0.11.1", 2)
    assert changes(before, after, "fp8") == [
        "image vllm/vllm-openai:v0.11.0 -> vllm/vllm-openai:v0.11.1",
        "image digest sha256:aaaaaaaaaaaa -> sha256:bbbbbbbbbbbb",
        "vLLM 0.11.0 -> 0.11.1",
        "spec generation 1 -> 2",
    ]
    found = with_changes(compare(summary(row()), summary(row(ms=9.0)), TOL, "r1"), before, after)
    message = condition_message(found, "r2")
    assert message.startswith("run r2 vs r1: fp8: msPerTokenBs1 at batch 1 rose 29%")
    assert "changed: image vllm/vllm-openai:v0.11.0 -> vllm/vllm-openai:v0.11.1" in message


def test_reference_is_the_pinned_run_else_the_latest_successful_one() -> None:
    t = datetime(2027, 1, 1, tzinfo=UTC)

    def run(rid: str, phase: Phase, with_summary: bool = True) -> RunRecord:
        return RunRecord(
            id=rid, generation=1, phase=phase, started_at=t, summary=summary(row()) if with_summary else None
        )

    history = [
        run("r3", Phase.FAILED),
        run("r2", Phase.SUCCEEDED, False),
        run("r1", Phase.PARTIALLY_SUCCEEDED),
        run("r0", Phase.SUCCEEDED),
    ]
    assert (reference_run(history, None) or history[0]).id == "r1"
    assert (reference_run(history, "r0") or history[0]).id == "r0"
    assert reference_run(history, "r9") is None  # a pinned run that is not kept: no comparison
