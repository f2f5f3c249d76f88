"""Server telemetry in the summary: per batch size and rate, in the verdict's evidence, the report's plots
and the Prometheus export."""

from __future__ import annotations

from pathlib import Path

from quantbench.analysis.run_results import RunResults
from quantbench.analysis.summary import build_summary
from quantbench.api.summary import RunSummary, Verdict
from quantbench.metrics import summary_samples
from quantbench.report.plots import all_plots
from quantbench_loadgen.telemetry import ServerTelemetry, TelemetrySample, summarize
from tests.analysis import builders


def _telemetry(per_step: dict[str, tuple[float, float, float]]) -> ServerTelemetry:
    """Two samples per step: (KV-cache peak, waiting peak, preemptions in the step)."""
    samples = []
    for i, (step, (kv, waiting, preempted)) in enumerate(per_step.items()):
        samples += [
            TelemetrySample(t_s=2 * i, step=step, kv_cache_usage=kv / 2, waiting=0, running=1, preemptions=0),
            TelemetrySample(
                t_s=2 * i + 1, step=step, kv_cache_usage=kv, waiting=waiting, running=8, preemptions=preempted
            ),
        ]
    return ServerTelemetry(
        metrics_url="http://server/metrics", interval_s=1, samples=samples, steps=summarize(samples)
    )


def _summary(tmp_path: Path) -> RunSummary:
    results = RunResults.load(builders.write_run(tmp_path, builders.demo_variants(), "bf16"))
    telemetry = {
        "bf16": {"bs1": (0.05, 0, 0), "bs16": (0.3, 0, 0), "bs64": (0.6, 0, 0)},
        "awq-int4": {"bs1": (0.05, 0, 0), "bs16": (0.5, 0, 0), "bs64": (0.97, 12, 3)},
    }
    for variant, steps in telemetry.items():
        vr = results.variants[variant]
        vr.loadgen["throughput"] = vr.loadgen["throughput"].model_copy(
            update={"server_telemetry": _telemetry(steps)}
        )
    serving = results.variants["awq-int4"].loadgen["serving"]
    results.variants["awq-int4"].loadgen["serving"] = serving.model_copy(
        update={"server_telemetry": _telemetry({"1": (0.1, 0, 0), "4": (0.4, 1, 0), "inf": (0.99, 30, 5)})}
    )
    return build_summary(results)


def test_server_load_per_step_and_in_the_evidence(tmp_path: Path) -> None:
    summary = _summary(tmp_path)
    rows = {r.variant: r for r in summary.variants}
    awq = rows["awq-int4"]
    at64 = next(p for p in awq.throughput if p.batch_size == 64)
    assert at64.server is not None and at64.server.kv_cache_usage_peak == 0.97
    assert at64.server.waiting_peak == 12 and at64.server.preemptions == 3
    assert at64.server.kv_cache_usage_mean is not None
    inf = next(p for p in awq.serving if p.request_rate == "inf")
    assert inf.server is not None and inf.server.waiting_peak == 30
    # A variant without telemetry has none, rather than zeros.
    assert all(p.server is None for p in rows["fp8"].throughput)
    # The evidence explains the crossover with what the servers did at the batch size it fell behind.
    assert awq.verdict == Verdict.LATENCY_WIN_LOSES_UNDER_LOAD
    assert (
        "at batch 64 its KV cache is 97% full and 12 requests wait and 3 were preempted (bf16: 60%, 0)"
        in awq.evidence
    ), awq.evidence


def test_server_load_is_plotted_and_exported(tmp_path: Path) -> None:
    summary = _summary(tmp_path)
    plots = all_plots(summary)
    assert {"kv-cache-throughput", "queue-throughput", "kv-cache-serving", "queue-serving"} <= set(plots)
    assert "KV-cache use (peak) vs batch size" in plots["kv-cache-throughput"]
    assert "awq-int4" in plots["kv-cache-throughput"] and "bf16" in plots["kv-cache-throughput"]
    samples = summary_samples("llama", "bench", "m", summary)
    kv = {
        (s.labels["variant"], s.labels.get("batch_size", ""), s.labels.get("request_rate", "")): s.value
        for s in samples
        if s.name == "quantbench_server_kv_cache_usage_peak_ratio"
    }
    assert kv[("awq-int4", "64", "")] == 0.97 and kv[("awq-int4", "", "inf")] == 0.99
    assert kv[("bf16", "64", "")] == 0.6 and not [k for k in kv if k[0] == "fp8"]


def test_accuracy_step_server_load(tmp_path: Path) -> None:
    results = RunResults.load(builders.write_run(tmp_path, builders.demo_variants(), "bf16"))
    acc = results.variants["fp8"].accuracy
    assert acc is not None
    results.variants["fp8"].accuracy = acc.model_copy(
        update={"server_telemetry": _telemetry({"accuracy": (0.4, 2, 0)})}
    )
    rows = {r.variant: r for r in build_summary(results).variants}
    fp8 = rows["fp8"].accuracy
    assert fp8 is not None and fp8.server is not None and fp8.server.kv_cache_usage_peak == 0.4
    assert fp8.paired_p_value is not None  # the comparison with the baseline kept it
    assert rows["bf16"].accuracy is not None and rows["bf16"].accuracy.server is None
