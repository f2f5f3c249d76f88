"""The report's words and table cells, shared by the Markdown and HTML renderers (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from quantbench.analysis.summary import format_gib
from quantbench.api.summary import (
    AccuracySummary,
    Interval,
    QualityVerdict,
    RunSummary,
    VariantSummary,
    Verdict,
)

VERDICT_TITLES: dict[str, str] = {
    Verdict.BASELINE: "baseline",
    Verdict.FREE_SPEEDUP: "free speedup",
    Verdict.SPEEDUP_BUT_INFERIOR: "speedup, accuracy inferior",
    Verdict.LATENCY_WIN_LOSES_UNDER_LOAD: "latency win, loses under load",
    Verdict.MEMORY_WIN_ONLY: "memory win only",
    Verdict.NO_SIGNIFICANT_DIFFERENCE: "no significant difference",
    Verdict.SPEEDUP_QUALITY_UNTESTED: "speedup, quality not compared",
    Verdict.INFERIOR: "accuracy inferior",
    Verdict.SLOW_KERNEL: "slow kernel, rerun",
    Verdict.SPEEDUP_QUALITY_UNDECIDED: "speedup, accuracy undecided",
    Verdict.SLOWER: "slower",
    Verdict.FAILED: "failed",
    Verdict.UNSUPPORTED: "unsupported",
}

DASH = "-"


def num(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def gib(value: float | None) -> str:
    return DASH if value is None else format_gib(value)


def times(value: float | None) -> str:
    """A ratio as a multiplier: 0.60 -> '0.60x'."""
    return DASH if value is None else f"{value:.2f}x"


def pct(value: float | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value * 100:.{digits}f}%"


def points(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:+.1f} pt"


def p_value(value: float | None) -> str:
    if value is None:
        return DASH
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def accuracy_cell(acc: AccuracySummary | None) -> str:
    if acc is None:
        return DASH
    return f"{pct(acc.accuracy)} [{pct(acc.interval95.low, 0)}, {pct(acc.interval95.high, 0)}]"


def delta_cell(acc: AccuracySummary | None) -> str:
    if acc is None or acc.delta_to_baseline is None:
        return DASH
    return f"{points(acc.delta_to_baseline)} ({p_value(acc.paired_p_value)})"


def quality_cell(acc: AccuracySummary | None) -> str:
    """The non-inferiority verdict with its bound, or the questions that would settle it."""
    if acc is None or acc.quality is None or acc.delta_bounds is None:
        return DASH
    if acc.quality == QualityVerdict.NON_INFERIOR:
        return f"non-inferior (≥ {points(acc.delta_bounds.low)})"
    if acc.quality == QualityVerdict.INFERIOR:
        return f"inferior (≤ {points(acc.delta_bounds.high)})"
    need = f"; needs ~{acc.questions_needed} q" if acc.questions_needed is not None else ""
    return f"undecided ({points(acc.delta_bounds.low)} to {points(acc.delta_bounds.high)}{need})"


def largest_batch(row: VariantSummary) -> tuple[int | None, float | None, float | None]:
    if not row.throughput:
        return None, None, None
    top = max(row.throughput, key=lambda p: p.batch_size)
    return top.batch_size, top.output_tokens_per_second, top.ratio_to_baseline


def crossover_cell(row: VariantSummary, margin: float) -> str:
    """Where the variant's throughput crosses the baseline's on the sweep: "slower from ~N", "faster from
    ~N" (interpolated), both in batch order, or 'none' (never clearly slower) / 'always slower'."""
    if row.verdict == Verdict.BASELINE:
        return DASH
    crossings = []
    if row.crossover_batch_size is not None:
        crossings.append((row.crossover_batch_size, f"slower from ~{row.crossover_batch_size:.0f}"))
    if row.wins_from_batch_size is not None:
        crossings.append((row.wins_from_batch_size, f"faster from ~{row.wins_from_batch_size:.0f}"))
    if crossings:
        return ", ".join(text for _, text in sorted(crossings))
    ratios = [p.ratio_to_baseline for p in row.throughput if p.ratio_to_baseline is not None]
    if not ratios:
        return DASH
    if all(r <= 1 - margin for r in ratios):
        return "always slower"
    return "none"


