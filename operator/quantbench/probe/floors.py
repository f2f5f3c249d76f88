"""Floor arithmetic: the least time one decode step's linear layers can take.

A step must stream every weight once (plus its activations in and out) and do ``2 * batch * params``
floating-point operations; the larger of bytes / bandwidth and operations / peak rate is the floor.
At batch 1 the bytes dominate, so the floor is weight bytes / memory bandwidth. All functions are pure.
"""

from __future__ import annotations

from .precisions import WEIGHT_FORMATS, WeightFormatName
from .shapes import ModelShape

BF16_BYTES = 2
ACTIVATION_BYTES = BF16_BYTES  # activations enter and leave each linear in BF16


def weight_bytes(shape: ModelShape, precision: WeightFormatName) -> float:
    """Bytes of weights (scales and zero points included) one decode step reads."""
    fmt = WEIGHT_FORMATS[precision]
    total = 0.0
    for linear in shape.linears:
        if linear.quantized:
            per_matrix = fmt.matrix_bytes(linear.in_features, linear.out_features)
        else:
            per_matrix = float(linear.params * BF16_BYTES)
        total += per_matrix * linear.count
    return total


def activation_bytes(shape: ModelShape, batch_size: int) -> float:
    """Bytes of BF16 activations read and written by the step's linears at this batch size."""
    per_token = sum((linear.in_features + linear.out_features) * linear.count for linear in shape.linears)
    return float(per_token * batch_size * ACTIVATION_BYTES)


def step_flops(shape: ModelShape, batch_size: int) -> tuple[float, float]:
    """(FLOPs in the quantized linears, FLOPs in the BF16-only linears) for one step."""
    quantized = sum(2.0 * batch_size * lin.params * lin.count for lin in shape.linears if lin.quantized)
    plain = sum(2.0 * batch_size * lin.params * lin.count for lin in shape.linears if not lin.quantized)
    return quantized, plain


def memory_floor_seconds(
    shape: ModelShape, precision: WeightFormatName, bandwidth_bytes_per_s: float
) -> float:
    """Weight bytes / bandwidth: the batch-1 decode floor."""
    if bandwidth_bytes_per_s <= 0:
        raise ValueError("bandwidth must be positive")
    return weight_bytes(shape, precision) / bandwidth_bytes_per_s


def step_floor_seconds(
    shape: ModelShape,
    precision: WeightFormatName,
    batch_size: int,
    *,
    bandwidth_bytes_per_s: float,
    bf16_flops: float,
    fp8_flops: float | None,
) -> float:
    """Roofline floor of one step: max(bytes / bandwidth, FLOPs / peak) at this batch size.

    Quantized linears run at the rate of their compute dtype (FP8 for fp8, BF16 for weight-only
    int4); the LM head always runs in BF16.
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    if bandwidth_bytes_per_s <= 0 or bf16_flops <= 0:
        raise ValueError("bandwidth and bf16 peak must be positive")
    bytes_moved = weight_bytes(shape, precision) + activation_bytes(shape, batch_size)
    quantized, plain = step_flops(shape, batch_size)
    compute_dtype = WEIGHT_FORMATS[precision].compute_dtype
    quantized_rate = bf16_flops
    if compute_dtype == "fp8":
        if fp8_flops is None:
            raise ValueError("fp8 precision needs an FP8 peak rate (this GPU has no FP8 tensor cores)")
        quantized_rate = fp8_flops
    compute_seconds = quantized / quantized_rate + plain / bf16_flops
    return max(bytes_moved / bandwidth_bytes_per_s, compute_seconds)
