"""Cost per million output tokens at capacity, and the recommendation rule (pure).

A variant's cost is what its GPUs cost per hour divided by the output tokens they serve per hour within the
SLO: ``usd_per_gpu_hour * gpus / (goodput tokens/s * 3600) * 1e6``, where goodput counts only the requests
that met every SLO at the capacity rate. The recommended variant is the cheapest one whose accuracy is
non-inferior to the baseline's (the baseline itself qualifies) and that meets the SLO at some rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ANY_POOL = "*"


def price_for(prices: Mapping[str, float], node_pool: str | None) -> tuple[str | None, float] | None:
    """(pool the price belongs to, USD per GPU-hour) for a node pool: its own price, else the '*' one."""
    if node_pool is not None and node_pool in prices:
        return node_pool, prices[node_pool]
    if ANY_POOL in prices:
        return node_pool, prices[ANY_POOL]
    return None


def usd_per_million_tokens(usd_per_gpu_hour: float, gpus: int, tokens_per_second: float) -> float | None:
    """Cost of a million output tokens served at ``tokens_per_second`` on ``gpus`` GPUs; None at zero rate."""
    if usd_per_gpu_hour < 0 or gpus < 1:
        raise ValueError(f"need a price >= 0 and gpus >= 1, got {usd_per_gpu_hour}, {gpus}")
    if tokens_per_second <= 0:
        return None
    return usd_per_gpu_hour * gpus / (tokens_per_second * 3600.0) * 1e6


@dataclass(frozen=True)
class Candidate:
    variant: str
    usd_per_million: float | None  # None: no price or no capacity
    non_inferior: bool  # accuracy non-inferior (the baseline: True)
    meets_slo: bool  # some tried rate met the SLO
    capacity_per_gpu: float | None = None
    goodput_tokens_per_gpu: float | None = None


def recommend(candidates: Sequence[Candidate]) -> tuple[str | None, list[Candidate]]:
    """The cheapest candidate that is non-inferior and meets the SLO, and every qualifying one by cost."""
    ok = sorted(
        (c for c in candidates if c.non_inferior and c.meets_slo and c.usd_per_million is not None),
        key=lambda c: (c.usd_per_million, c.variant),
    )
    return (ok[0].variant if ok else None), ok
