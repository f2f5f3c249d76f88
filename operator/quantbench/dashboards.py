"""Grafana dashboards (Grafana's JSON model) for the chart: Comparison, Trend and Live run.

Pure builders; `quantbench dashboards --out charts/quantbench/files/dashboards` writes them (`make
dashboards`) and tests/metrics checks the committed files are these. Every dashboard has a Prometheus
datasource variable and namespace / benchmark / model / variant filters; every panel reads `quantbench_*`
series of the operator, `quantbench_loadgen_*` series of the load-generator Jobs or `vllm:*` series of the
servers (the chart's PodMonitors label the last two with benchmark, variant and step).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
BENCH = 'namespace=~"$namespace",benchmark=~"$benchmark",model=~"$model"'
SEL = BENCH + ',variant=~"$variant"'
# vLLM and load-generator pods carry no model label: benchmark and variant name them.
POD = 'namespace=~"$namespace",benchmark=~"$benchmark",variant=~"$variant"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # Grafana panel type: timeseries, bargauge, table, stat, state-timeline
    queries: list[Query]
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    overrides: dict[str, Any] = field(default_factory=dict)


def _variable(name: str, label: str, metric: str, selector: str) -> dict[str, Any]:
    query = f"label_values({metric}{{{selector}}}, {name})" if selector else f"label_values({metric}, {name})"
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def variables(variant_metric: str) -> list[dict[str, Any]]:
    """datasource, then namespace -> benchmark -> model -> variant, each filtered by the ones before."""
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "refresh": 1,
        },
        _variable("namespace", "Namespace", "quantbench_run_in_progress", ""),
        _variable("benchmark", "Benchmark", "quantbench_run_in_progress", 'namespace=~"$namespace"'),
        _variable(
            "model", "Model", "quantbench_run_in_progress", 'namespace=~"$namespace",benchmark=~"$benchmark"'
        ),
        _variable("variant", "Variant", variant_metric, BENCH),
    ]


def _target(q: Query, ref: str) -> dict[str, Any]:
    return {
        "datasource": DS,
        "refId": ref,
        "expr": q.expr,
        "legendFormat": q.legend or "__auto",
        "instant": q.instant,
        "range": not q.instant,
        "format": "table" if q.table else "time_series",
    }


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DS,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "targets": [_target(q, chr(ord("A") + i)) for i, q in enumerate(p.queries)],
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {},
    }
    if p.kind == "bargauge":
        out["options"] = {"orientation": "horizontal", "displayMode": "basic", "showUnfilled": True}
    if p.kind == "table":
        out["transformations"] = [
            {"id": "merge", "options": {}},
            {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True}}},
        ]
    out.update(p.overrides)
    return out


def annotation(name: str, expr: str, title: str, color: str) -> dict[str, Any]:
    """A Prometheus annotation: a mark on every time-series panel wherever `expr` has a series."""
    return {
        "name": name,
        "datasource": DS,
        "enable": True,
        "iconColor": color,
        "expr": expr,
        "step": "60s",
        "titleFormat": title,
        "textFormat": "",
        "useValueForTime": False,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Panel],
    variant_metric: str,
    marks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A dashboard with panels laid out left to right, two per row unless a panel is wider."""
    laid: list[dict[str, Any]] = []
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        if x + p.width > 24:
            x, y, row_h = 0, y + row_h, 0
        laid.append(_panel(p, i, x, y))
        x += p.width
        row_h = max(row_h, p.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["quantbench"],
        "timezone": "utc",
        "editable": True,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": variables(variant_metric)},
        "annotations": {"list": marks or []},
        "panels": laid,
    }


def _bars(title: str, expr: str, legend: str, unit: str, description: str, width: int = 12) -> Panel:
    return Panel(title, "bargauge", [Query(expr, legend, instant=True)], unit, description, width)


def _fidelity(kind: str, kl_description: str, agreement_description: str = "") -> list[Panel]:
    """The fidelity figures (accuracy.fidelity) as two panels of one kind: instant bars for the last run
    (Comparison), or time series over runs (Trend)."""
    instant = kind == "bargauge"

    def query(metric: str, legend: str) -> Query:
        return Query(f"{metric}{{{SEL}}}", "{{benchmark}} {{variant}} " + legend, instant=instant)

    return [
        Panel(
            "Fidelity: KL divergence to the baseline",
            kind,
            [
                query("quantbench_fidelity_kl_mean_nats", "mean"),
                query("quantbench_fidelity_kl_p99_nats", "p99"),
            ],
            "suffix: nats",
            kl_description,
        ),
        Panel(
            "Fidelity: agreement with the baseline",
            kind,
            [
                query("quantbench_fidelity_top1_agreement_ratio", "top-1 token"),
                query("quantbench_fidelity_answer_agreement_ratio", "greedy answer"),
            ],
            "percentunit",
            agreement_description,
        ),
    ]


