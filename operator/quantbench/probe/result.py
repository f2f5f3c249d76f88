"""``ProbeResult``: the probe's typed output, written as JSON and read back by the analysis.

Shape (all times in milliseconds, bandwidth in bytes/s, rates in FLOP/s, sizes in bytes)::

    ProbeResult
      schema_version, created_at, model_name
      model: ModelShape                       hidden, intermediate, heads, KV heads, layers, vocab, linears
      gpu: GpuInfo (+ spec: GpuSpec | None)   device name, compute capability, datasheet figures
      settings                                warm-up, repeats, passes, timer, inputs, weights
      batch_sizes: [1, 2, 4, ...]
      bandwidth: Bandwidth                    the streaming read used for the floors (passes + mean)
      other_bandwidths: [Bandwidth]           the other methods (torch.sum read, device copy)
      matmul_peaks: [MatmulPeak]              8192^3 BF16 and FP8 products (passes + mean)
      precisions: [PrecisionResult]           bf16 first (the baseline), then fp8, int4
        precision, kernel, activation_quant, weight_format
        weight_bytes                          what one step reads (LM head in BF16)
        floor_ms                              weight_bytes / measured read bandwidth (batch-1 floor)
        floor_ms_spec                         weight_bytes / datasheet bandwidth (None if GPU unknown)
        check_relative_error                  kernel vs float32 reference on the same operands
        steps: [StepTiming]                   per batch size:
          batch_size, median_ms (both passes pooled), passes [TimingPass x2], spread_pct,
          floor_ms (roofline at this batch: max(bytes/bw, FLOPs/peak), measured bw and peaks),
          efficiency (floor_ms / median_ms), ratio_to_baseline (median_ms / bf16 median_ms)
        crossover_vs_baseline: Crossover | None   where it starts and stops beating bf16 (None for bf16)
      failures: [PrecisionFailure]            precisions that could not run, with the error
      notes: [str]
"""

from __future__ import annotations

import statistics
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .crossover import Crossover
from .precisions import BASELINE, WeightFormatName
from .shapes import ModelShape
from .specs import GpuSpec

# Version 2: a crossover lists every crossing in both directions (version 1 knew only where a precision stops
# winning; version-1 files still load, read as that).
SCHEMA_VERSION: Literal[2] = 2


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TimingPass(_Model):
    """One pass: ``repeats`` timed CUDA-graph replays of the step."""

    median_ms: float = Field(gt=0)
    p10_ms: float = Field(gt=0)
    p90_ms: float = Field(gt=0)
    min_ms: float = Field(gt=0)
    repeats: int = Field(gt=0)


class StepTiming(_Model):
    """The decode step's linears at one batch size."""

    batch_size: int = Field(gt=0)
    median_ms: float = Field(gt=0, description="median over the passes' medians")
    passes: tuple[TimingPass, ...] = Field(min_length=1)
    spread_pct: float = Field(ge=0, description="(max - min) / min of the passes' medians, in percent")
    floor_ms: float = Field(
        gt=0, description="roofline floor at this batch size (measured bandwidth and peaks)"
    )
    efficiency: float = Field(gt=0, description="floor_ms / median_ms")
    ratio_to_baseline: float | None = Field(
        default=None, gt=0, description="median_ms / the baseline's median_ms at this batch size"
    )


class Bandwidth(_Model):
    """A streaming figure measured in several passes over a buffer far larger than L2."""

    method: str
    buffer_bytes: int = Field(gt=0)
    bytes_per_run: int = Field(gt=0, description="bytes counted per run (read, or read + write for a copy)")
    passes_bytes_per_s: tuple[float, ...] = Field(min_length=1)

    @property
    def bytes_per_s(self) -> float:
        return statistics.fmean(self.passes_bytes_per_s)

    @property
    def spread_pct(self) -> float:
        return _spread_pct(self.passes_bytes_per_s)


class MatmulPeak(_Model):
    """A large square matrix product's rate, in several passes."""

    dtype: Literal["bf16", "fp8"]
    m: int
    n: int
    k: int
    passes_flops_per_s: tuple[float, ...] = Field(min_length=1)

    @property
    def flops_per_s(self) -> float:
        return statistics.fmean(self.passes_flops_per_s)


