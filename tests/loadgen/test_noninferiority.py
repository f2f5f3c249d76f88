"""Non-inferiority: the score test, its exact small-sample form, power, and the group-sequential design,
checked by simulation with fixed seeds (and exactly where the sample is small enough to enumerate)."""

from __future__ import annotations

import math
import random

import pytest

from quantbench_loadgen.noninferiority import (
    QualityVerdict,
    SequentialState,
    _exact_table,
    assess,
    information,
    lower_bound,
    next_chunk,
    observe,
    p_value,
    plan_sequential,
    power,
    questions_needed,
    score_statistic,
    sequential_decision,
    sequential_design,
    upper_bound,
)
from tests.loadgen.sequential_figures import simulate

ALPHA = 0.05
MARGIN = 0.05
DISCORDANCE = 0.10
TRIALS = 2000
# Two standard errors of a simulated rate near alpha with TRIALS runs.
SLACK_ALPHA = 2 * math.sqrt(ALPHA * (1 - ALPHA) / TRIALS)


def _counts(rng: random.Random, n: int, p_gain: float, p_loss: float) -> tuple[int, int]:
    gained = lost = 0
    for _ in range(n):
        u = rng.random()
        if u < p_gain:
            gained += 1
        elif u < p_gain + p_loss:
            lost += 1
    return gained, lost


def _stream(rng: random.Random, n: int, p_gain: float, p_loss: float) -> list[tuple[bool, bool]]:
    out = []
    for _ in range(n):
        u = rng.random()
        out.append((False, True) if u < p_gain else (True, False) if u < p_gain + p_loss else (True, True))
    return out


def _rates(delta: float) -> tuple[float, float]:
    return (DISCORDANCE + delta) / 2, (DISCORDANCE - delta) / 2


def test_no_discordance_at_all_is_non_inferior_with_enough_questions() -> None:
    result = assess(500, 0, 0, margin=0.02)
    assert result.verdict == QualityVerdict.NON_INFERIOR
    assert result.lower_bound > -0.02
    assert result.delta == 0.0


def test_a_clear_drop_is_inferior_and_a_small_sample_undecided() -> None:
    assert assess(1000, 10, 80, margin=0.02).verdict == QualityVerdict.INFERIOR  # -7 points
    assert assess(50, 2, 3, margin=0.02).verdict == QualityVerdict.UNDECIDED


@pytest.mark.parametrize(("gained", "lost"), [(20, 25), (5, 30), (40, 10), (0, 0), (3, 9)])
def test_the_verdict_and_the_confidence_bound_say_the_same(gained: int, lost: int) -> None:
    n, margin = 400, 0.03
    result = assess(n, gained, lost, margin, ALPHA)
    assert (result.p_value < ALPHA) == (result.lower_bound > -margin)
    assert result.lower_bound <= result.delta <= result.upper_bound
    # The bound is where the score statistic equals the one-sided critical value.
    assert score_statistic(n, gained, lost, result.lower_bound) == pytest.approx(1.6448536, abs=1e-6)


def test_bounds_of_a_tie_are_symmetric() -> None:
    assert lower_bound(300, 10, 10) == pytest.approx(-upper_bound(300, 10, 10), abs=1e-9)


def test_bad_counts_and_margins_are_refused() -> None:
    with pytest.raises(ValueError, match="gained"):
        assess(10, 6, 6, 0.02)
    with pytest.raises(ValueError, match="margin"):
        assess(10, 1, 1, 0.0)


def test_score_test_type_one_error_at_the_margin_is_at_most_alpha() -> None:
    n = questions_needed(MARGIN, DISCORDANCE)
    rng = random.Random(15)
    p_gain, p_loss = _rates(-MARGIN)
    rejected = sum(p_value(n, *_counts(rng, n, p_gain, p_loss), MARGIN) < ALPHA for _ in range(TRIALS))
    assert rejected / TRIALS <= ALPHA + SLACK_ALPHA


