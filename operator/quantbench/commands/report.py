"""`quantbench report RESULTS_DIR [--format md,html] [--out DIR]`: the run report from a results folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from quantbench.analysis.run_results import ResultsError
from quantbench.report import FORMATS, write_report


def _formats(text: str) -> list[str]:
    formats = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if not formats or bad:
        raise argparse.ArgumentTypeError(f"--format takes a comma-separated list of {', '.join(FORMATS)}")
    return formats


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="write the Markdown/HTML report of a results folder",
        description="Summarize a run's results folder (run.json, <variant>/...) into report.md and report.html.",
    )
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR", help="results folder of one run")
    parser.add_argument(
        "--format", type=_formats, default=list(FORMATS), help="md, html or md,html (default)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: RESULTS_DIR/report)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = args.out or args.results_dir / "report"
    try:
        written = write_report(args.results_dir, out, args.format)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
