"""`quantbench validate FILE...`: check specs against the API, naming each bad field."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quantbench.api.validation import SpecError, load_benchmarks
from quantbench.sizes import configmap_problems, unscreened


def run(args: argparse.Namespace) -> int:
    failed = 0
    for name in args.files:
        try:
            benchmarks = load_benchmarks(Path(name))
        except SpecError as exc:
            failed += 1
            print(f"{name}: invalid", file=sys.stderr)
            for problem in exc.problems:
                print(f"  - {problem}", file=sys.stderr)
            continue
        for b in benchmarks:
            variants = ", ".join(f"{v.name} ({v.precision})" for v in b.spec.variants)
            print(f"{name}: {b.metadata.name} ok: {b.spec.model}; variants {variants}")
            for problem in configmap_problems(b.spec):  # fine for `quantbench run`, refused by the operator
                print(f"{name}: {b.metadata.name}: the operator would refuse it: {problem}", file=sys.stderr)
            why = unscreened(b.spec)  # runs on Kubernetes, only costlier
            if why is not None:
                print(
                    f"{name}: {b.metadata.name}: on Kubernetes no question would be screened ({why}): every "
                    "variant would generate every question; lower accuracy.limit, numFewshot or maxGenTokens to "
                    "screen (`quantbench run` has no such limit)",
                    file=sys.stderr,
                )
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("validate", help="check QuantBenchmark files against the API")
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML files with QuantBenchmark resources")
    p.set_defaults(func=run)
