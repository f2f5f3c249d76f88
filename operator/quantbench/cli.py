"""The `quantbench` command line. Each sub-command lives in its own module that exposes
``register(subparsers)``; this module only wires them together."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute sub-commands, in the order `quantbench --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "quantbench.commands.validate",
    "quantbench.commands.crd",
    "quantbench.commands.run",
    "quantbench.commands.operator",
    "quantbench.commands.report",
    "quantbench.commands.probe",
    "quantbench.commands.dashboards",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantbench",
        description="Compare LLM serving precisions (BF16, FP8, AWQ-INT4, ...) declaratively.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
