"""The report's plots, as SVG text, from a run summary (pure)."""

from __future__ import annotations

import math

from quantbench.analysis.summary import format_gib
from quantbench.api.summary import RunSummary, ServerLoad, ServingPoint, Verdict
from quantbench.report.svg import Bar, Mark, Series, bar_chart, color, line_chart


def _rate_key(label: str) -> float:
    return math.inf if label == "inf" else float(label)


def _serving_workloads(summary: RunSummary) -> list[str]:
    names: list[str] = []
    for row in summary.variants:
        for p in row.serving:
            name = p.workload or ""
            if name not in names:
                names.append(name)
    return names


def throughput_plot(summary: RunSummary) -> str:
    series = [
        Series(
            row.variant, [(float(p.batch_size), p.output_tokens_per_second) for p in row.throughput], color(i)
        )
        for i, row in enumerate(summary.variants)
        if row.throughput
    ]
    return line_chart(
        "Throughput vs batch size", "batch size (log scale)", "output tokens/s", series, log2_x=True
    )


def serving_plot(summary: RunSummary, workload: str, metric: str) -> str:
    """TTFT or ITL (median) against the request rate of one serving workload."""
    rates = sorted(
        {p.request_rate for row in summary.variants for p in row.serving if (p.workload or "") == workload},
        key=_rate_key,
    )
    index = {r: i for i, r in enumerate(rates)}

    def value(p: ServingPoint) -> float | None:
        return p.ttft_median_ms if metric == "ttft" else p.itl_median_ms

    series = []
    for i, row in enumerate(summary.variants):
        pts = [
            (float(index[p.request_rate]), v)
            for p in row.serving
            if (p.workload or "") == workload and (v := value(p)) is not None
        ]
        if pts:
            series.append(Series(row.variant, pts, color(i)))
    title = {"ttft": "Time to first token", "itl": "Inter-token latency"}[metric]
    suffix = f" ({workload})" if workload else ""
    return line_chart(
        f"{title} vs request rate{suffix}",
        "request rate (requests/s; inf = closed loop)",
        f"median {metric.upper()}, ms",
        series,
        categories=rates,
    )


SERVER_FIGURES = {
    "kv-cache": ("KV-cache use (peak)", "% of KV-cache blocks", lambda load: _pct(load.kv_cache_usage_peak)),
    "queue": ("Requests waiting in the server (peak)", "requests waiting", lambda load: load.waiting_peak),
}


def _pct(x: float | None) -> float | None:
    return None if x is None else x * 100


def _server_value(load: ServerLoad | None, figure: str) -> float | None:
    return None if load is None else SERVER_FIGURES[figure][2](load)


def server_throughput_plot(summary: RunSummary, figure: str) -> str:
    """A server figure (KV-cache peak or queue peak) against the batch size, beside the throughput plot."""
    title, y_label, _ = SERVER_FIGURES[figure]
    series = []
    for i, row in enumerate(summary.variants):
        pts = [
            (float(p.batch_size), v)
            for p in row.throughput
            if (v := _server_value(p.server, figure)) is not None
        ]
        if pts:
            series.append(Series(row.variant, pts, color(i)))
    return line_chart(f"{title} vs batch size", "batch size (log scale)", y_label, series, log2_x=True)


def server_serving_plot(summary: RunSummary, workload: str, figure: str) -> str:
    """A server figure against the request rate of one serving workload, beside its TTFT and ITL."""
    title, y_label, _ = SERVER_FIGURES[figure]
    rates = sorted(
        {p.request_rate for row in summary.variants for p in row.serving if (p.workload or "") == workload},
        key=_rate_key,
    )
    index = {r: i for i, r in enumerate(rates)}
    series = []
    for i, row in enumerate(summary.variants):
        pts = [
            (float(index[p.request_rate]), v)
            for p in row.serving
            if (p.workload or "") == workload and (v := _server_value(p.server, figure)) is not None
        ]
        if pts:
            series.append(Series(row.variant, pts, color(i)))
    suffix = f" ({workload})" if workload else ""
    return line_chart(
        f"{title} vs request rate{suffix}",
        "request rate (requests/s; inf = closed loop)",
        y_label,
        series,
        categories=rates,
    )


