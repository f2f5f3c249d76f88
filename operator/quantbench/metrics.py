"""Prometheus export: every benchmark's summary and run state, and the operator's own health.

Per benchmark (`benchmark_samples`, pure, from the resource's status):
- the last summary's figures with ratios to the baseline, accuracy with its interval, fidelity to the
  baseline (KL divergence and agreement, where the row has it), the verdict as an info metric (labels
  benchmark, namespace, variant, precision, model, workload, gpu, plus batch_size / request_rate where a
  figure has one);
- the run state: phase (one series per phase, 1 for the current one), start/end timestamps and duration,
  last successful run, next scheduled run, per-variant phase, step and progress;
- regression flags of the last finished run (`quantbench_regressions`, per variant, 0 on a clean run).

No label names a run: every series lives as long as its benchmark, and `BenchmarkCollector.forget` drops
them all when the benchmark is deleted. Operator health (`OperatorMetrics`): reconcile passes and errors,
reconcile duration, runs in flight, last successful run time.

Units are base units in the name: seconds, bytes, ratio, tokens_per_second, timestamp_seconds, nats.
`METRICS` and `OPERATOR_METRICS` document each family; the table in charts/quantbench/README.md is checked
against them (tests/metrics).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from quantbench.api.summary import RunSummary, ServerLoad, VariantSummary, Verdict
from quantbench.api.v1alpha1 import Phase, QuantBenchmarkStatus, RunRecord, VariantPhase, VariantStatus
from quantbench.naming import STEP_ACCURACY, STEP_FIDELITY, workload_step
from quantbench.units import GIB

# Labels of every per-variant figure (the design's label set); benchmark-level series use BENCHMARK_LABELS.
LABELS = ("benchmark", "namespace", "variant", "precision", "model", "workload", "gpu")
BENCHMARK_LABELS = ("benchmark", "namespace", "model")
NO_STEP = "none"  # quantbench_variant_step_info's step while a variant runs no step
VERSION = "0.1.0"


_V = LABELS
_B = BENCHMARK_LABELS
_PHASE_V = (*BENCHMARK_LABELS, "variant", "precision")

# name -> (help, base labels, extra labels). The one list of every per-benchmark family.
METRICS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # --- the last summary: figures and ratios to the baseline
    "quantbench_decode_seconds_per_token": ("Decode time per output token at batch size 1.", _V, ()),
    "quantbench_decode_tokens_per_second": ("Output tokens per second at batch size 1.", _V, ()),
    "quantbench_decode_latency_ratio": ("Decode time per token at batch 1 / the baseline's.", _V, ()),
    "quantbench_output_tokens_per_second": (
        "Generated tokens per second of the throughput sweep, per batch size.",
        _V,
        ("batch_size",),
    ),
    "quantbench_throughput_ratio": (
        "Output tokens per second / the baseline's at the same batch size.",
        _V,
        ("batch_size",),
    ),
    "quantbench_crossover_batch_size": ("Batch size where throughput falls below the baseline's.", _V, ()),
    "quantbench_wins_from_batch_size": (
        "Batch size from which throughput, below the baseline's before, rises above it.",
        _V,
        (),
    ),
    "quantbench_ttft_seconds": ("Median time to first token per request rate.", _V, ("request_rate",)),
    "quantbench_ttft_p99_seconds": (
        "99th percentile time to first token per request rate.",
        _V,
        ("request_rate",),
    ),
    "quantbench_ttft_ratio": (
        "Median time to first token / the baseline's, per request rate.",
        _V,
        ("request_rate",),
    ),
    "quantbench_itl_seconds": ("Median inter-token latency per request rate.", _V, ("request_rate",)),
    "quantbench_itl_ratio": (
        "Median inter-token latency / the baseline's, per request rate.",
        _V,
        ("request_rate",),
    ),
    "quantbench_e2e_latency_seconds": (
        "Median end-to-end request latency per request rate.",
        _V,
        ("request_rate",),
    ),
    "quantbench_serving_output_tokens_per_second": (
        "Output tokens per second per request rate.",
        _V,
        ("request_rate",),
    ),
    "quantbench_serving_throughput_ratio": (
        "Serving output tokens per second / the baseline's, per request rate.",
        _V,
        ("request_rate",),
    ),
    "quantbench_goodput_requests_per_second": (
        "Requests per second meeting every SLO, per request rate.",
        _V,
        ("request_rate",),
    ),
    "quantbench_server_kv_cache_usage_peak_ratio": (
        "Highest KV-cache use of the vLLM server during a batch size or request rate of the last run.",
        _V,
        ("batch_size", "request_rate"),
    ),
    "quantbench_server_waiting_requests_peak": (
        "Most requests waiting in the vLLM server's queue during a batch size or request rate.",
        _V,
        ("batch_size", "request_rate"),
    ),
    "quantbench_server_preemptions": (
        "Requests the vLLM server preempted during a batch size or request rate.",
        _V,
        ("batch_size", "request_rate"),
    ),
    "quantbench_weights_bytes": ("Model weight memory.", _V, ()),
    "quantbench_weights_ratio": ("Model weight memory / the baseline's.", _V, ()),
    "quantbench_startup_seconds": ("Server start to ready.", _V, ()),
    "quantbench_bandwidth_floor_seconds_per_token": (
        "Weight bytes / GPU memory bandwidth: the fastest possible decode step at batch 1.",
        _V,
        (),
    ),
    "quantbench_bandwidth_efficiency_ratio": (
        "Bandwidth floor / measured decode time per token at batch 1.",
        _V,
        (),
    ),
    "quantbench_accuracy_ratio": ("Accuracy (fraction correct, strict match).", _V, ()),
    "quantbench_accuracy_interval_low_ratio": (
        "Lower end of the Wilson 95% interval of the accuracy.",
        _V,
        (),
    ),
    "quantbench_accuracy_interval_high_ratio": (
        "Upper end of the Wilson 95% interval of the accuracy.",
        _V,
        (),
    ),
    "quantbench_accuracy_delta_ratio": ("Accuracy minus the baseline's (paired questions).", _V, ()),
    "quantbench_accuracy_p_value": (
        "Exact McNemar p-value of the accuracy difference to the baseline.",
        _V,
        (),
    ),
    "quantbench_accuracy_minimum_detectable_delta_ratio": (
        "Smallest accuracy drop the sample detects with the summary's power.",
        _V,
        (),
    ),
    "quantbench_accuracy_questions": ("Questions scored by the accuracy task.", _V, ()),
    "quantbench_fidelity_kl_mean_nats": (
        "Mean KL(baseline || variant) of the next-token distributions over the teacher-forced positions.",
        _V,
        (),
    ),
    "quantbench_fidelity_kl_p99_nats": ("99th percentile of the per-position KL divergence.", _V, ()),
    "quantbench_fidelity_top1_agreement_ratio": (
        "Share of token positions where the variant's top token is the baseline's.",
        _V,
        (),
    ),
    "quantbench_fidelity_answer_agreement_ratio": (
        "Share of questions whose greedy answer equals the baseline's.",
        _V,
        (),
    ),
    "quantbench_fidelity_prompts": ("Questions the fidelity step compared.", _V, ()),
    "quantbench_fidelity_positions": ("Teacher-forced token positions the fidelity step compared.", _V, ()),
    "quantbench_verdict_info": ("The variant's verdict (value 1), in the verdict label.", _V, ("verdict",)),
    "quantbench_best_variant_info": (
        "The variant the last summary recommends (value 1), in the variant label.",
        _B,
        ("variant",),
    ),
    # --- regressions of the last finished run
    "quantbench_regressions": (
        "Findings of the last finished run that got worse than the reference run (0: none).",
        _PHASE_V,
        (),
    ),
    # --- run state
    "quantbench_run_phase": (
        "Phase of the current or last run: 1 for the phase it is in, 0 for the others.",
        _B,
        ("phase",),
    ),
    "quantbench_run_in_progress": ("1 while a run is in progress, else 0.", _B, ()),
    "quantbench_condition": (
        "Each status condition (Ready, Progressing, Degraded, ...): 1 for its status, 0 for the others.",
        _B,
        ("type", "status"),
    ),
    "quantbench_run_start_timestamp_seconds": (
        "Start of the run in progress, else of the last finished run (Unix time).",
        _B,
        (),
    ),
    "quantbench_run_end_timestamp_seconds": ("End of the last finished run (Unix time).", _B, ()),
    "quantbench_run_duration_seconds": ("Duration of the last finished run.", _B, ()),
    "quantbench_last_successful_run_timestamp_seconds": (
        "End of the last run with at least one succeeded variant (Unix time).",
        _B,
        (),
    ),
    "quantbench_next_run_timestamp_seconds": (
        "Next scheduled run (Unix time; absent without a schedule).",
        _B,
        (),
    ),
    "quantbench_variant_phase": (
        "Phase of each variant in the current or last run: 1 for its phase, 0 for the others.",
        _PHASE_V,
        ("phase",),
    ),
    "quantbench_variant_step_info": (
        f"Step a variant is running (value 1), in the step label ({NO_STEP!r} between steps).",
        _PHASE_V,
        ("step",),
    ),
    "quantbench_variant_progress_ratio": (
        "Benchmark steps (workloads, fidelity, accuracy) a variant has finished / its steps.",
        _PHASE_V,
        (),
    ),
}

# Operator health, served next to the benchmark series (see OperatorMetrics).
OPERATOR_METRICS: dict[str, str] = {
    "quantbench_operator_info": "The operator's version (value 1), in the version label.",
    "quantbench_operator_reconciles_total": "Reconcile passes of a benchmark, by result (success, error).",
    "quantbench_operator_reconcile_duration_seconds": "Time one reconcile of a benchmark took.",
    "quantbench_operator_benchmarks": "QuantBenchmarks the operator exports.",
    "quantbench_operator_runs_in_flight": "Benchmark runs in progress.",
    "quantbench_operator_last_successful_run_timestamp_seconds": (
        "End of the newest run with at least one succeeded variant, over every benchmark (Unix time)."
    ),
}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def _ts(t: datetime | None) -> float | None:
    return None if t is None else t.timestamp()


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
    if summary.best:
        out.append(
            Sample(
                "quantbench_best_variant_info",
                {"benchmark": benchmark, "namespace": namespace, "model": model, "variant": summary.best},
                1.0,
            )
        )
    return out


def _ms(value: float | None) -> float | None:
    return None if value is None else value / 1e3


def _variant_samples(base: dict[str, str], v: VariantSummary) -> list[Sample]:
    out: list[Sample] = []

    def add(name: str, value: float | None, **extra: str) -> None:
        if value is not None:
            out.append(Sample(name, {**base, **extra}, float(value)))

    add("quantbench_decode_seconds_per_token", _ms(v.ms_per_token_bs1))
    add("quantbench_decode_tokens_per_second", v.tokens_per_second_bs1)
    add("quantbench_decode_latency_ratio", v.latency_ratio_to_baseline)
    for t in v.throughput:
        add("quantbench_output_tokens_per_second", t.output_tokens_per_second, batch_size=str(t.batch_size))
        add("quantbench_throughput_ratio", t.ratio_to_baseline, batch_size=str(t.batch_size))
        _server_samples(add, t.server, batch_size=str(t.batch_size))
    add("quantbench_crossover_batch_size", v.crossover_batch_size)
    add("quantbench_wins_from_batch_size", v.wins_from_batch_size)
    for s in v.serving:
        at = {"request_rate": s.request_rate, "workload": s.workload or ""}
        add("quantbench_ttft_seconds", _ms(s.ttft_median_ms), **at)
        add("quantbench_ttft_p99_seconds", _ms(s.ttft_p99_ms), **at)
        add("quantbench_ttft_ratio", s.ttft_ratio_to_baseline, **at)
        add("quantbench_itl_seconds", _ms(s.itl_median_ms), **at)
        add("quantbench_itl_ratio", s.itl_ratio_to_baseline, **at)
        add("quantbench_e2e_latency_seconds", _ms(s.e2e_median_ms), **at)
        add("quantbench_serving_output_tokens_per_second", s.output_tokens_per_second, **at)
        add("quantbench_serving_throughput_ratio", s.throughput_ratio_to_baseline, **at)
        add("quantbench_goodput_requests_per_second", s.goodput_requests_per_second, **at)
        _server_samples(add, s.server, **at)
    add("quantbench_weights_bytes", None if v.weights_gib is None else v.weights_gib * GIB)
    add("quantbench_weights_ratio", v.weights_ratio_to_baseline)
    add("quantbench_startup_seconds", v.startup_seconds)
    add("quantbench_bandwidth_floor_seconds_per_token", _ms(v.bandwidth_floor_ms_per_token))
    add("quantbench_bandwidth_efficiency_ratio", v.bandwidth_efficiency)
    if v.accuracy is not None:
        a = v.accuracy
        task = {"workload": a.task}
        add("quantbench_accuracy_ratio", a.accuracy, **task)
        add("quantbench_accuracy_interval_low_ratio", a.interval95.low, **task)
        add("quantbench_accuracy_interval_high_ratio", a.interval95.high, **task)
        add("quantbench_accuracy_delta_ratio", a.delta_to_baseline, **task)
        add("quantbench_accuracy_p_value", a.paired_p_value, **task)
        add("quantbench_accuracy_minimum_detectable_delta_ratio", a.minimum_detectable_delta, **task)
        add("quantbench_accuracy_questions", a.questions, **task)
    if v.fidelity is not None:  # its own step, not a workload: workload stays empty
        f = v.fidelity
        add("quantbench_fidelity_kl_mean_nats", f.mean_kl)
        add("quantbench_fidelity_kl_p99_nats", f.p99_kl)
        add("quantbench_fidelity_top1_agreement_ratio", f.top1_agreement)
        add("quantbench_fidelity_answer_agreement_ratio", f.greedy_agreement)
        add("quantbench_fidelity_prompts", f.prompts)
        add("quantbench_fidelity_positions", f.positions)
    add("quantbench_verdict_info", 1.0, verdict=str(Verdict(v.verdict)))
    return out


def _server_samples(add: Callable[..., None], load: ServerLoad | None, **at: str) -> None:
    if load is not None:
        add("quantbench_server_kv_cache_usage_peak_ratio", load.kv_cache_usage_peak, **at)
        add("quantbench_server_waiting_requests_peak", load.waiting_peak, **at)
        add("quantbench_server_preemptions", load.preemptions, **at)


def regression_counts(record: RunRecord, variants: Iterable[str]) -> dict[str, int]:
    """Regression findings of a finished run per variant (every given variant present, 0 when clean).

    A finding names its variant either as a `variant` attribute / key or as the "variant: ..." prefix of
    its text; one that names no known variant counts under "" (the benchmark as a whole)."""
    counts = dict.fromkeys(variants, 0)
    for finding in record.regressions:
        counts[_finding_variant(finding, counts)] = counts.get(_finding_variant(finding, counts), 0) + 1
    return counts


def _finding_variant(finding: object, known: Mapping[str, int]) -> str:
    named: object = getattr(finding, "variant", None)
    if named is None and isinstance(finding, Mapping):
        named = finding.get("variant")
    if named is None and isinstance(finding, str):
        named = finding.split(":", 1)[0].strip()
    return named if isinstance(named, str) and named in known else ""


def job_steps(workloads: Sequence[str], accuracy: bool, fidelity: bool = False) -> list[str]:
    """A variant's benchmark steps in the order they run (quantbench.plan): workloads, then fidelity (with
    accuracy.fidelity), then accuracy."""
    fidelity_step = [STEP_FIDELITY] if accuracy and fidelity else []
    return [workload_step(w) for w in workloads] + fidelity_step + ([STEP_ACCURACY] if accuracy else [])


def progress(v: VariantStatus, steps: Sequence[str]) -> float | None:
    """Finished steps / steps of a variant (None where it ended without finishing them)."""
    if v.phase == VariantPhase.SUCCEEDED:
        return 1.0
    if v.phase in (VariantPhase.FAILED, VariantPhase.UNSUPPORTED) or not steps:
        return None
    if v.step in steps:
        return steps.index(v.step) / len(steps)
    return 0.0


def benchmark_samples(
    benchmark: str,
    namespace: str,
    model: str,
    status: QuantBenchmarkStatus,
    steps: Sequence[str] = (),
) -> list[Sample]:
    """Every series of one benchmark: its last summary, run state, variant progress and regressions."""
    b = {"benchmark": benchmark, "namespace": namespace, "model": model}
    out: list[Sample] = []
    if status.summary is not None:
        out += summary_samples(benchmark, namespace, model, status.summary)

    def add(name: str, value: float | None, **extra: str) -> None:
        if value is not None:
            out.append(Sample(name, {**b, **extra}, float(value)))

    if status.phase is not None:
        for phase in Phase:
            add("quantbench_run_phase", float(status.phase == phase), phase=str(phase))
    for c in status.conditions:
        for st in ("True", "False", "Unknown"):
            add("quantbench_condition", float(c.status == st), type=c.type, status=st)
    run = status.current_run
    finished = status.history[0] if status.history else None
    add("quantbench_run_in_progress", float(run is not None))
    latest = run or finished
    add("quantbench_run_start_timestamp_seconds", _ts(latest.started_at) if latest else None)
    if finished is not None and finished.finished_at is not None:
        add("quantbench_run_end_timestamp_seconds", _ts(finished.finished_at))
        add("quantbench_run_duration_seconds", (finished.finished_at - finished.started_at).total_seconds())
    ok = next(
        (
            h
            for h in status.history
            if h.phase in (Phase.SUCCEEDED, Phase.PARTIALLY_SUCCEEDED) and h.finished_at
        ),
        None,
    )
    add("quantbench_last_successful_run_timestamp_seconds", _ts(ok.finished_at) if ok else None)
    add("quantbench_next_run_timestamp_seconds", _ts(status.next_run_time))
    for v in status.variants:
        at = {"variant": v.name, "precision": v.precision}
        for vphase in VariantPhase:
            add("quantbench_variant_phase", float(v.phase == vphase), phase=str(vphase), **at)
        add("quantbench_variant_step_info", 1.0, step=v.step or NO_STEP, **at)
        add("quantbench_variant_progress_ratio", progress(v, steps), **at)
    if finished is not None:
        precisions = {v.name: v.precision for v in status.variants}
        last_summary = finished.summary or status.summary  # history entries hold no summary any more
        if last_summary is not None:
            precisions.update({v.variant: v.precision for v in last_summary.variants})
        for variant, count in regression_counts(finished, precisions).items():
            add("quantbench_regressions", count, variant=variant, precision=precisions.get(variant, ""))
    return out


def families(samples: Iterable[Sample]) -> list[GaugeMetricFamily]:
    """Group samples into gauge families with the label names METRICS gives each family."""
    by_name: dict[str, GaugeMetricFamily] = {}
    for s in samples:
        help_, base, extra = METRICS[s.name]
        keys = [*base, *extra]
        if s.name not in by_name:
            by_name[s.name] = GaugeMetricFamily(s.name, help_, labels=keys)
        by_name[s.name].add_metric([s.labels.get(k, "") for k in keys], s.value)
    return list(by_name.values())


def _parse_status(raw: Mapping[str, Any]) -> QuantBenchmarkStatus:
    keys = {info.alias or n for n, info in QuantBenchmarkStatus.model_fields.items()}
    return QuantBenchmarkStatus.model_validate({k: v for k, v in raw.items() if k in keys})


def samples_of_body(body: Mapping[str, Any]) -> list[Sample]:
    """The series of a QuantBenchmark object as the API returns it (raises ValueError on a bad status)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = _parse_status(body.get("status") or {})
    workloads = [str(w.get("name")) for w in spec.get("workloads") or [] if isinstance(w, Mapping)]
    accuracy = spec.get("accuracy")
    steps = job_steps(
        workloads, bool(accuracy), isinstance(accuracy, dict) and bool(accuracy.get("fidelity"))
    )
    return benchmark_samples(
        str(meta.get("name", "")), str(meta.get("namespace", "")), str(spec.get("model", "")), status, steps
    )


