"""Confidence intervals of repeated measurements and of their ratios to the baseline (pure, standard library).

Speed figures (ms/token, tokens/s, TTFT) are positive and their run-to-run noise is multiplicative, so every
interval is computed on the log scale and reported back on the original one:

- `figure_interval`: the interval of a figure's (geometric) mean over repetitions.
- `ratio_interval`: the interval of variant / baseline. With few repetitions (fewer than
  `BOOTSTRAP_MIN_REPETITIONS` on a side) it is Welch's t interval of the difference of mean logs, which is
  exact under log-normal noise; with more, a studentized bootstrap over repetitions (each side resampled on
  its own: repetition i of the baseline and of the variant share prompts and seed, not noise), which needs
  no distributional assumption. A bootstrap over three to five repetitions has too few distinct resamples
  to reach its nominal coverage, which is why it is not used there.
- "Equal" means the ratio's interval contains 1 (`verdict_of_ratio`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

CONFIDENCE = 0.95
BOOTSTRAP_MIN_REPETITIONS = 10
BOOTSTRAP_RESAMPLES = 2000


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2.0, 0.5, x)
    return 1.0 - tail if t > 0 else tail


@lru_cache(maxsize=256)
def t_quantile(p: float, df: float) -> float:
    """Student's t quantile, by bisection on `t_cdf`."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    lo, hi = -1e3, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10:
            break
    return (lo + hi) / 2


def _logs(values: Sequence[float]) -> list[float]:
    if any(v <= 0 or not math.isfinite(v) for v in values):
        raise ValueError(f"figures must be positive and finite, got {list(values)}")
    return [math.log(v) for v in values]


def _mean_var(xs: Sequence[float]) -> tuple[float, float]:
    m = math.fsum(xs) / len(xs)
    return m, math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1)


@dataclass(frozen=True)
class Estimate:
    value: float  # geometric mean (figure) or ratio of geometric means (ratio)
    low: float
    high: float
    method: str  # "t" (log scale) or "bootstrap"


def figure_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Estimate | None:
    """The figure's geometric mean over repetitions with its t interval; None below two repetitions."""
    if len(values) < 2:
        return None
    logs = _logs(values)
    m, v = _mean_var(logs)
    half = t_quantile(0.5 + confidence / 2, len(logs) - 1) * math.sqrt(v / len(logs))
    return Estimate(math.exp(m), math.exp(m - half), math.exp(m + half), "t")


def _welch(base: list[float], var: list[float], confidence: float) -> Estimate:
    mb, vb = _mean_var(base)
    mv, vv = _mean_var(var)
    sb, sv = vb / len(base), vv / len(var)
    se2 = sb + sv
    d = mv - mb
    if se2 == 0:
        return Estimate(math.exp(d), math.exp(d), math.exp(d), "t")
    df = se2**2 / (sb**2 / (len(base) - 1) + sv**2 / (len(var) - 1))
    half = t_quantile(0.5 + confidence / 2, df) * math.sqrt(se2)
    return Estimate(math.exp(d), math.exp(d - half), math.exp(d + half), "t")


def _bootstrap(base: list[float], var: list[float], confidence: float, resamples: int, seed: int) -> Estimate:
    """Studentized (bootstrap-t) interval of the difference of mean logs: the percentile bootstrap covers
    too little at ten to thirty repetitions, the studentized one does not."""
    rng = random.Random(seed)
    nb, nv = len(base), len(var)
    mb, vb = _mean_var(base)
    mv, vv = _mean_var(var)
    point, se = mv - mb, math.sqrt(vb / nb + vv / nv)
    if se == 0:
        return Estimate(math.exp(point), math.exp(point), math.exp(point), "bootstrap")
    ts = []
    # Centred logs keep the one-pass variance below accurate.
    cb, cv = [x - mb for x in base], [x - mv for x in var]
    for _ in range(resamples):
        sb, sv = rng.choices(cb, k=nb), rng.choices(cv, k=nv)
        tb, tv = sum(sb), sum(sv)
        vb2 = (sum(x * x for x in sb) - tb * tb / nb) / (nb - 1)
        vv2 = (sum(x * x for x in sv) - tv * tv / nv) / (nv - 1)
        se2 = math.sqrt(max(0.0, vb2) / nb + max(0.0, vv2) / nv)
        if se2 > 0:
            ts.append((tv / nv - tb / nb) / se2)
    ts.sort()
    tail = (1 - confidence) / 2
    k = len(ts)
    t_low = ts[max(0, math.floor(tail * k))]
    t_high = ts[min(k - 1, math.ceil((1 - tail) * k) - 1)]
    return Estimate(math.exp(point), math.exp(point - t_high * se), math.exp(point - t_low * se), "bootstrap")


def ratio_interval(
    base: Sequence[float],
    variant: Sequence[float],
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Estimate | None:
    """variant / baseline with its interval, from each side's repetitions; None below two on a side."""
    if len(base) < 2 or len(variant) < 2:
        return None
    lb, lv = _logs(base), _logs(variant)
    if min(len(lb), len(lv)) >= BOOTSTRAP_MIN_REPETITIONS:
        return _bootstrap(lb, lv, confidence, resamples, seed)
    return _welch(lb, lv, confidence)


class Comparison(StrEnum):
    HIGHER = "higher"
    LOWER = "lower"
    EQUAL = "equal"


def verdict_of_ratio(estimate: Estimate) -> Comparison:
    """Equal when the interval contains 1; else higher or lower."""
    if estimate.low > 1.0:
        return Comparison.HIGHER
    if estimate.high < 1.0:
        return Comparison.LOWER
    return Comparison.EQUAL
