"""Arrival schedules: seeded, with the requested mean rate and shape."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from quantbench_loadgen.arrivals import schedule
from quantbench_loadgen.specs import ArrivalProcess


def _gaps(offsets: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(offsets)]


def test_same_seed_same_schedule_other_seed_other() -> None:
    a = schedule(10.0, ArrivalProcess.POISSON, 1.0, seed=1, count=100)
    assert a == schedule(10.0, ArrivalProcess.POISSON, 1.0, seed=1, count=100)
    assert a != schedule(10.0, ArrivalProcess.POISSON, 1.0, seed=2, count=100)
    assert a[0] == 0.0 and len(a) == 100


@pytest.mark.parametrize(
    ("process", "burstiness", "cv"),
    [(ArrivalProcess.POISSON, 1.0, 1.0), (ArrivalProcess.GAMMA, 0.25, 2.0), (ArrivalProcess.GAMMA, 4.0, 0.5)],
)
def test_mean_rate_and_burstiness(process: ArrivalProcess, burstiness: float, cv: float) -> None:
    gaps = _gaps(schedule(50.0, process, burstiness, seed=7, count=20_001))
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1 / 50.0, rel=0.05)
    # gamma(shape k): coefficient of variation 1/sqrt(k)
    assert statistics.pstdev(gaps) / mean == pytest.approx(cv, rel=0.08)


def test_constant_and_duration() -> None:
    offsets = schedule(4.0, ArrivalProcess.CONSTANT, 1.0, seed=0, duration_s=2.0)
    assert offsets == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75])


def test_closed_loop() -> None:
    assert schedule(math.inf, ArrivalProcess.POISSON, 1.0, seed=0, count=3) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="closed loop"):
        schedule(math.inf, ArrivalProcess.POISSON, 1.0, seed=0, duration_s=1.0)
