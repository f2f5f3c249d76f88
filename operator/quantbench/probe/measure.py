"""GPU measurement: streaming bandwidth, matmul peaks, and one decode step's linears per precision.

This is the only probe module that touches the GPU. It imports torch (and Triton and vLLM when present)
lazily, inside functions, so the package imports on machines without them; it returns the measured part of
the probe's result as its models (``Measurements``), from which ``quantbench.probe.assemble`` derives the
typed ``ProbeResult``.

Method (each choice guards against a known way a GPU timing lies):
- weights are random normal, never zero, and distinct per layer, so the L2 cache (50 MB on an H100)
  cannot hold what a step reads; the whole step is far larger than L2;
- the step (every layer's linears, then the LM head) is captured once per batch size in a CUDA graph
  and replayed, so launch gaps are what a serving engine's graphs would show;
- activation inputs are refilled with fresh random values before every replay;
- each replay is timed with CUDA events; warm-up replays run first; a pass is the median of many
  replays, and every figure is taken in two passes so their difference shows the noise.

FP8 and 4-bit run vLLM's own kernels when vLLM is importable here, as in the vLLM image the probe Jobs use:
for FP8 its CUTLASS scaled matrix product and its activation quantization, for 4-bit its Marlin kernel with
the weights, scales and zero points laid out as its AWQ-Marlin method lays them out. Otherwise FP8 runs
PyTorch's ``torch._scaled_mm`` and 4-bit PyTorch's tinygemm (``--fp8-kernel`` and ``--int4-kernel`` choose);
the result names the kernel timed.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from quantbench.units import GIB

from .precisions import WeightFormatName
from .result import (
    Bandwidth,
    GpuInfo,
    MatmulPeak,
    MeasuredPrecision,
    MeasuredStep,
    Measurements,
    PrecisionFailure,
    TimingPass,
)

FP8_E4M3_MAX = 448.0
INT4_GROUP_SIZE = 128
INT4_INNER_K_TILES = 8
# Relative error bounds for the correctness check of each kernel against a float32 reference
# computed from the same (quantized) operands: only output rounding to BF16 remains.
CHECK_TOLERANCE = 2e-2
FP8_MIN_CAPABILITY = (8, 9)  # FP8 tensor cores: Ada, Hopper, Blackwell
INT4_MIN_CAPABILITY = (8, 0)  # PyTorch's tinygemm kernel and vLLM's Marlin

KernelChoice = Literal["auto", "vllm", "torch"]
KERNEL_CHOICES: tuple[KernelChoice, ...] = ("auto", "vllm", "torch")
# The precisions vLLM's kernels can time, and the functions of vLLM's custom-op module each needs.
VLLM_KERNELS: dict[str, tuple[str, ...]] = {
    "fp8": ("cutlass_scaled_mm", "scaled_fp8_quant"),
    "int4": ("marlin_gemm", "gptq_marlin_repack"),
}


class ProbeUnavailable(RuntimeError):
    """No usable GPU here: the message says what is missing and what to do instead."""


@dataclass(frozen=True)
class LinearSpec:
    """One weight matrix of the step, as the measurement reads it (``assemble.linear_specs`` builds them)."""

    name: str
    in_features: int
    out_features: int
    per_layer: bool
    quantized: bool


@dataclass(frozen=True)
class MeasureSettings:
    batch_sizes: tuple[int, ...]
    precisions: tuple[WeightFormatName, ...]
    num_layers: int
    linears: tuple[LinearSpec, ...]
    warmup: int = 3
    min_repeats: int = 10
    max_repeats: int = 100
    target_seconds_per_pass: float = 0.4
    passes: int = 2
    bandwidth_buffer_bytes: int = 4 * GIB
    seed: int = 0
    fp8_scaling: str = "rowwise"
    fp8_kernel: KernelChoice = "auto"
    int4_kernel: KernelChoice = "auto"
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True))

    def public(self) -> dict[str, str | int | float]:
        return {
            "warmup_replays": self.warmup,
            "min_repeats": self.min_repeats,
            "max_repeats": self.max_repeats,
            "target_seconds_per_pass": self.target_seconds_per_pass,
            "passes": self.passes,
            "bandwidth_buffer_bytes": self.bandwidth_buffer_bytes,
            "seed": self.seed,
            "fp8_scaling": self.fp8_scaling,
            "fp8_kernel": self.fp8_kernel,
            "int4_kernel": self.int4_kernel,
            "timer": "CUDA events around each CUDA-graph replay",
            "inputs": "fresh torch.randn activations before every replay",
            "weights": "torch.randn, distinct per layer and matrix",
        }


def require_cuda() -> Any:
    """Import torch and check for a CUDA GPU; raise ProbeUnavailable with a clear message otherwise."""
    try:
        import torch
    except ImportError:
        raise ProbeUnavailable(
            "quantbench probe needs an NVIDIA GPU and PyTorch with CUDA, but PyTorch is not installed "
            "here. Run it on a GPU node (the vLLM image has both), or use --floors-only --gpu KEY to "
            "print the datasheet floors without measuring."
        ) from None
    if not torch.cuda.is_available():
        raise ProbeUnavailable(
            "quantbench probe needs an NVIDIA GPU, but PyTorch sees no CUDA device "
            f"(torch {torch.__version__}, torch.cuda.is_available() is False). Run it on a GPU node, or "
            "use --floors-only --gpu KEY to print the datasheet floors without measuring."
        )
    return torch


def _triton() -> Any | None:
    try:
        from quantbench.probe import triton_kernels
    except Exception:  # no Triton, or one that cannot compile for this GPU
        return None
    return triton_kernels


def gpu_info(torch: Any) -> GpuInfo:
    props = torch.cuda.get_device_properties(0)
    kernels = _triton()
    triton_version: str | None = None
    if kernels is not None:
        import triton

        triton_version = str(triton.__version__)
    return GpuInfo(
        name=str(props.name),
        compute_capability=f"{props.major}.{props.minor}",
        sm_count=int(props.multi_processor_count),
        memory_bytes=int(props.total_memory),
        l2_bytes=int(getattr(props, "L2_cache_size", 0)),
        torch_version=str(torch.__version__),
        cuda_version=str(torch.version.cuda),
        triton_version=triton_version,
    )


def vllm_ops(precision: str) -> Any | None:
    """vLLM's custom-op module (its CUDA kernels' Python bindings) when vLLM is importable and has the
    precision's kernels (VLLM_KERNELS), else None."""
    try:
        from vllm import _custom_ops as ops
    except Exception:  # not installed, or installed without kernels this machine can load
        return None
    if not all(hasattr(ops, name) for name in VLLM_KERNELS[precision]):
        return None
    return ops