def capacity_plot(summary: RunSummary) -> str:
    """The SLO's latency percentile against each tried rate, the SLO line and each variant's capacity."""
    series, marks = [], []
    slo: float | None = None
    pct = "p90"
    for i, row in enumerate(summary.variants):
        cap = row.capacity
        if cap is None:
            continue
        slo = slo if slo is not None else cap.slo_ttft_ms
        pct = cap.slo.split(" ", 1)[0] if cap.slo else pct
        pts = [(t.request_rate / cap.gpus, t.ttft_ms) for t in cap.trials if t.ttft_ms is not None]
        if pts:
            series.append(Series(row.variant, pts, color(i)))
        if cap.requests_per_second_per_gpu is not None:
            at = next(
                (t.ttft_ms for t in cap.trials if t.passed and t.request_rate == cap.requests_per_second),
                None,
            )
            if at is not None:
                label = f"{row.variant}: {cap.requests_per_second_per_gpu:.3g}/s" + (
                    "" if cap.counts else " (not counted)"
                )
                marks.append(Mark(cap.requests_per_second_per_gpu, at, color(i), label, cap.counts))
    return line_chart(
        f"Capacity under the SLO: {pct} TTFT vs request rate",
        "request rate per GPU (requests/s)",
        f"{pct} TTFT, ms",
        series,
        hline=(slo, f"SLO {slo:g} ms") if slo is not None else None,
        marks=marks,
    )


def accuracy_plot(summary: RunSummary) -> str:
    bars = []
    for i, row in enumerate(summary.variants):
        acc = row.accuracy
        if acc is None:
            continue
        note = f"{acc.accuracy * 100:.1f}%"
        if (
            acc.paired_p_value is not None
            and acc.paired_p_value < summary.alpha
            and row.verdict != Verdict.BASELINE
        ):
            note += " *"
        bars.append(
            Bar(
                row.variant,
                acc.accuracy * 100,
                color(i),
                acc.interval95.low * 100,
                acc.interval95.high * 100,
                note,
            )
        )
    return bar_chart(
        "GSM8K accuracy, 95% intervals (* significant change)",
        "% correct (strict)",
        bars,
        y_max=100.0,
    )


def memory_plot(summary: RunSummary) -> str:
    bars = [
        Bar(row.variant, row.weights_gib, color(i), note=format_gib(row.weights_gib))
        for i, row in enumerate(summary.variants)
        if row.weights_gib is not None
    ]
    return bar_chart("Model weight memory", "GiB", bars)


def all_plots(summary: RunSummary) -> dict[str, str]:
    """File stem -> SVG, in the order the report shows them; plots without data are left out."""
    plots: dict[str, str] = {}
    if any(row.throughput for row in summary.variants):
        plots["throughput"] = throughput_plot(summary)
    for figure in SERVER_FIGURES:
        if any(
            _server_value(p.server, figure) is not None for row in summary.variants for p in row.throughput
        ):
            plots[f"{figure}-throughput"] = server_throughput_plot(summary, figure)
    for n, workload in enumerate(_serving_workloads(summary)):
        tag = "" if n == 0 else f"-{workload}"
        plots[f"ttft{tag}"] = serving_plot(summary, workload, "ttft")
        plots[f"itl{tag}"] = serving_plot(summary, workload, "itl")
        for figure in SERVER_FIGURES:
            points = [p for row in summary.variants for p in row.serving if (p.workload or "") == workload]
            if any(_server_value(p.server, figure) is not None for p in points):
                plots[f"{figure}{tag or '-serving'}"] = server_serving_plot(summary, workload, figure)
    if any(row.capacity is not None and row.capacity.trials for row in summary.variants):
        plots["capacity"] = capacity_plot(summary)
    if any(row.accuracy for row in summary.variants):
        plots["accuracy"] = accuracy_plot(summary)
    if any(row.weights_gib is not None for row in summary.variants):
        plots["memory"] = memory_plot(summary)
    return plots
