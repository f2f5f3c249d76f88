"""Prometheus export of comparison summaries.

Every figure of a run summary becomes a `quantbench_*` gauge with its base unit in the name and the labels
benchmark, namespace, variant, precision, model, workload, gpu (plus batch_size / request_rate where the
figure has one). `summary_samples` is pure; `SummaryCollector` holds the latest summary per benchmark and
serves them to a prometheus-client registry (the operator updates it whenever it writes a summary).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from quantbench.api.summary import RunSummary, VariantSummary, Verdict
from quantbench.units import GIB

LABELS = ("benchmark", "namespace", "variant", "precision", "model", "workload", "gpu")

HELP: dict[str, str] = {
    "quantbench_decode_seconds_per_token": "Decode time per output token at batch size 1.",
    "quantbench_decode_latency_ratio": "Decode time per token at batch 1 / the baseline's.",
    "quantbench_output_tokens_per_second": "Generated tokens per second (throughput sweep: per batch size).",
    "quantbench_throughput_ratio": "Output tokens per second / the baseline's at the same batch size.",
    "quantbench_crossover_batch_size": "Batch size where throughput falls below the baseline's.",
    "quantbench_ttft_seconds": "Median time to first token per request rate.",
    "quantbench_ttft_p99_seconds": "99th percentile time to first token per request rate.",
    "quantbench_itl_seconds": "Median inter-token latency per request rate.",
    "quantbench_e2e_latency_seconds": "Median end-to-end request latency per request rate.",
    "quantbench_serving_output_tokens_per_second": "Output tokens per second per request rate.",
    "quantbench_goodput_requests_per_second": "Requests per second meeting every SLO, per request rate.",
    "quantbench_weights_bytes": "Model weight memory.",
    "quantbench_startup_seconds": "Server start to ready.",
    "quantbench_bandwidth_efficiency_ratio": "Bandwidth floor / measured decode time per token at batch 1.",
    "quantbench_accuracy_ratio": "Accuracy (fraction correct, strict match).",
    "quantbench_accuracy_interval_low_ratio": "Lower end of the Wilson 95% interval of the accuracy.",
    "quantbench_accuracy_interval_high_ratio": "Upper end of the Wilson 95% interval of the accuracy.",
    "quantbench_accuracy_delta_ratio": "Accuracy minus the baseline's (paired questions).",
    "quantbench_accuracy_p_value": "Exact McNemar p-value of the accuracy difference to the baseline.",
    "quantbench_verdict_info": "The variant's verdict (value 1), in the verdict label.",
}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def summary_samples(benchmark: str, namespace: str, model: str, summary: RunSummary) -> list[Sample]:
    """Every gauge sample of one benchmark's summary."""
    out: list[Sample] = []
    for v in summary.variants:
        base = {
            "benchmark": benchmark,
            "namespace": namespace,
            "variant": v.variant,
            "precision": v.precision,
            "model": model,
            "workload": "",
            "gpu": summary.gpu or "",
        }
        out += _variant_samples(base, v)
    return out


def _variant_samples(base: dict[str, str], v: VariantSummary) -> list[Sample]:
    out: list[Sample] = []

    def add(name: str, value: float | None, **extra: str) -> None:
        if value is not None:
            out.append(Sample(name, {**base, **extra}, float(value)))

    add(
        "quantbench_decode_seconds_per_token",
        None if v.ms_per_token_bs1 is None else v.ms_per_token_bs1 / 1e3,
    )
    add("quantbench_decode_latency_ratio", v.latency_ratio_to_baseline)
    for t in v.throughput:
        add("quantbench_output_tokens_per_second", t.output_tokens_per_second, batch_size=str(t.batch_size))
        add("quantbench_throughput_ratio", t.ratio_to_baseline, batch_size=str(t.batch_size))
    add("quantbench_crossover_batch_size", v.crossover_batch_size)
    for s in v.serving:
        at = {"request_rate": s.request_rate, "workload": s.workload or ""}
        for name, ms in (
            ("quantbench_ttft_seconds", s.ttft_median_ms),
            ("quantbench_ttft_p99_seconds", s.ttft_p99_ms),
            ("quantbench_itl_seconds", s.itl_median_ms),
            ("quantbench_e2e_latency_seconds", s.e2e_median_ms),
        ):
            add(name, None if ms is None else ms / 1e3, **at)
        add("quantbench_serving_output_tokens_per_second", s.output_tokens_per_second, **at)
        add("quantbench_goodput_requests_per_second", s.goodput_requests_per_second, **at)
    add("quantbench_weights_bytes", None if v.weights_gib is None else v.weights_gib * GIB)
    add("quantbench_startup_seconds", v.startup_seconds)
    add("quantbench_bandwidth_efficiency_ratio", v.bandwidth_efficiency)
    if v.accuracy is not None:
        a = v.accuracy
        add("quantbench_accuracy_ratio", a.accuracy, workload=a.task)
        add("quantbench_accuracy_interval_low_ratio", a.interval95.low, workload=a.task)
        add("quantbench_accuracy_interval_high_ratio", a.interval95.high, workload=a.task)
        add("quantbench_accuracy_delta_ratio", a.delta_to_baseline, workload=a.task)
        add("quantbench_accuracy_p_value", a.paired_p_value, workload=a.task)
    add("quantbench_verdict_info", 1.0, verdict=str(Verdict(v.verdict)))
    return out


def families(samples: Iterable[Sample]) -> list[GaugeMetricFamily]:
    """Group samples into gauge families; each family's label set is LABELS plus its extra labels."""
    by_name: dict[str, GaugeMetricFamily] = {}
    keys: dict[str, list[str]] = {}
    for s in samples:
        if s.name not in by_name:
            keys[s.name] = list(LABELS) + sorted(k for k in s.labels if k not in LABELS)
            by_name[s.name] = GaugeMetricFamily(s.name, HELP[s.name], labels=keys[s.name])
        by_name[s.name].add_metric([s.labels.get(k, "") for k in keys[s.name]], s.value)
    return list(by_name.values())


class SummaryCollector(Collector):
    """The latest summary of each benchmark, as Prometheus gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, str], list[Sample]] = {}

    def update(self, namespace: str, benchmark: str, model: str, summary: RunSummary) -> None:
        samples = summary_samples(benchmark, namespace, model, summary)
        with self._lock:
            self._samples[(namespace, benchmark)] = samples

    def forget(self, namespace: str, benchmark: str) -> None:
        with self._lock:
            self._samples.pop((namespace, benchmark), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            every = [s for samples in self._samples.values() for s in samples]
        yield from families(every)


# The operator's collector: handlers update it from each benchmark's status (see quantbench.handlers).
SUMMARIES = SummaryCollector()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics with the summaries (and nothing else) on `port`, in a background thread."""
    registry = CollectorRegistry()
    registry.register(SUMMARIES)
    start_http_server(port, addr=addr, registry=registry)
