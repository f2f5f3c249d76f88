"""Capacity under an SLO: the search logic against an exact oracle, and the whole workload against the
scripted server run as a queue with a known service rate."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from quantbench_loadgen.capacity import Trial, bracket, next_rate
from quantbench_loadgen.runner import run_workload
from quantbench_loadgen.sender import RunOptions
from quantbench_loadgen.specs import CapacityWorkload, Workload
from quantbench_loadgen.testing.scripted_server import Script
from quantbench_loadgen.tokenization import LocalTokenizer
from tests.loadgen.conftest import ScriptedFactory

WORKLOAD: TypeAdapter[Any] = TypeAdapter(Workload)


def _search(
    capacity: float, start: float, max_rate: float, steps: int, growth: float = 2.0, min_rate: float = 1e-3
) -> list[Trial]:
    trials: list[Trial] = []
    while len(trials) < steps:
        rate = next_rate(trials, start, max_rate, growth, 0.05, min_rate)
        if rate is None:
            break
        trials.append(Trial(rate, rate <= capacity))
    return trials


@pytest.mark.parametrize("capacity", [0.37, 1.0, 3.3, 17.0, 105.3, 299.0, 1500.0, 3900.0])
def test_search_ends_within_ten_percent_inside_its_budget(capacity: float) -> None:
    """Budget: log2(capacity / start) + 4 steps (the default 16 covers 12 doublings of the start rate)."""
    start = 1.0
    budget = max(4, math.ceil(math.log2(max(capacity, start) / start)) + 4)
    trials = _search(capacity, start, 10_000, budget)
    lo, hi = bracket(trials)
    assert len(trials) <= budget
    assert lo is not None and capacity / 1.1 <= lo <= capacity
    assert hi is None or hi > capacity


def test_search_stops_at_the_max_rate_and_when_nothing_passes() -> None:
    trials = _search(5000.0, 1.0, 100.0, 20)
    assert bracket(trials) == (100.0, None) and len(trials) == 8  # 1, 2, ..., 64, 100
    nothing = _search(0.0, 1.0, 100.0, 40)
    assert bracket(nothing)[0] is None and nothing[-1].rate == pytest.approx(1e-3, rel=1.0)


def test_a_failing_search_goes_no_lower_than_its_min_rate() -> None:
    """minRate bounds the slow low-rate steps: at minRate = startRate a failing first rate ends the search; a
    floor between halvings is tried itself; a capacity above the floor is still found below the start rate."""
    assert [t.rate for t in _search(0.0, 1.0, 100.0, 16, min_rate=1.0)] == [1.0]
    assert [t.rate for t in _search(0.0, 1.0, 100.0, 16, min_rate=0.3)] == [1.0, 0.5, 0.3]
    found = _search(0.6, 1.0, 100.0, 16, min_rate=0.3)
    assert [t.rate for t in found[:2]] == [1.0, 0.5] and bracket(found)[0] == pytest.approx(0.6, rel=0.1)
    assert [t.rate for t in _search(5.0, 1.0, 100.0, 3, min_rate=1.0)] == [1.0, 2.0, 4.0]  # growth unchanged


def _capacity_spec(**kw: Any) -> dict[str, Any]:
    spec = {
        "name": "cap",
        "type": "capacity",
        "dataset": {"kind": "random", "inputLen": 8, "outputLen": 8},
        "slo": {"ttftMs": 150},
        "numPrompts": 40,
        "arrival": "constant",
        "startRate": 8,
    }
    return spec | kw


def test_capacity_workload_needs_an_slo_and_a_sane_range() -> None:
    with pytest.raises(ValidationError, match="needs slo"):
        WORKLOAD.validate_python(_capacity_spec(slo={}))
    with pytest.raises(ValidationError, match="startRate must be at most maxRate"):
        WORKLOAD.validate_python(_capacity_spec(startRate=50, maxRate=10))
    with pytest.raises(ValidationError, match=r"minRate must be at most startRate \(got 10 > 8\)"):
        WORKLOAD.validate_python(_capacity_spec(minRate=10))
    assert WORKLOAD.validate_python(_capacity_spec(minRate=8)).min_rate == 8


@pytest.mark.slow
def test_capacity_of_a_queue_with_a_known_service_rate(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path
) -> None:
    """Four slots, each answer holding its slot 50 + 7 * 20 = 190 ms: 21.05 requests/s. Under constant
    arrivals below that rate nothing waits (TTFT 50 ms); above it the queue grows with every request and
    p90 TTFT passes the 150 ms SLO (at 10% over, by the 36th request: 36 * 4.3 ms of extra wait each).
    Delays are long enough for a busy machine's scheduling jitter. The search must land within 10% of
    21.05 in at most its budget of steps."""
    script = Script(ttft_ms=50, itl_ms=20, slots=4)
    true_capacity = script.service_rate_per_s(8)
    url = scripted_server(ttft_ms=50, itl_ms=20, slots=4)
    wl = WORKLOAD.validate_python(_capacity_spec())
    assert isinstance(wl, CapacityWorkload)
    options = RunOptions(model="scripted")
    result, _ = asyncio.run(
        run_workload(wl, url=url, options=options, tokenizer=LocalTokenizer(scripted_tokenizer))
    )
    cap = result.capacity
    assert cap is not None and cap.capacity_requests_per_s is not None, cap
    assert len(cap.tried_rates_per_s) <= wl.steps
    assert true_capacity / 1.1 <= cap.capacity_requests_per_s <= true_capacity * 1.1, cap
    assert [s.request_rate_per_s for s in result.serving] == cap.tried_rates_per_s
    assert cap.goodput_tokens_per_s is not None and cap.goodput_tokens_per_s > 0
    assert all(m for m, ok in zip(cap.misses, cap.passed, strict=True) if not ok)
