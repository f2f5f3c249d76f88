"""`quantbench crd`: print the CustomResourceDefinition generated from the API models."""

from __future__ import annotations

import argparse
import sys

from quantbench.api.crd import render


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(render())
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("crd", help="print the QuantBenchmark CRD (generated from the API models)")
    p.set_defaults(func=run)
