"""The precisions the probe times and how many bytes each stores per weight.

Byte counts follow the layouts vLLM serves: BF16 weights; FP8 (e4m3) weights with one float32
scale per output channel; 4-bit weight-only with group size 128 in the AWQ layout (packed 4-bit
weights, one float16 scale and one 4-bit zero point per group of 128 inputs per output channel).
The LM head stays BF16 in every variant, as in vLLM's FP8 and AWQ checkpoints.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The probe times weight formats, not the API's precisions: "int4" (AWQ layout) stands for both AWQ-INT4 and
# GPTQ-INT4, whose weight-only 4-bit kernels move the same bytes (quantbench.analysis.summary.PROBED_AS).
WeightFormatName = Literal["bf16", "fp8", "int4"]
PRECISIONS: tuple[WeightFormatName, ...] = ("bf16", "fp8", "int4")
BASELINE: WeightFormatName = "bf16"

# Which tensor-core rate bounds the arithmetic: FP8 multiplies in FP8; weight-only INT4 dequantizes
# to BF16 and multiplies in BF16.
ComputeDtype = Literal["bf16", "fp8"]


class WeightFormat(BaseModel):
    """Storage cost of one quantized weight matrix, used by the floor arithmetic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    precision: WeightFormatName
    bits_per_weight: int = Field(gt=0)
    bytes_per_output_channel: float = Field(ge=0, description="per-channel scales")
    group_size: int | None = Field(default=None, gt=0, description="inputs per quantization group")
    bytes_per_group: float = Field(default=0.0, ge=0, description="scale + zero point per group and channel")
    compute_dtype: ComputeDtype
    description: str

    def matrix_bytes(self, in_features: int, out_features: int) -> float:
        """Bytes one ``out_features x in_features`` matrix occupies in this format."""
        total = (
            in_features * out_features * self.bits_per_weight / 8
            + out_features * self.bytes_per_output_channel
        )
        if self.group_size is not None:
            groups = -(-in_features // self.group_size)
            total += groups * out_features * self.bytes_per_group
        return total


WEIGHT_FORMATS: dict[WeightFormatName, WeightFormat] = {
    "bf16": WeightFormat(
        precision="bf16",
        bits_per_weight=16,
        bytes_per_output_channel=0,
        compute_dtype="bf16",
        description="BF16",
    ),
    "fp8": WeightFormat(
        precision="fp8",
        bits_per_weight=8,
        bytes_per_output_channel=4,
        compute_dtype="fp8",
        description="FP8 e4m3 weights + float32 per-channel scales",
    ),
    "int4": WeightFormat(
        precision="int4",
        bits_per_weight=4,
        bytes_per_output_channel=0,
        group_size=128,
        bytes_per_group=2.5,
        compute_dtype="bf16",
        description="4-bit weight-only, group 128 (AWQ layout: fp16 scale + 4-bit zero per group)",
    ),
}


def parse_precisions(text: str) -> tuple[WeightFormatName, ...]:
    """Parse ``bf16,fp8,int4`` (any order, BF16 always measured first as the baseline)."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in WEIGHT_FORMATS]
    if unknown or not names:
        raise ValueError(
            f"--precisions: unknown precision(s) {unknown or names}; choose from {', '.join(PRECISIONS)}"
        )
    chosen = set(names) | {BASELINE}
    return tuple(p for p in PRECISIONS if p in chosen)
