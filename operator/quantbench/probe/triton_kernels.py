"""Triton kernels the measurement uses when Triton is importable (it ships with PyTorch's CUDA builds).

- ``read_sum``: a streaming read of a large buffer (one partial sum per program), the bandwidth probe.
- ``per_token_fp8``: dynamic per-token FP8 quantization in one kernel, as vLLM's fused quant op does,
  so the FP8 step pays for quantizing its activations without a chain of small eager kernels.

Imported only from quantbench.probe.measure, after torch; never at package import time.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

FP8_E4M3_MAX = 448.0
READ_BLOCK = 4096


@triton.jit
def _read_sum_kernel(x_ptr, out_ptr, BLOCK: tl.constexpr):  # type: ignore[no-untyped-def]
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    tl.store(out_ptr + pid, tl.sum(x, axis=0))


def read_sum(x: Any, out: Any) -> None:
    """Read every float32 of ``x`` (length a multiple of READ_BLOCK) once; one partial sum per block."""
    grid = (x.numel() // READ_BLOCK,)
    _read_sum_kernel[grid](x, out, BLOCK=READ_BLOCK, num_warps=8)


@triton.jit
def _per_token_fp8_kernel(  # type: ignore[no-untyped-def]
    x_ptr, q_ptr, s_ptr, K, stride_x, stride_q, BLOCK: tl.constexpr, FP8_MAX: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    mask = offs < K
    x = tl.load(x_ptr + row * stride_x + offs, mask=mask, other=0.0).to(tl.float32)
    amax = tl.max(tl.abs(x), axis=0)
    scale = tl.maximum(amax, 1e-12) / FP8_MAX
    q = tl.clamp(x / scale, -FP8_MAX, FP8_MAX)
    tl.store(q_ptr + row * stride_q + offs, q.to(q_ptr.dtype.element_ty), mask=mask)
    tl.store(s_ptr + row, scale)


def per_token_fp8(x: Any) -> tuple[Any, Any]:
    """Quantize a [M, K] BF16 tensor to FP8 e4m3 with one float32 scale per row: (q [M, K], scale [M, 1])."""
    m, k = x.shape
    q = torch.empty((m, k), dtype=torch.float8_e4m3fn, device=x.device)
    s = torch.empty((m, 1), dtype=torch.float32, device=x.device)
    block = triton.next_power_of_2(k)
    num_warps = max(4, min(16, block // 1024))
    _per_token_fp8_kernel[(m,)](
        x, q, s, k, x.stride(0), q.stride(0), BLOCK=block, FP8_MAX=FP8_E4M3_MAX, num_warps=num_warps
    )
    return q, s


@triton.jit
def _per_tensor_fp8_kernel(  # type: ignore[no-untyped-def]
    x_ptr, q_ptr, amax_ptr, s_ptr, n, BLOCK: tl.constexpr, FP8_MAX: tl.constexpr
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    scale = tl.maximum(tl.load(amax_ptr), 1e-12) / FP8_MAX
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    q = tl.clamp(x / scale, -FP8_MAX, FP8_MAX)
    tl.store(q_ptr + offs, q.to(q_ptr.dtype.element_ty), mask=mask)
    if pid == 0:
        tl.store(s_ptr, scale)


def per_tensor_fp8(x: Any) -> tuple[Any, Any]:
    """Quantize a contiguous BF16 tensor to FP8 e4m3 with one dynamic float32 scale: (q, scale [])."""
    amax = torch.linalg.vector_norm(x, ord=float("inf"), dtype=torch.float32)
    q = torch.empty(x.shape, dtype=torch.float8_e4m3fn, device=x.device)
    s = torch.empty((), dtype=torch.float32, device=x.device)
    n = x.numel()
    block = 2048
    _per_tensor_fp8_kernel[(triton.cdiv(n, block),)](
        x, q, amax, s, n, BLOCK=block, FP8_MAX=FP8_E4M3_MAX, num_warps=4
    )
    return q, s
