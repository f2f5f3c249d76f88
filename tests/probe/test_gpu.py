"""The probe on a real GPU: skipped where PyTorch sees no CUDA device (CI), run on the GPU machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quantbench.probe.measure import vllm_ops
from quantbench.probe.result import ProbeResult

from .common import TINY_CONFIG, cuda_available

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU and PyTorch"),
]


@pytest.fixture(scope="module")
def torch_module() -> Any:
    import torch

    return torch


def run_probe(config: Path, args: list[str], timeout_s: int) -> subprocess.CompletedProcess[str]:
    """`python -m quantbench.probe` on ``config`` with a small bandwidth buffer and ``args``."""
    command = [sys.executable, "-m", "quantbench.probe", "--model-config", str(config)]
    command += ["--bandwidth-buffer-gib", "0.5", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)


def test_probe_end_to_end_on_tiny_shapes(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    out = tmp_path / "result.json"
    proc = run_probe(
        config,
        ["--batch-sizes", "1,16,256", "--min-repeats", "5", "--target-seconds", "0.05", "--out", str(out)],
        timeout_s=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = ProbeResult.load(out)
    assert [p.precision for p in result.precisions] == ["bf16", "fp8", "int4"] and not result.failures
    assert result.bandwidth.bytes_per_s > 1e11 and len(result.bandwidth.passes_bytes_per_s) == 2
    for p in result.precisions:
        assert p.check_relative_error < 2e-2
        assert [s.batch_size for s in p.steps] == [1, 16, 256]
        assert all(s.median_ms > 0 and len(s.passes) == 2 for s in p.steps)
    assert "| 256 |" in proc.stdout
    fp8, int4 = result.precision("fp8"), result.precision("int4")
    if vllm_ops("fp8") is None:
        assert fp8.kernel.startswith("torch._scaled_mm")
        assert any("FP8 timed with PyTorch's torch._scaled_mm" in note for note in result.notes)
    else:
        assert fp8.kernel.startswith("vllm cutlass_scaled_mm")
    if vllm_ops("int4") is None:
        assert int4.kernel.startswith("torch._weight_int4pack_mm (tinygemm")
        assert any("4-bit timed with PyTorch's tinygemm" in note for note in result.notes)
    else:  # Marlin's layouts are right only if its product matches the float32 one (checked above)
        assert int4.kernel.startswith("vllm marlin_gemm")
    assert result.settings["fp8_kernel"] == "auto" and result.settings["int4_kernel"] == "auto"


def test_probe_asked_for_vllm_fp8_kernels_without_vllm_reports_it(tmp_path: Path) -> None:
    if vllm_ops("fp8") is not None:
        pytest.skip("vLLM is importable here")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_CONFIG))
    out = tmp_path / "result.json"
    args = ["--batch-sizes", "1", "--min-repeats", "2", "--target-seconds", "0.01", "--fp8-kernel", "vllm"]
    proc = run_probe(config, [*args, "--precisions", "fp8", "--out", str(out)], timeout_s=300)
    assert proc.returncode == 1, proc.stderr[-3000:]  # a result, with a precision that could not run
    result = ProbeResult.load(out)
    assert [p.precision for p in result.precisions] == ["bf16"]
    assert [f.precision for f in result.failures] == ["fp8"]
    assert "--fp8-kernel vllm: vLLM" in result.failures[0].error


class _VllmOpsInTorch:
    """vLLM's two FP8 entry points as its documentation defines them, in float arithmetic: the probe's vLLM
    FP8 linear must hand them the operands, layouts and scales vLLM's Fp8LinearOp hands them."""

    def __init__(self, torch: Any) -> None:
        self.torch = torch

    def scaled_fp8_quant(self, x: Any, use_per_token_if_dynamic: bool = False) -> tuple[Any, Any]:
        from quantbench.probe.measure import _per_token_quant_eager

        if use_per_token_if_dynamic:
            return _per_token_quant_eager(self.torch, x)
        scale = (x.abs().amax().float() / 448.0).reshape(1)
        return (x.float() / scale).clamp(-448.0, 448.0).to(self.torch.float8_e4m3fn), scale

    def cutlass_scaled_mm(self, a: Any, b: Any, scale_a: Any, scale_b: Any, out_dtype: Any) -> Any:
        assert b.stride(0) == 1, "vLLM's CUTLASS kernel takes the weight column-major ([K, N], K contiguous)"
        assert scale_b.is_contiguous() and scale_b.numel() in (1, b.shape[1])
        assert scale_a.numel() in (1, a.shape[0])
        scaled_a = a.float() * scale_a.reshape(-1, 1)
        scaled_b = b.float() * scale_b.reshape(1, -1)
        return (scaled_a @ scaled_b).to(out_dtype)


@pytest.mark.parametrize("per_token", [True, False])
def test_vllm_fp8_linear_hands_vllm_its_layouts(torch_module: Any, per_token: bool) -> None:
    torch = torch_module
    from quantbench.probe.measure import _check, _fp8_vllm_linear

    lin = _fp8_vllm_linear(torch, _VllmOpsInTorch(torch), 384, 512, per_token)
    assert _check(torch, lin.op, lin.reference, 512) < 2e-2
    x = torch.randn(7, 512, dtype=torch.bfloat16, device="cuda")
    assert lin.op(x).shape == (7, 384)


def test_per_token_fp8_kernel_matches_eager(torch_module: Any) -> None:
    torch = torch_module
    from quantbench.probe import triton_kernels
    from quantbench.probe.measure import _per_token_quant_eager

    x = torch.randn(37, 14336, dtype=torch.bfloat16, device="cuda") * 3
    q, s = triton_kernels.per_token_fp8(x)
    q_ref, s_ref = _per_token_quant_eager(torch, x)
    torch.testing.assert_close(s, s_ref, rtol=1e-6, atol=0)
    deq, deq_ref = q.float() * s, q_ref.float() * s_ref
    assert float((deq - deq_ref).norm() / deq_ref.norm()) < 1e-3
    assert float((deq - x.float()).norm() / x.float().norm()) < 5e-2


def test_per_tensor_fp8_kernel(torch_module: Any) -> None:
    torch = torch_module
    from quantbench.probe import triton_kernels

    x = torch.randn(5, 4096, dtype=torch.bfloat16, device="cuda")
    q, s = triton_kernels.per_tensor_fp8(x)
    assert s.shape == () and float(s) == pytest.approx(float(x.float().abs().max()) / 448.0, rel=1e-6)
    assert float((q.float() * s - x.float()).norm() / x.float().norm()) < 5e-2


def test_kernel_check_catches_a_wrong_kernel(torch_module: Any) -> None:
    torch = torch_module
    from quantbench.probe.measure import _bf16_linear, _check

    good = _bf16_linear(torch, 256, 512)
    assert _check(torch, good.op, good.reference, 512) < 1e-2
    assert _check(torch, lambda x: good.op(x) * 1.1, good.reference, 512) > 5e-2


def test_weights_that_cannot_fit_fail_clearly(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    huge = {**TINY_CONFIG, "hidden_size": 16384, "intermediate_size": 65536, "num_hidden_layers": 64}
    config.write_text(json.dumps({**huge, "num_attention_heads": 128}))
    proc = run_probe(config, ["--batch-sizes", "1"], timeout_s=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "no result: the bf16 baseline has no measurements" in proc.stderr
    assert "GB free" in proc.stderr and "run it on a GPU with more memory" in proc.stderr
