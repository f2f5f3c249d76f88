"""`quantbench dashboards`: write the chart's Grafana dashboards (quantbench.dashboards) as JSON files."""

from __future__ import annotations

import argparse
from pathlib import Path

from quantbench.dashboards import DASHBOARDS, render


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        (out / f"{name}.json").write_text(render(name), encoding="utf-8")
        print(out / f"{name}.json")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dashboards", help="write the Grafana dashboards (Comparison, Trend, Live run) as JSON"
    )
    p.add_argument("--out", default="charts/quantbench/files/dashboards", help="folder to write them into")
    p.set_defaults(func=run)
