"""Regressions between two runs of one QuantBenchmark, and what changed between them. Pure functions.

Every figure a summary holds is compared variant by variant: decode ms/token at batch 1 (latency), output
tokens/s per batch size (throughput), TTFT and ITL median and p99 per request rate (ttft, itl), serving output
tokens/s and goodput per rate (capacity), and accuracy. A performance figure regresses when it is worse by
more than its family's relative tolerance *and* the change is not noise: where both runs carry an interval
for the figure (repeated measurements), overlapping intervals mean noise. Accuracy regresses when it drops by
more than its tolerance (points) and the drop is significant: the exact McNemar test on the same questions
when both runs answered the same set, else the runs' Wilson intervals must not overlap.

Comparisons read `RunSummary` objects only (not the status layout they are stored in).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from quantbench.analysis.stats import mcnemar_exact, unpack_answers
from quantbench.api.summary import AccuracySummary, Interval, RunSummary, VariantSummary
from quantbench.api.v1alpha1 import (
    Phase,
    Regression,
    RunProvenance,
    RunRecord,
    Tolerances,
    VariantPhase,
)

COMPARABLE_PHASES = (Phase.SUCCEEDED, Phase.PARTIALLY_SUCCEEDED)


@dataclass(frozen=True)
class Figure:
    family: str
    metric: str
    at: str | None
    value: float
    higher_is_better: bool
    unit: str
    interval: Interval | None = None


def figures(v: VariantSummary) -> Iterator[Figure]:
    """Every performance figure of a variant's summary row."""
    if v.ms_per_token_bs1 is not None:
        yield Figure("latency", "msPerTokenBs1", "batch 1", v.ms_per_token_bs1, False, "ms/token")
    for t in v.throughput:
        yield Figure(
            "throughput",
            "outputTokensPerSecond",
            f"batch {t.batch_size}",
            t.output_tokens_per_second,
            True,
            "tokens/s",
            t.interval95,
        )
    for s in v.serving:
        at = f"rate {s.request_rate}" + (f" of {s.workload}" if s.workload else "")
        for family, metric, value, higher, unit in (
            ("ttft", "ttftMedianMs", s.ttft_median_ms, False, "ms"),
            ("ttft", "ttftP99Ms", s.ttft_p99_ms, False, "ms"),
            ("itl", "itlMedianMs", s.itl_median_ms, False, "ms"),
            ("itl", "itlP99Ms", s.itl_p99_ms, False, "ms"),
            ("capacity", "outputTokensPerSecond", s.output_tokens_per_second, True, "tokens/s"),
            ("capacity", "goodputRequestsPerSecond", s.goodput_requests_per_second, True, "requests/s"),
        ):
            if value is not None:
                yield Figure(family, metric, at, value, higher, unit)


def _tolerance(tolerances: Tolerances, family: str) -> float:
    value: float = getattr(tolerances, family)
    return value


def _overlap(a: Interval | None, b: Interval | None) -> bool:
    return a is not None and b is not None and a.low <= b.high and b.low <= a.high


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _performance(
    before: VariantSummary, after: VariantSummary, tolerances: Tolerances, reference: str
) -> list[Regression]:
    old = {(f.metric, f.at): f for f in figures(before)}
    out: list[Regression] = []
    for new in figures(after):
        prev = old.get((new.metric, new.at))
        if prev is None or prev.value <= 0:
            continue
        change = (new.value - prev.value) / prev.value
        worse = -change if new.higher_is_better else change
        if worse <= _tolerance(tolerances, new.family) or _overlap(prev.interval, new.interval):
            continue
        direction = "fell" if new.higher_is_better else "rose"
        out.append(
            Regression(
                variant=after.variant,
                family=new.family,
                metric=new.metric,
                at=new.at,
                before=prev.value,
                after=new.value,
                change=change,
                reference_run=reference,
                message=f"{after.variant}: {new.metric} at {new.at} {direction} {abs(change):.0%}: "
                f"{_fmt(prev.value)} -> {_fmt(new.value)} {new.unit}",
            )
        )
    return out


def _paired(before: AccuracySummary, after: AccuracySummary) -> tuple[int, int] | None:
    """(questions only the reference run got right, only this run got right) on the same question set."""
    a, b = before.answers, after.answers
    if (
        a is None
        or b is None
        or a.questions_digest != b.questions_digest
        or before.questions != after.questions
    ):
        return None
    old = unpack_answers(a.correct_bits, before.questions)
    new = unpack_answers(b.correct_bits, after.questions)
    return sum(o and not n for o, n in zip(old, new, strict=True)), sum(
        n and not o for o, n in zip(old, new, strict=True)
    )


