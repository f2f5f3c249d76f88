"""What a GPU can run: the minimum compute capability each precision and kernel needs (the GPUs' own
compute capability is a column of the one GPU table, quantbench.probe.specs).

Pure; read by the planner (a variant its pool's GPU cannot run is planned as unsupported) and by
`quantbench run` (the same check against the local GPU).
"""

from __future__ import annotations

from quantbench.api.v1alpha1 import Precision
from quantbench.probe.specs import compute_capability

GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
# NVIDIA GPU feature discovery: the driver version as one label (newer) or as major/minor/rev (older).
GPU_DRIVER_LABEL = "nvidia.com/cuda.driver-version.full"
GPU_DRIVER_PART_LABELS = (
    "nvidia.com/cuda.driver.major",
    "nvidia.com/cuda.driver.minor",
    "nvidia.com/cuda.driver.rev",
)


def gpu_driver(node_labels: dict[str, str]) -> str | None:
    """The NVIDIA driver version a node's labels give, e.g. 570.124.06; None when unlabelled."""
    if node_labels.get(GPU_DRIVER_LABEL):
        return node_labels[GPU_DRIVER_LABEL]
    parts = [node_labels.get(k) for k in GPU_DRIVER_PART_LABELS]
    if parts[0] and parts[1]:
        return ".".join(p for p in parts if p)
    return None


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


# vLLM's CPU backend has no kernels for these: FP8 fails at its first FP8 op, Marlin and Machete are CUDA-only.
CPU_UNSUPPORTED_PRECISIONS: frozenset[str] = frozenset({Precision.FP8})
CPU_UNSUPPORTED_KERNELS: frozenset[str] = frozenset({"awq_marlin", "gptq_marlin", "marlin", "machete", "fp8"})


def unsupported_precision(
    precision: str, kernel: str | None, product: str | None, *, on_cpu: bool = False
) -> str | None:
    """Why ``precision`` (with ``kernel``) cannot run on ``product``, or None when it can (or is unknown).

    ``on_cpu``: the server runs on CPUs with vLLM's CPU backend (``quantbench run`` on a machine without a
    GPU, or a variant placed with ``gpus: 0``); ``product`` is then ignored. The one support check of both
    executors: the same variant ends Unsupported with the same message on either.
    """
    if on_cpu:
        if precision in CPU_UNSUPPORTED_PRECISIONS:
            return (
                f"{precision} needs an NVIDIA GPU of compute capability 8.9 or more (vLLM's CPU backend has no "
                "FP8 kernels): run it on such a GPU, or drop the variant"
            )
        if kernel in CPU_UNSUPPORTED_KERNELS:
            fallback = "gptq" if str(kernel).startswith("gptq") else "awq"
            return (
                f"{precision} with the {kernel} kernel needs an NVIDIA GPU (vLLM's CPU backend has no such "
                f"kernel): set quantizationKernel: {fallback} to serve the checkpoint on CPUs"
            )
        return None
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