@pytest.mark.parametrize("n", [12, 30, 59])
def test_exact_small_sample_type_one_error_never_exceeds_alpha(n: int) -> None:
    """Exact, not simulated: the size of the test summed over every outcome, at nuisance values off the grid
    the p-value maximises over."""
    zs, _ = _exact_table(n, -MARGIN)
    for p_loss in (0.051, 0.08, 0.2, 0.37, 0.5):
        p_gain = p_loss - MARGIN
        size = 0.0
        for gained in range(n + 1):
            for lost in range(n + 1 - gained):
                if p_value(n, gained, lost, MARGIN) < ALPHA:
                    size += math.exp(
                        math.lgamma(n + 1)
                        - math.lgamma(gained + 1)
                        - math.lgamma(lost + 1)
                        - math.lgamma(n - gained - lost + 1)
                        + gained * math.log(p_gain)
                        + lost * math.log(p_loss)
                        + (n - gained - lost) * math.log(1 - p_gain - p_loss)
                    )
        assert size <= ALPHA + 0.002, (n, p_loss, size)
    assert len(zs) == (n + 1) * (n + 2) // 2


def test_power_is_as_computed() -> None:
    n = questions_needed(MARGIN, DISCORDANCE, delta=0.0, target=0.8)
    assert power(n, MARGIN, DISCORDANCE) == pytest.approx(0.8, abs=0.01)
    rng = random.Random(16)
    p_gain, p_loss = _rates(0.0)
    shown = sum(p_value(n, *_counts(rng, n, p_gain, p_loss), MARGIN) < ALPHA for _ in range(TRIALS))
    assert shown / TRIALS == pytest.approx(0.8, abs=2 * math.sqrt(0.16 / TRIALS) + 0.01)


def test_questions_needed_grows_with_discordance_and_shrinking_margin() -> None:
    assert questions_needed(0.02, 0.05) > questions_needed(0.02, 0.02)
    assert questions_needed(0.01, 0.05) > 3 * questions_needed(0.02, 0.05)
    with pytest.raises(ValueError, match="margin"):
        questions_needed(0.02, 0.05, delta=-0.03)


def test_sequential_boundaries_meet_at_the_last_look_and_spend_alpha() -> None:
    d = sequential_design(5, ALPHA, 0.8)
    assert d.efficacy[-1] == pytest.approx(d.futility[-1])
    assert list(d.efficacy) == sorted(d.efficacy, reverse=True)
    assert list(d.futility) == sorted(d.futility)
    assert 1.0 < d.inflation < 1.3
    hi, _ = d.stop_probabilities(0.0)
    # At the margin with the futility boundary ignored the efficacy crossings would sum to alpha; with it
    # (non-binding) they can only be fewer.
    assert sum(hi) <= ALPHA + 1e-3
    hi1, _ = d.stop_probabilities(1.0)
    assert sum(hi1) == pytest.approx(0.8, abs=0.005)


def test_sequential_design_keeps_alpha_and_power_by_simulation() -> None:
    plan = plan_sequential(MARGIN, DISCORDANCE, alpha=ALPHA, power=0.8, looks=5)
    rng = random.Random(17)
    at_margin = [
        sequential_decision(plan, _stream(rng, plan.max_questions, *_rates(-MARGIN))) for _ in range(TRIALS)
    ]
    false_claims = sum(d.verdict == QualityVerdict.NON_INFERIOR for d in at_margin) / TRIALS
    assert false_claims <= ALPHA + SLACK_ALPHA
    # Futility stops make a variant exactly at the margin cheap to reject as well: the design's integral
    # at the margin, in questions at the variance there (chunks overshoot a look's information a little).
    at_margin_questions = (
        plan.max_information * (DISCORDANCE - MARGIN**2) * plan.design.expected_fraction(0.0)
    )
    used_at_margin = sum(d.questions for d in at_margin) / TRIALS
    assert 1.0 <= used_at_margin / at_margin_questions < 1.12
    at_zero = [
        sequential_decision(plan, _stream(rng, plan.max_questions, *_rates(0.0))) for _ in range(TRIALS)
    ]
    shown = sum(d.verdict == QualityVerdict.NON_INFERIOR for d in at_zero) / TRIALS
    assert shown == pytest.approx(0.8, abs=2 * math.sqrt(0.16 / TRIALS) + 0.015)
    used = sum(d.questions for d in at_zero) / TRIALS
    assert 0.95 <= used / plan.expected_questions(1.0) < 1.12
    assert used < plan.fixed_questions
    assert any(d.stopped_early for d in at_zero)


