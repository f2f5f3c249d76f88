"""The measurement module's choices that need no GPU: which library's FP8 kernels it times."""

from __future__ import annotations

import sys
import types

import pytest

from quantbench.probe.measure import choose_fp8_kernel, vllm_ops


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
    assert vllm_ops() is None


def test_vllm_ops_present(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = _fake_vllm(monkeypatch, "cutlass_scaled_mm", "scaled_fp8_quant")
    assert vllm_ops() is ops


def test_vllm_without_its_fp8_kernels_counts_as_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_vllm(monkeypatch, "scaled_fp8_quant")
    assert vllm_ops() is None


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
def test_choose_fp8_kernel(requested: str, available: bool, chosen: str) -> None:
    assert choose_fp8_kernel(requested, available) == chosen  # type: ignore[arg-type]


def test_asking_for_vllm_kernels_without_vllm_fails_clearly() -> None:
    with pytest.raises(RuntimeError, match=r"vLLM .* is not importable here.*--fp8-kernel torch"):
        choose_fp8_kernel("vllm", False)
