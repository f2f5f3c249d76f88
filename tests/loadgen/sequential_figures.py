"""The sequential design's saving, by simulation with fixed seeds. Run: ``make bench-sequential``.

Prints, for a 1-point margin, 80% power and a 5% one-sided error rate, the expected questions the
sequential design (`quantbench_loadgen.noninferiority.monitor`, the same code the accuracy runner stops
with) asks of a variant, and how often it calls a variant non-inferior, for true discordances 2-10% and a
true difference of 0 (as accurate as the baseline) or exactly -margin (where the error rate is pinned);
against the fixed-sample design a user plans without knowing the discordance (at the default planning
discordance 5%, and at a cautious 10%). `tests/loadgen/test_noninferiority.py` pins these figures. Then
the GPU time with screening (`quantbench_loadgen.accuracy.screening`) relative to the fixed design, by the
share of questions the variant answers exactly as the baseline did, at the measured cost of a screen.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from quantbench_loadgen.noninferiority import (
    QualityVerdict,
    SequentialPlan,
    monitor,
    plan_sequential,
    questions_needed,
)

MARGIN = 0.01
# What screening a question costs, in generations of its answer (one prefill of prompt + the baseline's
# response, and a few greedy tokens, against generating the answer), measured on the vLLM CPU server with
# prefix caching off (`make bench-screening`): SmolLM2-135M-Instruct, 8-shot GSM8K prompts, 54-token answers
# (the prompt's prefill dominates both); the tiny model's 256-token answers (the cap) make decoding dominate.
SCREEN_COSTS = {"SmolLM2, 54-token answers": 0.94, "tiny model, 256-token answers": 0.42}
IDENTICAL_SHARES = (0.0, 0.5, 0.7, 0.9)
DISCORDANCES = (0.02, 0.03, 0.05, 0.10)
PLANNED_AT = (0.05, 0.10)


def binomial(rng: random.Random, n: int, p: float) -> int:
    """Successes in n Bernoulli(p) trials, by geometric jumps between successes (n p + 1 draws)."""
    if p <= 0.0 or n <= 0:
        return 0
    if p >= 1.0:
        return n
    log_q = math.log(1.0 - p)
    count, position = 0, -1
    while True:
        position += 1 + int(math.log(1.0 - rng.random()) / log_q)
        if position >= n:
            return count
        count += 1


@dataclass(frozen=True)
class Figures:
    non_inferior: float  # share of trials that ended NonInferior
    mean_questions: float
    max_questions: int  # the most questions any trial asked
    early: float  # share of trials stopped before the design's full information


def simulate(
    plan: SequentialPlan,
    discordance: float,
    delta: float,
    trials: int,
    seed: int,
    budget: int | None = None,
    expected_discordance: float | None = None,
) -> Figures:
    """``trials`` sequential evaluations of a variant whose answers differ from the baseline's on a share
    ``discordance`` of questions, with true accuracy difference ``delta``; ``budget``: the questions the
    baseline answered (None: as many as needed)."""
    p_gain, p_loss = (discordance + delta) / 2, (discordance - delta) / 2
    if p_gain < 0 or p_loss < 0:
        raise ValueError(f"|delta| {abs(delta)} cannot exceed the discordance {discordance}")
    rng = random.Random(seed)

    def ask(first: int, count: int) -> tuple[int, int, int]:
        discordant = binomial(rng, count, p_gain + p_loss)
        gained = binomial(rng, discordant, p_gain / (p_gain + p_loss)) if discordant else 0
        return count, gained, discordant - gained

    decisions = [
        monitor(plan, budget if budget is not None else 10**9, ask, expected_discordance)
        for _ in range(trials)
    ]
    return Figures(
        non_inferior=sum(d.verdict == QualityVerdict.NON_INFERIOR for d in decisions) / trials,
        mean_questions=sum(d.questions for d in decisions) / trials,
        max_questions=max(d.questions for d in decisions),
        early=sum(d.stopped_early for d in decisions) / trials,
    )


def gpu_time(mean_questions: float, identical: float, screen_cost: float) -> float:
    """GPU time of a sequential evaluation with screening, in generations: every question asked is screened
    (``screen_cost``), and the share ``identical`` of them that the variant answers exactly as the baseline
    did is not generated."""
    if not 0.0 <= identical <= 1.0:
        raise ValueError(f"the share of identical answers {identical} must be within [0, 1]")
    return mean_questions * (screen_cost + 1.0 - identical)


def print_gpu_time(plan: SequentialPlan, trials: int, fixed: int) -> None:
    """Expected GPU time relative to the fixed-sample design (planned at 5% discordance), with screening, by
    the share of questions the variant answers exactly as the baseline did (at most 1 - discordance)."""
    means = {d: simulate(plan, d, 0.0, trials, seed=15).mean_questions for d in DISCORDANCES}
    for label, cost in SCREEN_COSTS.items():
        print(
            f"\nGPU time with screening over the fixed-sample design at 5% ({fixed} generations), variant as "
            f"accurate as the baseline; a screen costs {cost:.2f} generations ({label})"
        )
        print(
            f"{'discordance':>11} {'no screen':>9} "
            + " ".join(f"{format(s, '.0%') + ' same':>9}" for s in IDENTICAL_SHARES)
        )
        for d, mean in means.items():
            cells = [
                f"{gpu_time(mean, s, cost) / fixed:>9.2f}" if s <= 1.0 - d else f"{'-':>9}"
                for s in IDENTICAL_SHARES
            ]
            print(f"{d:>11.0%} {mean / fixed:>9.2f} " + " ".join(cells))


def main() -> None:
    trials = 4000
    plan = plan_sequential(MARGIN, PLANNED_AT[0])
    fixed = {d: questions_needed(MARGIN, d) for d in (*DISCORDANCES, *PLANNED_AT)}
    print(
        f"1-point margin, 80% power, 5% one-sided; {plan.design.looks} looks, power spending rho "
        f"{plan.design.rho}; {trials} trials per row (seeded)"
    )
    print("fixed-sample design: " + ", ".join(f"{fixed[d]} questions at {d:.0%} discordance" for d in fixed))
    print(
        f"{'discordance':>11} {'delta':>6} {'fidelity':>8} {'P(NonInferior)':>14} {'E[questions]':>12} "
        f"{'max':>6} "
        + " ".join(f"{'/fixed@' + format(p, '.0%'):>11}" for p in PLANNED_AT)
        + f" {'/fixed@true':>11}"
    )
    for d in DISCORDANCES:
        for delta in (0.0, -MARGIN):
            for prior in (None, d):
                f = simulate(plan, d, delta, trials, seed=15, expected_discordance=prior)
                print(
                    f"{d:>11.0%} {delta * 100:>+6.0f} {'yes' if prior is not None else 'no':>8} "
                    f"{f.non_inferior:>14.2%} {f.mean_questions:>12.0f} {f.max_questions:>6} "
                    + " ".join(f"{f.mean_questions / fixed[p]:>11.2f}" for p in PLANNED_AT)
                    + f" {f.mean_questions / fixed[d]:>11.2f}"
                )
    print_gpu_time(plan, trials, fixed[PLANNED_AT[0]])


if __name__ == "__main__":
    main()
