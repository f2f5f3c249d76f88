"""The report's table cells in words."""

from __future__ import annotations

from quantbench.api.summary import CapacitySummary, CapacityTrial, VariantSummary, Verdict
from quantbench.report.words import capacity_cells


def _row(capacity: CapacitySummary) -> VariantSummary:
    return VariantSummary(
        variant="bf16", precision="bf16", phase="Succeeded", verdict=Verdict.BASELINE, capacity=capacity
    )


def test_a_capacity_search_where_nothing_passed_says_how_low_it_went() -> None:
    """A search that ended at its minRate must not read as if no rate could ever meet the SLO."""
    failed = [CapacityTrial(request_rate=r, ttft_ms=2500.0, passed=False) for r in (2.0, 1.0)]
    cap = CapacitySummary(workload="capacity", slo="p90 TTFT <= 2000 ms", gpus=2, counts=True, trials=failed)
    assert capacity_cells(_row(cap))[:2] == ["none meets SLO (down to 0.5)", "-"]
    assert capacity_cells(_row(cap.model_copy(update={"trials": []})))[0] == "none meets SLO"
