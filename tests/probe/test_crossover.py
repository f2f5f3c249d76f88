from __future__ import annotations

import math

import pytest

from quantbench.probe.crossover import Crossover, find_crossover, speed_ratios

SIZES = [1, 2, 4, 8, 16, 32]
BASE = [5.0, 5.0, 5.0, 5.0, 6.0, 8.0]


def test_interpolates_in_log2_batch() -> None:
    other = [2.5, 2.6, 3.0, 4.0, 9.0, 16.0]  # ratios 0.5 .. 0.8 at 8, 1.5 at 16
    result = find_crossover(SIZES, BASE, other)
    assert result.kind == "crossed" and result.bracket == (8, 16)
    # ratio 0.8 at log2=3, 1.5 at log2=4: crosses 1.0 at 3 + 0.2 / 0.7
    assert result.batch_size == pytest.approx(2 ** (3 + 0.2 / 0.7))


def test_crossing_exactly_at_a_measured_size() -> None:
    other = [2.5, 2.5, 5.0, 6.0, 7.0, 9.0]  # ratio exactly 1 at batch 4
    result = find_crossover(SIZES, BASE, other)
    assert result.kind == "crossed" and result.batch_size == pytest.approx(4.0) and result.bracket == (2, 4)


def test_first_crossing_is_reported() -> None:
    other = [4.0, 6.0, 4.0, 6.0, 7.0, 9.0]
    assert find_crossover(SIZES, BASE, other).bracket == (1, 2)


def test_always_and_never_faster() -> None:
    faster = find_crossover(SIZES, BASE, [b * 0.7 for b in BASE])
    assert faster == Crossover(kind="always_faster")
    assert faster.describe(32) == "none (faster up to 32)"
    slower = find_crossover(SIZES, BASE, [b * 1.01 for b in BASE])
    assert slower.kind == "never_faster" and slower.batch_size is None
    assert slower.describe() == "never faster"


def test_describe_crossed() -> None:
    assert Crossover(kind="crossed", batch_size=9.4, bracket=(8, 16)).describe() == "~9"


def test_ratios_and_bad_input() -> None:
    assert speed_ratios([2.0, 4.0], [1.0, 4.0]) == [0.5, 1.0]
    with pytest.raises(ValueError, match="same batch sizes"):
        speed_ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        speed_ratios([0.0], [1.0])
    with pytest.raises(ValueError, match="increasing"):
        find_crossover([2, 1], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="no batch sizes"):
        find_crossover([], [], [])
    assert math.isfinite(find_crossover([1, 4096], [1.0, 1.0], [0.5, 2.0]).batch_size or math.nan)
