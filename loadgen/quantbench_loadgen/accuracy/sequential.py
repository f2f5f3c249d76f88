"""Group-sequential evaluation of a variant against the baseline's recorded outcomes (pure orchestration).

The plan (`quantbench_loadgen.noninferiority.plan_sequential`) fixes before any question is asked how many
questions each look analyses. The variant answers the questions chunk by chunk, in the baseline's order;
after each chunk the paired outcomes so far are tested against the look's boundaries, and the evaluation
stops at the first look that decides. Questions the baseline did not answer are not asked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from quantbench_loadgen.accuracy.results import QuestionOutcome, SequentialRecord
from quantbench_loadgen.noninferiority import (
    SequentialDecision,
    SequentialPlan,
    plan_sequential,
    sequential_decision,
)
from quantbench_loadgen.specs import AccuracySpec


def plan_for(spec: AccuracySpec) -> SequentialPlan:
    """The spec's design: its margin and planning discordance, 5% one-sided error, 80% power."""
    if spec.sequential is None:
        raise ValueError("accuracy.sequential is not set")
    return plan_sequential(
        spec.margin / 100.0, spec.sequential.discordance, looks=spec.sequential.looks, alpha=0.05, power=0.8
    )


def evaluate_sequentially(
    plan: SequentialPlan,
    baseline: Sequence[QuestionOutcome],
    ask: Callable[[Sequence[int]], list[QuestionOutcome]],
) -> tuple[list[QuestionOutcome], SequentialRecord]:
    """Ask the baseline's questions (by doc id, in its order) chunk by chunk through ``ask`` until a look
    decides; return the variant's outcomes and how it ended."""
    order = sorted(baseline, key=lambda o: o.doc_id)
    answered: dict[str, QuestionOutcome] = {}
    decision: SequentialDecision | None = None
    asked = 0
    for k, size in enumerate(plan.look_sizes):
        chunk = order[asked : min(size, len(order))]
        if not chunk:
            break
        for outcome in ask([o.doc_id for o in chunk]):
            answered[outcome.key] = outcome
        asked += len(chunk)
        pairs = [
            (o.strict_correct, answered[o.key].strict_correct) for o in order[:asked] if o.key in answered
        ]
        decision = sequential_decision(plan, pairs)
        if decision.stopped_early or k + 1 == plan.design.looks:
            break
    if decision is None:
        decision = sequential_decision(plan, [])
    record = SequentialRecord(
        look_sizes=list(plan.look_sizes),
        fixed_questions=plan.fixed_questions,
        look=decision.look,
        questions=asked,
        stopped_early=decision.stopped_early,
        verdict=decision.verdict,
    )
    return [answered[o.key] for o in order[:asked] if o.key in answered], record
