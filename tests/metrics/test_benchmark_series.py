"""Run state, progress, regressions and operator health as Prometheus series; every family documented."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from quantbench.api.v1alpha1 import (
    Condition,
    Phase,
    QuantBenchmarkStatus,
    Regression,
    RunRecord,
    VariantPhase,
    VariantStatus,
)
from quantbench.metrics import (
    METRICS,
    OPERATOR_METRICS,
    BenchmarkCollector,
    OperatorMetrics,
    Sample,
    Timer,
    benchmark_samples,
    job_steps,
    regression_counts,
    samples_of_body,
)
from tests.metrics.test_metrics import _summary

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def _finding(text: str) -> Regression:
    """A regression finding from its message ("variant: what got worse"; no prefix: the whole run)."""
    variant = text.split(":", 1)[0] if ":" in text else ""
    return Regression(
        variant=variant,
        family="latency",
        metric="msPerTokenBs1",
        before=1.0,
        after=2.0,
        change=1.0,
        reference_run="r0",
        message=text,
    )


def _finished(regressions: list[str], phase: Phase = Phase.SUCCEEDED, days: int = 0) -> RunRecord:
    start = T0 + timedelta(days=days)
    return RunRecord(
        id=f"r{days}",
        generation=1,
        phase=phase,
        started_at=start,
        finished_at=start + timedelta(minutes=42),
        summary=_summary(),
        regressions=[_finding(r) for r in regressions],
    )


def _one(samples: list[Sample], name: str, **labels: str) -> float:
    hits = [
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(hits) == 1, (name, labels, hits)
    return hits[0]


def _running_status() -> QuantBenchmarkStatus:
    return QuantBenchmarkStatus(
        phase=Phase.RUNNING,
        current_run=RunRecord(id="r1", generation=2, phase=Phase.RUNNING, started_at=T0 + timedelta(days=1)),
        variants=[
            VariantStatus(
                name="bf16", precision="bf16", phase=VariantPhase.BENCHMARKING, step="wl-throughput"
            ),
            VariantStatus(name="awq-int4", precision="awq-int4", phase=VariantPhase.STARTING, step="server"),
            VariantStatus(name="fp8", precision="fp8", phase=VariantPhase.FAILED, reason="OOMKilled"),
        ],
        summary=_summary(),
        history=[_finished(["awq-int4: ms/token at batch 1 4.40 -> 5.10", "awq-int4: Succeeded -> Failed"])],
        next_run_time=T0 + timedelta(days=7),
    )


def test_run_state_series() -> None:
    steps = job_steps(["latency", "throughput"], accuracy=True)
    assert steps == ["wl-latency", "wl-throughput", "accuracy"]
    with_fidelity = ["wl-latency", "wl-throughput", "fidelity", "accuracy"]
    assert job_steps(["latency", "throughput"], accuracy=True, fidelity=True) == with_fidelity
    samples = benchmark_samples("llama", "bench", "m", _running_status(), steps)
    b = {"benchmark": "llama", "namespace": "bench"}
    # One series per phase; only the current one is 1.
    phases = {s.labels["phase"]: s.value for s in samples if s.name == "quantbench_run_phase"}
    assert phases == {str(p): float(p == Phase.RUNNING) for p in Phase}
    assert _one(samples, "quantbench_run_in_progress", **b) == 1.0
    # While a run is in flight the start is its start; the end and duration stay the last finished run's.
    assert _one(samples, "quantbench_run_start_timestamp_seconds") == (T0 + timedelta(days=1)).timestamp()
    assert _one(samples, "quantbench_run_end_timestamp_seconds") == (T0 + timedelta(minutes=42)).timestamp()
    assert _one(samples, "quantbench_run_duration_seconds") == 42 * 60
    assert (
        _one(samples, "quantbench_last_successful_run_timestamp_seconds")
        == (T0 + timedelta(minutes=42)).timestamp()
    )
    assert _one(samples, "quantbench_next_run_timestamp_seconds") == (T0 + timedelta(days=7)).timestamp()
    # Per-variant phase, step and progress.
    assert _one(samples, "quantbench_variant_phase", variant="bf16", phase="Benchmarking") == 1.0
    assert _one(samples, "quantbench_variant_phase", variant="bf16", phase="Starting") == 0.0
    assert _one(samples, "quantbench_variant_step_info", variant="bf16") == 1.0
    assert [s.labels["step"] for s in samples if s.name == "quantbench_variant_step_info"] == [
        "wl-throughput",
        "server",
        "none",
    ]
    assert _one(samples, "quantbench_variant_progress_ratio", variant="bf16") == pytest.approx(1 / 3)
    assert _one(samples, "quantbench_variant_progress_ratio", variant="awq-int4") == 0.0
    assert not [
        s for s in samples if s.name == "quantbench_variant_progress_ratio" and s.labels["variant"] == "fp8"
    ]
    # Regression flags of the last finished run: per variant, 0 where clean.
    assert _one(samples, "quantbench_regressions", variant="awq-int4") == 2
    assert _one(samples, "quantbench_regressions", variant="bf16") == 0
    # The summary's figures are there too, and no series carries a run id.
    assert not [s for s in samples if s.name == "quantbench_best_variant_info"]  # the summary names none
    assert _one(samples, "quantbench_decode_seconds_per_token", variant="bf16") == pytest.approx(0.00707)
    for s in samples:
        assert "r1" not in s.labels.values() and "r0" not in s.labels.values()


def test_conditions_are_series() -> None:
    failed = Condition.model_validate(
        {"type": "Degraded", "status": "True", "reason": "OutOfMemory", "lastTransitionTime": T0}
    )
    ready = Condition.model_validate(
        {"type": "Ready", "status": "False", "reason": "RunFailed", "lastTransitionTime": T0}
    )
    status = QuantBenchmarkStatus(phase=Phase.FAILED, conditions=[failed, ready])
    samples = benchmark_samples("llama", "bench", "m", status)
    got = {
        (s.labels["type"], s.labels["status"]): s.value for s in samples if s.name == "quantbench_condition"
    }
    assert got == {
        ("Degraded", "True"): 1.0,
        ("Degraded", "False"): 0.0,
        ("Degraded", "Unknown"): 0.0,
        ("Ready", "True"): 0.0,
        ("Ready", "False"): 1.0,
        ("Ready", "Unknown"): 0.0,
    }


def test_finished_and_never_run() -> None:
    done = QuantBenchmarkStatus(phase=Phase.FAILED, history=[_finished([], Phase.FAILED)])
    samples = benchmark_samples("llama", "bench", "m", done)
    assert _one(samples, "quantbench_run_phase", phase="Failed") == 1.0
    assert _one(samples, "quantbench_run_in_progress") == 0.0
    assert _one(samples, "quantbench_run_start_timestamp_seconds") == T0.timestamp()
    assert not [s for s in samples if s.name == "quantbench_last_successful_run_timestamp_seconds"]
    assert not [s for s in samples if s.name == "quantbench_next_run_timestamp_seconds"]
    assert {s.labels["variant"]: s.value for s in samples if s.name == "quantbench_regressions"} == {
        "bf16": 0,
        "awq-int4": 0,
    }
    best = done.model_copy(update={"summary": _summary().model_copy(update={"best": "awq-int4"})})
    assert _one(benchmark_samples("llama", "bench", "m", best), "quantbench_best_variant_info") == 1.0
    fresh = benchmark_samples("llama", "bench", "m", QuantBenchmarkStatus())
    assert [s.name for s in fresh] == ["quantbench_run_in_progress"]


def test_regression_findings_in_any_shape() -> None:
    record = _finished(["bf16: Succeeded -> Failed", "something about the whole run"])
    assert regression_counts(record, ["bf16", "fp8"]) == {"bf16": 1, "fp8": 0, "": 1}

    class Finding:
        variant = "fp8"

    shaped: list[Any] = [Finding(), {"variant": "bf16", "metric": "ttft"}]
    assert regression_counts(record.model_copy(update={"regressions": shaped}), ["bf16", "fp8"]) == {
        "bf16": 1,
        "fp8": 1,
    }


def test_samples_of_a_resource_body() -> None:
    body = {
        "metadata": {"name": "llama", "namespace": "bench"},
        "spec": {"model": "m", "workloads": [{"name": "latency"}], "accuracy": {"task": "gsm8k"}},
        "status": {**_running_status().to_wire(), "kopf": {"progress": {}}},
    }
    samples = samples_of_body(body)
    # 2 steps (wl-latency, accuracy): bf16 is on a step outside them -> 0.
    assert _one(samples, "quantbench_variant_progress_ratio", variant="bf16") == 0.0
    assert _one(samples, "quantbench_run_phase", phase="Running", model="m") == 1.0
    with pytest.raises(ValueError):
        samples_of_body({**body, "status": {"phase": "Nonsense"}})


def test_collector_exports_operator_gauges_and_forgets_deleted_benchmarks() -> None:
    registry = CollectorRegistry()
    collector = BenchmarkCollector()
    registry.register(collector)
    collector.update("bench", "llama", benchmark_samples("llama", "bench", "m", _running_status()))
    other = QuantBenchmarkStatus(phase=Phase.SUCCEEDED, history=[_finished([], days=3)])
    collector.update("bench", "qwen", benchmark_samples("qwen", "bench", "q", other))
    text = generate_latest(registry).decode()
    assert "quantbench_operator_benchmarks 2.0" in text
    assert "quantbench_operator_runs_in_flight 1.0" in text
    newest = (T0 + timedelta(days=3, minutes=42)).timestamp()
    assert registry.get_sample_value("quantbench_operator_last_successful_run_timestamp_seconds") == newest
    assert 'quantbench_operator_info{version="0.1.0"} 1.0' in text
    collector.forget("bench", "llama")
    text = generate_latest(registry).decode()
    assert 'benchmark="llama"' not in text and 'benchmark="qwen"' in text
    assert "quantbench_operator_runs_in_flight 0.0" in text


def test_reconcile_passes_and_errors_are_counted() -> None:
    registry = CollectorRegistry()
    op = OperatorMetrics(registry)
    with Timer(op):
        pass
    with pytest.raises(RuntimeError), Timer(op):
        raise RuntimeError("boom")
    with Timer(op):
        pass
    assert registry.get_sample_value("quantbench_operator_reconciles_total", {"result": "success"}) == 2
    assert registry.get_sample_value("quantbench_operator_reconciles_total", {"result": "error"}) == 1
    assert registry.get_sample_value("quantbench_operator_reconcile_duration_seconds_count") == 3


def test_every_metric_is_documented_in_the_chart_readme() -> None:
    readme = (REPO / "charts" / "quantbench" / "README.md").read_text()
    documented = set(re.findall(r"^\| `(quantbench_[a-z0-9_]+)`", readme, flags=re.M))
    every = set(METRICS) | set(OPERATOR_METRICS)
    assert every - documented == set(), "document these in charts/quantbench/README.md"
    assert documented - every - LOADGEN_METRICS == set(), "the README documents metrics nobody exports"


LOADGEN_METRICS = {
    "quantbench_loadgen_requests_sent_total",
    "quantbench_loadgen_requests_completed_total",
    "quantbench_loadgen_requests_failed_total",
    "quantbench_loadgen_requests_in_flight",
    "quantbench_loadgen_output_tokens_total",
    "quantbench_loadgen_prompt_tokens_total",
    "quantbench_loadgen_ttft_seconds",
    "quantbench_loadgen_itl_seconds",
    "quantbench_loadgen_e2e_latency_seconds",
}
