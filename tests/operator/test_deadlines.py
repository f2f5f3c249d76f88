"""Step and run deadlines (quantbench.deadlines): sized from the workload, overridden by spec.timeouts."""

from __future__ import annotations

from quantbench.deadlines import STEP_ALLOWANCE_S, run_deadline_s, step_deadline_s, variant_deadline_s
from tests.operator import factories


def test_a_bigger_workload_gets_a_longer_deadline() -> None:
    small = factories.spec(workloads=[{"name": "l", "type": "latency", "iterations": 5}], accuracy=False)
    big = factories.spec(workloads=[{"name": "l", "type": "latency", "iterations": 5000}], accuracy=False)
    assert STEP_ALLOWANCE_S < step_deadline_s(small, "wl-l") < step_deadline_s(big, "wl-l")


def test_serving_deadline_covers_every_rate_of_its_duration() -> None:
    spec = factories.spec(
        workloads=[
            {
                "name": "s",
                "type": "serving",
                "dataset": {"kind": "random", "inputLen": 128, "outputLen": 64},
                "requestRates": [1, 2, 4],
                "duration": "10m",
            }
        ],
        accuracy=False,
    )
    assert step_deadline_s(spec, "wl-s") >= 3 * 600


def test_full_gsm8k_gets_hours_not_minutes() -> None:
    spec = factories.spec(workloads=[], accuracy=True)
    full = factories.spec(workloads=[], accuracy=True)
    full = full.model_copy(update={"accuracy": full.accuracy.model_copy(update={"limit": None})})  # type: ignore[union-attr]
    assert step_deadline_s(full, "accuracy") > step_deadline_s(spec, "accuracy") > STEP_ALLOWANCE_S


def test_spec_timeouts_override_the_estimates() -> None:
    spec = factories.spec(timeouts={"step": "5m", "run": "2h"})
    assert step_deadline_s(spec, "accuracy") == 300
    assert run_deadline_s(spec, longest_lane=3, probe_timeout_s=1800) == 7200


def test_run_deadline_is_the_longest_lane_at_its_deadlines() -> None:
    spec = factories.spec(probe=True)
    one = variant_deadline_s(spec)
    assert run_deadline_s(spec, longest_lane=2, probe_timeout_s=100) == 100 + 2 * one
