"""Statistics against known answers and against simulation with planted differences."""

from __future__ import annotations

import math
import random

import pytest

from quantbench.analysis.stats import (
    bandwidth_floor_ms_per_token,
    crossover_batch_size,
    mcnemar_exact,
    mcnemar_power,
    minimum_detectable_difference,
    paired_counts,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (50, 100, 0.4038315, 0.5961685),  # textbook value
        (0, 10, 0.0, 0.2775328),
        (10, 10, 0.7224672, 1.0),
        (81, 263, 0.2553, 0.3662),  # Newcombe (1998), example
    ],
)
def test_wilson_interval_known_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(low, abs=1e-4)
    assert hi == pytest.approx(high, abs=1e-4)


def test_wilson_interval_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [
        (0, 0, 1.0),
        (0, 6, 2 / 64),  # every discordant pair one way: 2 * 0.5^6
        (1, 5, 2 * (1 + 6) / 64),
        (3, 2, 1.0),
        (15, 1, 2 * (1 + 16) / 2**16),
        (10, 3, 0.09228515625),
    ],
)
def test_mcnemar_exact_known_values(b: int, c: int, p: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(p, rel=1e-9)
    assert mcnemar_exact(c, b) == pytest.approx(p, rel=1e-9)


def test_paired_counts_uses_shared_questions_only() -> None:
    a = {"q1": True, "q2": True, "q3": False, "q4": False, "only-a": True}
    b = {"q1": True, "q2": False, "q3": True, "q4": False, "only-b": False}
    counts = paired_counts(a, b)
    assert (counts.n, counts.both, counts.only_a, counts.only_b, counts.neither) == (4, 1, 1, 1, 1)
    assert counts.difference == 0.0


def _simulate_detection(n: int, p_loss: float, p_gain: float, trials: int, seed: int) -> float:
    """Share of simulated runs in which the exact McNemar test rejects at 5%: each question independently
    loses (baseline right, variant wrong) with p_loss and gains with p_gain."""
    rng = random.Random(seed)
    hits = 0
    for _ in range(trials):
        lost = gained = 0
        for _ in range(n):
            u = rng.random()
            if u < p_loss:
                lost += 1
            elif u < p_loss + p_gain:
                gained += 1
        if mcnemar_exact(lost, gained) < 0.05:
            hits += 1
    return hits / trials


def _within(observed: float, expected: float, trials: int, sigmas: float = 4.0) -> bool:
    return abs(observed - expected) <= sigmas * math.sqrt(max(expected * (1 - expected), 1e-4) / trials)


@pytest.mark.parametrize(
    ("n", "discordance", "drop"), [(100, 0.12, 0.08), (200, 0.10, 0.05), (400, 0.06, 0.03)]
)
def test_detection_rate_of_a_planted_drop_matches_the_power(n: int, discordance: float, drop: float) -> None:
    power = mcnemar_power(n, discordance, drop)
    assert 0.1 < power < 0.99  # the cases are informative
    trials = 1500
    rate = _simulate_detection(n, (discordance + drop) / 2, (discordance - drop) / 2, trials, seed=n)
    assert _within(rate, power, trials), f"simulated {rate:.3f} vs computed power {power:.3f}"


@pytest.mark.parametrize(("n", "discordance"), [(100, 0.1), (200, 0.2), (500, 0.05)])
def test_false_positive_rate_without_a_drop_is_at_most_five_percent(n: int, discordance: float) -> None:
    assert mcnemar_power(n, discordance, 0.0) <= 0.05
    trials = 2000
    rate = _simulate_detection(n, discordance / 2, discordance / 2, trials, seed=7 * n)
    assert rate <= 0.05, f"false-positive rate {rate:.3f}"


def test_minimum_detectable_difference_has_the_wanted_power() -> None:
    n, discordance = 100, 0.1
    mdd = minimum_detectable_difference(n, discordance)
    assert mdd is not None
    assert mcnemar_power(n, max(discordance, mdd), mdd) >= 0.8
    below = mdd - 0.005
    assert mcnemar_power(n, max(discordance, below), below) < 0.8
    trials = 1500
    d = max(discordance, mdd)
    rate = _simulate_detection(n, (d + mdd) / 2, (d - mdd) / 2, trials, seed=11)
    assert _within(rate, 0.8, trials, sigmas=5.0), rate


def test_minimum_detectable_difference_shrinks_with_the_sample() -> None:
    sizes = [50, 100, 400, 1319]
    mdds = [minimum_detectable_difference(n, 0.1) for n in sizes]
    assert all(m is not None for m in mdds)
    values = [m for m in mdds if m is not None]
    assert values == sorted(values, reverse=True)
    # GSM8K-sized samples: with 100 questions and 10% of answers changing, only large drops are detectable.
    assert 0.07 < values[1] < 0.1
    assert values[-1] < 0.03


def test_minimum_detectable_difference_of_a_tiny_sample_is_none() -> None:
    assert minimum_detectable_difference(4, 0.5) is None  # 4 discordant pairs can never reach p < 0.05


def test_crossover_interpolates_in_log_batch_size() -> None:
    c = crossover_batch_size({1: 10.0, 16: 100.0, 64: 200.0}, {1: 15.0, 16: 120.0, 64: 160.0})
    assert c is not None and c.kind == "stops_winning" and c.crossings[0].bracket == (16, 64)
    assert c.stops_winning_at == pytest.approx(32.0)  # ratios 1.2 at 16 and 0.8 at 64: halfway in log2
    c = crossover_batch_size({1: 100.0, 16: 1000.0, 64: 3000.0}, {1: 200.0, 16: 1200.0, 64: 2000.0})
    assert c is not None and c.stops_winning_at == pytest.approx(2**4.75)


def test_crossover_where_the_variant_starts_winning_under_load() -> None:
    """Slower at batch 1, higher throughput from a few dozen requests on: the crossing says so."""
    c = crossover_batch_size({1: 100.0, 16: 1000.0, 64: 3000.0}, {1: 90.0, 16: 900.0, 64: 3600.0})
    assert c is not None and c.kind == "starts_winning" and c.stops_winning_at is None
    assert c.starts_winning_at == pytest.approx(2 ** (4 + 2 * 0.1 / 0.3))  # 0.9 at 16, 1.2 at 64


@pytest.mark.parametrize(
    ("variant", "kind"),
    [
        ({1: 12.0, 16: 110.0}, "always_faster"),
        ({1: 8.0, 16: 90.0}, "never_faster"),
        ({1: 8.0, 16: 110.0}, "starts_winning"),
    ],
)
def test_crossover_kinds(variant: dict[int, float], kind: str) -> None:
    c = crossover_batch_size({1: 10.0, 16: 100.0}, variant)
    assert c is not None and c.kind == kind
    assert c.stops_winning_at is None


def test_no_crossover_without_a_shared_batch_size() -> None:
    assert crossover_batch_size({1: 10.0, 16: 100.0}, {32: 8.0}) is None


def test_bandwidth_floor() -> None:
    # 16 GB of weights at 3.35 TB/s (H100 SXM): 4.78 ms per decode step.
    assert bandwidth_floor_ms_per_token(16e9, 3.35e12) == pytest.approx(4.776, abs=1e-3)
    with pytest.raises(ValueError):
        bandwidth_floor_ms_per_token(0, 1e12)
