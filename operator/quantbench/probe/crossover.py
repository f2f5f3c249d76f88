"""Crossover interpolation: the batch size where a precision stops beating the baseline.

Low-bit weights win at small batches (fewer bytes to stream) and can lose at large ones (dequantizing
or scaling costs arithmetic once the step is compute-bound). Given step times at the same batch sizes,
the crossover is where time(precision) / time(baseline) first rises through 1, interpolated linearly
in that ratio against log2(batch size) between the two measured sizes that bracket it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CrossoverKind = Literal["crossed", "always_faster", "never_faster"]


class Crossover(BaseModel):
    """Where a precision stops being faster than the baseline.

    - ``crossed``: faster at small batches, not faster from ``batch_size`` on (interpolated).
    - ``always_faster``: faster at every measured batch size; ``batch_size`` is None.
    - ``never_faster``: not faster even at the smallest measured batch size; ``batch_size`` is None.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: CrossoverKind
    batch_size: float | None = Field(default=None, gt=0)
    bracket: tuple[int, int] | None = Field(
        default=None, description="the measured batch sizes the crossover lies between"
    )

    def describe(self, largest_measured: int | None = None) -> str:
        if self.kind == "crossed" and self.batch_size is not None:
            return f"~{self.batch_size:.0f}"
        if self.kind == "always_faster":
            return f"none (faster up to {largest_measured})" if largest_measured else "none (always faster)"
        return "never faster"


def log2_crossing(lo: int, r_lo: float, hi: int, r_hi: float, level: float = 1.0) -> float:
    """The batch size between ``lo`` and ``hi`` where a ratio measured as ``r_lo`` and ``r_hi`` there reaches
    ``level``, interpolating the ratio linearly in log2(batch size) (sweeps are usually geometric)."""
    fraction = (level - r_lo) / (r_hi - r_lo)
    return float(2.0 ** (math.log2(lo) + fraction * (math.log2(hi) - math.log2(lo))))


def speed_ratios(baseline_ms: Sequence[float], other_ms: Sequence[float]) -> list[float]:
    """time(other) / time(baseline) per batch size; below 1 means the other precision is faster."""
    if len(baseline_ms) != len(other_ms):
        raise ValueError("baseline and other step times must cover the same batch sizes")
    if any(t <= 0 for t in (*baseline_ms, *other_ms)):
        raise ValueError("step times must be positive")
    return [o / b for b, o in zip(baseline_ms, other_ms, strict=True)]


def find_crossover(
    batch_sizes: Sequence[int], baseline_ms: Sequence[float], other_ms: Sequence[float]
) -> Crossover:
    """Interpolated batch size where ``other`` stops being faster than ``baseline`` (pure)."""
    if len(batch_sizes) != len(baseline_ms):
        raise ValueError("batch_sizes and step times must have the same length")
    if not batch_sizes:
        raise ValueError("no batch sizes measured")
    if any(b <= 0 for b in batch_sizes) or list(batch_sizes) != sorted(set(batch_sizes)):
        raise ValueError("batch sizes must be positive, distinct and increasing")
    ratios = speed_ratios(baseline_ms, other_ms)
    if ratios[0] >= 1.0:
        return Crossover(kind="never_faster")
    for i in range(1, len(ratios)):
        if ratios[i] >= 1.0:
            lo, hi = batch_sizes[i - 1], batch_sizes[i]
            crossing = log2_crossing(lo, ratios[i - 1], hi, ratios[i])
            return Crossover(kind="crossed", batch_size=crossing, bracket=(lo, hi))
    return Crossover(kind="always_faster")
