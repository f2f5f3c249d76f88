"""Datasheet figures of common serving GPUs: memory bandwidth and dense tensor-core peaks.

Peaks are dense (no 2:4 sparsity), in FLOP/s; bandwidth in bytes/s. They are leads, not limits: the
probe measures the card it runs on, and the floors are given against both the datasheet and the
measurement. ``match`` holds lower-case substrings of ``torch.cuda.get_device_name()``; the first
spec whose every substring matches wins, so more specific entries come first.
"""

from __future__ import annotations

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
    compute_capability: str
    memory_bytes: float = Field(gt=0)
    memory_bandwidth_bytes_per_s: float = Field(gt=0)
    bf16_dense_flops: float = Field(gt=0)
    fp8_dense_flops: float | None = Field(
        default=None, gt=0, description="None where FP8 tensor cores are absent"
    )

    @property
    def supports_fp8(self) -> bool:
        return self.fp8_dense_flops is not None


GPU_SPECS: tuple[GpuSpec, ...] = (
    GpuSpec(
        key="h100-nvl",
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
        name="H200 SXM 141GB",
        match=("h200",),
        compute_capability="9.0",
        memory_bytes=141 * GB,
        memory_bandwidth_bytes_per_s=4.8 * TB,
        bf16_dense_flops=989.4 * TFLOPS,
        fp8_dense_flops=1978.9 * TFLOPS,
    ),
    GpuSpec(
        key="b200",
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
        name="A100 PCIe 80GB",
        match=("a100", "80gb", "pcie"),
        compute_capability="8.0",
        memory_bytes=80 * GB,
        memory_bandwidth_bytes_per_s=1.935 * TB,
        bf16_dense_flops=312 * TFLOPS,
    ),
    GpuSpec(
        key="a100-sxm-80gb",
        name="A100 SXM4 80GB",
        match=("a100", "80gb"),
        compute_capability="8.0",
        memory_bytes=80 * GB,
        memory_bandwidth_bytes_per_s=2.039 * TB,
        bf16_dense_flops=312 * TFLOPS,
    ),
    GpuSpec(
        key="a100-40gb",
        name="A100 40GB",
        match=("a100",),
        compute_capability="8.0",
        memory_bytes=40 * GB,
        memory_bandwidth_bytes_per_s=1.555 * TB,
        bf16_dense_flops=312 * TFLOPS,
    ),
    GpuSpec(
        key="l40s",
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
        name="A10",
        match=("a10",),
        compute_capability="8.6",
        memory_bytes=24 * GB,
        memory_bandwidth_bytes_per_s=0.600 * TB,
        bf16_dense_flops=125 * TFLOPS,
    ),
)


def match_gpu_spec(device_name: str) -> GpuSpec | None:
    """The spec for a CUDA device name such as 'NVIDIA H100 80GB HBM3', or None when unknown."""
    lowered = device_name.lower()
    for spec in GPU_SPECS:
        if all(part in lowered for part in spec.match):
            return spec
    return None


def gpu_spec_by_key(key: str) -> GpuSpec:
    """The spec with this key (``--gpu h100-sxm``); raises ValueError listing the known keys."""
    for spec in GPU_SPECS:
        if spec.key == key.lower():
            return spec
    raise ValueError(f"--gpu: unknown GPU '{key}'; known: {', '.join(s.key for s in GPU_SPECS)}")