def test_sequential_expected_questions_at_a_one_point_margin() -> None:
    """The design's own figures (numerical integration) at a 1-point margin, 80% power, 5% discordance."""
    plan = plan_sequential(0.01, 0.05, alpha=ALPHA, power=0.8)
    assert plan.design.looks == 10 and plan.design.rho == 2.0
    assert plan.fixed_questions == questions_needed(0.01, 0.05)
    ratio = plan.expected_questions(1.0) / plan.fixed_questions
    assert 0.7 < ratio < 0.78
    assert plan.expected_questions(0.0) / plan.fixed_questions < 0.65
    assert plan.expected_questions(2.0) / plan.fixed_questions < 0.5


def test_information_grows_with_questions_and_shrinks_with_discordance() -> None:
    assert information(0, 0, 0, 0.01) == 0.0
    assert information(1000, 10, 10, 0.01) > information(1000, 50, 50, 0.01) > 0
    assert information(2000, 20, 20, 0.01) == pytest.approx(2 * information(1000, 10, 10, 0.01))
    # Z = (delta_hat + margin) * sqrt(information)
    n, g, lo = 1500, 30, 36
    z = ((g - lo) / n + 0.01) * math.sqrt(information(n, g, lo, 0.01))
    assert z == pytest.approx(score_statistic(n, g, lo, -0.01))
    with pytest.raises(ValueError, match="gained"):
        information(10, 8, 8, 0.01)


def test_a_chunk_aims_at_the_next_look_and_stops_when_decided() -> None:
    plan = plan_sequential(0.01, 0.05)
    # With no expected discordance the first chunk assumes no answer changes: the least information a first
    # look can need, so it is never passed unseen (here 73 questions, where 377 reach it at 5% discordance).
    first = next_chunk(plan, SequentialState(), 10_000)
    assert first == math.ceil(plan.information_targets[0] * 0.01 * 0.99) == 73
    for gained, lost in [(0, 0), (1, 1), (0, 3), (5, 2)]:  # one question fewer is short whatever the data
        assert information(first - 1, gained, lost, 0.01) < plan.information_targets[0]
    # An expected discordance (fidelity) sizes it at that discordance instead: the plan's reaches the
    # planned first look, a variant expected to change few answers reaches it with fewer questions.
    assert next_chunk(plan, SequentialState(), 10_000, expected_discordance=0.05) == plan.look_sizes[0]
    assert next_chunk(plan, SequentialState(), 10_000, expected_discordance=0.01) < plan.look_sizes[0] / 2
    # Later chunks aim at the look from the observed variance; one that fell just short tops up with a
    # 10th of a planned look (38 questions here), not another whole chunk.
    short = observe(plan, SequentialState(), 360, 360, 9, 9, 10_000)
    assert short.looks_done == 0 and short.decision is None
    assert next_chunk(plan, short, 10_000) == math.ceil(plan.look_sizes[0] / 10) == 38
    after = observe(plan, SequentialState(), 200, 200, 5, 5, 10_000)
    assert after.questions + next_chunk(plan, after, 10_000) == math.ceil(
        plan.information_targets[0] * (after.questions / information(200, 5, 5, 0.01))
    )
    # Fewer baseline questions than planned: a look's share of them at most.
    assert next_chunk(plan, SequentialState(), 100) == 10
    state = observe(plan, SequentialState(), 5000, 5000, 0, 0, 10_000)  # no answer changed: decided
    assert state.decision is not None and state.decision.verdict == QualityVerdict.NON_INFERIOR
    assert next_chunk(plan, state, 10_000) == 0
    with pytest.raises(ValueError, match="decided"):
        observe(plan, state, 1, 1, 0, 0, 10_000)
    with pytest.raises(ValueError, match="paired"):
        observe(plan, SequentialState(), 1, 2, 0, 0, 10_000)


