"""What a GPU can run: compute capability by product label, and the minimum each precision and kernel needs.

Pure; read by the planner (a variant its pool's GPU cannot run is planned as unsupported) and by
`quantbench run` (the same check against the local GPU).
"""

from __future__ import annotations

import re

from quantbench.api.v1alpha1 import Precision

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


# Compute capability by GPU product, matched on the `nvidia.com/gpu.product` label (GPU feature discovery),
# longest key first. FP8 tensor cores need 8.9 (Ada) or 9.0+ (Hopper, Blackwell).
COMPUTE_CAPABILITY: dict[str, tuple[int, int]] = {
    "B200": (10, 0),
    "GB200": (10, 0),
    "H200": (9, 0),
    "H100": (9, 0),
    "GH200": (9, 0),
    "H20": (9, 0),
    "L40S": (8, 9),
    "L40": (8, 9),
    "L4": (8, 9),
    "RTX-4090": (8, 9),
    "A100": (8, 0),
    "A30": (8, 0),
    "A10G": (8, 6),
    "A10": (8, 6),
    "A40": (8, 6),
    "A6000": (8, 6),
    "T4": (7, 5),
    "V100": (7, 0),
}

# Minimum compute capability per precision (vLLM's kernels).
MIN_CAPABILITY: dict[str, tuple[int, int]] = {
    Precision.BF16: (8, 0),
    Precision.FP16: (7, 0),
    Precision.FP8: (8, 9),
    Precision.INT8_W8A8: (7, 5),
    Precision.AWQ_INT4: (7, 5),
    Precision.GPTQ_INT4: (7, 0),
}
MIN_KERNEL_CAPABILITY: dict[str, tuple[int, int]] = {
    "awq_marlin": (8, 0),
    "gptq_marlin": (8, 0),
    "marlin": (8, 0),
    "machete": (9, 0),
}


def compute_capability(product: str | None) -> tuple[int, int] | None:
    """Compute capability of a GPU product label such as ``NVIDIA-A100-SXM4-80GB``; None if unknown."""
    if not product:
        return None
    tokens = set(re.split(r"[-_ ]+", product.upper()))
    for key in sorted(COMPUTE_CAPABILITY, key=len, reverse=True):
        if key in tokens or (("-" in key) and key in product.upper()):
            return COMPUTE_CAPABILITY[key]
    return None


def unsupported_precision(precision: str, kernel: str | None, product: str | None) -> str | None:
    """Why ``precision`` (with ``kernel``) cannot run on ``product``, or None when it can (or is unknown)."""
    cc = compute_capability(product)
    if cc is None:
        return None
    need = MIN_CAPABILITY.get(precision, (0, 0))
    if kernel in MIN_KERNEL_CAPABILITY:
        need = max(need, MIN_KERNEL_CAPABILITY[kernel])
    if cc >= need:
        return None
    what = f"{precision} with the {kernel} kernel" if kernel else precision
    return (
        f"{what} needs compute capability >= {need[0]}.{need[1]}, but {product} has {cc[0]}.{cc[1]}: "
        "run this variant on a newer GPU pool (placement.nodePool) or drop it"
    )
