"""Pure functions for the QuantBenchmark status: how a run ended, conditions, history, the next scheduled run."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from quantbench.api.v1alpha1 import (
    Condition,
    Phase,
    QuantBenchmarkStatus,
    RunRecord,
    VariantPhase,
    VariantStatus,
)
from quantbench.regression import condition_message

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
REGRESSED = "Regressed"


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
    if status.regressions and last is not None:
        message = condition_message(status.regressions, last.id)
        out.append(_set(old, REGRESSED, "True", "FigureRegressed", message, now, generation))
    elif last is not None and last.reference_run is not None:
        message = f"run {last.id}: no figure regressed against run {last.reference_run}"
        out.append(_set(old, REGRESSED, "False", "NoRegression", message, now, generation))
    else:
        message = "no earlier successful run to compare with yet"
        out.append(_set(old, REGRESSED, "False", "NoReference", message, now, generation))
    return out


def with_history(
    history: Sequence[RunRecord], record: RunRecord, limit: int, pinned: str | None = None
) -> list[RunRecord]:
    """The newest ``limit`` runs, newest first; a pinned reference run is kept beyond the limit."""
    runs = [record, *[h for h in history if h.id != record.id]]
    kept = runs[:limit]
    kept += [h for h in runs[limit:] if h.id == pinned]
    return kept


def status_patch(status: QuantBenchmarkStatus) -> dict[str, Any]:
    """A JSON merge patch that sets the status exactly: fields that are None are removed."""
    wire = status.to_wire()
    for name, info in QuantBenchmarkStatus.model_fields.items():
        alias = info.alias or name
        wire.setdefault(alias, None)
    return {"status": wire}
