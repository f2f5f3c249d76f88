"""The measurement module's choices that need no GPU: which library's FP8 and 4-bit kernels it times, and
how it packs 4-bit values for Marlin."""

from __future__ import annotations

import sys
import types

import pytest

from quantbench.probe.measure import VLLM_KERNELS, _pack_int4, choose_kernel, vllm_ops


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


def test_4_bit_values_pack_eight_to_an_int32_lowest_first_along_rows_or_columns() -> None:
    torch = pytest.importorskip("torch")
    q = torch.arange(16, dtype=torch.int32).reshape(16, 1) % 16  # 0..15 down one column
    rows = _pack_int4(torch, q, 0)
    assert rows.shape == (2, 1) and rows.dtype == torch.int32
    assert (
        rows[0, 0].item() == 0x76543210 and rows[1, 0].item() == 0xFEDCBA98 - 2**32
    )  # top bit set: negative
    cols = _pack_int4(torch, q.reshape(1, 16), 1)
    assert cols.shape == (1, 2) and torch.equal(cols, rows.reshape(1, 2))
