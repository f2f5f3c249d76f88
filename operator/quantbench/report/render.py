"""Markdown and self-contained HTML reports of one run (pure: summary in, text out)."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from quantbench.analysis.run_results import RunInfo
from quantbench.api.summary import RunSummary
from quantbench.report.plots import all_plots
from quantbench.report.words import COLUMNS, VERDICT_TITLES, num, table_row, times, verdict_sentence


@dataclass(frozen=True)
class Report:
    markdown: str
    html: str
    plots: dict[str, str]  # file stem -> SVG (the Markdown links them as plots/<stem>.svg)


def format_bandwidth(bytes_per_s: float) -> str:
    """TB/s for GPU memory, GB/s below 1 TB/s (a CPU's)."""
    return f"{bytes_per_s / 1e12:.2f} TB/s" if bytes_per_s >= 1e12 else f"{bytes_per_s / 1e9:.1f} GB/s"


def _header_facts(info: RunInfo, summary: RunSummary) -> list[tuple[str, str]]:
    bandwidth = (
        f"{format_bandwidth(summary.memory_bandwidth_bytes_per_s)} ({summary.bandwidth_source})"
        if summary.memory_bandwidth_bytes_per_s
        else "unknown (no GPU figure and no CPU probe: efficiency not computed)"
    )
    finished = info.finished_at.isoformat(timespec="minutes") if info.finished_at else "-"
    on_cpu = (summary.bandwidth_source or "").startswith("CPU")
    return [
        ("Benchmark", info.benchmark),
        ("Run", info.run_id),
        ("Model", info.spec.model),
        ("Baseline", summary.baseline),
        ("GPU", summary.gpu or ("none: served on the CPU" if on_cpu else "unknown")),
        ("Memory bandwidth", bandwidth),
        ("Started / finished", f"{info.started_at.isoformat(timespec='minutes')} / {finished}"),
        ("Recommended", summary.recommendation or summary.best or "none"),
    ]


def _method_notes(summary: RunSummary) -> list[str]:
    return [
        "Accuracy: GSM8K through lm-eval, strict match (the number after '####'); "
        "intervals are 95% Wilson score intervals.",
        f"Accuracy changes are paired: the same questions on both sides, exact McNemar test, "
        f"significant when p < {summary.alpha:g}. The minimum detectable drop is the smallest true drop the "
        f"test finds with {summary.power:.0%} power at the observed rate of changed answers.",
        "Accuracy at margin: a one-sided paired score test (exact below 60 questions) of 'the variant is worse "
        "than the baseline by the margin or more'"
        + (f" (margin {summary.accuracy_margin * 100:g} points)" if summary.accuracy_margin else "")
        + f". Non-inferior: the {1 - summary.alpha:.0%} lower bound of the difference is above minus the "
        "margin; inferior: the upper bound is below it; undecided: more questions are needed, and the table "
        f"says how many give {summary.power:.0%} power.",
        f"Speeds within {summary.speed_margin:.0%} of the baseline's count as equal. The crossover column says "
        "where a variant's throughput falls below the baseline's (slower from) or rises above it (faster from), "
        "interpolated in log2(batch size).",
        "Bandwidth efficiency: the time to read the weights once at the memory bandwidth (the GPU's, or the "
        "CPU's for a run served on the CPU), divided by the measured batch-1 time per token (100% = at the "
        "floor).",
    ]


def _serving_rows(summary: RunSummary) -> list[list[str]]:
    rows = []
    for row in summary.variants:
        for p in row.serving:
            rows.append(
                [
                    row.variant,
                    p.workload or "-",
                    p.request_rate,
                    num(p.ttft_median_ms),
                    num(p.ttft_p99_ms),
                    num(p.itl_median_ms, 2),
                    num(p.e2e_median_ms, 0),
                    num(p.output_tokens_per_second, 0),
                    num(p.goodput_requests_per_second, 2),
                    times(p.ttft_ratio_to_baseline),
                    times(p.throughput_ratio_to_baseline),
                ]
            )
    return rows


SERVING_COLUMNS = (
    "Variant",
    "Workload",
    "Rate (req/s)",
    "TTFT p50 ms",
    "TTFT p99 ms",
    "ITL p50 ms",
    "E2E p50 ms",
    "Output tok/s",
    "Goodput req/s",
    "TTFT vs base",
    "tok/s vs base",
)


def _md_table(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return lines


def render_markdown(info: RunInfo, summary: RunSummary, plots: dict[str, str]) -> str:
    out = [f"# QuantBench report: {info.benchmark} ({info.run_id})", ""]
    out += [f"- **{k}**: {v}" for k, v in _header_facts(info, summary)]
    out += ["", "## Summary", ""]
    out += _md_table(
        [c.title for c in COLUMNS], [table_row(r, summary.speed_margin) for r in summary.variants]
    )
    out += ["", "## Verdicts", ""]
    for row in summary.variants:
        out.append(
            f"- **{row.variant}: {VERDICT_TITLES.get(row.verdict, row.verdict)}.** {verdict_sentence(row, summary)}"
        )
        if row.verdict not in ("Baseline", "Failed", "Unsupported"):
            out += [f"  - {e}" for e in row.evidence]
    if summary.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in summary.notes]
    if plots:
        out += ["", "## Plots", ""]
        out += [f"![{stem}](plots/{stem}.svg)" for stem in plots]
    serving = _serving_rows(summary)
    if serving:
        out += ["", "## Serving", "", *_md_table(SERVING_COLUMNS, serving)]
    out += ["", "## Method", ""] + [f"- {n}" for n in _method_notes(summary)]
    return "\n".join(out) + "\n"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1280px;
       color: #1b1b1b; padding: 0 16px; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { border: 1px solid #d0d0d0; padding: 4px 7px; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; font-size: 13.5px; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
.verdict { margin: 8px 0 14px; } .verdict ul { margin: 4px 0; font-size: 13px; color: #333; }
.tag { display: inline-block; border-radius: 4px; padding: 1px 7px; font-size: 12px; font-weight: 600; }
.good { background: #d9f2dc; } .bad { background: #f8d7d7; } .mixed { background: #fcebc7; }
.neutral { background: #e8e8e8; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
.plots figure { margin: 0; border: 1px solid #e2e2e2; }
"""

TONE = {
    "FreeSpeedup": "good",
    "SpeedupButInferior": "bad",
    "Inferior": "bad",
    "SpeedupQualityUndecided": "mixed",
    "SlowKernel": "mixed",
    "Failed": "bad",
    "Unsupported": "bad",
    "Slower": "bad",
    "LatencyWinLosesUnderLoad": "mixed",
    "MemoryWinOnly": "mixed",
    "SpeedupQualityUntested": "mixed",
}


def _html_table(header: list[str] | tuple[str, ...], rows: list[list[str]], numeric: list[bool]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if n else ''}>{escape(c)}</td>" for c, n in zip(r, numeric, strict=True))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(info: RunInfo, summary: RunSummary, plots: dict[str, str]) -> str:
    facts = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in _header_facts(info, summary))
    table = _html_table(
        [c.title for c in COLUMNS],
        [table_row(r, summary.speed_margin) for r in summary.variants],
        [c.numeric for c in COLUMNS],
    )
    verdicts = []
    for row in summary.variants:
        tone = TONE.get(str(row.verdict), "neutral")
        evidence = (
            ""
            if row.verdict in ("Baseline", "Failed", "Unsupported")
            else "".join(f"<li>{escape(e)}</li>" for e in row.evidence)
        )
        verdicts.append(
            f'<div class="verdict"><span class="tag {tone}">{escape(row.variant)}: '
            f"{escape(VERDICT_TITLES.get(row.verdict, str(row.verdict)))}</span> "
            f"{escape(verdict_sentence(row, summary))}<ul>{evidence}</ul></div>"
        )
    notes = "".join(f"<li>{escape(n)}</li>" for n in summary.notes)
    figures = "".join(f"<figure>{svg}</figure>" for svg in plots.values())
    serving = _serving_rows(summary)
    serving_html = (
        "<h2>Serving</h2>" + _html_table(SERVING_COLUMNS, serving, [False, False, True] + [True] * 8)
        if serving
        else ""
    )
    method = "".join(f"<li>{escape(n)}</li>" for n in _method_notes(summary))
    title = f"QuantBench report: {info.benchmark} ({info.run_id})"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><dl class="facts">{facts}</dl>'
        f"<h2>Summary</h2>{table}"
        f"<h2>Verdicts</h2>{''.join(verdicts)}"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + (f'<h2>Plots</h2><div class="plots">{figures}</div>' if figures else "")
        + serving_html
        + f"<h2>Method</h2><ul>{method}</ul></body></html>\n"
    )


def build_report(info: RunInfo, summary: RunSummary) -> Report:
    plots = all_plots(summary)
    return Report(
        markdown=render_markdown(info, summary, plots), html=render_html(info, summary, plots), plots=plots
    )