def vllm_version() -> str:
    try:
        import vllm

        return str(getattr(vllm, "__version__", "unknown version"))
    except Exception:
        return "unknown version"


def choose_kernel(precision: str, requested: KernelChoice, vllm_available: bool) -> Literal["vllm", "torch"]:
    """Which library's kernels to time for ``precision`` (fp8 or int4): vLLM's when it is importable with
    them (``auto``) or asked for, else PyTorch's."""
    if requested == "torch":
        return "torch"
    if requested == "vllm" and not vllm_available:
        flag = f"--{precision}-kernel"
        raise RuntimeError(
            f"{flag} vllm: vLLM (with its {precision} CUDA kernels: {', '.join(VLLM_KERNELS[precision])}) is "
            f"not importable here; run the probe in the vLLM image, or use {flag} torch"
        )
    return "vllm" if vllm_available else "torch"


def _pass_stats(samples_ms: Sequence[float]) -> TimingPass:
    ordered = sorted(samples_ms)
    n = len(ordered)

    def pct(q: float) -> float:
        return ordered[min(n - 1, max(0, round(q * (n - 1))))]

    return TimingPass(
        median_ms=statistics.median(ordered), p10_ms=pct(0.1), p90_ms=pct(0.9), min_ms=ordered[0], repeats=n
    )


def _time_each(torch: Any, run: Callable[[], None], before: Callable[[], None], repeats: int) -> list[float]:
    """Milliseconds of ``run`` per repetition, CUDA events around it; ``before`` runs untimed first."""
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeats)]
    for start, end in zip(starts, ends, strict=True):
        before()
        start.record()
        run()
        end.record()
    torch.cuda.synchronize()
    return [float(s.elapsed_time(e)) for s, e in zip(starts, ends, strict=True)]


