"""Crossovers: the batch sizes where a precision starts or stops beating the baseline.

A precision's step time relative to the baseline's moves with the batch size, in either direction. 4-bit
weights win at small batches (fewer bytes to stream) and can lose at large ones (dequantizing costs
arithmetic once the step is compute-bound); FP8 can lose at batch 1 (activation quantization and a GEMM
tuned for large shapes) and win from a few dozen tokens on (FP8 tensor cores). Given step times at the same
batch sizes, every place where time(precision) / time(baseline) passes through 1 is a crossing, interpolated
linearly in that ratio against log2(batch size) between the two measured sizes that bracket it.

The serving analysis (``quantbench.analysis.stats.crossover_batch_size``) uses the same model for throughput
sweeps, on throughput ratios (above 1 is faster).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Direction = Literal["starts_winning", "stops_winning"]
CrossoverKind = Literal["always_faster", "never_faster", "stops_winning", "starts_winning", "mixed"]


class Crossing(BaseModel):
    """One place where the precision's time ratio to the baseline passes through 1."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    direction: Direction = Field(
        description="starts_winning: slower below, faster from here on; stops_winning: the reverse"
    )
    batch_size: float = Field(gt=0, description="interpolated in log2(batch size)")
    bracket: tuple[int, int] = Field(description="the measured batch sizes the crossing lies between")


class Crossover(BaseModel):
    """Where a precision is faster than the baseline over the measured batch sizes.

    ``faster_at_smallest`` says which side the sweep starts on; ``crossings`` lists, in batch order, every
    place it changes side (they alternate between ``stops_winning`` and ``starts_winning``). ``kind`` sums
    it up: ``always_faster`` / ``never_faster`` (no crossing), ``stops_winning`` (faster at small batches
    only), ``starts_winning`` (faster at large batches only), ``mixed`` (more than one crossing).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    faster_at_smallest: bool
    crossings: tuple[Crossing, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _from_schema_1(cls, data: Any) -> Any:
        """Probe results of schema version 1 held ``{kind: crossed|always_faster|never_faster, batch_size,
        bracket}``, which knew only where a precision stops winning; read them as that."""
        if not isinstance(data, dict) or "kind" not in data:
            return data
        kind = data["kind"]
        if kind == "crossed":
            crossing = {
                "direction": "stops_winning",
                "batch_size": data["batch_size"],
                "bracket": data["bracket"],
            }
            return {"faster_at_smallest": True, "crossings": [crossing]}
        if kind in ("always_faster", "never_faster"):
            return {"faster_at_smallest": kind == "always_faster"}
        raise ValueError(f"unknown crossover kind {kind!r}")

    @model_validator(mode="after")
    def _alternating(self) -> Crossover:
        expected: Direction = "stops_winning" if self.faster_at_smallest else "starts_winning"
        previous = 0.0
        for crossing in self.crossings:
            if crossing.direction != expected:
                raise ValueError(f"crossings must alternate, starting with {expected} here")
            if crossing.batch_size < previous:
                raise ValueError("crossings must be in increasing batch-size order")
            previous = crossing.batch_size
            expected = "starts_winning" if expected == "stops_winning" else "stops_winning"
        return self

    @property
    def kind(self) -> CrossoverKind:
        if not self.crossings:
            return "always_faster" if self.faster_at_smallest else "never_faster"
        if len(self.crossings) > 1:
            return "mixed"
        return self.crossings[0].direction

    @property
    def faster_at_largest(self) -> bool:
        return self.faster_at_smallest != (len(self.crossings) % 2 == 1)

    @property
    def stops_winning_at(self) -> float | None:
        """The first batch size from which the precision is no longer faster (None: it never stops)."""
        return next((c.batch_size for c in self.crossings if c.direction == "stops_winning"), None)

    @property
    def starts_winning_at(self) -> float | None:
        """The first batch size from which a precision slower before it is faster (None: none such)."""
        return next((c.batch_size for c in self.crossings if c.direction == "starts_winning"), None)

    def winning_ranges(self) -> list[tuple[float | None, float | None]]:
        """The batch-size ranges where the precision is faster: (from, to), None meaning the sweep's end."""
        ranges: list[tuple[float | None, float | None]] = []
        start: float | None = None
        winning = self.faster_at_smallest
        for crossing in self.crossings:
            if winning:
                ranges.append((start, crossing.batch_size))
            start = crossing.batch_size
            winning = not winning
        if winning:
            ranges.append((start, None))
        return ranges

    def describe(self, smallest: int | None = None, largest: int | None = None) -> str:
        """Where it is faster, in words: "faster up to ~9", "faster from ~32", "never faster (1-4096)"."""
        span = f" ({smallest}-{largest})" if smallest is not None and largest is not None else ""
        if self.kind == "always_faster":
            return f"always faster{span}"
        if self.kind == "never_faster":
            return f"never faster{span}"
        parts = []
        for low, high in self.winning_ranges():
            if low is None:
                parts.append(f"up to ~{high:.0f}")
            elif high is None:
                parts.append(f"from ~{low:.0f}")
            else:
                parts.append(f"~{low:.0f} to ~{high:.0f}")
        return "faster " + " and ".join(parts)


