"""Non-inferiority of a variant's accuracy against the baseline's on the same questions (pure).

The question a team asks before serving a quantized model is not "is the accuracy drop significant?" but
"is the variant no worse than the baseline by more than a margin I choose?". With paired outcomes (the same
questions asked of both), let ``delta = accuracy(variant) - accuracy(baseline)`` and ``margin > 0``:

- H0 (inferior): ``delta <= -margin``; H1 (non-inferior): ``delta > -margin``.
- `score_test`: Tango's (1998) score test for a difference of paired proportions, one-sided at ``alpha``.
  Its variance is estimated under H0 (restricted maximum likelihood), which keeps the type I error near
  ``alpha`` even with few discordant questions. Below `EXACT_MAX_N` questions the p-value is exact instead:
  the largest tail probability of the score statistic over the nuisance parameter (an unconditional test,
  Suissa-Shuster style), computed from the trinomial distribution of (gained, lost, unchanged).
- `lower_bound`: the one-sided ``1 - alpha`` confidence bound of delta (the inverted score test), so
  "non-inferior" is the same statement as "the bound is above -margin".
- `power` / `questions_needed`: the fixed-sample design's power at a true ``delta`` and discordance (share
  of questions answered differently), and the questions that reach a wanted power.
- `SequentialDesign`: a group-sequential design with ``looks`` analyses equally spaced in *information*,
  Kim-DeMets power spending (``alpha * t**rho``, rho 2) for the non-inferiority boundary and beta spending
  for a non-binding futility boundary. The efficacy boundary is computed as if the futility boundary did
  not exist, so stopping for futility never raises the type I error above ``alpha``. Boundaries, the
  maximum information and expected sample sizes come from the recursive numerical integration of Armitage,
  McPherson and Rowe over the canonical joint distribution of the looks' statistics.
- `monitor` (`next_chunk` + `observe`): the design run on observed information (Lan-DeMets, Mehta and
  Tsiatis). The questions a paired comparison needs scale with the discordance (the share of questions the
  two answer differently), which nobody knows before asking; a fixed design must assume one. Here each look
  waits until ``n / restricted variance`` reaches its share of the design's information, so a variant that
  rarely changes an answer reaches its looks with few questions. An expected discordance (fidelity's greedy
  answer disagreement) only sizes the chunks. Chunks aim at the next look from below: without an expected
  discordance the first one assumes the least restricted variance possible at the margin (no answer
  changed), later ones the observed variance alone, and one that falls short is topped up (a 10th of a
  planned look). A look passed inside one chunk is a look lost: its chance to stop is spent on information
  that stopping there would not have needed (a first chunk sized at a 5% planning discordance holds two
  looks' information when 2% of answers change). Simulation with fixed seeds (`tests/loadgen/
  sequential_figures.py`) checks the error rate at the margin for discordances of 2-10%.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from statistics import NormalDist

_N = NormalDist()


class QualityVerdict(StrEnum):
    """The accuracy verdict of the non-inferiority test at a margin."""

    NON_INFERIOR = "NonInferior"  # the lower confidence bound of the difference is above -margin
    INFERIOR = "Inferior"  # the upper confidence bound of the difference is below -margin
    UNDECIDED = "Undecided"  # the interval contains -margin: more questions are needed


EXACT_MAX_N = 60  # below this many questions the p-value is the exact unconditional one
DEFAULT_MARGIN = 0.02  # two accuracy points: the usual tolerance for a quantized model on GSM8K-like tasks


def _check(n: int, gained: int, lost: int, margin: float) -> None:
    if n < 0 or gained < 0 or lost < 0 or gained + lost > n:
        raise ValueError(f"need 0 <= gained + lost <= n, got gained={gained}, lost={lost}, n={n}")
    if not 0.0 < margin < 1.0:
        raise ValueError(f"margin must be in (0, 1), got {margin}")


def _restricted_p01(n: float, gained: float, lost: float, d0: float) -> float:
    """Maximum-likelihood P(lost) when delta = d0 (Tango 1998): the root of 2n p^2 + B p + C = 0."""
    b = -(gained + lost) + d0 * (2 * n - gained + lost)
    c = -lost * d0 * (1 - d0)
    disc = max(0.0, b * b - 8 * n * c)
    return (-b + math.sqrt(disc)) / (4 * n)


def score_statistic(n: int, gained: int, lost: int, d0: float) -> float:
    """Tango's score statistic of H0: delta = d0; large values favour delta > d0.

    ``gained``: questions the variant answered right and the baseline wrong; ``lost``: the reverse.
    """
    if n == 0:
        return 0.0
    p01 = _restricted_p01(n, gained, lost, d0)
    var = n * (2 * p01 + d0 * (1 - d0))
    diff = gained - lost - n * d0
    if var <= 0:
        return math.copysign(math.inf, diff) if diff else 0.0
    return diff / math.sqrt(var)


def _log_trinomial(n: int, a: int, b: int, lf: Sequence[float], la: float, lb: float, lc: float) -> float:
    return lf[n] - lf[a] - lf[b] - lf[n - a - b] + a * la + b * lb + (n - a - b) * lc


_EXACT_GRID = 60  # nuisance values tried for the supremum


@lru_cache(maxsize=16)
def _exact_table(n: int, d0: float) -> tuple[list[float], list[list[float]]]:
    """Every outcome's score statistic, largest first, and for each nuisance value on a grid the running
    tail probability P(Z >= that statistic) under delta = d0."""
    lf = [math.lgamma(i + 1) for i in range(n + 1)]
    outcomes = sorted(
        ((score_statistic(n, a, b, d0), a, b) for a in range(n + 1) for b in range(n + 1 - a)),
        reverse=True,
    )
    low, high = max(0.0, -d0), min(1.0, (1 - d0) / 2)
    tails: list[list[float]] = []
    for i in range(_EXACT_GRID + 1):
        p01 = low + (high - low) * (i + 0.5) / (_EXACT_GRID + 1)
        p10 = p01 + d0
        rest = 1 - p01 - p10
        if p10 <= 0 or rest <= 0:
            continue
        la, lb, lc = math.log(p10), math.log(p01), math.log(rest)
        running, column = 0.0, []
        for _, a, b in outcomes:
            running += math.exp(_log_trinomial(n, a, b, lf, la, lb, lc))
            column.append(running)
        tails.append(column)
    return [z for z, _, _ in outcomes], tails


def _exact_p_value(n: int, gained: int, lost: int, d0: float) -> float:
    """sup over the nuisance P(lost) of P(Z >= z_observed) under delta = d0 (unconditional exact)."""
    zs, tails = _exact_table(n, d0)
    z_obs = score_statistic(n, gained, lost, d0) - 1e-9
    # zs is descending: count the outcomes at least as extreme as the observed one.
    lo, hi = 0, len(zs)
    while lo < hi:
        mid = (lo + hi) // 2
        if zs[mid] >= z_obs:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0:
        return 0.0
    return min(1.0, max(column[lo - 1] for column in tails))


def p_value(n: int, gained: int, lost: int, margin: float) -> float:
    """One-sided p-value of H0 "delta <= -margin" (small: the variant is non-inferior)."""
    _check(n, gained, lost, margin)
    if n == 0:
        return 1.0
    if n < EXACT_MAX_N:
        return _exact_p_value(n, gained, lost, -margin)
    return 1.0 - _N.cdf(score_statistic(n, gained, lost, -margin))


def _bound(n: int, gained: int, lost: int, z: float, upper: bool) -> float:
    """The d0 where the score statistic equals +z (lower bound) or -z (upper bound), by bisection."""
    target = -z if upper else z
    lo, hi = -0.999999, 0.999999
    for _ in range(60):
        mid = (lo + hi) / 2
        # The statistic decreases as d0 grows.
        if score_statistic(n, gained, lost, mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def lower_bound(n: int, gained: int, lost: int, alpha: float = 0.05) -> float:
    """One-sided 1 - alpha lower confidence bound of delta (inverted score test)."""
    if n == 0:
        return -1.0
    return _bound(n, gained, lost, _N.inv_cdf(1 - alpha), upper=False)


def upper_bound(n: int, gained: int, lost: int, alpha: float = 0.05) -> float:
    """One-sided 1 - alpha upper confidence bound of delta."""
    if n == 0:
        return 1.0
    return _bound(n, gained, lost, _N.inv_cdf(1 - alpha), upper=True)


@dataclass(frozen=True)
class NonInferiority:
    """The fixed-sample verdict on the questions asked."""

    verdict: QualityVerdict
    margin: float
    delta: float
    lower_bound: float  # one-sided 1 - alpha
    upper_bound: float  # one-sided 1 - alpha
    p_value: float  # of H0 "delta <= -margin"
    exact: bool  # the p-value is the exact unconditional one (small samples)


def assess(n: int, gained: int, lost: int, margin: float, alpha: float = 0.05) -> NonInferiority:
    """NonInferior when the test rejects "delta <= -margin"; Inferior when the upper bound is below -margin."""
    _check(n, gained, lost, margin)
    p = p_value(n, gained, lost, margin)
    low, high = lower_bound(n, gained, lost, alpha), upper_bound(n, gained, lost, alpha)
    if p < alpha:
        verdict = QualityVerdict.NON_INFERIOR
    elif n > 0 and high < -margin:
        verdict = QualityVerdict.INFERIOR
    else:
        verdict = QualityVerdict.UNDECIDED
    return NonInferiority(
        verdict=verdict,
        margin=margin,
        delta=(gained - lost) / n if n else 0.0,
        lower_bound=low,
        upper_bound=high,
        p_value=p,
        exact=0 < n < EXACT_MAX_N,
    )


# ----------------------------------------------------------------------------------- fixed-sample design


def _sigmas(margin: float, discordance: float, delta: float) -> tuple[float, float]:
    """(sd under H0's restricted fit, sd under the truth) of one question's contribution to gained - lost."""
    if not 0.0 <= discordance <= 1.0:
        raise ValueError(f"discordance must be in [0, 1], got {discordance}")
    if abs(delta) > discordance + 1e-12:
        raise ValueError(f"|delta| {abs(delta)} cannot exceed the discordance {discordance}")
    d0 = -margin
    p10, p01 = (discordance + delta) / 2, (discordance - delta) / 2
    p_tilde = _restricted_p01(1.0, p10, p01, d0)
    return math.sqrt(max(0.0, 2 * p_tilde + d0 * (1 - d0))), math.sqrt(max(0.0, discordance - delta**2))


def power(n: int, margin: float, discordance: float, delta: float = 0.0, alpha: float = 0.05) -> float:
    """Probability that n paired questions show non-inferiority when the true difference is ``delta`` and a
    share ``discordance`` of questions is answered differently (normal approximation of the score test)."""
    if n <= 0:
        return 0.0
    s0, s1 = _sigmas(margin, discordance, delta)
    shift = math.sqrt(n) * (delta + margin)
    z = _N.inv_cdf(1 - alpha)
    if s1 == 0:
        return 1.0 if shift > z * s0 else 0.0
    return _N.cdf((shift - z * s0) / s1)


def questions_needed(
    margin: float, discordance: float, delta: float = 0.0, alpha: float = 0.05, target: float = 0.8
) -> int:
    """Paired questions for the fixed-sample test to show non-inferiority with probability ``target``."""
    if delta <= -margin:
        raise ValueError("non-inferiority cannot be shown when the true difference is at or below -margin")
    s0, s1 = _sigmas(margin, discordance, delta)
    n = ((_N.inv_cdf(1 - alpha) * s0 + _N.inv_cdf(target) * s1) / (delta + margin)) ** 2
    return max(1, math.ceil(n))


# ------------------------------------------------------------------------------------- sequential design


DEFAULT_RHO = 2.0  # the power spending family's exponent: 3 is close to O'Brien-Fleming, 1 to Pocock
DEFAULT_LOOKS = 10


def _spent(level: float, t: float, rho: float) -> float:
    """Kim-DeMets power spending: the share ``level * t**rho`` of ``level`` spent by information fraction t.
    With 10 looks, rho 2 (alpha and beta alike) needs 0.73x the fixed design's information on average when
    the variant is as accurate as the baseline, at most 1.18x; O'Brien-Fleming spending needs 0.79x, 1.22x."""
    if t <= 0:
        return 0.0
    return level * min(1.0, t) ** rho


_GRID = 81  # points per look in the numerical integration (Simpson's rule)


def _simpson_weights(m: int) -> list[float]:
    w = [1.0] + [4.0 if i % 2 else 2.0 for i in range(1, m - 1)] + [1.0]
    return [x / 3 for x in w]


def _grid(lo: float, hi: float) -> tuple[list[float], list[float]]:
    h = (hi - lo) / (_GRID - 1)
    return [lo + i * h for i in range(_GRID)], [w * h for w in _simpson_weights(_GRID)]


@dataclass(frozen=True)
class _Look:
    """A look's sub-density on the continuation region, on the score scale S = Z * sqrt(t)."""

    points: list[float]
    density: list[float]  # times the Simpson weights, ready to integrate


def _first_look(t: float, drift: float, lo: float, hi: float) -> _Look:
    sd = math.sqrt(t)
    pts, w = _grid(lo * sd, hi * sd)
    dens = [wi * _N.pdf((s - drift * t) / sd) / sd for s, wi in zip(pts, w, strict=True)]
    return _Look(pts, dens)


def _tail_above(prev: _Look, dt: float, drift: float, level: float) -> float:
    """P(continued so far and S at the next look > level)."""
    sd = math.sqrt(dt)
    return sum(
        f * (1 - _N.cdf((level - s - drift * dt) / sd))
        for s, f in zip(prev.points, prev.density, strict=True)
    )


def _tail_below(prev: _Look, dt: float, drift: float, level: float) -> float:
    sd = math.sqrt(dt)
    return sum(
        f * _N.cdf((level - s - drift * dt) / sd) for s, f in zip(prev.points, prev.density, strict=True)
    )


def _next_look(prev: _Look, dt: float, drift: float, lo: float, hi: float) -> _Look:
    sd = math.sqrt(dt)
    pts, w = _grid(lo, hi)
    dens = []
    for s2, wi in zip(pts, w, strict=True):
        acc = 0.0
        for s, f in zip(prev.points, prev.density, strict=True):
            acc += f * math.exp(-0.5 * ((s2 - s - drift * dt) / sd) ** 2)
        dens.append(wi * acc / (sd * math.sqrt(2 * math.pi)))
    return _Look(pts, dens)


def _solve(f: Callable[[float], float], lo: float, hi: float, increasing: bool, iters: int = 50) -> float:
    """The x in [lo, hi] where the monotone function f crosses zero, by bisection."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        v = f(mid)
        if (v > 0) == increasing:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


_Z_CAP = 8.0  # boundaries beyond this many standard deviations are treated as "never stop"


@lru_cache(maxsize=32)
def _efficacy_bounds(looks: int, alpha: float, rho: float) -> tuple[float, ...]:
    """Z boundaries that spend alpha (power family) under delta = -margin, ignoring futility."""
    ts = [k / looks for k in range(1, looks + 1)]
    bounds: list[float] = []
    prev: _Look | None = None
    for k, t in enumerate(ts):
        want = _spent(alpha, t, rho) - _spent(alpha, ts[k - 1] if k else 0.0, rho)
        if prev is None:
            z = _N.inv_cdf(1 - want) if want > 1e-15 else _Z_CAP
        else:
            dt = t - ts[k - 1]
            look, dt, sd, spend = prev, t - ts[k - 1], math.sqrt(t), want

            def excess(
                u: float, look: _Look = look, dt: float = dt, sd: float = sd, spend: float = spend
            ) -> float:
                return _tail_above(look, dt, 0.0, u * sd) - spend

            z = _solve(excess, -2, _Z_CAP, False) if want > 1e-15 else _Z_CAP
        z = min(z, _Z_CAP)
        bounds.append(z)
        if k + 1 < looks:
            prev = (
                _first_look(t, 0.0, -_Z_CAP, z)
                if prev is None
                else _next_look(prev, t - ts[k - 1], 0.0, -_Z_CAP * math.sqrt(t), z * math.sqrt(t))
            )
    return tuple(bounds)


def _futility_run(
    looks: int, alpha: float, beta: float, drift: float, rho: float
) -> tuple[tuple[float, ...], float, list[float], list[float]]:
    """For a drift (expected Z at full information under the design alternative): the futility Z
    boundaries spending beta, the probability of ending below the last efficacy bound beyond the beta
    left for the last look, and the per-look probabilities of stopping (efficacy, futility)."""
    upper = _efficacy_bounds(looks, alpha, rho)
    ts = [k / looks for k in range(1, looks + 1)]
    lower: list[float] = []
    stop_hi: list[float] = []
    stop_lo: list[float] = []
    prev: _Look | None = None
    excess = 0.0
    for k, t in enumerate(ts):
        sd = math.sqrt(t)
        dt = t - (ts[k - 1] if k else 0.0)
        want = _spent(beta, t, rho) - _spent(beta, ts[k - 1] if k else 0.0, rho)
        u = upper[k]

        def below(z: float, prev: _Look | None = prev, sd: float = sd, dt: float = dt) -> float:
            if prev is None:
                return _N.cdf(z - drift * sd)
            return _tail_below(prev, dt, drift, z * sd)

        def above(z: float, prev: _Look | None = prev, sd: float = sd, dt: float = dt) -> float:
            if prev is None:
                return 1 - _N.cdf(z - drift * sd)
            return _tail_above(prev, dt, drift, z * sd)

        if k + 1 == looks:
            low = u
            excess = below(u) - want
        else:
            spend = want
            low = _solve(lambda z: below(z) - spend, -_Z_CAP, u, True) if want > 1e-15 else -_Z_CAP  # noqa: B023
            low = min(low, u)
        lower.append(low)
        stop_hi.append(above(u))
        stop_lo.append(below(low))
        if k + 1 < looks:
            prev = (
                _first_look(t, drift, low, u)
                if prev is None
                else _next_look(prev, dt, drift, low * sd, u * sd)
            )
    return tuple(lower), excess, stop_hi, stop_lo


@dataclass(frozen=True)
class SequentialDesign:
    """A group-sequential non-inferiority design on the Z scale of the score test.

    ``efficacy[k]``: stop at look k with NonInferior when Z >= it; ``futility[k]``: stop when Z <= it (the
    variant will not be shown non-inferior within the budget). ``inflation``: the maximum sample over the
    fixed-sample design's; ``drift``: expected Z at the maximum sample under the design alternative.
    """

    looks: int
    alpha: float
    power: float
    rho: float  # the power spending family's exponent
    efficacy: tuple[float, ...]
    futility: tuple[float, ...]
    drift: float
    inflation: float

    def fractions(self) -> list[float]:
        return [k / self.looks for k in range(1, self.looks + 1)]

    def expected_fraction(self, drift_fraction: float) -> float:
        """Expected share of the maximum sample used when the true effect is ``drift_fraction`` times the
        design alternative's (1.0: the design alternative; 0.0: exactly at the margin)."""
        hi, lo = self.stop_probabilities(drift_fraction)
        used, reached = 0.0, 1.0
        for k, t in enumerate(self.fractions()):
            stop = hi[k] + lo[k] if k + 1 < self.looks else reached
            used += t * stop
            reached -= stop
        return used

    def stop_probabilities(self, drift_fraction: float) -> tuple[list[float], list[float]]:
        """Per look, P(stop NonInferior) and P(stop for futility) at that effect size, with this design's
        boundaries."""
        return _stop_probabilities(self.looks, self.efficacy, self.futility, self.drift * drift_fraction)


@lru_cache(maxsize=128)
def _stop_probabilities(
    looks: int, upper: tuple[float, ...], lower: tuple[float, ...], drift: float
) -> tuple[list[float], list[float]]:
    """Per look, the probabilities of crossing the upper and the lower boundary first, at a drift."""
    ts = [k / looks for k in range(1, looks + 1)]
    hi: list[float] = []
    lo: list[float] = []
    prev: _Look | None = None
    for k, t in enumerate(ts):
        sd = math.sqrt(t)
        dt = t - (ts[k - 1] if k else 0.0)
        if prev is None:
            hi.append(1 - _N.cdf(upper[k] - drift * sd))
            lo.append(_N.cdf(lower[k] - drift * sd))
        else:
            hi.append(_tail_above(prev, dt, drift, upper[k] * sd))
            lo.append(_tail_below(prev, dt, drift, lower[k] * sd))
        if k + 1 < looks:
            prev = (
                _first_look(t, drift, lower[k], upper[k])
                if prev is None
                else _next_look(prev, dt, drift, lower[k] * sd, upper[k] * sd)
            )
    return hi, lo


@lru_cache(maxsize=32)
def sequential_design(
    looks: int = DEFAULT_LOOKS, alpha: float = 0.05, power: float = 0.8, rho: float = DEFAULT_RHO
) -> SequentialDesign:
    """The design with ``looks`` equally spaced analyses (in information): solve the drift at which the
    futility boundary meets the efficacy boundary at the last look (so the last look always decides)."""
    if not 1 <= looks <= 20:
        raise ValueError(f"looks must be in 1..20, got {looks}")
    if not 0 < alpha < 0.5 or not 0.5 < power < 1:
        raise ValueError("need 0 < alpha < 0.5 and 0.5 < power < 1")
    if not 0.5 <= rho <= 5:
        raise ValueError(f"the spending exponent rho must be in [0.5, 5], got {rho}")
    beta = 1 - power
    fixed = _N.inv_cdf(1 - alpha) + _N.inv_cdf(power)
    drift = _solve(lambda d: -_futility_run(looks, alpha, beta, d, rho)[1], fixed * 0.9, fixed * 1.6, True)
    futility, _, _, _ = _futility_run(looks, alpha, beta, drift, rho)
    return SequentialDesign(
        looks=looks,
        alpha=alpha,
        power=power,
        rho=rho,
        efficacy=_efficacy_bounds(looks, alpha, rho),
        futility=futility,
        drift=drift,
        inflation=(drift / fixed) ** 2,
    )


# ------------------------------------------------------------------------ monitoring on observed information


def _variance(n: float, gained: float, lost: float, margin: float) -> float:
    """Per-question variance of (gained - lost) under H0 at delta = -margin (Tango's restricted fit)."""
    d0 = -margin
    return max(2 * _restricted_p01(n, gained, lost, d0) + d0 * (1 - d0), 1e-12)


def information(n: int, gained: int, lost: int, margin: float) -> float:
    """The statistical information about delta that n paired questions carry: n over the restricted
    per-question variance, so that the score statistic is ``(delta_hat + margin) * sqrt(information)``.

    It grows with n at a rate set by the discordance (questions answered differently): at a 1-point margin
    a question carries about 1/0.02 when 2% of answers change and 1/0.10 when 10% do. A design that stops on
    information instead of on a question count therefore asks few questions of a variant that rarely
    changes an answer, without knowing that beforehand.
    """
    _check(n, gained, lost, margin)
    return n / _variance(n, gained, lost, margin) if n else 0.0


PRIOR_QUESTIONS = 20  # weight of an expected discordance (fidelity) in the chunk-size estimate, in questions
TOP_UP = 10  # a chunk is at least this fraction (1/TOP_UP) of a planned look's questions


@dataclass(frozen=True)
class SequentialPlan:
    """A design scaled to a margin: look k analyses the questions asked once the observed information
    reaches ``information_targets[k]``. ``look_sizes`` are where the looks fall (and ``max_questions`` the
    question budget) when the discordance is the planning one; with less discordance they come sooner."""

    design: SequentialDesign
    margin: float
    discordance: float  # the planning discordance: it sets the question budget
    fixed_questions: int  # the fixed-sample design's questions at the same alpha, power and assumptions
    max_information: float
    look_sizes: tuple[int, ...]

    @property
    def max_questions(self) -> int:
        return self.look_sizes[-1]

    @property
    def information_targets(self) -> tuple[float, ...]:
        return tuple(t * self.max_information for t in self.design.fractions())

    def expected_questions(self, drift_fraction: float = 1.0) -> float:
        """Expected questions when the discordance is the planning one (``drift_fraction``: the true
        effect over the design alternative's; 1.0: as accurate as the baseline, 0.0: at the margin)."""
        return self.max_questions * self.design.expected_fraction(drift_fraction)


def plan_sequential(
    margin: float,
    discordance: float,
    delta: float = 0.0,
    alpha: float = 0.05,
    power: float = 0.8,
    looks: int = DEFAULT_LOOKS,
    rho: float = DEFAULT_RHO,
) -> SequentialPlan:
    """The information each look waits for, for a margin and a design alternative ``delta``; the question
    counts at a planning discordance."""
    design = sequential_design(looks, alpha, power, rho)
    fixed = questions_needed(margin, discordance, delta, alpha, power)
    top = (design.drift / (delta + margin)) ** 2
    s0, _ = _sigmas(margin, discordance, delta)
    sizes = tuple(max(1, math.ceil(top * t * s0 * s0)) for t in design.fractions())
    return SequentialPlan(
        design=design,
        margin=margin,
        discordance=discordance,
        fixed_questions=fixed,
        max_information=top,
        look_sizes=sizes,
    )


@dataclass(frozen=True)
class SequentialDecision:
    verdict: QualityVerdict
    look: int  # 1-based look at which the decision was taken (the last one reached otherwise)
    questions: int  # paired questions used
    stopped_early: bool  # before the design's full information
    z: float
    information_fraction: float  # observed information over the design's maximum


@dataclass(frozen=True)
class SequentialState:
    """Where a monitored evaluation stands: questions offered (``asked``), paired outcomes counted, looks
    taken, and the decision once there is one."""

    asked: int = 0
    questions: int = 0
    gained: int = 0
    lost: int = 0
    looks_done: int = 0
    decision: SequentialDecision | None = None


def next_chunk(
    plan: SequentialPlan, state: SequentialState, budget: int, expected_discordance: float | None = None
) -> int:
    """How many more questions to ask before the next analysis (0: decided or out of questions).

    The chunk aims at the next look's information from below. With ``expected_discordance`` (a fidelity
    measurement's greedy answer disagreement) the variance is the observed one pulled towards it with a
    weight of `PRIOR_QUESTIONS` questions. Without it the first chunk assumes the least restricted variance
    possible at the margin (``margin * (1 - margin)``: no answer changed), so it never passes the first look
    however few answers the variant changes, and later chunks use the observed variance alone. A chunk that
    falls short of its look is followed by one of at least a `TOP_UP`-th of a planned look. Only when the
    looks fall depends on this: the boundaries are on information, so a poor estimate costs questions (an
    overshoot) or analyses (a shortfall), never error rate.
    """
    if state.decision is not None or state.asked >= budget:
        return 0
    if expected_discordance is not None:
        half = min(1.0, max(0.0, expected_discordance)) * PRIOR_QUESTIONS / 2
        var = _variance(
            state.questions + PRIOR_QUESTIONS, state.gained + half, state.lost + half, plan.margin
        )
    elif state.questions == 0:
        var = plan.margin * (1 - plan.margin)
    else:
        var = _variance(state.questions, state.gained, state.lost, plan.margin)
    need = math.ceil(plan.information_targets[state.looks_done] * var) - state.questions
    scale = min(budget, plan.max_questions) / plan.design.looks  # a planned look's questions
    return min(budget - state.asked, math.ceil(scale), max(need, math.ceil(scale / TOP_UP), 1))


def _ended(
    plan: SequentialPlan, n: int, gained: int, lost: int, look: int, z: float, info: float, alpha: float
) -> SequentialDecision:
    """No "non-inferior" crossing: Inferior when the fixed-sample upper bound is below -margin."""
    high = upper_bound(n, gained, lost, alpha)
    verdict = QualityVerdict.INFERIOR if high < -plan.margin else QualityVerdict.UNDECIDED
    fraction = info / plan.max_information
    return SequentialDecision(verdict, look, n, fraction < 1.0, z, fraction)


def observe(
    plan: SequentialPlan,
    state: SequentialState,
    asked: int,
    paired: int,
    gained: int,
    lost: int,
    budget: int,
    alpha: float | None = None,
) -> SequentialState:
    """Add a chunk (``asked`` questions offered, ``paired`` answered by both, of which the variant alone
    got ``gained`` right and the baseline alone ``lost``) and take the analyses it reaches.

    Look k is taken at the first chunk after which the information reaches its target (looks passed in
    one chunk are skipped: that only spends less alpha). NonInferior when Z >= the look's efficacy bound;
    a futility crossing or the last look ends it Inferior or Undecided; so does, after any chunk, a Z at
    or below minus the next look's efficacy bound. When the questions run out between looks, one last
    analysis uses the next look's bound.
    """
    if state.decision is not None:
        raise ValueError("the evaluation is already decided")
    if asked < 0 or paired < 0 or paired > asked:
        raise ValueError(f"need 0 <= paired <= asked, got paired={paired}, asked={asked}")
    a = plan.design.alpha if alpha is None else alpha
    n, g, lo = state.questions + paired, state.gained + gained, state.lost + lost
    _check(n, g, lo, plan.margin)
    info = information(n, g, lo, plan.margin)
    reached = sum(1 for t in plan.information_targets if info >= t)
    z = score_statistic(n, g, lo, -plan.margin)
    design = plan.design
    decision: SequentialDecision | None = None
    looked = reached > state.looks_done
    if looked:
        k = reached - 1
        if z >= design.efficacy[k]:
            fraction = info / plan.max_information
            decision = SequentialDecision(
                QualityVerdict.NON_INFERIOR, reached, n, fraction < 1.0, z, fraction
            )
        elif z <= design.futility[k] or reached == design.looks:
            decision = _ended(plan, n, g, lo, reached, z, info, a)
    done = max(reached, state.looks_done)
    if decision is None and done < design.looks and z <= -design.efficacy[done]:
        # Clearly below the margin between looks (a variant that changes many answers gathers information
        # slowly): stopping without a "non-inferior" claim cannot raise the error rate.
        decision = _ended(plan, n, g, lo, done, z, info, a)
    if decision is None and state.asked + asked >= budget:
        if not looked and n > 0 and z >= design.efficacy[done]:
            fraction = info / plan.max_information
            decision = SequentialDecision(QualityVerdict.NON_INFERIOR, done + 1, n, True, z, fraction)
        else:
            decision = _ended(plan, n, g, lo, done, z, info, a)
    return SequentialState(state.asked + asked, n, g, lo, done, decision)


def monitor(
    plan: SequentialPlan,
    budget: int,
    ask: Callable[[int, int], tuple[int, int, int]],
    expected_discordance: float | None = None,
) -> SequentialDecision:
    """Run the design: ``ask(first, count)`` asks the questions ``first .. first + count - 1`` (in the
    baseline's order) and returns (paired, gained, lost) among them; chunks follow `next_chunk` until a
    look decides or the ``budget`` of questions is spent."""
    state = SequentialState()
    while (chunk := next_chunk(plan, state, budget, expected_discordance)) > 0:
        paired, gained, lost = ask(state.asked, chunk)
        state = observe(plan, state, chunk, paired, gained, lost, budget)
    if state.decision is None:  # no question to ask at all
        return SequentialDecision(QualityVerdict.UNDECIDED, 0, 0, False, 0.0, 0.0)
    return state.decision


def sequential_decision(
    plan: SequentialPlan,
    outcomes: Sequence[tuple[bool, bool]],
    expected_discordance: float | None = None,
) -> SequentialDecision:
    """The design applied to paired (baseline right, variant right) outcomes in the order they are asked,
    with every outcome available (the budget)."""

    def ask(first: int, count: int) -> tuple[int, int, int]:
        return paired_counts(outcomes[first : first + count])

    return monitor(plan, len(outcomes), ask, expected_discordance)


def paired_counts(outcomes: Sequence[tuple[bool, bool]]) -> tuple[int, int, int]:
    """(paired, gained, lost) of paired (baseline right, variant right) outcomes: how many pairs, in how many
    the variant alone was right, in how many the baseline alone was: what `observe` takes for a chunk."""
    gained = sum(1 for base, var in outcomes if var and not base)
    lost = sum(1 for base, var in outcomes if base and not var)
    return len(outcomes), gained, lost
