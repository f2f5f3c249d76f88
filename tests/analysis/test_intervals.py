"""Intervals of repeated measurements: known quantiles, and coverage by simulation with fixed seeds."""

from __future__ import annotations

import math
import random

import pytest

from quantbench.analysis.intervals import (
    Comparison,
    figure_interval,
    ratio_interval,
    t_cdf,
    t_quantile,
    verdict_of_ratio,
)


@pytest.mark.parametrize(
    ("p", "df", "q"),
    [(0.975, 1, 12.7062047), (0.975, 2, 4.3026527), (0.975, 4, 2.7764451), (0.95, 10, 1.8124611)],
)
def test_t_quantiles_match_the_tables(p: float, df: float, q: float) -> None:
    assert t_quantile(p, df) == pytest.approx(q, abs=1e-6)
    assert t_cdf(q, df) == pytest.approx(p, abs=1e-7)


def _lognormal(rng: random.Random, n: int, centre: float, sigma: float) -> list[float]:
    return [centre * math.exp(rng.gauss(0.0, sigma)) for _ in range(n)]


def _coverage(n: int, trials: int, seed: int, resamples: int = 300) -> float:
    """Share of intervals of variant/baseline that contain the true ratio 1.2 (different noise per side)."""
    rng = random.Random(seed)
    hits = 0
    for _ in range(trials):
        base = _lognormal(rng, n, 10.0, 0.05)
        var = _lognormal(rng, n, 12.0, 0.08)
        est = ratio_interval(base, var, resamples=resamples, seed=rng.randrange(1 << 30))
        assert est is not None
        hits += est.low <= 1.2 <= est.high
    return hits / trials


def test_ratio_interval_coverage_with_few_repetitions() -> None:
    """Welch's t interval on logs: 95% within 2 points at five repetitions a side."""
    assert _coverage(5, 2000, 31) == pytest.approx(0.95, abs=0.02)


def test_ratio_interval_never_under_covers_at_three_repetitions() -> None:
    assert _coverage(3, 2000, 32) >= 0.93


def test_bootstrap_ratio_interval_coverage() -> None:
    """From ten repetitions a side the interval is the studentized bootstrap over repetitions."""
    rng = random.Random(0)
    est = ratio_interval(_lognormal(rng, 10, 1, 0.1), _lognormal(rng, 10, 1, 0.1))
    assert est is not None and est.method == "bootstrap"
    assert _coverage(10, 500, 33) == pytest.approx(0.95, abs=0.02)


def test_figure_interval_coverage() -> None:
    rng = random.Random(34)
    hits = 0
    for _ in range(2000):
        est = figure_interval(_lognormal(rng, 4, 7.0, 0.1))
        assert est is not None
        hits += est.low <= 7.0 <= est.high
    assert hits / 2000 == pytest.approx(0.95, abs=0.02)


def test_one_repetition_has_no_interval_and_bad_figures_are_refused() -> None:
    assert figure_interval([3.0]) is None
    assert ratio_interval([3.0], [2.0, 2.1]) is None
    with pytest.raises(ValueError, match="positive"):
        ratio_interval([1.0, 0.0], [1.0, 1.0])


def test_equal_means_the_interval_contains_one() -> None:
    same = ratio_interval([10.0, 10.4, 9.8], [10.1, 9.9, 10.3])
    faster = ratio_interval([10.0, 10.1, 9.9], [12.0, 12.1, 11.9])
    assert same is not None and verdict_of_ratio(same) == Comparison.EQUAL
    assert faster is not None and verdict_of_ratio(faster) == Comparison.HIGHER
    assert faster.value == pytest.approx(1.2, abs=0.01)
