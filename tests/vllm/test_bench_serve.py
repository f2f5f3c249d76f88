"""`vllm bench serve` runs from the vLLM environment (tests/vllm/bench_serve.py) against a real server:
the reference the load generator's figures are compared with."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.vllm import DEFAULT_PYTHON, ROOT, VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]


def test_vllm_bench_serve_runs(vllm_server: Callable[[str], VllmServer], tmp_path: Path) -> None:
    server = vllm_server("bf16")
    cmd = [
        str(DEFAULT_PYTHON), "-m", "tests.vllm.bench_serve",
        "--backend", "vllm", "--base-url", server.url, "--model", server.served_model_name,
        "--tokenizer", str(server.model_path), "--dataset-name", "random",
        "--random-input-len", "32", "--random-output-len", "8", "--num-prompts", "4",
        "--request-rate", "inf", "--save-result", "--result-dir", str(tmp_path),
        "--result-filename", "bench.json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "bench.json").read_text())
    assert (result["completed"], result["failed"]) == (4, 0)
    assert result["total_output_tokens"] == 4 * 8
    assert result["mean_ttft_ms"] > 0 and result["output_throughput"] > 0