def comparison() -> dict[str, Any]:
    """The summary's table as panels: one figure per panel, one bar per variant (and size or rate)."""
    v = "{{benchmark}} {{variant}}"
    panels = [
        Panel(
            "Verdicts",
            "table",
            [
                Query(f"quantbench_verdict_info{{{SEL}}}", instant=True, table=True),
                Query(f"quantbench_best_variant_info{{{BENCH}}}", instant=True, table=True),
            ],
            description="Each variant's verdict against the baseline; the second row names the recommended one.",
            width=24,
        ),
        _bars(
            "Decode time per token at batch 1",
            f"quantbench_decode_seconds_per_token{{{SEL}}}",
            v,
            "s",
            "Median decode time per output token of the latency workload.",
        ),
        _bars(
            "Decode latency ratio to baseline",
            f"quantbench_decode_latency_ratio{{{SEL}}}",
            v,
            "percentunit",
            "Below 1: faster than the baseline at batch 1.",
        ),
        _bars(
            "Throughput by batch size",
            f"quantbench_output_tokens_per_second{{{SEL}}}",
            v + " bs={{batch_size}}",
            "short",
            "Output tokens per second of the throughput sweep.",
        ),
        _bars(
            "Throughput ratio to baseline by batch size",
            f"quantbench_throughput_ratio{{{SEL}}}",
            v + " bs={{batch_size}}",
            "percentunit",
            "Below 1: fewer tokens per second than the baseline at that batch size.",
        ),
        _bars(
            "Crossover batch size",
            f"quantbench_crossover_batch_size{{{SEL}}}",
            v,
            "short",
            "Batch size from which the variant's throughput falls below the baseline's.",
        ),
        _bars(
            "TTFT by request rate (median)",
            f"quantbench_ttft_seconds{{{SEL}}}",
            v + " @ {{request_rate}} req/s",
            "s",
            "Median time to first token of the serving workloads.",
        ),
        _bars(
            "TTFT p99 by request rate",
            f"quantbench_ttft_p99_seconds{{{SEL}}}",
            v + " @ {{request_rate}} req/s",
            "s",
            "99th percentile time to first token.",
        ),
        _bars(
            "ITL by request rate (median)",
            f"quantbench_itl_seconds{{{SEL}}}",
            v + " @ {{request_rate}} req/s",
            "s",
            "Median inter-token latency of the serving workloads.",
        ),
        _bars(
            "Serving throughput by request rate",
            f"quantbench_serving_output_tokens_per_second{{{SEL}}}",
            v + " @ {{request_rate}} req/s",
            "short",
            "Output tokens per second at each request rate.",
        ),
        _bars(
            "Server KV-cache peak by batch size and rate",
            f"quantbench_server_kv_cache_usage_peak_ratio{{{SEL}}}",
            v + " bs={{batch_size}} rate={{request_rate}}",
            "percentunit",
            "Highest KV-cache use of the vLLM server during each step: why a variant falls behind under load.",
        ),
        _bars(
            "Server queue peak by batch size and rate",
            f"quantbench_server_waiting_requests_peak{{{SEL}}}",
            v + " bs={{batch_size}} rate={{request_rate}}",
            "short",
            "Most requests waiting in the vLLM server's queue during each step.",
        ),
        Panel(
            "Accuracy with 95% interval",
            "table",
            [
                Query(f"quantbench_accuracy_ratio{{{SEL}}}", instant=True, table=True),
                Query(f"quantbench_accuracy_interval_low_ratio{{{SEL}}}", instant=True, table=True),
                Query(f"quantbench_accuracy_interval_high_ratio{{{SEL}}}", instant=True, table=True),
                Query(f"quantbench_accuracy_delta_ratio{{{SEL}}}", instant=True, table=True),
                Query(f"quantbench_accuracy_p_value{{{SEL}}}", instant=True, table=True),
            ],
            "percentunit",
            "Accuracy (A), Wilson 95% interval (B, C), difference to the baseline on the same questions (D) "
            "and its McNemar p-value (E).",
            width=24,
        ),
        *_fidelity(
            "bargauge",
            "Mean and 99th percentile KL(baseline || variant) of the next-token distributions, teacher-forced "
            "on the baseline's answers (accuracy.fidelity; 0: the same distributions).",
            "Share of token positions with the baseline's top token, and of questions with its greedy answer.",
        ),
        _bars(
            "Weight memory",
            f"quantbench_weights_bytes{{{SEL}}}",
            v,
            "bytes",
            "Model weight memory the server reported.",
        ),
        _bars(
            "Bandwidth efficiency at batch 1",
            f"quantbench_bandwidth_efficiency_ratio{{{SEL}}}",
            v,
            "percentunit",
            "Bandwidth floor / measured decode time per token (1 = at the memory-bandwidth floor).",
        ),
    ]
    return dashboard(
        "quantbench-comparison",
        "QuantBench / Comparison",
        "The last run of each benchmark: every precision against its baseline.",
        panels,
        "quantbench_verdict_info",
    )


