"""The accuracy runner's own environment (lm-eval lives there, not in .venv: see tests/accuracy/setup.sh)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GSM8K_DIR = Path(os.environ.get("QUANTBENCH_GSM8K_DIR", REPO.parent / "shared" / "datasets" / "gsm8k"))


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    if not (GSM8K_DIR / "test.jsonl").is_file():
        pytest.fail(
            f"GSM8K not found at {GSM8K_DIR}: set QUANTBENCH_GSM8K_DIR to a folder with train/test.jsonl"
        )
    return GSM8K_DIR


@pytest.fixture(scope="session")
def accuracy_python() -> Path:
    """Python of the accuracy environment, created (or reused) by tests/accuracy/setup.sh."""
    proc = subprocess.run(
        [str(REPO / "tests" / "accuracy" / "setup.sh")],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert proc.returncode == 0, f"tests/accuracy/setup.sh failed:\n{proc.stderr[-3000:]}"
    venv = Path(os.environ.get("ACCURACY_VENV", REPO / ".cache" / "venv-accuracy"))
    return venv / "bin" / "python"
