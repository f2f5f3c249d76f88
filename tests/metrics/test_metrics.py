"""Summaries become quantbench_* gauges, and a real Prometheus scrapes them."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

import pytest
from prometheus_client import CollectorRegistry, generate_latest, start_http_server

from quantbench.api.summary import (
    AccuracySummary,
    FidelitySummary,
    Interval,
    RunSummary,
    ServingPoint,
    ThroughputPoint,
    VariantSummary,
    Verdict,
)
from quantbench.local.server import free_port
from quantbench.metrics import LABELS, METRICS, BenchmarkCollector, summary_samples
from tests.fixtures.prometheus import Prometheus


def _summary() -> RunSummary:
    return RunSummary(
        baseline="bf16",
        gpu="NVIDIA H100 80GB HBM3",
        variants=[
            VariantSummary(
                variant="bf16",
                precision="bf16",
                phase="Succeeded",
                ms_per_token_bs1=7.07,
                throughput=[ThroughputPoint(batch_size=64, output_tokens_per_second=11304.0)],
                serving=[ServingPoint(workload="serving", request_rate="4", ttft_median_ms=945.0)],
                weights_gib=14.99,
                verdict=Verdict.BASELINE,
            ),
            VariantSummary(
                variant="awq-int4",
                precision="awq-int4",
                phase="Succeeded",
                kernel="awq",
                ms_per_token_bs1=4.40,
                latency_ratio_to_baseline=4.40 / 7.07,
                throughput=[
                    ThroughputPoint(batch_size=64, output_tokens_per_second=7643.0, ratio_to_baseline=0.676)
                ],
                crossover_batch_size=9.5,
                wins_from_batch_size=700.0,
                serving=[ServingPoint(workload="serving", request_rate="inf", ttft_median_ms=4617.0)],
                accuracy=AccuracySummary(
                    task="gsm8k",
                    questions=100,
                    correct=80,
                    accuracy=0.8,
                    interval95=Interval(low=0.71, high=0.87),
                    delta_to_baseline=-0.02,
                    paired_p_value=0.5,
                ),
                fidelity=FidelitySummary(
                    prompts=16,
                    positions=512,
                    mean_kl=0.043,
                    p99_kl=0.61,
                    top1_agreement=0.91,
                    greedy_agreement=0.625,
                ),
                verdict=Verdict.LATENCY_WIN_LOSES_UNDER_LOAD,
            ),
        ],
    )


def _value(samples: list, name: str, variant: str, **labels: str) -> float:  # type: ignore[type-arg]
    hits = [
        s.value
        for s in samples
        if s.name == name
        and s.labels["variant"] == variant
        and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(hits) == 1, (name, variant, labels, hits)
    return float(hits[0])


def test_samples_use_base_units_and_labels() -> None:
    samples = summary_samples("llama31-8b", "bench", "meta-llama/Llama-3.1-8B-Instruct", _summary())
    assert _value(samples, "quantbench_decode_seconds_per_token", "bf16") == pytest.approx(0.00707)
    assert _value(samples, "quantbench_ttft_seconds", "awq-int4", request_rate="inf") == pytest.approx(4.617)
    assert _value(samples, "quantbench_weights_bytes", "bf16") == pytest.approx(14.99 * 2**30)
    assert _value(samples, "quantbench_output_tokens_per_second", "awq-int4", batch_size="64") == 7643.0
    assert _value(samples, "quantbench_accuracy_ratio", "awq-int4", workload="gsm8k") == 0.8
    assert _value(samples, "quantbench_verdict_info", "awq-int4", verdict="LatencyWinLosesUnderLoad") == 1.0
    for s in samples:
        assert s.name in METRICS and set(LABELS) <= set(s.labels)
        assert s.labels["gpu"] == "NVIDIA H100 80GB HBM3" and s.labels["namespace"] == "bench"
    # Figures a variant does not have are absent, not zero.
    assert not [s for s in samples if s.name == "quantbench_accuracy_ratio" and s.labels["variant"] == "bf16"]


def test_fidelity_figures_only_for_rows_that_have_them() -> None:
    samples = summary_samples("llama31-8b", "bench", "m", _summary())
    fidelity = [s for s in samples if s.name.startswith("quantbench_fidelity_")]
    assert len(fidelity) == 6  # one series each: the awq row's
    assert {s.name: s.value for s in fidelity} == {
        "quantbench_fidelity_kl_mean_nats": 0.043,
        "quantbench_fidelity_kl_p99_nats": 0.61,
        "quantbench_fidelity_top1_agreement_ratio": 0.91,
        "quantbench_fidelity_answer_agreement_ratio": 0.625,
        "quantbench_fidelity_prompts": 16.0,
        "quantbench_fidelity_positions": 512.0,
    }
    for s in fidelity:
        assert s.labels == {
            "benchmark": "llama31-8b",
            "namespace": "bench",
            "variant": "awq-int4",
            "precision": "awq-int4",
            "model": "m",
            "workload": "",
            "gpu": "NVIDIA H100 80GB HBM3",
        }
    # The baseline's row has no fidelity: it has none of these series, not even as zeros.


def test_collector_replaces_and_forgets() -> None:
    registry = CollectorRegistry()
    collector = BenchmarkCollector()
    registry.register(collector)
    collector.update("bench", "llama31-8b", summary_samples("llama31-8b", "bench", "m", _summary()))
    text = generate_latest(registry).decode()
    assert 'quantbench_crossover_batch_size{benchmark="llama31-8b"' in text
    assert 'quantbench_wins_from_batch_size{benchmark="llama31-8b"' in text
    assert "# HELP quantbench_ttft_seconds Median time to first token per request rate." in text
    collector.forget("bench", "llama31-8b")
    assert "quantbench_crossover_batch_size{" not in generate_latest(registry).decode()


@pytest.fixture
def exporter() -> Iterator[tuple[str, BenchmarkCollector]]:
    registry = CollectorRegistry()
    collector = BenchmarkCollector()
    registry.register(collector)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    assert isinstance(server, WSGIServer) and isinstance(thread, threading.Thread)
    yield f"127.0.0.1:{port}", collector
    server.shutdown()
    server.server_close()


def test_prometheus_scrapes_the_export(
    exporter: tuple[str, BenchmarkCollector], prometheus: Callable[[list[str]], Prometheus]
) -> None:
    target, collector = exporter
    model = "meta-llama/Llama-3.1-8B-Instruct"
    collector.update("bench", "llama31-8b", summary_samples("llama31-8b", "bench", model, _summary()))
    prom = prometheus([target])
    result = prom.wait_for('quantbench_ttft_seconds{variant="bf16",request_rate="4"}')
    assert float(result[0]["value"][1]) == pytest.approx(0.945)
    assert result[0]["metric"]["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    ratio = prom.wait_for('quantbench_throughput_ratio{variant="awq-int4",batch_size="64"}')
    assert float(ratio[0]["value"][1]) == pytest.approx(0.676)
    kl = prom.wait_for('quantbench_fidelity_kl_mean_nats{variant="awq-int4"}')
    assert float(kl[0]["value"][1]) == pytest.approx(0.043)
    up = prom.wait_for('up{job="quantbench"}')
    assert up[0]["value"][1] == "1"