def _accuracy(
    before: AccuracySummary, after: AccuracySummary, variant: str, tolerances: Tolerances, reference: str
) -> Regression | None:
    if before.task != after.task:
        return None
    drop = before.accuracy - after.accuracy
    if drop <= tolerances.accuracy:
        return None
    counts = _paired(before, after)
    if counts is not None:
        p = mcnemar_exact(*counts)
        if p > tolerances.alpha:
            return None
        how = f"paired on the same {after.questions} questions: {counts[0]} now wrong, {counts[1]} now right, p={p:.3g}"
    else:
        p = None
        if _overlap(before.interval95, after.interval95):
            return None
        how = "unpaired (different questions): the 95% intervals do not overlap"
    return Regression(
        variant=variant,
        family="accuracy",
        metric="accuracy",
        at=after.task,
        before=before.accuracy,
        after=after.accuracy,
        change=-drop,
        p_value=p,
        reference_run=reference,
        message=f"{variant}: {after.task} accuracy fell {drop * 100:.1f} points: "
        f"{before.accuracy:.1%} -> {after.accuracy:.1%} ({how})",
    )


def compare(
    before: RunSummary, after: RunSummary, tolerances: Tolerances, reference: str
) -> list[Regression]:
    """Every figure of ``after`` that regressed against ``before`` (run ``reference``)."""
    old = {v.variant: v for v in before.variants}
    out: list[Regression] = []
    for v in after.variants:
        prev = old.get(v.variant)
        if prev is None:
            continue
        if prev.phase == VariantPhase.SUCCEEDED and v.phase != VariantPhase.SUCCEEDED:
            out.append(
                Regression(
                    variant=v.variant,
                    family="outcome",
                    metric="phase",
                    before=1,
                    after=0,
                    change=-1,
                    reference_run=reference,
                    message=f"{v.variant}: {prev.phase} -> {v.phase}",
                )
            )
            continue
        out += _performance(prev, v, tolerances, reference)
        if prev.accuracy is not None and v.accuracy is not None:
            found = _accuracy(prev.accuracy, v.accuracy, v.variant, tolerances, reference)
            if found is not None:
                out.append(found)
    return out


# ------------------------------------------------------------------------------------------ what changed

_FIELDS: tuple[tuple[str, str], ...] = (
    ("image", "image"),
    ("image_digest", "image digest"),
    ("vllm_version", "vLLM"),
    ("model", "model"),
    ("revision", "revision"),
    ("gpu", "GPU"),
    ("gpu_driver", "driver"),
)


def _short(field: str, value: str | None) -> str:
    if value is None:
        return "unknown"
    if field == "image_digest" and ":" in value:
        algo, digest = value.rsplit("@", 1)[-1].split(":", 1)
        return f"{algo}:{digest[:12]}"
    return value


def changes(before: RunProvenance | None, after: RunProvenance | None, variant: str) -> list[str]:
    """What differs between two runs for one variant, in words: 'vLLM 0.11.0 -> 0.11.1', ..."""
    if before is None or after is None:
        return []
    out: list[str] = []
    old = next((p for p in before.variants if p.variant == variant), None)
    new = next((p for p in after.variants if p.variant == variant), None)
    if old is not None and new is not None:
        for field, label in _FIELDS:
            a, b = getattr(old, field), getattr(new, field)
            if a != b and not (a is None and field in ("image_digest", "vllm_version", "gpu_driver")):
                out.append(f"{label} {_short(field, a)} -> {_short(field, b)}")
    if before.quantbench_version != after.quantbench_version:
        out.append(f"QuantBench {before.quantbench_version} -> {after.quantbench_version}")
    if before.generation != after.generation:
        out.append(f"spec generation {before.generation} -> {after.generation}")
    return out


def with_changes(
    found: Sequence[Regression], before: RunProvenance | None, after: RunProvenance | None
) -> list[Regression]:
    """The regressions, each with what changed for its variant between the two runs."""
    out = []
    for r in found:
        what = changes(before, after, r.variant)
        out.append(r.model_copy(update={"changed": what}))
    return out


def reference_run(history: Sequence[RunRecord], pinned: str | None) -> RunRecord | None:
    """The run to compare with: the pinned one when set (and kept), else the latest successful finished run."""
    if pinned is not None:
        return next((h for h in history if h.id == pinned and h.summary is not None), None)
    return next((h for h in history if h.phase in COMPARABLE_PHASES and h.summary is not None), None)


def condition_message(found: Sequence[Regression], run: str, limit: int = 2000) -> str:
    """The Regressed condition's message: the regressions of each variant, then what changed for it."""
    if not found:
        return f"run {run}: no figure regressed"
    reference = found[0].reference_run
    parts = []
    for variant in dict.fromkeys(r.variant for r in found):
        mine = [r for r in found if r.variant == variant]
        changed = mine[0].changed
        what = f" (changed: {', '.join(changed)})" if changed else " (nothing recorded changed)"
        parts.append("; ".join(r.message for r in mine) + what)
    text = f"run {run} vs {reference}: " + "; ".join(parts)
    return text if len(text) <= limit else text[: limit - 3] + "..."