class BenchmarkCollector(Collector):
    """The latest series of each benchmark, plus the operator-wide gauges derived from them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, str], list[Sample]] = {}

    def update(self, namespace: str, benchmark: str, samples: list[Sample]) -> None:
        with self._lock:
            self._samples[(namespace, benchmark)] = samples

    def forget(self, namespace: str, benchmark: str) -> None:
        with self._lock:
            self._samples.pop((namespace, benchmark), None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            per_benchmark = list(self._samples.values())
        every = [s for samples in per_benchmark for s in samples]
        yield from families(every)
        yield GaugeMetricFamily(
            "quantbench_operator_benchmarks",
            OPERATOR_METRICS["quantbench_operator_benchmarks"],
            value=len(per_benchmark),
        )
        in_flight = sum(s.value for s in every if s.name == "quantbench_run_in_progress")
        yield GaugeMetricFamily(
            "quantbench_operator_runs_in_flight",
            OPERATOR_METRICS["quantbench_operator_runs_in_flight"],
            value=in_flight,
        )
        last_ok = [s.value for s in every if s.name == "quantbench_last_successful_run_timestamp_seconds"]
        if last_ok:
            yield GaugeMetricFamily(
                "quantbench_operator_last_successful_run_timestamp_seconds",
                OPERATOR_METRICS["quantbench_operator_last_successful_run_timestamp_seconds"],
                value=max(last_ok),
            )
        info = GaugeMetricFamily(
            "quantbench_operator_info", OPERATOR_METRICS["quantbench_operator_info"], labels=["version"]
        )
        info.add_metric([VERSION], 1.0)
        yield info


class OperatorMetrics:
    """Reconcile passes, errors and durations, on the given registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.reconciles = Counter(
            "quantbench_operator_reconciles",
            OPERATOR_METRICS["quantbench_operator_reconciles_total"],
            ["result"],
            registry=registry,
        )
        self.duration = Histogram(
            "quantbench_operator_reconcile_duration_seconds",
            OPERATOR_METRICS["quantbench_operator_reconcile_duration_seconds"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        for result in ("success", "error"):
            self.reconciles.labels(result)  # both series exist from the start: rate() sees the first error

    def observe(self, seconds: float, ok: bool) -> None:
        self.reconciles.labels("success" if ok else "error").inc()
        self.duration.observe(seconds)


class Timer:
    """`with timer(OPERATOR): ...` counts one reconcile pass, as an error when the block raises."""

    def __init__(self, metrics: OperatorMetrics) -> None:
        self.metrics = metrics
        self.start = 0.0

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.metrics.observe(time.perf_counter() - self.start, exc_type is None)


# The operator's exporters: handlers update BENCHMARKS from each benchmark's status and time reconciles.
REGISTRY = CollectorRegistry()
BENCHMARKS = BenchmarkCollector()
REGISTRY.register(BENCHMARKS)
OPERATOR = OperatorMetrics(REGISTRY)


def serve(port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> None:
    """Serve /metrics (benchmark series and operator health) on `port`, in a background thread."""
    start_http_server(port, addr=addr, registry=registry)
