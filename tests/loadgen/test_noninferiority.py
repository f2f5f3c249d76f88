"""Non-inferiority: the score test, its exact small-sample form, power, and the group-sequential design,
checked by simulation with fixed seeds (and exactly where the sample is small enough to enumerate)."""

from __future__ import annotations

import math
import random

import pytest

from quantbench_loadgen.noninferiority import (
    QualityVerdict,
    _exact_table,
    assess,
    lower_bound,
    p_value,
    plan_sequential,
    power,
    questions_needed,
    score_statistic,
    sequential_decision,
    sequential_design,
    upper_bound,
)

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
    # Futility stops make a variant exactly at the margin cheap to reject as well.
    used_at_margin = sum(d.questions for d in at_margin) / TRIALS
    assert used_at_margin == pytest.approx(plan.expected_questions(0.0), rel=0.05)
    at_zero = [
        sequential_decision(plan, _stream(rng, plan.max_questions, *_rates(0.0))) for _ in range(TRIALS)
    ]
    shown = sum(d.verdict == QualityVerdict.NON_INFERIOR for d in at_zero) / TRIALS
    assert shown == pytest.approx(0.8, abs=2 * math.sqrt(0.16 / TRIALS) + 0.015)
    used = sum(d.questions for d in at_zero) / TRIALS
    assert used == pytest.approx(plan.expected_questions(1.0), rel=0.05)
    assert used < plan.fixed_questions
    assert any(d.stopped_early for d in at_zero)


def test_sequential_expected_questions_at_a_one_point_margin() -> None:
    """The figures the README quotes: a 1-point margin, 80% power, 5% discordance."""
    plan = plan_sequential(0.01, 0.05, alpha=ALPHA, power=0.8, looks=5)
    assert plan.fixed_questions == questions_needed(0.01, 0.05)
    ratio = plan.expected_questions(1.0) / plan.fixed_questions
    assert 0.75 < ratio < 0.9
    # A variant exactly at the margin mostly stops for futility; one twice as far from the margin as the
    # design assumes mostly stops early for non-inferiority.
    assert plan.expected_questions(0.0) / plan.fixed_questions < 0.7
    assert plan.expected_questions(2.0) / plan.fixed_questions < 0.6
