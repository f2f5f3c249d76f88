"""The measurement module's choices that need no GPU: which library's FP8 and 4-bit kernels it times, and
how it packs 4-bit values for Marlin."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from quantbench.probe.measure import VLLM_KERNELS, choose_kernel, vllm_ops

from .common import REPO, TORCH_PYTHON


def _fake_vllm(monkeypatch: pytest.MonkeyPatch, *names: str) -> types.ModuleType:
    package = types.ModuleType("vllm")
    ops = types.ModuleType("vllm._custom_ops")
    for name in names:
        setattr(ops, name, lambda *args, **kwargs: None)
    package._custom_ops = ops  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", package)
    monkeypatch.setitem(sys.modules, "vllm._custom_ops", ops)
    return ops


def test_vllm_ops_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    assert vllm_ops("fp8") is None and vllm_ops("int4") is None


def test_vllm_ops_present(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = _fake_vllm(monkeypatch, *VLLM_KERNELS["fp8"], *VLLM_KERNELS["int4"])
    assert vllm_ops("fp8") is ops and vllm_ops("int4") is ops


def test_vllm_without_a_precisions_kernels_counts_as_absent_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """An older vLLM without ``marlin_gemm`` still times FP8 (and 4-bit falls back to tinygemm)."""
    ops = _fake_vllm(monkeypatch, "scaled_fp8_quant", "cutlass_scaled_mm", "gptq_marlin_repack")
    assert vllm_ops("fp8") is ops and vllm_ops("int4") is None
    _fake_vllm(monkeypatch, "scaled_fp8_quant", *VLLM_KERNELS["int4"])
    assert vllm_ops("fp8") is None and vllm_ops("int4") is not None


@pytest.mark.parametrize(
    ("requested", "available", "chosen"),
    [
        ("auto", True, "vllm"),
        ("auto", False, "torch"),
        ("vllm", True, "vllm"),
        ("torch", True, "torch"),
        ("torch", False, "torch"),
    ],
)
@pytest.mark.parametrize("precision", ["fp8", "int4"])
def test_choose_kernel(precision: str, requested: str, available: bool, chosen: str) -> None:
    assert choose_kernel(precision, requested, available) == chosen  # type: ignore[arg-type]


@pytest.mark.parametrize(("precision", "kernels"), [("fp8", "cutlass_scaled_mm"), ("int4", "marlin_gemm")])
def test_asking_for_vllm_kernels_without_vllm_fails_clearly(precision: str, kernels: str) -> None:
    with pytest.raises(
        RuntimeError, match=rf"vLLM .*{kernels}.* is not importable here.*--{precision}-kernel torch"
    ):
        choose_kernel(precision, "vllm", False)


PACK = """
import torch
from quantbench.probe.measure import _pack_int4
q = (torch.arange(16, dtype=torch.int32) % 16).reshape(16, 1)  # 0..15 down one column
rows, cols = _pack_int4(torch, q, 0), _pack_int4(torch, q.reshape(1, 16), 1)
print(rows.dtype, list(rows.shape), rows.flatten().tolist(), list(cols.shape), cols.flatten().tolist())
"""


def test_4_bit_values_pack_eight_to_an_int32_lowest_first_along_rows_or_columns() -> None:
    """GPTQ's row packing (what ``gptq_marlin_repack`` takes) and Marlin's zero-point column packing, run where
    PyTorch is (the vLLM environment, as in the vLLM image): 0x76543210, then 0xFEDCBA98 as a signed int32."""
    if not Path(TORCH_PYTHON).exists():
        pytest.fail(f"{TORCH_PYTHON} is missing: run `make vllm-env` or set QUANTBENCH_PROBE_PYTHON")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PYTHONPATH"] = str(REPO / "operator")
    proc = subprocess.run([TORCH_PYTHON, "-c", PACK], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    packed = [0x76543210, 0xFEDCBA98 - 2**32]
    assert proc.stdout.split("\n")[-2] == f"torch.int32 [2, 1] {packed} [1, 2] {packed}"