@dataclass(frozen=True)
class Column:
    title: str
    numeric: bool


COLUMNS = (
    Column("Variant", False),
    Column("Precision", False),
    Column("Kernel", False),
    Column("ms/token (bs=1)", True),
    Column("Speed vs base (bs=1)", True),
    Column("tok/s (bs=1)", True),
    Column("tok/s (largest bs)", True),
    Column("vs base", True),
    Column("Crossover bs", True),
    Column("Weights GiB", True),
    Column("BW efficiency", True),
    Column("GSM8K strict [95% CI]", True),
    Column("Δ vs base (McNemar)", True),
    Column("Accuracy at margin", False),
    Column("KL mean / top-1", True),
    Column("Capacity req/s/GPU", True),
    Column("Goodput tok/s/GPU", True),
    Column("$/M output tok", True),
    Column("Verdict", False),
)


def with_interval(text: str, interval: Interval | None, digits: int = 2, invert: bool = False) -> str:
    """A figure followed by its 95% interval, e.g. '1.67x [1.60, 1.74]' (invert: of 1/x)."""
    if interval is None or text == DASH:
        return text
    low, high = (1 / interval.high, 1 / interval.low) if invert else (interval.low, interval.high)
    return f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def capacity_cells(row: VariantSummary) -> list[str]:
    """Capacity per GPU (marked when it does not count), goodput per GPU, and cost per million tokens."""
    cap, cost = row.capacity, row.cost
    if cap is None:
        rate = goodput = DASH
    elif cap.requests_per_second_per_gpu is None:
        lowest = min((t.request_rate for t in cap.trials), default=None)
        rate = "none meets SLO" + (f" (down to {lowest / cap.gpus:.3g})" if lowest is not None else "")
        goodput = DASH
    else:
        rate = f"{cap.requests_per_second_per_gpu:.3g}" + ("+" if cap.lower_bound_only else "")
        if not cap.counts:
            rate += " (not counted)"
        goodput = num(cap.goodput_tokens_per_second_per_gpu, 0)
    usd = DASH
    if cost is not None and cost.usd_per_million_output_tokens is not None:
        usd = f"${cost.usd_per_million_output_tokens:.3g}"
    return [rate, goodput, usd]


def table_row(row: VariantSummary, margin: float = 0.05) -> list[str]:
    bs, tps, tps_ratio = largest_batch(row)
    speed = 1 / row.latency_ratio_to_baseline if row.latency_ratio_to_baseline else None
    top = max(row.throughput, key=lambda p: p.batch_size) if row.throughput else None
    return [
        row.variant,
        row.precision,
        row.kernel or DASH,
        with_interval(num(row.ms_per_token_bs1, 2), row.ms_per_token_interval95),
        with_interval(times(speed), row.latency_ratio_interval95, invert=True),
        num(row.tokens_per_second_bs1),
        DASH if bs is None else f"{num(tps, 0)} (bs {bs})",
        with_interval(times(tps_ratio), top.ratio_interval95 if top is not None else None),
        crossover_cell(row, margin),
        gib(row.weights_gib),
        pct(row.bandwidth_efficiency, 0),
        accuracy_cell(row.accuracy),
        delta_cell(row.accuracy),
        quality_cell(row.accuracy),
        DASH if row.fidelity is None else f"{row.fidelity.mean_kl:.3g} / {pct(row.fidelity.top1_agreement)}",
        *capacity_cells(row),
        VERDICT_TITLES.get(row.verdict, str(row.verdict)),
    ]


def faster_phrase(row: VariantSummary) -> str:
    """In what the variant is faster: its speed at batch 1 when it is not slower there, and its best
    throughput ratio when that is above the baseline's (a variant may win on one and not the other)."""
    lat = row.latency_ratio_to_baseline
    parts = [f"{1 / lat:.2f}x as fast at batch 1"] if lat and lat <= 1 else []
    ratios = [(p.ratio_to_baseline, p.batch_size) for p in row.throughput if p.ratio_to_baseline is not None]
    if ratios and max(ratios)[0] > 1:
        ratio, batch = max(ratios)
        parts.append(f"{ratio:.2f}x the throughput at batch size {batch}")
    return ", ".join(parts) or "faster"


