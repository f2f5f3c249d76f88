"""Pure functions for the QuantBenchmark status: how a run ended, conditions, history, the next scheduled run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from croniter import croniter

from quantbench.api.v1alpha1 import (
    Condition,
    Phase,
    QuantBenchmarkStatus,
    RunRecord,
    VariantPhase,
    VariantStatus,
)

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"


def run_phase(variants: Sequence[VariantStatus]) -> Phase:
    """Succeeded when every variant succeeded, Failed when none did, else PartiallySucceeded."""
    ok = sum(1 for v in variants if v.phase == VariantPhase.SUCCEEDED)
    if ok == len(variants) and variants:
        return Phase.SUCCEEDED
    if ok == 0:
        return Phase.FAILED
    return Phase.PARTIALLY_SUCCEEDED


def failed_variants(variants: Sequence[VariantStatus]) -> list[VariantStatus]:
    return [v for v in variants if v.phase in (VariantPhase.FAILED, VariantPhase.UNSUPPORTED)]


def _set(
    existing: Sequence[Condition],
    type_: str,
    status: str,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> Condition:
    for c in existing:
        if c.type == type_ and c.status == status:
            return c.model_copy(
                update={"reason": reason, "message": message, "observed_generation": generation}
            )
    return Condition.model_validate(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
            "observedGeneration": generation,
        }
    )


def conditions(
    status: QuantBenchmarkStatus, now: datetime, generation: int | None, invalid_spec: str | None = None
) -> list[Condition]:
    """Ready / Progressing / Degraded for the status as it now stands (transition times kept when unchanged)."""
    old = status.conditions
    last = status.history[0] if status.history else None
    run = status.current_run
    out: list[Condition] = []
    if last is not None and last.phase in (Phase.SUCCEEDED, Phase.PARTIALLY_SUCCEEDED):
        out.append(
            _set(old, READY, "True", f"Run{last.phase}", f"run {last.id} {last.phase}", now, generation)
        )
    elif last is not None:
        out.append(
            _set(
                old,
                READY,
                "False",
                "RunFailed",
                f"run {last.id} failed: no variant succeeded",
                now,
                generation,
            )
        )
    else:
        out.append(_set(old, READY, "False", "NoResultsYet", "no run has finished yet", now, generation))
    if run is not None:
        message = f"run {run.id} (generation {run.generation}) in progress"
        out.append(_set(old, PROGRESSING, "True", "RunInProgress", message, now, generation))
    elif status.phase == Phase.SUSPENDED:
        out.append(_set(old, PROGRESSING, "False", "Suspended", "spec.suspend is true", now, generation))
    else:
        out.append(_set(old, PROGRESSING, "False", "Idle", "no run in progress", now, generation))
    failed = failed_variants(status.variants)
    if invalid_spec is not None:
        out.append(_set(old, DEGRADED, "True", "InvalidSpec", invalid_spec, now, generation))
    elif failed:
        reason = failed[0].reason or "VariantFailed"
        message = "; ".join(f"{v.name}: {v.reason}: {v.message}" for v in failed)
        out.append(_set(old, DEGRADED, "True", reason, message[:2000], now, generation))
    else:
        out.append(_set(old, DEGRADED, "False", "AsExpected", "no variant failed", now, generation))
    return out


def next_run_time(schedule: str | None, last_start: datetime | None, now: datetime) -> datetime | None:
    """Next cron time after the last run's start (or after now when there was none)."""
    if schedule is None:
        return None
    base = last_start or now
    nxt: datetime = croniter(schedule, base).get_next(datetime)
    return nxt


def with_history(history: Sequence[RunRecord], record: RunRecord, limit: int) -> list[RunRecord]:
    return [record, *[h for h in history if h.id != record.id]][:limit]


def status_patch(status: QuantBenchmarkStatus) -> dict[str, Any]:
    """A JSON merge patch that sets the status exactly: fields that are None are removed."""
    wire = status.to_wire()
    for name, info in QuantBenchmarkStatus.model_fields.items():
        alias = info.alias or name
        wire.setdefault(alias, None)
    return {"status": wire}


def regressions(previous: RunRecord | None, record: RunRecord, threshold: float = 0.10) -> list[str]:
    """Variants whose batch-1 decode latency or throughput got worse than the previous run by > threshold."""
    if previous is None:
        return []
    before = _figures(previous)
    out: list[str] = []
    for name, (ms, phase) in _figures(record).items():
        if name not in before:
            continue
        old_ms, old_phase = before[name]
        if old_ms and ms and ms > old_ms * (1 + threshold):
            out.append(f"{name}: ms/token at batch 1 {old_ms:.2f} -> {ms:.2f}")
        if old_phase == VariantPhase.SUCCEEDED and phase != VariantPhase.SUCCEEDED:
            out.append(f"{name}: {old_phase} -> {phase}")
    return out


def _figures(record: RunRecord) -> dict[str, tuple[float | None, str]]:
    """Per variant: batch-1 ms/token and phase, from a history entry's digest (or its older full summary)."""
    if record.variants:
        return {d.variant: (d.ms_per_token_bs1, d.phase) for d in record.variants}
    if record.summary is not None:
        return {v.variant: (v.ms_per_token_bs1, v.phase) for v in record.summary.variants}
    return {}