def _repeats_for(settings: MeasureSettings, estimate_ms: float) -> int:
    wanted = math.ceil(settings.target_seconds_per_pass * 1000.0 / max(estimate_ms, 1e-3))
    return max(settings.min_repeats, min(settings.max_repeats, wanted))


def _capability(torch: Any) -> tuple[int, int]:
    major, minor = torch.cuda.get_device_capability(0)
    return int(major), int(minor)


def _require_capability(torch: Any, precision: str, needed: tuple[int, int], what: str) -> None:
    have = _capability(torch)
    if have < needed:
        raise RuntimeError(
            f"{precision} needs {what} (compute capability {needed[0]}.{needed[1]} or newer); "
            f"this GPU is {have[0]}.{have[1]}"
        )


# Device bytes per weight while timing (scales included, rounded up); the LM head stays BF16.
RESIDENT_BYTES_PER_WEIGHT = {"bf16": 2.0, "fp8": 1.01, "int4": 0.54}


def _require_memory(torch: Any, precision: str, settings: MeasureSettings) -> None:
    """Fail clearly, before allocating, when the step's weights cannot all be resident at once."""
    quantized = sum(s.in_features * s.out_features for s in settings.linears if s.per_layer and s.quantized)
    plain = sum(s.in_features * s.out_features for s in settings.linears if s.per_layer and not s.quantized)
    once = sum(s.in_features * s.out_features for s in settings.linears if not s.per_layer)
    needed = (
        settings.num_layers * (quantized * RESIDENT_BYTES_PER_WEIGHT[precision] + 2.0 * plain) + 2.0 * once
    )
    free, _total = torch.cuda.mem_get_info()
    if needed > 0.9 * free:
        raise RuntimeError(
            f"{precision}: the step's weights need {needed / 1e9:.1f} GB but the GPU has {free / 1e9:.1f} GB free; "
            "the probe keeps every layer's distinct weights resident, so run it on a GPU with more memory"
        )


def _noop() -> None:
    return None


# --------------------------------------------------------------------------------------------------
# Bandwidth and matmul peaks


