"""The GPU table: compute capability and datasheet figures (memory bandwidth, dense tensor-core peaks).

One row per GPU model. The planner reads the compute capability (which precisions and kernels a pool's GPU
can run, matched on the ``nvidia.com/gpu.product`` node label by ``product``); the probe and the summary
read the datasheet figures (matched on ``torch.cuda.get_device_name()`` by ``match``). Rows for GPUs whose
figures are not listed give only the compute capability; they never answer a datasheet lookup.

Peaks are dense (no 2:4 sparsity), in FLOP/s; bandwidth in bytes/s. They are leads, not limits: the
probe measures the card it runs on, and the floors are given against both the datasheet and the
measurement. ``match`` holds lower-case substrings of the device name; the first row whose every
substring matches wins, so more specific entries come first.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

TB = 1e12
TFLOPS = 1e12
GB = 1e9


class GpuSpec(BaseModel):
    """One GPU model's datasheet figures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(description="short id, e.g. h100-sxm")
    name: str
    match: tuple[str, ...] = Field(description="lower-case substrings of the CUDA device name")
    product: str = Field(
        default="", description="the model's token in the nvidia.com/gpu.product label, e.g. H100"
    )
    compute_capability: str
    memory_bytes: float | None = Field(default=None, gt=0)
    memory_bandwidth_bytes_per_s: float | None = Field(default=None, gt=0)
    bf16_dense_flops: float | None = Field(default=None, gt=0, description="None where not listed")
    fp8_dense_flops: float | None = Field(
        default=None, gt=0, description="None where FP8 tensor cores are absent"
    )

    @property
    def supports_fp8(self) -> bool:
        return self.fp8_dense_flops is not None

    @property
    def has_datasheet(self) -> bool:
        return self.memory_bandwidth_bytes_per_s is not None and self.bf16_dense_flops is not None

    def figures(self) -> tuple[float, float]:
        """(memory bandwidth bytes/s, dense BF16 FLOP/s) of a row with a datasheet."""
        if self.memory_bandwidth_bytes_per_s is None or self.bf16_dense_flops is None:
            raise ValueError(f"the GPU table lists no datasheet figures for {self.name}")
        return self.memory_bandwidth_bytes_per_s, self.bf16_dense_flops

    @property
    def capability(self) -> tuple[int, int]:
        major, minor = self.compute_capability.split(".")
        return int(major), int(minor)