def trend() -> dict[str, Any]:
    """Each figure over time: every finished run updates the series, so the history is the trend."""
    v = "{{benchmark}} {{variant}}"
    panels = [
        Panel(
            "Regressions of the last run",
            "timeseries",
            [Query(f"quantbench_regressions{{{SEL}}}", v)],
            description="Findings worse than the reference run, per variant (0: clean). Alert: "
            "QuantBenchRegressionDetected.",
            width=24,
            overrides={
                "fieldConfig": {
                    "defaults": {"unit": "short", "custom": {"drawStyle": "bars"}},
                    "overrides": [],
                }
            },
        ),
        Panel(
            "Decode time per token at batch 1",
            "timeseries",
            [Query(f"quantbench_decode_seconds_per_token{{{SEL}}}", v)],
            "s",
        ),
        Panel(
            "Throughput by batch size",
            "timeseries",
            [Query(f"quantbench_output_tokens_per_second{{{SEL}}}", v + " bs={{batch_size}}")],
        ),
        Panel(
            "TTFT by request rate (median)",
            "timeseries",
            [Query(f"quantbench_ttft_seconds{{{SEL}}}", v + " @ {{request_rate}}")],
            "s",
        ),
        Panel(
            "ITL by request rate (median)",
            "timeseries",
            [Query(f"quantbench_itl_seconds{{{SEL}}}", v + " @ {{request_rate}}")],
            "s",
        ),
        Panel(
            "Accuracy with 95% interval",
            "timeseries",
            [
                Query(f"quantbench_accuracy_ratio{{{SEL}}}", v),
                Query(f"quantbench_accuracy_interval_low_ratio{{{SEL}}}", v + " low"),
                Query(f"quantbench_accuracy_interval_high_ratio{{{SEL}}}", v + " high"),
            ],
            "percentunit",
        ),
        *_fidelity(
            "timeseries",
            "Mean and 99th percentile KL(baseline || variant): a rise means the variant drifted from the baseline.",
        ),
        Panel(
            "Run duration",
            "timeseries",
            [Query(f"quantbench_run_duration_seconds{{{BENCH}}}", "{{benchmark}}")],
            "s",
            "Duration of the last finished run.",
        ),
        Panel(
            "Run phase",
            "state-timeline",
            [Query(f"quantbench_run_phase{{{BENCH}}} == 1", "{{benchmark}} {{phase}}")],
            description="Which phase each benchmark was in over time.",
            width=24,
        ),
    ]
    return dashboard(
        "quantbench-trend",
        "QuantBench / Trend",
        "Each figure across recurring runs, with the regressions each run found.",
        panels,
        "quantbench_verdict_info",
        [
            annotation(
                "Regressions",
                f"quantbench_regressions{{{SEL}}} > 0",
                "{{benchmark}} {{variant}} regressed",
                "red",
            )
        ],
    )


