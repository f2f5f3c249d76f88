"""Capacity under an SLO: the highest request rate whose latency percentiles meet it (pure search logic).

The search tries one rate per step. While every rate passes it grows geometrically (``growth``) up to
``max_rate``; once a rate fails it bisects geometrically between the highest passing rate and the lowest
failing one above it, until they are within ``tolerance`` or the step budget is spent. If the first rate
already fails it shrinks geometrically instead, down to ``min_rate``: once that fails too the search ends with
no capacity (nothing at or above ``min_rate`` meets the SLO). The capacity is the highest passing rate (a lower
bound of the true capacity to within the final bracket).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from quantbench_loadgen.results import LatencyStats, ServingRateResult
from quantbench_loadgen.specs import DEFAULT_MIN_RATE, Slo

MIN_RATE = DEFAULT_MIN_RATE  # requests/s: the default floor of the search (nothing passes down to it)


@dataclass(frozen=True)
class Trial:
    rate: float
    passed: bool


def bracket(trials: Sequence[Trial]) -> tuple[float | None, float | None]:
    """(highest passing rate, lowest failing rate above it)."""
    lo = max((t.rate for t in trials if t.passed), default=None)
    hi = min((t.rate for t in trials if not t.passed and (lo is None or t.rate > lo)), default=None)
    return lo, hi


def _round(rate: float) -> float:
    return float(f"{rate:.4g}")


def next_rate(
    trials: Sequence[Trial],
    start: float,
    max_rate: float,
    growth: float,
    tolerance: float,
    min_rate: float = MIN_RATE,
) -> float | None:
    """The next rate to try (four significant digits), or None when the search is done."""
    rate = _next(trials, start, max_rate, growth, tolerance, min_rate)
    if rate is None:
        return None
    rate = _round(rate)
    return None if any(t.rate == rate for t in trials) else rate


def _next(
    trials: Sequence[Trial], start: float, max_rate: float, growth: float, tolerance: float, min_rate: float
) -> float | None:
    if not trials:
        return min(start, max_rate)
    lo, hi = bracket(trials)
    if hi is None:
        assert lo is not None
        return None if lo >= max_rate else min(lo * growth, max_rate)
    if lo is None:
        return None if hi <= min_rate else max(hi / growth, min_rate)
    if hi / lo <= 1 + tolerance:
        return None
    return math.sqrt(lo * hi)


def _percentile(stats: LatencyStats, p: int) -> float:
    return {50: stats.median_ms, 90: stats.p90_ms, 95: stats.p95_ms, 99: stats.p99_ms}[p]


def slo_misses(step: ServingRateResult, slo: Slo, percentile: int, max_failed_ratio: float) -> list[str]:
    """Why a tried rate fails the SLO (empty: it passes)."""
    misses: list[str] = []
    if step.num_requests == 0 or step.completed == 0:
        return ["no request completed"]
    failed = step.failed / step.num_requests
    if failed > max_failed_ratio:
        misses.append(f"{failed:.0%} of requests failed")
    for name, limit, stats in (
        ("TTFT", slo.ttft_ms, step.ttft),
        ("ITL", slo.itl_ms, step.itl),
        ("TPOT", slo.tpot_ms, step.tpot),
        ("E2E", slo.e2e_ms, step.e2e),
    ):
        if limit is None or stats.count == 0:
            continue
        value = _percentile(stats, percentile)
        if value > limit:
            misses.append(f"p{percentile} {name} {value:.1f} ms > {limit:g} ms")
    return misses
