from __future__ import annotations

from datetime import UTC, datetime

from quantbench.api.v1alpha1 import Phase, QuantBenchmarkStatus, RunRecord, VariantPhase, VariantStatus
from quantbench.status import conditions, run_phase, status_patch, with_history

T = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def v(name: str, phase: VariantPhase, reason: str | None = None) -> VariantStatus:
    return VariantStatus(
        name=name, precision="bf16", phase=phase, reason=reason, message="m" if reason else None
    )


def test_run_phase() -> None:
    ok, bad = VariantPhase.SUCCEEDED, VariantPhase.FAILED
    assert run_phase([v("a", ok), v("b", ok)]) == Phase.SUCCEEDED
    assert run_phase([v("a", ok), v("b", bad)]) == Phase.PARTIALLY_SUCCEEDED
    assert run_phase([v("a", ok), v("b", VariantPhase.UNSUPPORTED)]) == Phase.PARTIALLY_SUCCEEDED
    assert run_phase([v("a", bad), v("b", bad)]) == Phase.FAILED


def test_conditions_follow_the_run() -> None:
    running = QuantBenchmarkStatus(
        current_run=RunRecord(id="r1", generation=1, phase=Phase.RUNNING, started_at=T),
        variants=[v("a", VariantPhase.STARTING)],
    )
    conds = {c.type: c for c in conditions(running, T, 1)}
    assert conds["Progressing"].status == "True" and conds["Ready"].status == "False"
    assert conds["Degraded"].status == "False"
    done = QuantBenchmarkStatus(
        history=[RunRecord(id="r1", generation=1, phase=Phase.PARTIALLY_SUCCEEDED, started_at=T)],
        variants=[v("a", VariantPhase.SUCCEEDED), v("b", VariantPhase.FAILED, "OOMKilled")],
        conditions=list(conds.values()),
    )
    later = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
    conds2 = {c.type: c for c in conditions(done, later, 1)}
    assert conds2["Ready"].status == "True" and conds2["Ready"].reason == "RunPartiallySucceeded"
    assert conds2["Degraded"].status == "True" and conds2["Degraded"].reason == "OOMKilled"
    assert conds2["Progressing"].status == "False" and conds2["Progressing"].last_transition_time == later
    invalid = {c.type: c for c in conditions(QuantBenchmarkStatus(), T, 2, invalid_spec="spec.baseline: bad")}
    assert invalid["Degraded"].reason == "InvalidSpec" and invalid["Degraded"].observed_generation == 2


def test_unchanged_condition_keeps_its_transition_time() -> None:
    first = conditions(QuantBenchmarkStatus(), T, 1)
    again = conditions(QuantBenchmarkStatus(conditions=first), datetime(2027, 1, 1, tzinfo=UTC), 1)
    assert [c.last_transition_time for c in again] == [T, T, T, T]


def test_history_and_schedule() -> None:
    runs = [RunRecord(id=f"r{i}", generation=1, phase=Phase.SUCCEEDED, started_at=T) for i in range(3)]
    new = RunRecord(id="r9", generation=2, phase=Phase.FAILED, started_at=T)
    assert [r.id for r in with_history(runs, new, 3)] == ["r9", "r0", "r1"]
    # A pinned reference run stays beyond the limit.
    assert [r.id for r in with_history(runs, new, 3, pinned="r2")] == ["r9", "r0", "r1", "r2"]


def test_status_patch_removes_cleared_fields() -> None:
    patch = status_patch(QuantBenchmarkStatus(phase=Phase.SUCCEEDED))["status"]
    assert patch["phase"] == "Succeeded"
    assert patch["currentRun"] is None and patch["summary"] is None