class GpuInfo(_Model):
    name: str
    compute_capability: str
    sm_count: int
    memory_bytes: int
    l2_bytes: int
    torch_version: str
    cuda_version: str
    triton_version: str | None = None
    spec: GpuSpec | None = Field(default=None, description="datasheet figures, when the device is known")


class PrecisionFailure(_Model):
    precision: WeightFormatName
    error: str


class MeasuredStep(_Model):
    """What the GPU measured for the step at one batch size (``StepTiming`` adds the derived figures)."""

    batch_size: int = Field(gt=0)
    passes: tuple[TimingPass, ...] = Field(min_length=1)


class MeasuredPrecision(_Model):
    """What the GPU measured for one precision (``PrecisionResult`` adds the derived figures)."""

    precision: WeightFormatName
    kernel: str = Field(min_length=1, description="the kernel timed, named with its library")
    activation_quant: str | None = None
    check_relative_error: float = Field(ge=0)
    steps: tuple[MeasuredStep, ...] = Field(min_length=1)


class Measurements(_Model):
    """Everything ``quantbench.probe.measure`` measured; ``quantbench.probe.assemble`` derives the rest."""

    gpu: GpuInfo
    settings: dict[str, str | int | float]
    bandwidths: tuple[Bandwidth, ...] = Field(min_length=1)
    matmul_peaks: tuple[MatmulPeak, ...] = ()
    precisions: tuple[MeasuredPrecision, ...]
    failures: tuple[PrecisionFailure, ...] = ()
    notes: tuple[str, ...] = ()
    wall_seconds: float = Field(ge=0)


class PrecisionResult(_Model):
    precision: WeightFormatName
    kernel: str
    activation_quant: str | None = None
    weight_format: str
    weight_bytes: float = Field(gt=0)
    floor_ms: float = Field(gt=0, description="weight_bytes / measured streaming read bandwidth")
    floor_ms_spec: float | None = Field(default=None, gt=0, description="weight_bytes / datasheet bandwidth")
    check_relative_error: float = Field(ge=0)
    steps: tuple[StepTiming, ...]
    crossover_vs_baseline: Crossover | None = None

    def step(self, batch_size: int) -> StepTiming:
        for step in self.steps:
            if step.batch_size == batch_size:
                return step
        raise KeyError(f"{self.precision}: batch size {batch_size} was not measured")


class ProbeResult(_Model):
    """Everything one probe run measured on one GPU for one model's shapes (see the module docstring)."""

    schema_version: Literal[2] = SCHEMA_VERSION
    created_at: datetime
    model_name: str
    model: ModelShape
    gpu: GpuInfo
    settings: dict[str, str | int | float]
    batch_sizes: tuple[int, ...]
    bandwidth: Bandwidth
    other_bandwidths: tuple[Bandwidth, ...] = ()
    matmul_peaks: tuple[MatmulPeak, ...] = ()
    precisions: tuple[PrecisionResult, ...]
    failures: tuple[PrecisionFailure, ...] = ()
    notes: tuple[str, ...] = ()
    wall_seconds: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade_schema_1(cls, data: Any) -> Any:
        """Version 1 differs only in its crossovers, which ``Crossover`` reads as they were."""
        if isinstance(data, dict) and data.get("schema_version") == 1:
            return {**data, "schema_version": SCHEMA_VERSION}
        return data

    def precision(self, name: str) -> PrecisionResult:
        for result in self.precisions:
            if result.precision == name:
                return result
        raise KeyError(f"precision {name!r} is not in this probe result")

    def step_ms(self, precision: str, batch_size: int) -> float:
        return self.precision(precision).step(batch_size).median_ms

    @property
    def baseline(self) -> PrecisionResult:
        return self.precision(BASELINE)

    def peak(self, dtype: str) -> MatmulPeak | None:
        return next((p for p in self.matmul_peaks if p.dtype == dtype), None)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ProbeResult:
        return cls.model_validate_json(text)

    @classmethod
    def load(cls, path: Path) -> ProbeResult:
        return cls.from_json(path.read_text(encoding="utf-8"))


def _spread_pct(values: tuple[float, ...] | list[float]) -> float:
    low = min(values)
    return (max(values) - low) / low * 100.0