def log2_crossing(lo: int, r_lo: float, hi: int, r_hi: float, level: float = 1.0) -> float:
    """The batch size between ``lo`` and ``hi`` where a ratio measured as ``r_lo`` and ``r_hi`` there reaches
    ``level``, interpolating the ratio linearly in log2(batch size) (sweeps are usually geometric)."""
    fraction = (level - r_lo) / (r_hi - r_lo)
    return float(2.0 ** (math.log2(lo) + fraction * (math.log2(hi) - math.log2(lo))))


def speed_ratios(baseline_ms: Sequence[float], other_ms: Sequence[float]) -> list[float]:
    """time(other) / time(baseline) per batch size; below 1 means the other precision is faster."""
    if len(baseline_ms) != len(other_ms):
        raise ValueError("baseline and other step times must cover the same batch sizes")
    if any(not t > 0 for t in (*baseline_ms, *other_ms)):
        raise ValueError("step times must be positive")
    return [o / b for b, o in zip(baseline_ms, other_ms, strict=True)]


def crossover_of_ratios(
    batch_sizes: Sequence[int], ratios: Sequence[float], *, faster_below_one: bool
) -> Crossover:
    """Every batch size where a ratio to the baseline passes through 1 (pure).

    ``ratios`` are the precision's figure over the baseline's at each batch size: a time ratio
    (``faster_below_one``: below 1 is faster) or a throughput ratio (above 1 is faster). Equal is not
    faster. Each crossing is interpolated in that ratio between the two measured sizes on either side.
    """
    if len(batch_sizes) != len(ratios):
        raise ValueError("batch_sizes and ratios must have the same length")
    if not batch_sizes:
        raise ValueError("no batch sizes measured")
    if any(b <= 0 for b in batch_sizes) or list(batch_sizes) != sorted(set(batch_sizes)):
        raise ValueError("batch sizes must be positive, distinct and increasing")
    if any(not (r > 0 and math.isfinite(r)) for r in ratios):
        raise ValueError("ratios must be positive and finite")
    faster = [(r < 1.0) if faster_below_one else (r > 1.0) for r in ratios]
    crossings: list[Crossing] = []
    for i in range(1, len(ratios)):
        if faster[i - 1] == faster[i]:
            continue
        lo, hi = batch_sizes[i - 1], batch_sizes[i]
        crossings.append(
            Crossing(
                direction="stops_winning" if faster[i - 1] else "starts_winning",
                batch_size=log2_crossing(lo, ratios[i - 1], hi, ratios[i]),
                bracket=(lo, hi),
            )
        )
    return Crossover(faster_at_smallest=faster[0], crossings=tuple(crossings))


def find_crossover(
    batch_sizes: Sequence[int], baseline_ms: Sequence[float], other_ms: Sequence[float]
) -> Crossover:
    """Every batch size where ``other`` starts or stops being faster than ``baseline``, from step times
    (pure): the crossings of time(other) / time(baseline) through 1."""
    if len(batch_sizes) != len(baseline_ms):
        raise ValueError("batch_sizes and step times must have the same length")
    return crossover_of_ratios(batch_sizes, speed_ratios(baseline_ms, other_ms), faster_below_one=True)
