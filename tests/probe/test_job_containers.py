"""The operator's probe Job, its two containers run as the manifest writes them, outside Kubernetes.

The init container copies the QuantBench sources (``python -m quantbench.probe.lend``, from a Python where
quantbench is importable); the probe container runs ``probe_script`` with a different Python that has
PyTorch but not QuantBench (the vLLM environment here, as the vLLM image in a cluster), with only the lent
folder on its PYTHONPATH and a working directory outside the repository. Without a GPU the probe must say so
and the script must fail without a result; on the GPU machine it must leave a result the operator accepts.
The publish step that follows in the Job is exercised against the real apiserver by the operator tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantbench.manifests.probe import SOURCE_DIR, lend_command, probe_script
from quantbench.reconcile import parse_probe_result

from .common import REPO, TINY_CONFIG, TORCH_PYTHON, cuda_available


def lend(dest: Path) -> None:
    python, *args, target = lend_command()
    assert python == "python" and target == SOURCE_DIR
    argv = [sys.executable, *args, str(dest)]  # the same command, into a folder of this test
    # quantbench is installed in the operator's image; here it may come from the source tree.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "operator"), str(REPO / "loadgen")])}
    subprocess.run(argv, check=True, env=env, capture_output=True, timeout=60)


def run_probe_container(tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    if not Path(TORCH_PYTHON).exists() and "/" in TORCH_PYTHON:
        pytest.fail(f"{TORCH_PYTHON} is missing: run `make vllm-env` or set QUANTBENCH_PROBE_PYTHON")
    source = tmp_path / "src"
    lend(source)
    assert (source / "quantbench" / "probe" / "__main__.py").is_file()
    assert (source / "quantbench_loadgen" / "publish.py").is_file()
    assert not list(source.rglob("__pycache__"))
    config = tmp_path / "model" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(TINY_CONFIG))
    out = tmp_path / "results" / "result.json"
    out.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {"PYTHONPATH": str(source), "PYTHONUNBUFFERED": "1"}
    script = f"set -e; {probe_script(str(config.parent), str(out), python=TORCH_PYTHON)}"
    proc = subprocess.run(
        ["/bin/sh", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    return proc, out


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA GPU")
def test_without_a_gpu_the_probe_container_fails_and_says_why(tmp_path: Path) -> None:
    proc, out = run_probe_container(tmp_path)
    assert proc.returncode == 1
    # The lent sources ran under the other Python: the error is the probe's own.
    assert "quantbench probe: error: quantbench probe needs an NVIDIA GPU" in proc.stderr
    assert "quantbench probe exited 2" in proc.stdout
    assert "quantbench probe wrote no result" in proc.stderr
    assert not out.exists()


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU and PyTorch")
def test_on_a_gpu_the_probe_container_leaves_a_result_the_operator_accepts(tmp_path: Path) -> None:
    proc, out = run_probe_container(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result, problem = parse_probe_result(out.read_text())
    assert problem is None and result is not None
    assert [p.precision for p in result.precisions] == ["bf16", "fp8", "int4"]
    assert result.batch_sizes == tuple(2**i for i in range(13))  # the probe's defaults: 1 ... 4096
    assert result.bandwidth.bytes_per_s > 1e11
    assert "| 4096 |" in proc.stdout  # the tables go to the pod's log
