"""Arrival processes: when each request of a serving step is sent, as offsets from the step's start.

Pure and seeded, so the same seed gives the same schedule. Gamma inter-arrival times have shape
``burstiness`` and mean ``1/rate`` (scale ``1/(rate*burstiness)``), as ``vllm bench serve`` draws them:
burstiness 1 is a Poisson process, below 1 burstier, above 1 more regular.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator

from quantbench_loadgen.specs import ArrivalProcess


def arrival_offsets(
    rate: float, process: ArrivalProcess | str, burstiness: float, seed: int
) -> Iterator[float]:
    """Endless offsets in seconds (the first is 0) of arrivals at ``rate`` requests/s."""
    if math.isinf(rate):
        yield from itertools.repeat(0.0)
        return
    if not rate > 0:
        raise ValueError(f"request rate must be > 0, got {rate}")
    rng = random.Random(seed)
    t = 0.0
    while True:
        yield t
        if process == ArrivalProcess.CONSTANT:
            t += 1.0 / rate
        elif process == ArrivalProcess.GAMMA:
            t += rng.gammavariate(burstiness, 1.0 / (rate * burstiness))
        else:
            t += rng.expovariate(rate)


def schedule(
    rate: float,
    process: ArrivalProcess | str,
    burstiness: float,
    seed: int,
    *,
    count: int | None = None,
    duration_s: float | None = None,
) -> list[float]:
    """The first ``count`` arrival offsets, or every offset before ``duration_s`` (finite rates only)."""
    if (count is None) == (duration_s is None):
        raise ValueError("give exactly one of count and duration_s")
    offsets = arrival_offsets(rate, process, burstiness, seed)
    if count is not None:
        return list(itertools.islice(offsets, count))
    if math.isinf(rate):
        raise ValueError("a duration-bounded closed loop ('inf') has no schedule: it runs until the deadline")
    assert duration_s is not None
    return list(itertools.takewhile(lambda t: t < duration_s, offsets))
