from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from quantbench.probe.crossover import Crossing, Crossover, crossover_of_ratios, find_crossover, speed_ratios

SIZES = [1, 2, 4, 8, 16, 32]
BASE = [5.0, 5.0, 5.0, 5.0, 6.0, 8.0]


def test_stops_winning_interpolates_in_log2_batch() -> None:
    other = [2.5, 2.6, 3.0, 4.0, 9.0, 16.0]  # ratios 0.5 .. 0.8 at 8, 1.5 at 16
    result = find_crossover(SIZES, BASE, other)
    assert result.kind == "stops_winning" and result.faster_at_smallest and not result.faster_at_largest
    (crossing,) = result.crossings
    assert crossing.bracket == (8, 16) and result.starts_winning_at is None
    # ratio 0.8 at log2=3, 1.5 at log2=4: crosses 1.0 at 3 + 0.2 / 0.7
    assert result.stops_winning_at == pytest.approx(2 ** (3 + 0.2 / 0.7))
    assert result.describe(1, 32) == "faster up to ~10"


def test_starts_winning_is_reported_too() -> None:
    """The H200's FP8 shape: slower than BF16 at batch 1 (1.07x), faster from a few dozen tokens on."""
    other = [5.35, 5.3, 5.2, 5.1, 5.4, 6.0]  # ratios 1.07, 1.06, 1.04, 1.02, 0.9, 0.75
    result = find_crossover(SIZES, BASE, other)
    assert result.kind == "starts_winning" and not result.faster_at_smallest and result.faster_at_largest
    (crossing,) = result.crossings
    assert crossing.direction == "starts_winning" and crossing.bracket == (8, 16)
    assert result.starts_winning_at == pytest.approx(2 ** (3 + 0.02 / 0.12))
    assert result.stops_winning_at is None
    assert result.describe(1, 32) == "faster from ~9"


def test_every_crossing_in_both_directions() -> None:
    other = [5.5, 4.0, 4.0, 6.0, 5.0, 10.0]  # slower, faster, faster, slower, faster, slower
    result = find_crossover(SIZES, BASE, other)
    assert result.kind == "mixed" and not result.faster_at_smallest
    assert [(c.direction, c.bracket) for c in result.crossings] == [
        ("starts_winning", (1, 2)),
        ("stops_winning", (4, 8)),
        ("starts_winning", (8, 16)),
        ("stops_winning", (16, 32)),
    ]
    assert result.starts_winning_at == result.crossings[0].batch_size
    assert result.stops_winning_at == result.crossings[1].batch_size
    lows = [c.batch_size for c in result.crossings]
    assert result.winning_ranges() == [(lows[0], lows[1]), (lows[2], lows[3])]
    assert result.describe() == (
        f"faster ~{lows[0]:.0f} to ~{lows[1]:.0f} and ~{lows[2]:.0f} to ~{lows[3]:.0f}"
    )


def test_crossing_exactly_at_a_measured_size() -> None:
    other = [2.5, 2.5, 5.0, 6.0, 7.0, 9.0]  # ratio exactly 1 at batch 4: equal is not faster
    result = find_crossover(SIZES, BASE, other)
    assert result.kind == "stops_winning" and result.crossings[0].bracket == (2, 4)
    assert result.stops_winning_at == pytest.approx(4.0)


def test_always_and_never_faster() -> None:
    faster = find_crossover(SIZES, BASE, [b * 0.7 for b in BASE])
    assert faster == Crossover(faster_at_smallest=True)
    assert faster.kind == "always_faster" and faster.describe(1, 32) == "always faster (1-32)"
    slower = find_crossover(SIZES, BASE, [b * 1.01 for b in BASE])
    assert slower.kind == "never_faster" and slower.stops_winning_at is slower.starts_winning_at is None
    assert slower.describe() == "never faster" and slower.winning_ranges() == []


def test_throughput_ratios_cross_the_other_way() -> None:
    """The serving analysis passes throughput ratios (above 1 is faster), interpolated as they are."""
    result = crossover_of_ratios([16, 64], [1.2, 0.8], faster_below_one=False)
    assert result.kind == "stops_winning" and result.stops_winning_at == pytest.approx(32.0)
    rising = crossover_of_ratios([16, 64], [0.8, 1.2], faster_below_one=False)
    assert rising.kind == "starts_winning" and rising.starts_winning_at == pytest.approx(32.0)


def test_the_model_rejects_crossings_that_do_not_alternate() -> None:
    stop = Crossing(direction="stops_winning", batch_size=9.0, bracket=(8, 16))
    start = Crossing(direction="starts_winning", batch_size=40.0, bracket=(32, 64))
    assert Crossover(faster_at_smallest=True, crossings=(stop, start)).kind == "mixed"
    with pytest.raises(ValidationError, match="alternate"):
        Crossover(faster_at_smallest=False, crossings=(stop,))
    with pytest.raises(ValidationError, match="alternate"):
        Crossover(faster_at_smallest=True, crossings=(stop, stop))
    with pytest.raises(ValidationError, match="increasing"):
        Crossover(faster_at_smallest=False, crossings=(start, stop))


def test_schema_1_crossovers_read_as_where_a_precision_stops_winning() -> None:
    old = Crossover.model_validate({"kind": "crossed", "batch_size": 9.4, "bracket": [8, 16]})
    assert old.kind == "stops_winning" and old.stops_winning_at == 9.4 and old.crossings[0].bracket == (8, 16)
    assert Crossover.model_validate({"kind": "always_faster", "batch_size": None, "bracket": None}).kind == (
        "always_faster"
    )
    assert Crossover.model_validate({"kind": "never_faster"}).kind == "never_faster"
    with pytest.raises(ValidationError, match="unknown crossover kind"):
        Crossover.model_validate({"kind": "sideways"})


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
    with pytest.raises(ValueError, match="positive and finite"):
        crossover_of_ratios([1, 2], [1.0, math.inf], faster_below_one=True)
    assert math.isfinite(find_crossover([1, 4096], [1.0, 1.0], [0.5, 2.0]).stops_winning_at or math.nan)
