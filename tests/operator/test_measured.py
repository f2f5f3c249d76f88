"""Which edits change what a run measures (quantbench.measured)."""

from __future__ import annotations

from quantbench.measured import changes_measurement, measured_spec_hash
from tests.operator import factories


def test_schedule_history_suspend_timeouts_and_regression_change_nothing_measured() -> None:
    base = factories.spec_dict()
    edited = {**base, "historyLimit": 3, "schedule": "0 3 * * 1", "suspend": True, "timeouts": {"run": "2h"}}
    assert not changes_measurement(base, edited)
    assert measured_spec_hash(factories.spec()) == measured_spec_hash(
        factories.spec(historyLimit=3, schedule="0 3 * * 1", suspend=True, timeouts={"step": "1h"})
    )
    recurring = {
        **base,
        "timeZone": "Europe/Berlin",
        "concurrencyPolicy": "Replace",
        "startingDeadlineSeconds": 600,
        "regression": {"reference": "r20270101-030000"},
    }
    assert not changes_measurement(base, recurring)
    assert measured_spec_hash(factories.spec()) == measured_spec_hash(
        factories.spec(
            timeZone="Europe/Berlin", concurrencyPolicy="Replace", regression={"tolerances": {"latency": 0.2}}
        )
    )
    more = {**base, "workloads": [{"name": "l", "type": "latency"}]}
    assert changes_measurement(base, more)
    assert measured_spec_hash(factories.spec()) != measured_spec_hash(factories.spec(probe=True))