def test_running_out_of_questions_ends_the_evaluation() -> None:
    plan = plan_sequential(0.01, 0.05)
    state = observe(plan, SequentialState(), 200, 200, 8, 8, 200)
    assert state.decision is not None
    assert state.decision.verdict == QualityVerdict.UNDECIDED and state.decision.stopped_early
    assert state.decision.information_fraction < 0.1


# The saving, by simulation with fixed seeds (the figures README quotes come from
# `python -m tests.loadgen.sequential_figures`, the same function with 4000 trials and seed 15).
SIM_TRIALS = 4000
SIM_SLACK = 2 * math.sqrt(ALPHA * (1 - ALPHA) / SIM_TRIALS)


@pytest.mark.parametrize("discordance", [0.02, 0.03, 0.05, 0.10])
def test_early_stopping_keeps_alpha_at_the_margin_across_discordances(discordance: float) -> None:
    plan = plan_sequential(0.01, 0.05)
    for prior in (None, discordance):
        figures = simulate(plan, discordance, -0.01, SIM_TRIALS, seed=15, expected_discordance=prior)
        assert figures.non_inferior <= ALPHA + SIM_SLACK, (prior, figures)


def test_alpha_is_kept_when_the_baseline_answered_too_few_questions() -> None:
    """Planned at 5% discordance, 10% true: the questions run out at about half the information."""
    plan = plan_sequential(0.01, 0.05)
    at_margin = simulate(plan, 0.10, -0.01, SIM_TRIALS, seed=15, budget=plan.max_questions)
    assert at_margin.non_inferior <= ALPHA + SIM_SLACK
    equal = simulate(plan, 0.10, 0.0, 1000, seed=15, budget=plan.max_questions)
    assert 0.3 < equal.non_inferior < 0.5  # underpowered, as a fixed design planned at 5% would be


def test_the_saving_against_the_fixed_design_a_user_would_plan() -> None:
    """A variant as accurate as the baseline at a 1-point margin, 80% power: expected questions against
    the fixed-sample design planned at the default 5% discordance and at a cautious 10%."""
    plan = plan_sequential(0.01, 0.05)
    fixed5, fixed10 = questions_needed(0.01, 0.05), questions_needed(0.01, 0.10)
    assert (fixed5, fixed10) == (3162, 6215)
    ratios: dict[float, float] = {}
    for discordance in (0.02, 0.03, 0.05, 0.10):
        figures = simulate(plan, discordance, 0.0, 2000, seed=15, expected_discordance=discordance)
        assert figures.non_inferior == pytest.approx(0.8, abs=0.03)
        ratios[discordance] = figures.mean_questions
    # A third or less of the cautious fixed design when 2-3% of answers change; not at 5% or 10%.
    assert ratios[0.02] / fixed10 < 0.2 and ratios[0.03] / fixed10 < 0.26
    assert 0.35 < ratios[0.05] / fixed10 < 0.42 and ratios[0.10] / fixed10 < 0.78
    # Against the default 5% plan: 0.35 when 2% change (a third would be 0.33), 0.75 when 5% do.
    assert ratios[0.02] / fixed5 < 0.37 and ratios[0.05] / fixed5 < 0.78
    # Without fidelity the first chunk aims at the first look from below, so a variant that changes 2% of
    # answers reaches every look (sized at the 5% plan, the first chunk held two looks' information and
    # the design needed 0.85x the fixed design at the true discordance, 1,189 questions).
    without = simulate(plan, 0.02, 0.0, 2000, seed=15)
    assert without.non_inferior == pytest.approx(0.8, abs=0.03)
    assert without.mean_questions / questions_needed(0.01, 0.02) < 0.82
    assert without.mean_questions / fixed5 < 0.37