def verdict_sentence(row: VariantSummary, summary: RunSummary) -> str:
    """The verdict in plain words, one or two sentences."""
    base = summary.baseline
    name = row.variant
    speed = 1 / row.latency_ratio_to_baseline if row.latency_ratio_to_baseline else None
    acc = row.accuracy
    mdd = acc.minimum_detectable_delta if acc is not None else None
    quality = ""
    if acc is not None and acc.delta_to_baseline is not None:
        quality = f"accuracy {points(acc.delta_to_baseline)} vs {base} on {acc.paired_questions} paired questions ({p_value(acc.paired_p_value)})"
        if acc.quality is not None and acc.delta_bounds is not None and acc.margin is not None:
            quality += (
                f"; {acc.quality!s} at a {acc.margin * 100:g}-point margin (difference "
                f"{points(acc.delta_bounds.low)} to {points(acc.delta_bounds.high)})"
            )
            if acc.quality == QualityVerdict.UNDECIDED and acc.questions_needed is not None:
                quality += f"; about {acc.questions_needed} questions would settle it"
        elif mdd is not None:
            quality += f"; drops of {mdd * 100:.1f} points or more would have been detected"
    verdict = row.verdict
    if verdict == Verdict.BASELINE:
        return f"{name} is the baseline every other variant is compared with."
    if verdict == Verdict.FREE_SPEEDUP:
        faster = faster_phrase(row)
        if row.wins_from_batch_size is not None:
            faster = f"faster from about batch size {row.wins_from_batch_size:.0f} on" + (
                f", {speed:.2f}x as fast at batch 1" if speed else ""
            )
        return f"{name} is a free speedup: {faster}, never slower under load, with accuracy non-inferior ({quality})."
    if verdict == Verdict.SPEEDUP_BUT_INFERIOR:
        faster = faster_phrase(row)
        return f"{name} is faster ({faster}) but its accuracy is inferior: {quality}."
    if verdict == Verdict.SPEEDUP_QUALITY_UNDECIDED:
        faster = faster_phrase(row)
        return f"{name} is faster ({faster}), but the questions asked cannot yet show its accuracy is within the margin: {quality}."
    if verdict == Verdict.LATENCY_WIN_LOSES_UNDER_LOAD:
        where = (
            f"from about batch size {row.crossover_batch_size:.0f}"
            if row.crossover_batch_size is not None
            else "at every measured batch size"
        )
        faster = f"{speed:.2f}x as fast at batch 1" if speed else "faster at batch 1"
        tail = f" Quality: {quality}." if quality else ""
        return f"{name} wins on latency ({faster}) but its throughput falls below {base}'s {where}.{tail}"
    if verdict == Verdict.SPEEDUP_QUALITY_UNTESTED:
        return f"{name} is faster, but its accuracy was not compared with {base}'s: measure it before calling it free."
    if verdict == Verdict.INFERIOR:
        return f"{name} is not faster and its accuracy is inferior: {quality}."
    if verdict == Verdict.SLOW_KERNEL and row.kernel_advice:
        return f"{name}'s speed is not its precision's: {row.kernel_advice}." + (
            f" Quality: {quality}." if quality else ""
        )
    if verdict == Verdict.MEMORY_WIN_ONLY:
        ratio = row.weights_ratio_to_baseline
        saving = f" ({(1 - ratio) * 100:.0f}% less weight memory)" if ratio is not None else ""
        return f"{name} saves memory{saving} but is not faster than {base}; it fits smaller GPUs or longer contexts."
    if verdict == Verdict.SLOWER:
        return f"{name} is slower than {base} and saves no memory worth having."
    if verdict == Verdict.NO_SIGNIFICANT_DIFFERENCE:
        return f"{name} shows no significant difference from {base}." + (f" ({quality}.)" if quality else "")
    reason = "; ".join(row.evidence) if row.evidence else "no reason recorded"
    if verdict == Verdict.UNSUPPORTED:
        return f"{name} is unsupported here: {reason}."
    return f"{name} failed: {reason}."