def live() -> dict[str, Any]:
    """A run while it happens: variant progress, the servers' KV cache and queue, the load generator."""
    v = "{{benchmark}} {{variant}}"
    panels = [
        Panel(
            "Variant progress",
            "bargauge",
            [Query(f"quantbench_variant_progress_ratio{{{SEL}}}", v, instant=True)],
            "percentunit",
            "Finished benchmark steps / steps, per variant.",
        ),
        Panel(
            "Variant phase",
            "state-timeline",
            [Query(f"quantbench_variant_phase{{{SEL}}} == 1", v + " {{phase}}")],
            description="Pending, WaitingForGPU, Starting, Benchmarking, Evaluating, Succeeded, Failed.",
        ),
        Panel(
            "Current step",
            "table",
            [Query(f"quantbench_variant_step_info{{{SEL}}}", instant=True, table=True)],
            description="The step each variant is running.",
        ),
        Panel(
            "Run elapsed",
            "stat",
            [
                Query(
                    f"(time() - quantbench_run_start_timestamp_seconds{{{BENCH}}}) * on (namespace, benchmark) "
                    f"group_left quantbench_run_in_progress{{{BENCH}}}",
                    "{{benchmark}}",
                    instant=True,
                )
            ],
            "s",
            "Time since the run in progress started (0 when none is).",
        ),
        Panel(
            "Server KV-cache usage",
            "timeseries",
            [
                Query(
                    f"vllm:kv_cache_usage_perc{{{POD}}} or vllm:gpu_cache_usage_perc{{{POD}}}",
                    v,
                )
            ],
            "percentunit",
            "Fraction of the vLLM server's KV-cache blocks in use.",
        ),
        Panel(
            "Server queue",
            "timeseries",
            [
                Query(f"vllm:num_requests_running{{{POD}}}", v + " running"),
                Query(f"vllm:num_requests_waiting{{{POD}}}", v + " waiting"),
            ],
            description="Requests the vLLM server is running and holding in its queue.",
        ),
        Panel(
            "Server preemptions",
            "timeseries",
            [Query(f"sum by (benchmark, variant) (rate(vllm:num_preemptions_total{{{POD}}}[1m]))", v)],
            "ops",
            "Requests preempted per second (KV cache full).",
        ),
        Panel(
            "Server token rate",
            "timeseries",
            [
                Query(
                    f"sum by (benchmark, variant) (rate(vllm:generation_tokens_total{{{POD}}}[1m]))",
                    v + " generated",
                ),
                Query(
                    f"sum by (benchmark, variant) (rate(vllm:prompt_tokens_total{{{POD}}}[1m]))",
                    v + " prompt",
                ),
            ],
            "short",
            "Prompt and generated tokens per second, as the server counts them.",
        ),
        Panel(
            "Load-generator request rate",
            "timeseries",
            [
                Query(
                    f"sum by (benchmark, variant, step) (rate(quantbench_loadgen_requests_sent_total{{{POD}}}[1m]))",
                    v + " {{step}} sent",
                ),
                Query(
                    f"sum by (benchmark, variant, step) (rate(quantbench_loadgen_requests_completed_total{{{POD}}}[1m]))",
                    v + " {{step}} completed",
                ),
            ],
            "reqps",
            "Requests per second the load generator sends and completes.",
        ),
        Panel(
            "Load-generator errors",
            "timeseries",
            [
                Query(
                    f"sum by (benchmark, variant, reason) (increase(quantbench_loadgen_requests_failed_total{{{POD}}}[5m])) "
                    f"or sum by (benchmark, variant) (quantbench_loadgen_requests_in_flight{{{POD}}}) * 0",
                    v + " {{reason}}",
                )
            ],
            description="Failed requests in the last 5 minutes, by reason (0 while none failed).",
        ),
        Panel(
            "Load-generator TTFT (p50, p99)",
            "timeseries",
            [
                Query(
                    "histogram_quantile(0.5, sum by (benchmark, variant, le) "
                    f"(rate(quantbench_loadgen_ttft_seconds_bucket{{{POD}}}[1m])))",
                    v + " p50",
                ),
                Query(
                    "histogram_quantile(0.99, sum by (benchmark, variant, le) "
                    f"(rate(quantbench_loadgen_ttft_seconds_bucket{{{POD}}}[1m])))",
                    v + " p99",
                ),
            ],
            "s",
            "Time to first token as the load generator measures it.",
        ),
        Panel(
            "Load-generator requests in flight",
            "timeseries",
            [
                Query(
                    f"sum by (benchmark, variant, step) (quantbench_loadgen_requests_in_flight{{{POD}}})",
                    v + " {{step}}",
                )
            ],
            description="Requests sent and not yet answered.",
        ),
    ]
    return dashboard(
        "quantbench-live",
        "QuantBench / Live run",
        "A run in progress: each variant's progress, its vLLM server's KV cache and queue, and the load.",
        panels,
        "quantbench_variant_phase",
    )


DASHBOARDS = {"comparison": comparison, "trend": trend, "live": live}


def render(name: str) -> str:
    """The dashboard's JSON file content."""
    return json.dumps(DASHBOARDS[name](), indent=2, sort_keys=False) + "\n"