GPU_SPECS: tuple[GpuSpec, ...] = (
    GpuSpec(
        key="h100-nvl",
        product="H100",
        name="H100 NVL",
        match=("h100", "nvl"),
        compute_capability="9.0",
        memory_bytes=94 * GB,
        memory_bandwidth_bytes_per_s=3.9 * TB,
        bf16_dense_flops=835.5 * TFLOPS,
        fp8_dense_flops=1671 * TFLOPS,
    ),
    GpuSpec(
        key="h100-pcie",
        product="H100",
        name="H100 PCIe",
        match=("h100", "pcie"),
        compute_capability="9.0",
        memory_bytes=80 * GB,
        memory_bandwidth_bytes_per_s=2.0 * TB,
        bf16_dense_flops=756.5 * TFLOPS,
        fp8_dense_flops=1513 * TFLOPS,
    ),
    GpuSpec(
        key="h100-sxm",
        product="H100",
        name="H100 SXM5 80GB",
        match=("h100",),
        compute_capability="9.0",
        memory_bytes=80 * GB,
        memory_bandwidth_bytes_per_s=3.35 * TB,
        bf16_dense_flops=989.4 * TFLOPS,
        fp8_dense_flops=1978.9 * TFLOPS,
    ),
    GpuSpec(
        key="gh200",
        product="GH200",
        name="GH200 (96GB HBM3)",
        match=("gh200",),
        compute_capability="9.0",
        memory_bytes=96 * GB,
        memory_bandwidth_bytes_per_s=4.0 * TB,
        bf16_dense_flops=989.4 * TFLOPS,
        fp8_dense_flops=1978.9 * TFLOPS,
    ),
    GpuSpec(
        key="h200",
        product="H200",
        name="H200 SXM 141GB",
        match=("h200",),
        compute_capability="9.0",
        memory_bytes=141 * GB,
        memory_bandwidth_bytes_per_s=4.8 * TB,
        bf16_dense_flops=989.4 * TFLOPS,
        fp8_dense_flops=1978.9 * TFLOPS,
    ),
    GpuSpec(key="h20", name="H20", match=("h20",), product="H20", compute_capability="9.0"),
    GpuSpec(key="gb200", name="GB200", match=("gb200",), product="GB200", compute_capability="10.0"),
    GpuSpec(
        key="b200",
        product="B200",
        name="B200",
        match=("b200",),
        compute_capability="10.0",
        memory_bytes=180 * GB,
        memory_bandwidth_bytes_per_s=8.0 * TB,
        bf16_dense_flops=2250 * TFLOPS,
        fp8_dense_flops=4500 * TFLOPS,
    ),
    GpuSpec(
        key="a100-pcie-80gb",
        product="A100",
        name="A100 PCIe 80GB",
        match=("a100", "80gb", "pcie"),
        compute_capability="8.0",
        memory_bytes=80 * GB,
        memory_bandwidth_bytes_per_s=1.935 * TB,
        bf16_dense_flops=312 * TFLOPS,
    ),
    GpuSpec(
        key="a100-sxm-80gb",
        product="A100",
        name="A100 SXM4 80GB",
        match=("a100", "80gb"),
        compute_capability="8.0",
        memory_bytes=80 * GB,
        memory_bandwidth_bytes_per_s=2.039 * TB,
        bf16_dense_flops=312 * TFLOPS,
    ),
    GpuSpec(
        key="a100-40gb",
        product="A100",
        name="A100 40GB",
        match=("a100",),
        compute_capability="8.0",
        memory_bytes=40 * GB,
        memory_bandwidth_bytes_per_s=1.555 * TB,
        bf16_dense_flops=312 * TFLOPS,
    ),
    GpuSpec(
        key="l40s",
        product="L40S",
        name="L40S",
        match=("l40s",),
        compute_capability="8.9",
        memory_bytes=48 * GB,
        memory_bandwidth_bytes_per_s=0.864 * TB,
        bf16_dense_flops=362.05 * TFLOPS,
        fp8_dense_flops=733 * TFLOPS,
    ),
    GpuSpec(
        key="l40",
        product="L40",
        name="L40",
        match=("l40",),
        compute_capability="8.9",
        memory_bytes=48 * GB,
        memory_bandwidth_bytes_per_s=0.864 * TB,
        bf16_dense_flops=181 * TFLOPS,
        fp8_dense_flops=362 * TFLOPS,
    ),
    GpuSpec(
        key="l4",
        product="L4",
        name="L4",
        match=("l4",),
        compute_capability="8.9",
        memory_bytes=24 * GB,
        memory_bandwidth_bytes_per_s=0.300 * TB,
        bf16_dense_flops=121 * TFLOPS,
        fp8_dense_flops=242.5 * TFLOPS,
    ),
    GpuSpec(
        key="a10",
        product="A10",
        name="A10",
        match=("a10",),
        compute_capability="8.6",
        memory_bytes=24 * GB,
        memory_bandwidth_bytes_per_s=0.600 * TB,
        bf16_dense_flops=125 * TFLOPS,
    ),
    GpuSpec(
        key="rtx-4090", name="GeForce RTX 4090", match=("4090",), product="RTX-4090", compute_capability="8.9"
    ),
    GpuSpec(key="a30", name="A30", match=("a30",), product="A30", compute_capability="8.0"),
    GpuSpec(key="a10g", name="A10G", match=("a10g",), product="A10G", compute_capability="8.6"),
    GpuSpec(key="a40", name="A40", match=("a40",), product="A40", compute_capability="8.6"),
    GpuSpec(key="a6000", name="RTX A6000", match=("a6000",), product="A6000", compute_capability="8.6"),
    GpuSpec(key="t4", name="T4", match=("t4",), product="T4", compute_capability="7.5"),
    GpuSpec(key="v100", name="V100", match=("v100",), product="V100", compute_capability="7.0"),
)


DATASHEETS: tuple[GpuSpec, ...] = tuple(s for s in GPU_SPECS if s.has_datasheet)


def match_gpu_spec(device_name: str) -> GpuSpec | None:
    """The datasheet for a CUDA device name such as 'NVIDIA H100 80GB HBM3', or None when unknown."""
    lowered = device_name.lower()
    for spec in DATASHEETS:
        if all(part in lowered for part in spec.match):
            return spec
    return None


def gpu_spec_by_key(key: str) -> GpuSpec:
    """The datasheet with this key (``--gpu h100-sxm``); raises ValueError listing the known keys."""
    for spec in DATASHEETS:
        if spec.key == key.lower():
            return spec
    raise ValueError(f"--gpu: unknown GPU '{key}'; known: {', '.join(s.key for s in DATASHEETS)}")


def compute_capability(product: str | None) -> tuple[int, int] | None:
    """Compute capability of a GPU product label such as ``NVIDIA-A100-SXM4-80GB``; None if unknown.

    A row matches when its ``product`` is one of the label's tokens (or, for a hyphenated product, part of
    the label); the longest product wins (GH200 before H200, L40S before L40)."""
    if not product:
        return None
    label = product.upper()
    tokens = set(re.split(r"[-_ ]+", label))
    for spec in sorted(GPU_SPECS, key=lambda s: len(s.product), reverse=True):
        key = spec.product
        if key and (key in tokens or ("-" in key and key in label)):
            return spec.capability
    return None
