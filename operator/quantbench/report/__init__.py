"""The run report: Markdown and a self-contained HTML page with inline SVG plots.

`write_report(results_dir, out_dir, formats)` loads a results folder (quantbench.analysis.run_results),
builds the summary (quantbench.analysis.summary) and writes ``report.md`` (with ``plots/*.svg`` beside it)
and/or ``report.html`` (plots inline, no external resources) plus ``summary.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from quantbench.analysis.run_results import RunResults
from quantbench.analysis.summary import build_summary
from quantbench.report.render import Report, build_report

FORMATS = ("md", "html")


def write_report(results_dir: Path, out_dir: Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write the report files; returns their paths."""
    wanted = list(dict.fromkeys(formats))
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format {', '.join(unknown)}: choose from {', '.join(FORMATS)}")
    results = RunResults.load(results_dir)
    summary = build_summary(results)
    report: Report = build_report(results.info, summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if "md" in wanted:
        (out_dir / "plots").mkdir(exist_ok=True)
        for stem, svg in report.plots.items():
            path = out_dir / "plots" / f"{stem}.svg"
            path.write_text(svg + "\n", encoding="utf-8")
        md = out_dir / "report.md"
        md.write_text(report.markdown, encoding="utf-8")
        written.append(md)
    if "html" in wanted:
        html = out_dir / "report.html"
        html.write_text(report.html, encoding="utf-8")
        written.append(html)
    summary_path = out_dir / "summary.json"
    summary_path.write_text(json.dumps(summary.to_wire(), indent=2) + "\n", encoding="utf-8")
    written.append(summary_path)
    return written
