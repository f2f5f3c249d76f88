"""Sequential evaluation: chunks asked in the baseline's order, stopping at the first look that decides."""

from __future__ import annotations

import random

import pytest

from quantbench_loadgen.accuracy.results import QuestionOutcome, question_key
from quantbench_loadgen.accuracy.sequential import SequentialRecord, evaluate_sequentially, plan_for
from quantbench_loadgen.noninferiority import QualityVerdict
from quantbench_loadgen.specs import AccuracySpec


def _outcome(i: int, ok: bool) -> QuestionOutcome:
    return QuestionOutcome(
        doc_id=i,
        key=question_key(f"question {i}"),
        target=str(i),
        strict_answer=str(i) if ok else "[invalid]",
        strict_correct=ok,
        flexible_answer=str(i) if ok else "0",
        flexible_correct=ok,
    )


def _run(spec: AccuracySpec, lose: float, seed: int) -> tuple[list[int], SequentialRecord]:
    plan = plan_for(spec)
    rng = random.Random(seed)
    baseline = [_outcome(i, rng.random() < 0.7) for i in range(plan.max_questions)]
    flips = {o.doc_id: rng.random() < lose for o in baseline}
    asked: list[int] = []

    def ask(doc_ids: list[int]) -> list[QuestionOutcome]:
        asked.extend(doc_ids)
        return [_outcome(i, baseline[i].strict_correct != flips[i]) for i in doc_ids]

    outcomes, record = evaluate_sequentially(plan, baseline, ask)
    assert [o.doc_id for o in outcomes] == asked == list(range(len(asked)))
    return asked, record


def test_an_identical_variant_stops_early_as_non_inferior() -> None:
    spec = AccuracySpec(margin=5, sequential={"looks": 5, "discordance": 0.05})
    asked, record = _run(spec, lose=0.0, seed=1)
    plan = plan_for(spec)
    assert record.verdict == QualityVerdict.NON_INFERIOR
    assert record.stopped_early and len(asked) < plan.max_questions
    # No answer changed: the information per question is the largest there is, so the deciding look came
    # with fewer questions than planned at 5% discordance.
    assert record.information_fraction is not None
    assert len(asked) < plan.look_sizes[record.look - 1]


def test_the_fidelity_estimate_sizes_the_first_chunk() -> None:
    spec = AccuracySpec(margin=2, sequential={"looks": 10, "discordance": 0.10})
    plan = plan_for(spec)
    baseline = [_outcome(i, i % 3 != 0) for i in range(plan.max_questions)]
    chunks: list[int] = []

    def ask(doc_ids: list[int]) -> list[QuestionOutcome]:
        chunks.append(len(doc_ids))
        return [_outcome(i, baseline[i].strict_correct) for i in doc_ids]

    _, planned = evaluate_sequentially(plan, baseline, ask, expected_discordance=0.10)
    first_planned = chunks[0]
    assert first_planned == plan.look_sizes[0]  # expected as planned: the planned first look
    chunks.clear()
    _, guided = evaluate_sequentially(plan, baseline, ask, expected_discordance=0.01)
    first_guided = chunks[0]
    assert first_guided < first_planned / 3
    assert guided.expected_discordance == 0.01 and planned.expected_discordance == 0.10
    assert guided.verdict == planned.verdict == QualityVerdict.NON_INFERIOR
    assert guided.questions < planned.questions
    # Without an estimate the first chunk assumes no answer changes: the least the first look can need.
    chunks.clear()
    _, unguided = evaluate_sequentially(plan, baseline, ask)
    assert chunks[0] < first_guided and unguided.expected_discordance is None
    assert unguided.verdict == QualityVerdict.NON_INFERIOR and unguided.questions <= guided.questions


def test_a_clearly_worse_variant_stops_early_as_inferior() -> None:
    spec = AccuracySpec(margin=2, sequential={"looks": 5, "discordance": 0.05})
    _, record = _run(spec, lose=0.3, seed=2)
    assert record.verdict == QualityVerdict.INFERIOR
    # 30% of answers flip, so information comes slowly (the first look is far); the bound below the
    # margin stops it between looks, before the questions run out and before the first look's information.
    plan = plan_for(spec)
    assert record.stopped_early and record.look == 0
    assert record.questions < 4 * plan.look_sizes[0] < plan.max_questions
    assert record.information_fraction is not None and record.information_fraction < 0.2


def test_a_plan_needs_the_sequential_settings() -> None:
    with pytest.raises(ValueError, match="sequential"):
        plan_for(AccuracySpec())


def test_screened_questions_take_the_baselines_outcome_and_are_not_generated() -> None:
    spec = AccuracySpec(margin=5, sequential={"looks": 5, "discordance": 0.05})
    plan = plan_for(spec)
    rng = random.Random(3)
    baseline = [_outcome(i, rng.random() < 0.7) for i in range(plan.max_questions)]
    identical = {i for i in range(plan.max_questions) if i % 10 < 7}  # 70% reproduce the baseline exactly
    screens: list[list[int]] = []
    asked: list[int] = []

    def screen(doc_ids: list[int]) -> set[int]:
        screens.append(list(doc_ids))
        return {i for i in doc_ids if i in identical}

    def ask(doc_ids: list[int]) -> list[QuestionOutcome]:
        asked.extend(doc_ids)
        return [_outcome(i, baseline[i].strict_correct) for i in doc_ids]

    outcomes, record = evaluate_sequentially(plan, baseline, ask, screen=screen)
    plain, plain_record = evaluate_sequentially(plan, baseline, lambda ids: [baseline[i] for i in ids])
    # the same questions, outcomes and decision as without screening; only the screened ones were not asked
    assert outcomes == plain and record.verdict == plain_record.verdict and record.look == plain_record.look
    assert not set(asked) & identical and asked
    assert [i for chunk in screens for i in chunk] == [o.doc_id for o in outcomes]
    assert record.screened == len(identical & {o.doc_id for o in outcomes}) > 0
    assert record.generated == len(asked) == record.questions - record.screened
    assert record.screened_keys == [o.key for o in outcomes if o.doc_id in identical]
    assert plain_record.screened == 0 and plain_record.generated == plain_record.questions