def measure_bandwidth(torch: Any, settings: MeasureSettings) -> list[Bandwidth]:
    """One pass of each streaming method over a buffer far larger than L2 (bytes/s per method)."""
    kernels = _triton()
    block = kernels.READ_BLOCK if kernels is not None else 4096
    n = (settings.bandwidth_buffer_bytes // 4) // block * block
    x = torch.randn(n, dtype=torch.float32, device="cuda")
    buffer_bytes = n * 4
    methods: list[tuple[str, int, Callable[[], None]]] = []
    if kernels is not None:
        partial = torch.empty(n // block, dtype=torch.float32, device="cuda")
        methods.append(("triton-read", buffer_bytes, lambda: kernels.read_sum(x, partial)))
    total = torch.empty((), dtype=torch.float32, device="cuda")
    methods.append(("torch-sum-read", buffer_bytes, lambda: torch.sum(x, dim=0, out=total)))
    y = torch.empty_like(x)
    methods.append(("torch-copy-read+write", 2 * buffer_bytes, lambda: y.copy_(x)))
    results: list[Bandwidth] = []
    for name, moved, fn in methods:
        for _ in range(settings.warmup):
            fn()
        torch.cuda.synchronize()
        samples = _time_each(torch, fn, _noop, 30)
        median_s = statistics.median(samples) / 1000.0
        results.append(
            Bandwidth(
                method=name,
                buffer_bytes=buffer_bytes,
                bytes_per_run=moved,
                passes_bytes_per_s=(moved / median_s,),
            )
        )
    return results


def _rowwise_scaled_mm(torch: Any, a_q: Any, a_s: Any, w_q: Any, w_s_row: Any) -> Any:
    return torch._scaled_mm(a_q, w_q.t(), scale_a=a_s, scale_b=w_s_row, out_dtype=torch.bfloat16)


def measure_matmul_peaks(torch: Any, settings: MeasureSettings, size: int = 8192) -> list[MatmulPeak]:
    """Dense BF16 and FP8 (rowwise-scaled) matrix-product rates, one pass each (FLOP/s)."""
    flops = 2.0 * size**3
    a = torch.randn(size, size, dtype=torch.bfloat16, device="cuda")
    b = torch.randn(size, size, dtype=torch.bfloat16, device="cuda")
    out: list[MatmulPeak] = []

    def bf16() -> None:
        torch.matmul(a, b)

    runs: list[tuple[Literal["bf16", "fp8"], Callable[[], None]]] = [("bf16", bf16)]
    if "fp8" in settings.precisions and _capability(torch) >= FP8_MIN_CAPABILITY:
        a_q = a.to(torch.float8_e4m3fn)
        b_q = b.to(torch.float8_e4m3fn)
        a_s = torch.rand(size, 1, dtype=torch.float32, device="cuda") + 0.5
        b_s = torch.rand(1, size, dtype=torch.float32, device="cuda") + 0.5

        def fp8() -> None:
            _rowwise_scaled_mm(torch, a_q, a_s, b_q, b_s)

        runs.append(("fp8", fp8))
    for name, fn in runs:
        for _ in range(settings.warmup):
            fn()
        torch.cuda.synchronize()
        samples = _time_each(torch, fn, _noop, 20)
        out.append(
            MatmulPeak(
                dtype=name,
                m=size,
                n=size,
                k=size,
                passes_flops_per_s=(flops / (statistics.median(samples) / 1000.0),),
            )
        )
    torch.cuda.empty_cache()
    return out


# --------------------------------------------------------------------------------------------------
# Per-precision linear operators. Each builder returns (kernel name, activation quant, op), where
# op(x) multiplies a [M, in] BF16 activation by one matrix and returns [M, out] BF16.

Op = Callable[[Any], Any]


@dataclass
class Linear:
    op: Op
    reference: Callable[[Any], Any]  # float32 result from the same (quantized) operands, for the check


def _bf16_linear(torch: Any, out_f: int, in_f: int) -> Linear:
    w = torch.randn(out_f, in_f, dtype=torch.bfloat16, device="cuda")
    functional = torch.nn.functional

    def op(x: Any) -> Any:
        return functional.linear(x, w)

    def reference(x: Any) -> Any:
        return x.float() @ w.float().t()

    return Linear(op, reference)


def _per_token_quant_eager(torch: Any, x: Any) -> tuple[Any, Any]:
    scale = x.abs().amax(dim=1, keepdim=True).float().clamp_min(1e-12) / FP8_E4M3_MAX
    q = (x.float() / scale).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    return q, scale


def _fp8_linear(torch: Any, out_f: int, in_f: int, quant: Callable[[Any], tuple[Any, Any]]) -> Linear:
    w = torch.randn(out_f, in_f, dtype=torch.bfloat16, device="cuda")
    w_scale = w.abs().amax(dim=1, keepdim=True).float().clamp_min(1e-12) / FP8_E4M3_MAX  # [out, 1]
    w_q = (w.float() / w_scale).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    del w
    w_s_row = w_scale.t().contiguous()  # [1, out]

    def op(x: Any) -> Any:
        x_q, x_s = quant(x)
        return _rowwise_scaled_mm(torch, x_q, x_s, w_q, w_s_row)

    def reference(x: Any) -> Any:
        x_q, x_s = quant(x)
        return (x_q.float() * x_s) @ (w_q.float() * w_scale).t()

    return Linear(op, reference)


def _fp8_tensorwise_linear(
    torch: Any, out_f: int, in_f: int, quant: Callable[[Any], tuple[Any, Any]]
) -> Linear:
    w = torch.randn(out_f, in_f, dtype=torch.bfloat16, device="cuda")
    w_scale = w.abs().amax().float().clamp_min(1e-12) / FP8_E4M3_MAX  # scalar
    w_q = (w.float() / w_scale).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    del w

    def op(x: Any) -> Any:
        x_q, x_s = quant(x)
        return torch._scaled_mm(x_q, w_q.t(), scale_a=x_s, scale_b=w_scale, out_dtype=torch.bfloat16)

    def reference(x: Any) -> Any:
        x_q, x_s = quant(x)
        return (x_q.float() * x_s) @ (w_q.float() * w_scale).t()

    return Linear(op, reference)


def _fp8_vllm_linear(torch: Any, ops: Any, out_f: int, in_f: int, per_token: bool) -> Linear:
    """FP8 through vLLM's kernels as its Fp8LinearOp runs them on CUDA: ``scaled_fp8_quant`` (dynamic,
    per-token or per-tensor) and ``cutlass_scaled_mm`` on the weight stored transposed (column-major)."""
    w = torch.randn(out_f, in_f, dtype=torch.bfloat16, device="cuda")
    if per_token:
        w_scale = w.abs().amax(dim=1, keepdim=True).float().clamp_min(1e-12) / FP8_E4M3_MAX  # [out, 1]
    else:
        w_scale = w.abs().amax().float().clamp_min(1e-12).reshape(1) / FP8_E4M3_MAX  # [1]
    w_q = (w.float() / w_scale).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
    del w
    w_t = w_q.t()  # [in, out], column-major: vLLM's layout after process_weights_after_loading
    w_s = w_scale.contiguous()

    def quant(x: Any) -> tuple[Any, Any]:
        q, scale = ops.scaled_fp8_quant(x, use_per_token_if_dynamic=per_token)
        return q, scale

    def op(x: Any) -> Any:
        x_q, x_s = quant(x)
        return ops.cutlass_scaled_mm(x_q, w_t, scale_a=x_s, scale_b=w_s, out_dtype=torch.bfloat16)

    def reference(x: Any) -> Any:
        x_q, x_s = quant(x)
        return (x_q.float() * x_s) @ (w_q.float() * w_scale.reshape(-1, 1)).t()

    return Linear(op, reference)


def _int4_tinygemm_linear(torch: Any, out_f: int, in_f: int) -> Linear:
    """4-bit weight-only via PyTorch's tinygemm kernel, asymmetric, group size 128 (BF16 scales/zeros)."""
    g = INT4_GROUP_SIZE
    w = torch.randn(out_f, in_f, dtype=torch.bfloat16, device="cuda")
    groups = w.float().reshape(out_f, in_f // g, g)
    w_min = groups.amin(dim=2, keepdim=True)
    w_max = groups.amax(dim=2, keepdim=True)
    scales = (w_max - w_min).clamp(min=1e-6) / 15.0
    zeros = w_min + scales * 8.0
    q = groups.sub(w_min).div(scales).round().clamp(0, 15).to(torch.int32).reshape(out_f, in_f)
    del w, groups
    packed = ((q[:, ::2] << 4) | q[:, 1::2]).to(torch.uint8)
    w_packed = torch._convert_weight_to_int4pack(packed, INT4_INNER_K_TILES)
    scales_bf = scales.reshape(out_f, in_f // g).to(torch.bfloat16)
    zeros_bf = zeros.reshape(out_f, in_f // g).to(torch.bfloat16)
    scales_and_zeros = torch.stack([scales_bf, zeros_bf], dim=2).transpose(0, 1).contiguous()  # [K/g, N, 2]
    q_small = q  # kept only for the reference of the checked matrix; released by the caller
    del packed

    def op(x: Any) -> Any:
        return torch._weight_int4pack_mm(x, w_packed, g, scales_and_zeros)

    def reference(x: Any) -> Any:
        deq = (q_small.float() - 8.0).reshape(out_f, in_f // g, g) * scales_bf.float().unsqueeze(2)
        deq = deq + zeros_bf.float().unsqueeze(2)
        return x.float() @ deq.reshape(out_f, in_f).t()

    return Linear(op, reference)


def _pack_int4(torch: Any, q: Any, dim: int) -> Any:
    """Pack 4-bit values (0-15, int32) eight to an int32 along ``dim``, the lowest bits first (GPTQ's rows
    for dim 0, Marlin's zero-point columns for dim 1)."""
    q = q.to(torch.int64)
    parts = [q[i::8] if dim == 0 else q[:, i::8] for i in range(8)]
    packed = sum(part << (4 * i) for i, part in enumerate(parts))
    return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)


# Marlin's scale and zero-point layouts (vLLM's marlin_utils: get_scale_perms, marlin_zero_points).
MARLIN_SCALE_PERM = [i + 8 * j for i in range(8) for j in range(8)]
MARLIN_ZP_INTERLEAVE = [0, 2, 4, 6, 1, 3, 5, 7]


def _int4_marlin_linear(torch: Any, ops: Any, uint4: Any, workspace: Any, out_f: int, in_f: int) -> Linear:
    """4-bit weight-only through vLLM's Marlin kernel as its AWQ-Marlin method runs AWQ checkpoints:
    unsigned 4-bit values with a 4-bit zero point and a BF16 scale per group of 128 inputs, the weights
    repacked into Marlin's tiles (``gptq_marlin_repack``), the scales and zero points permuted to match."""
    g, k, n = INT4_GROUP_SIZE, in_f, out_f
    groups = torch.randn(k // g, g, n, dtype=torch.float32, device="cuda")
    w_min = groups.amin(dim=1)
    scales = (groups.amax(dim=1) - w_min).clamp(min=1e-6) / 15.0  # [k/g, n]
    zeros = (-w_min / scales).round().clamp(0, 15).to(torch.int32)  # [k/g, n]
    q = (groups / scales.unsqueeze(1) + zeros.unsqueeze(1)).round().clamp(0, 15).to(torch.int32).reshape(k, n)
    del groups, w_min
    empty = torch.empty(0, dtype=torch.int32, device="cuda")
    w_marlin = ops.gptq_marlin_repack(_pack_int4(torch, q, 0), empty, k, n, 4)
    scales_bf = scales.to(torch.bfloat16)
    s_marlin = scales_bf.reshape(-1, len(MARLIN_SCALE_PERM))[:, MARLIN_SCALE_PERM].reshape(-1, n).contiguous()
    zp = zeros.reshape(-1, len(MARLIN_SCALE_PERM))[:, MARLIN_SCALE_PERM]
    zp = zp.reshape(-1, len(MARLIN_ZP_INTERLEAVE))[:, MARLIN_ZP_INTERLEAVE].reshape(-1, n)
    zp_marlin = _pack_int4(torch, zp, 1)
    del scales

    def op(x: Any) -> Any:
        return ops.marlin_gemm(
            x, None, w_marlin, None, s_marlin, None, None, zp_marlin, empty, empty, workspace, uint4,
            size_m=x.shape[0], size_n=n, size_k=k, is_k_full=True, use_atomic_add=False,
            use_fp32_reduce=True, is_zp_float=False,
        )  # fmt: skip

    def reference(x: Any) -> Any:
        deq = (q.float() - zeros.repeat_interleave(g, dim=0).float()) * scales_bf.float().repeat_interleave(
            g, dim=0
        )
        return x.float() @ deq

    return Linear(op, reference)


def _build_linears(
    torch: Any, precision: str, settings: MeasureSettings
) -> tuple[str, str | None, list[Op], Callable[[Any], Any], Op]:
    """Weights for every matrix of the step.

    Returns (kernel, activation quant, ops in step order, reference and op of the checked matrix).
    """
    kernels = _triton()
    if precision == "bf16":
        kernel, act = "torch.nn.functional.linear (cuBLAS BF16)", None

        def make(spec: LinearSpec) -> Linear:
            return _bf16_linear(torch, spec.out_features, spec.in_features)

    elif precision == "fp8":
        vllm = vllm_ops("fp8")
        if choose_kernel("fp8", settings.fp8_kernel, vllm is not None) == "vllm":
            per_token = settings.fp8_scaling != "tensorwise"
            scales = (
                "rowwise scales: per-token activations, per-channel weights"
                if per_token
                else "per-tensor scales: dynamic activation, static weight"
            )
            kernel = f"vllm cutlass_scaled_mm (vLLM {vllm_version()}, CUTLASS FP8 e4m3, {scales})"
            act = f"dynamic per-{'token' if per_token else 'tensor'}, vLLM scaled_fp8_quant"

            def make(spec: LinearSpec) -> Linear:
                return _fp8_vllm_linear(torch, vllm, spec.out_features, spec.in_features, per_token)

        elif settings.fp8_scaling == "tensorwise":
            kernel = "torch._scaled_mm (FP8 e4m3, per-tensor scales: dynamic activation, static weight)"
            if kernels is None:
                raise RuntimeError("fp8 tensorwise scaling needs Triton for its activation quantization")
            act = "dynamic per-tensor, amax reduction + fused Triton quant kernel"

            def make(spec: LinearSpec) -> Linear:
                return _fp8_tensorwise_linear(
                    torch, spec.out_features, spec.in_features, kernels.per_tensor_fp8
                )

        else:
            kernel = "torch._scaled_mm (FP8 e4m3, rowwise scales: per-token activations, per-channel weights)"
            if kernels is not None:
                quant: Callable[[Any], tuple[Any, Any]] = kernels.per_token_fp8
                act = "dynamic per-token, fused Triton kernel"
            else:

                def quant(x: Any) -> tuple[Any, Any]:
                    return _per_token_quant_eager(torch, x)

                act = "dynamic per-token, eager PyTorch ops"

            def make(spec: LinearSpec) -> Linear:
                return _fp8_linear(torch, spec.out_features, spec.in_features, quant)

    elif precision == "int4":
        act = None
        marlin = vllm_ops("int4")
        if choose_kernel("int4", settings.int4_kernel, marlin is not None) == "vllm":
            from vllm.scalar_type import scalar_types

            sms = torch.cuda.get_device_properties(0).multi_processor_count
            workspace = torch.zeros(sms, dtype=torch.int32, device="cuda")  # one slot per threadblock
            kernel = (
                f"vllm marlin_gemm (vLLM {vllm_version()}, Marlin 4-bit, zero points and BF16 scales per group "
                "of 128, as AWQ-Marlin)"
            )

            def make(spec: LinearSpec) -> Linear:
                return _int4_marlin_linear(
                    torch, marlin, scalar_types.uint4, workspace, spec.out_features, spec.in_features
                )

        else:
            kernel = "torch._weight_int4pack_mm (tinygemm, 4-bit asymmetric, group 128, BF16 scales/zeros)"

            def make(spec: LinearSpec) -> Linear:
                return _int4_tinygemm_linear(torch, spec.out_features, spec.in_features)

    else:
        raise ValueError(f"unknown precision {precision!r}")

    ops: list[Op] = []
    check: Linear | None = None
    per_layer = [s for s in settings.linears if s.per_layer]
    once = [s for s in settings.linears if not s.per_layer]
    for layer in range(settings.num_layers):
        for spec in per_layer:
            lin = make(spec) if spec.quantized else _bf16_linear(torch, spec.out_features, spec.in_features)
            if check is None:
                check = lin
            else:
                # Only the first matrix keeps its float reference closure alive.
                lin = Linear(lin.op, _unavailable)
            ops.append(lin.op)
        if layer == 0:
            settings.log(f"  {precision}: layer 0 weights ready")
    for spec in once:
        lin = make(spec) if spec.quantized else _bf16_linear(torch, spec.out_features, spec.in_features)
        ops.append(lin.op)
    assert check is not None
    return kernel, act, ops, check.reference, check.op


def _unavailable(x: Any) -> Any:
    raise RuntimeError("reference kept for the first matrix only")


def _check(torch: Any, op: Op, reference: Callable[[Any], Any], in_features: int) -> float:
    x = torch.randn(16, in_features, dtype=torch.bfloat16, device="cuda")
    got = op(x).float()
    want = reference(x)
    if not bool(torch.isfinite(got).all()):
        return math.inf
    return float((got - want).norm() / want.norm())


def _measure_precision(
    torch: Any, precision: WeightFormatName, settings: MeasureSettings
) -> MeasuredPrecision:
    if precision == "fp8":
        _require_capability(torch, precision, FP8_MIN_CAPABILITY, "FP8 tensor cores")
    if precision == "int4":
        _require_capability(torch, precision, INT4_MIN_CAPABILITY, "4-bit kernels (tinygemm, Marlin)")
    _require_memory(torch, precision, settings)
    settings.log(f"{precision}: building weights")
    kernel, act, ops, check_ref, check_op = _build_linears(torch, precision, settings)
    first = next(s for s in settings.linears if s.per_layer)
    rel_err = _check(torch, check_op, check_ref, first.in_features)
    del check_ref
    settings.log(f"{precision}: kernel check relative error {rel_err:.2e}")
    if not rel_err <= CHECK_TOLERANCE:
        raise RuntimeError(
            f"{precision}: kernel check failed, relative error {rel_err:.3g} > {CHECK_TOLERANCE}"
        )
    in_sizes = [s.in_features for s in settings.linears if s.per_layer] * settings.num_layers
    in_sizes += [s.in_features for s in settings.linears if not s.per_layer]
    steps: list[MeasuredStep] = []
    for batch in settings.batch_sizes:
        inputs = {
            k: torch.randn(batch, k, dtype=torch.bfloat16, device="cuda") for k in sorted(set(in_sizes))
        }
        feeds = [inputs[k] for k in in_sizes]

        def step(feeds: list[Any] = feeds) -> None:
            for op, x in zip(ops, feeds, strict=True):
                op(x)

        def refill(inputs: dict[int, Any] = inputs) -> None:
            for t in inputs.values():
                t.normal_()

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()
            step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        warm = _time_each(torch, graph.replay, refill, settings.warmup)
        repeats = _repeats_for(settings, statistics.median(warm))
        passes = [
            _pass_stats(_time_each(torch, graph.replay, refill, repeats)) for _ in range(settings.passes)
        ]
        steps.append(MeasuredStep(batch_size=batch, passes=tuple(passes)))
        settings.log(
            f"{precision}: batch {batch:5d}: "
            + " / ".join(f"{p.median_ms:.4f}" for p in passes)
            + f" ms (n={repeats})"
        )
        del graph, inputs, feeds
        torch.cuda.empty_cache()
    return MeasuredPrecision(
        precision=precision,
        kernel=kernel,
        activation_quant=act,
        check_relative_error=rel_err,
        steps=tuple(steps),
    )


def measure(settings: MeasureSettings) -> Measurements:
    """Run the whole probe on GPU 0. Raises ProbeUnavailable when there is no CUDA GPU."""
    torch = require_cuda()
    t0 = time.monotonic()
    torch.manual_seed(settings.seed)
    torch.backends.cuda.matmul.allow_tf32 = False
    info = gpu_info(torch)
    notes: list[str] = []
    settings.log(f"GPU: {info.name} (cc {info.compute_capability}, {info.sm_count} SMs)")
    if _triton() is None:
        notes.append("Triton unavailable: bandwidth from torch.sum, FP8 activation quant in eager ops")
    if "fp8" in settings.precisions and settings.fp8_kernel == "auto" and vllm_ops("fp8") is None:
        notes.append(
            "vLLM is not importable here: FP8 timed with PyTorch's torch._scaled_mm, not vLLM's kernels"
        )
    if "int4" in settings.precisions and settings.int4_kernel == "auto" and vllm_ops("int4") is None:
        notes.append(
            "vLLM (with its Marlin kernel) is not importable here: 4-bit timed with PyTorch's tinygemm, not the "
            "Marlin kernel vLLM serves AWQ and GPTQ with"
        )
    bandwidth = measure_bandwidth(torch, settings)
    settings.log(
        "bandwidth: " + ", ".join(f"{b.method} {b.passes_bytes_per_s[0] / 1e12:.3f} TB/s" for b in bandwidth)
    )
    peaks = measure_matmul_peaks(torch, settings)
    precisions: list[MeasuredPrecision] = []
    failures: list[PrecisionFailure] = []
    for precision in settings.precisions:
        try:
            precisions.append(_measure_precision(torch, precision, settings))
        except Exception as exc:  # one precision failing must not lose the others' figures
            settings.log(f"{precision}: FAILED: {type(exc).__name__}: {exc}")
            failures.append(PrecisionFailure(precision=precision, error=f"{type(exc).__name__}: {exc}"))
            torch.cuda.empty_cache()
    # Second pass of the bandwidth and peak figures, at the end: their spread shows the noise and drift.
    bandwidth = [
        first.model_copy(update={"passes_bytes_per_s": first.passes_bytes_per_s + again.passes_bytes_per_s})
        for first, again in zip(bandwidth, measure_bandwidth(torch, settings), strict=True)
    ]
    peaks = [
        first.model_copy(update={"passes_flops_per_s": first.passes_flops_per_s + again.passes_flops_per_s})
        for first, again in zip(peaks, measure_matmul_peaks(torch, settings), strict=True)
    ]
    return Measurements(
        gpu=info,
        settings=settings.public(),
        bandwidths=tuple(bandwidth),
        matmul_peaks=tuple(peaks),
        precisions=tuple(precisions),
        failures=tuple(failures),
        notes=tuple(notes),
        wall_seconds=time.monotonic() - t0,
    )
