"""Group-sequential evaluation of a variant against the baseline's recorded outcomes (pure orchestration).

The design (`quantbench_loadgen.noninferiority.plan_sequential`) fixes before any question is asked how
much information each look waits for. The variant answers the baseline's questions chunk by chunk, in the
baseline's order; after each chunk the paired outcomes so far are tested at every look their information
reaches, and the evaluation stops at the first look that decides. Questions the baseline did not answer are
not asked. This is the one implementation of the stopping rule: `quantbench run` and the operator's accuracy
Jobs both run it (the Job reads the baseline's outcomes from a mounted ConfigMap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from quantbench_loadgen.accuracy.results import QuestionOutcome, SequentialRecord
from quantbench_loadgen.noninferiority import SequentialPlan, monitor, paired_counts, plan_sequential
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
    expected_discordance: float | None = None,
    screen: Callable[[Sequence[int]], set[int]] | None = None,
) -> tuple[list[QuestionOutcome], SequentialRecord]:
    """Ask the baseline's questions (by doc id, in its order) chunk by chunk through ``ask`` until a look
    decides; return the variant's outcomes and how it ended. ``expected_discordance`` (e.g. one minus the
    fidelity measurement's greedy answer agreement) sizes the first chunks; it cannot change the verdict's
    error rate, only how soon the looks come. ``screen`` (doc ids -> those whose baseline response the
    variant would reproduce exactly, see `screening`) runs first on each chunk: those questions take the
    baseline's outcome and only the rest go to ``ask``; the outcomes, and so the test, are the same."""
    order = sorted(baseline, key=lambda o: o.doc_id)
    answered: dict[str, QuestionOutcome] = {}
    screened_keys: list[str] = []

    def ask_chunk(first: int, count: int) -> tuple[int, int, int]:
        chunk = order[first : first + count]
        same = screen([o.doc_id for o in chunk]) if screen is not None else set()
        for o in chunk:
            if o.doc_id in same:
                answered[o.key] = o
                screened_keys.append(o.key)
        rest = [o.doc_id for o in chunk if o.doc_id not in same]
        for outcome in ask(rest) if rest else []:
            answered[outcome.key] = outcome
        return paired_counts(
            [(o.strict_correct, answered[o.key].strict_correct) for o in chunk if o.key in answered]
        )

    decision = monitor(plan, len(order), ask_chunk, expected_discordance)
    asked = [answered[o.key] for o in order if o.key in answered]
    record = SequentialRecord(
        look_sizes=list(plan.look_sizes),
        fixed_questions=plan.fixed_questions,
        look=decision.look,
        questions=len(asked),
        stopped_early=decision.stopped_early,
        verdict=decision.verdict,
        information_fraction=round(decision.information_fraction, 4),
        expected_discordance=expected_discordance,
        screened=len(screened_keys),
        generated=len(asked) - len(screened_keys),
        screened_keys=screened_keys,
    )
    return asked, record
