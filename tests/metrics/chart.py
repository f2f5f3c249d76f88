"""`helm template` of the chart, for the rule and monitor tests (helm is built by tests/cluster/build.sh)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "quantbench"


def helm() -> str:
    local = REPO / "tests" / "cluster" / "bin" / "helm"
    found = str(local) if local.exists() else shutil.which("helm")
    if found is None:
        pytest.fail("helm is missing: make cluster-bin builds it into tests/cluster/bin")
    return found


def helm_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(tmp_path),
        "HELM_CONFIG_HOME": str(tmp_path),
        "HELM_DATA_HOME": str(tmp_path),
    }


def helm_template(tmp_path: Path, *args: str, namespace: str = "quantbench-system") -> list[dict[str, Any]]:
    """The chart rendered as release `qb` in `namespace`, as a list of objects."""
    proc = subprocess.run(
        [helm(), "template", "qb", str(CHART), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        env=helm_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]
