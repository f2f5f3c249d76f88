"""Statistics behind the comparison: pure functions, no I/O (standard library, and the probe's crossover
finder so that both crossovers are computed one way).

- `wilson_interval`: a binomial proportion's confidence interval that stays inside [0, 1] and behaves at
  small n and at accuracies near 0 or 1 (where the normal "p ± 1.96·se" interval does not).
- `mcnemar_exact`: the exact (binomial) McNemar test on paired outcomes, i.e. the same questions asked of
  the baseline and of a variant. Only the discordant questions (right on one side, wrong on the other)
  carry information about a difference.
- `mcnemar_power` / `minimum_detectable_difference`: how likely that test is to detect a given accuracy
  drop, and the smallest drop it detects with the wanted power, for a sample size and a discordance rate.
- `crossover_batch_size`: where a variant's throughput falls below or rises above the baseline's on a
  batch-size sweep.
- `bandwidth_floor_ms_per_token`: the time to read the weights once from GPU memory, the lower bound of a
  decode step at batch 1.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from quantbench.probe.crossover import Crossover, crossover_of_ratios

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / n`` (95% by default)."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class PairedCounts:
    """Outcomes of the same questions on two sides.

    ``only_a``: right on side A (the baseline), wrong on side B; ``only_b``: the reverse.
    """

    n: int
    both: int
    only_a: int
    only_b: int
    neither: int

    @property
    def discordant(self) -> int:
        return self.only_a + self.only_b

    @property
    def difference(self) -> float:
        """Accuracy of B minus accuracy of A, on the shared questions."""
        return (self.only_b - self.only_a) / self.n if self.n else 0.0


def paired_counts(a: Mapping[str, bool], b: Mapping[str, bool]) -> PairedCounts:
    """Cross-tabulate two per-question outcome maps on the questions both sides answered."""
    shared = sorted(set(a) & set(b))
    both = sum(1 for q in shared if a[q] and b[q])
    only_a = sum(1 for q in shared if a[q] and not b[q])
    only_b = sum(1 for q in shared if b[q] and not a[q])
    return PairedCounts(
        n=len(shared), both=both, only_a=only_a, only_b=only_b, neither=len(shared) - both - only_a - only_b
    )


def answer_digest(keys: Sequence[str]) -> str:
    """Identity of a question set: the first 16 hex digits of the SHA-256 of its sorted keys."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def pack_answers(correct: Mapping[str, bool]) -> tuple[str, str]:
    """(question-set digest, base64 bitmap of correctness in sorted-key order)."""
    keys = sorted(correct)
    bits = bytearray((len(keys) + 7) // 8)
    for i, key in enumerate(keys):
        if correct[key]:
            bits[i // 8] |= 1 << (i % 8)
    return answer_digest(keys), base64.b64encode(bytes(bits)).decode()


def unpack_answers(correct_bits: str, n: int) -> list[bool]:
    """The n correctness flags packed by `pack_answers`, in sorted-key order."""
    raw = base64.b64decode(correct_bits)
    if len(raw) * 8 < n:
        raise ValueError(f"answer bitmap holds {len(raw) * 8} bits, expected {n}")
    return [bool(raw[i // 8] >> (i % 8) & 1) for i in range(n)]


@lru_cache(maxsize=8)
def _log_factorials(n: int) -> tuple[float, ...]:
    return tuple(math.lgamma(i + 1) for i in range(n + 1))


def _log_binom_pmf(m: int, k: int, lp: float, lq: float, lf: Sequence[float]) -> float:
    return lf[m] - lf[k] - lf[m - k] + k * lp + (m - k) * lq


def _binom_pmf_row(m: int, p: float) -> list[float]:
    """P(X = k) for k = 0..m, X ~ Binomial(m, p), computed in log space (stable for large m)."""
    if p <= 0.0:
        return [1.0] + [0.0] * m
    if p >= 1.0:
        return [0.0] * m + [1.0]
    lp, lq, lf = math.log(p), math.log1p(-p), _log_factorials(m)
    return [math.exp(_log_binom_pmf(m, k, lp, lq, lf)) for k in range(m + 1)]


def _binom_tails(m: int, p: float, k: int) -> float:
    """P(X <= k) + P(X >= m - k) for X ~ Binomial(m, p) and 2k < m."""
    if p <= 0.0 or p >= 1.0:
        return 1.0
    lp, lq, lf = math.log(p), math.log1p(-p), _log_factorials(m)
    ks = [*range(k + 1), *range(m - k, m + 1)]
    return sum(math.exp(_log_binom_pmf(m, i, lp, lq, lf)) for i in ks)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: under "no difference" each discordant question is equally likely to
    favour either side, so the smaller count is Binomial(only_a + only_b, 1/2)."""
    if only_a < 0 or only_b < 0:
        raise ValueError("discordant counts must be >= 0")
    m = only_a + only_b
    if m == 0:
        return 1.0
    k = min(only_a, only_b)
    lh, lf = math.log(0.5), _log_factorials(m)
    tail = sum(math.exp(_log_binom_pmf(m, i, lh, lh, lf)) for i in range(k + 1))
    return min(1.0, 2.0 * tail)


@lru_cache(maxsize=64)
def _critical_counts(n_max: int, alpha: float) -> tuple[int, ...]:
    """For each number of discordant questions m = 0..n_max, the largest smaller-side count k whose exact
    two-sided p-value is <= alpha (-1 when no split of m discordant questions is significant)."""
    out: list[int] = []
    k = -1
    for m in range(n_max + 1):
        # More discordant questions with the same smaller count only lower the p-value, so the critical
        # count never decreases with m: continue from the previous one.
        while k + 1 <= m // 2 and mcnemar_exact(k + 1, m - k - 1) <= alpha:
            k += 1
        out.append(k)
    return tuple(out)


def mcnemar_power(n: int, discordance: float, difference: float, alpha: float = 0.05) -> float:
    """Probability that the exact McNemar test at ``alpha`` rejects "no difference" on ``n`` paired questions.

    The model: each question independently comes out discordant with probability ``discordance``
    (p01 + p10), and the true accuracy difference between the sides is ``difference`` (p10 - p01, either
    sign), so ``|difference| <= discordance``. Exact: sums over the binomial number of discordant questions.
    """
    if n <= 0:
        return 0.0
    if not 0.0 <= discordance <= 1.0:
        raise ValueError(f"discordance must be in [0, 1], got {discordance}")
    d = abs(difference)
    if d > discordance + 1e-12:
        raise ValueError(f"|difference| {d} cannot exceed the discordance {discordance}")
    if discordance == 0.0:
        return 0.0
    pi = min(1.0, 0.5 + d / (2.0 * discordance))  # share of discordant questions favouring the better side
    crit = _critical_counts(n, alpha)
    weights = _binom_pmf_row(n, discordance)
    power = 0.0
    for m in range(1, n + 1):
        k = crit[m]
        if k < 0 or weights[m] < 1e-13:
            continue
        power += weights[m] * _binom_tails(m, pi, k)
    return min(1.0, power)


def minimum_detectable_difference(
    n: int, discordance: float, power: float = 0.8, alpha: float = 0.05, tolerance: float = 1e-4
) -> float | None:
    """Smallest true accuracy difference that `mcnemar_power` detects with at least ``power``.

    The discordance of a real difference d is at least d, so the model uses max(discordance, d): with an
    observed discordance of zero this is the drop at which every changed answer changes the same way.
    Returns None when no difference up to 1.0 is detectable (tiny samples).
    """
    if n <= 0:
        return None

    def power_at(d: float) -> float:
        return mcnemar_power(n, max(discordance, d), d, alpha)

    if power_at(1.0) < power:
        return None
    lo, hi = 0.0, 1.0
    while hi - lo > tolerance:
        mid = (lo + hi) / 2
        if power_at(mid) >= power:
            hi = mid
        else:
            lo = mid
    return hi


def crossover_batch_size(baseline: Mapping[int, float], variant: Mapping[int, float]) -> Crossover | None:
    """Where the variant's throughput falls below or rises above the baseline's on a batch-size sweep (None:
    no batch size measured with positive throughput on both sides). The probe's model and arithmetic
    (``quantbench.probe.crossover``): a crossing ``stops_winning`` where the variant's throughput falls below
    the baseline's, ``starts_winning`` where it rises above it; the ratio variant / baseline is interpolated
    linearly in log2(batch size) (sweeps are usually geometric) between the measured sizes around it.
    """
    shared = sorted(b for b in set(baseline) & set(variant) if baseline[b] > 0 and variant[b] > 0)
    if not shared:
        return None
    return crossover_of_ratios(shared, [variant[b] / baseline[b] for b in shared], faster_below_one=False)


def bandwidth_floor_ms_per_token(weight_bytes: float, bandwidth_bytes_per_second: float) -> float:
    """Milliseconds to stream the weights once from memory: no batch-1 decode step can be faster."""
    if weight_bytes <= 0 or bandwidth_bytes_per_second <= 0:
        raise ValueError("weight bytes and memory bandwidth must both be > 0")
    return weight_bytes / bandwidth_bytes_per_second * 1000.0


def ratio(value: float | None, reference: float | None) -> float | None:
    """value / reference, or None when either is missing or the reference is zero."""
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return sum(values) / len(values)
