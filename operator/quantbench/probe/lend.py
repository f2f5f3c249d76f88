"""``python -m quantbench.probe.lend DIR``: copy the quantbench and quantbench_loadgen packages into DIR.

The operator's probe Job runs this in an init container from the operator's own image, so that the probe
container, which runs the vLLM image (PyTorch, CUDA and vLLM's kernels, but no QuantBench), can run
``python3 -m quantbench.probe`` and publish its result with DIR on its PYTHONPATH. What runs there needs
only pydantic (vLLM depends on it), PyTorch and the standard library.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

PACKAGES: tuple[str, ...] = ("quantbench", "quantbench_loadgen")


def package_dirs() -> list[Path]:
    """The folders of the packages the probe needs, as this Python imports them."""
    return [Path(str(importlib.import_module(name).__file__)).resolve().parent for name in PACKAGES]


def lend(dest: Path) -> list[Path]:
    """Copy each package's source (no bytecode) into ``dest``; returns the copied package folders."""
    out = []
    for source in package_dirs():
        target = dest / source.name
        shutil.copytree(
            source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True
        )
        out.append(target)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m quantbench.probe.lend DIR", file=sys.stderr)
        return 2
    for path in lend(Path(args[0])):
        print(f"lent {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
