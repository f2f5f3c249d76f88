"""From a run's results to its summary: figures per variant, ratios to the baseline, verdicts (pure).

Verdict rules, for each variant other than the baseline (speeds are "equal" within ``speed_margin``):

- Failed / Unsupported: the variant's server or steps did not succeed (the reason is the evidence).
Accuracy is judged by non-inferiority at the spec's margin (`quantbench.analysis.noninferiority`): the
paired score test of "the variant is worse than the baseline by the margin or more" gives NonInferior (the
test rejects it), Inferior (the upper confidence bound is below -margin) or Undecided (more questions are
needed; the evidence says how many).

- SpeedupButInferior: faster (bs=1 decode or any measured batch size) and Inferior.
- Inferior: Inferior without being faster.
- LatencyWinLosesUnderLoad: faster at batch 1 but slower than the baseline from some batch size on (the
  interpolated crossover batch size is given), accuracy not Inferior.
- FreeSpeedup: faster and never slower under load, accuracy NonInferior.
- SpeedupQualityUndecided: faster and never slower under load, accuracy Undecided.
- SpeedupQualityUntested: faster, but no paired accuracy comparison was possible.
- SlowKernel: the variant ran a legacy kernel (awq, gptq) on a GPU that runs the Marlin one, and its speed
  verdict would have been Slower, LatencyWinLosesUnderLoad, MemoryWinOnly or NoSignificantDifference: the
  evidence names the kernel to use instead (`quantbench.analysis.kernels`).
- MemoryWinOnly: not faster, needs at least 10% less weight memory.
- Slower: slower at batch 1 or at every batch size, with no memory win.
- NoSignificantDifference: none of the above.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from quantbench.analysis.cost import Candidate, price_for, recommend, usd_per_million_tokens
from quantbench.analysis.intervals import Estimate, figure_interval, ratio_interval
from quantbench.analysis.kernels import slower_kernel
from quantbench.analysis.run_results import RunResults, ServerInfo, VariantResults
from quantbench.analysis.stats import (
    bandwidth_floor_ms_per_token,
    crossover_batch_size,
    mcnemar_exact,
    minimum_detectable_difference,
    pack_answers,
    paired_counts,
    ratio,
    wilson_interval,
)
from quantbench.api.summary import (
    AccuracySummary,
    AnswerSheet,
    CapacitySummary,
    CapacityTrial,
    CostSummary,
    FidelitySummary,
    Interval,
    QualityVerdict,
    RunSummary,
    ServerLoad,
    ServingPoint,
    ThroughputPoint,
    VariantSummary,
    Verdict,
)
from quantbench.api.v1alpha1 import Precision, QuantBenchmarkSpec, VariantPhase
from quantbench.probe.precisions import WeightFormatName
from quantbench.probe.result import ProbeResult
from quantbench.probe.specs import match_gpu_spec
from quantbench.units import GIB
from quantbench_loadgen import noninferiority as ni
from quantbench_loadgen.accuracy.results import AccuracyResult
from quantbench_loadgen.noninferiority import DEFAULT_MARGIN
from quantbench_loadgen.results import LatencyStats, LoadgenResult
from quantbench_loadgen.specs import CapacityWorkload, WorkloadType
from quantbench_loadgen.telemetry import ServerTelemetry

MEMORY_WIN_RATIO = 0.9  # weights at most 90% of the baseline's count as a memory win


@dataclass(frozen=True)
class SummarySettings:
    alpha: float = 0.05
    power: float = 0.8
    speed_margin: float = 0.05
    accuracy_margin: float = DEFAULT_MARGIN  # a fraction (0.02 = 2 points); the spec's accuracy.margin wins
    looks: int = 10  # analyses of the group-sequential design quoted in the evidence
    # USD per GPU-hour by node pool ('*': any), e.g. from the chart or a flag; spec.gpuHourPrices wins.
    prices: Mapping[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------- per-variant figures


def _latency_bs1(loadgen: Mapping[str, LoadgenResult]) -> tuple[float | None, float | None]:
    """(ms/token, output tokens/s) at batch size 1: the latency workload, else the sweep's bs=1 point."""
    for result in loadgen.values():
        if result.latency is not None and result.latency.completed > 0:
            reps = [r.ms_per_token for r in result.repetitions if r.ms_per_token]
            est = figure_interval(reps)
            if est is not None:  # the geometric mean over repetitions, as its interval is
                return est.value, result.latency.output_tokens_per_s
            return result.latency.ms_per_token, result.latency.output_tokens_per_s
    for result in loadgen.values():
        for point in result.throughput:
            if point.batch_size == 1 and point.completed > 0 and point.tpot.count > 0:
                return point.tpot.mean_ms, point.output_tokens_per_s
    return None, None


def _throughput(loadgen: Mapping[str, LoadgenResult]) -> dict[int, tuple[float, ServerLoad | None]]:
    out: dict[int, tuple[float, ServerLoad | None]] = {}
    for result in loadgen.values():
        for point in result.throughput:
            if point.completed > 0:
                reps = [r.output_tokens_per_s.get(str(point.batch_size), 0.0) for r in result.repetitions]
                est = figure_interval([x for x in reps if x > 0])
                out[point.batch_size] = (
                    est.value if est is not None else point.output_tokens_per_s,
                    server_load(result, f"bs{point.batch_size}"),
                )
    return out


def server_load(result: LoadgenResult, step: str) -> ServerLoad | None:
    """The server's telemetry summary of one step of a load-generator result (its group label)."""
    return _load_of(result.server_telemetry, step)


def _load_of(telemetry: ServerTelemetry | None, step: str) -> ServerLoad | None:
    found = next((s for s in telemetry.steps if s.step == step), None) if telemetry is not None else None
    if found is None:
        return None
    return ServerLoad(
        kv_cache_usage_peak=found.kv_cache_usage_peak,
        kv_cache_usage_mean=found.kv_cache_usage_mean,
        running_peak=found.running_peak,
        waiting_peak=found.waiting_peak,
        preemptions=found.preemptions,
        prefix_cache_hit_rate=found.prefix_cache_hit_rate,
    )


def _serving(loadgen: Mapping[str, LoadgenResult]) -> list[ServingPoint]:
    points: list[ServingPoint] = []
    for name, result in loadgen.items():
        if result.capacity is not None:
            continue  # a capacity search's rates are its trials, not a serving sweep
        for step in result.serving:
            done = step.completed > 0
            points.append(
                ServingPoint(
                    workload=name,
                    request_rate=step.rate_label,
                    ttft_median_ms=step.ttft.median_ms if done else None,
                    ttft_p99_ms=step.ttft.p99_ms if done else None,
                    itl_median_ms=step.itl.median_ms if done and step.itl.count else None,
                    itl_p99_ms=step.itl.p99_ms if done and step.itl.count else None,
                    e2e_median_ms=step.e2e.median_ms if done else None,
                    output_tokens_per_second=step.output_tokens_per_s,
                    goodput_requests_per_second=step.goodput_per_s,
                    server=server_load(result, step.rate_label),
                )
            )
    return points


@dataclass(frozen=True)
class Repeats:
    """Each figure's values over a variant's repetitions (only workloads run more than once)."""

    ms_per_token: list[float]
    throughput: dict[int, list[float]]  # batch size -> tokens/s
    serving: dict[tuple[str, str], dict[str, list[float]]]  # (workload, rate) -> figure -> values
    count: int | None


def repeats(loadgen: Mapping[str, LoadgenResult]) -> Repeats:
    ms: list[float] = []
    tput: dict[int, list[float]] = {}
    serving: dict[tuple[str, str], dict[str, list[float]]] = {}
    count = 0
    first_latency = True
    for name, result in loadgen.items():
        if not result.repetitions:
            continue
        count = max(count, len(result.repetitions))
        for rep in result.repetitions:
            if result.workload_type == WorkloadType.LATENCY and rep.ms_per_token and first_latency:
                ms.append(rep.ms_per_token)
            elif result.workload_type == WorkloadType.THROUGHPUT:
                for key, value in rep.output_tokens_per_s.items():
                    if value > 0:
                        tput.setdefault(int(key), []).append(value)
            elif result.workload_type == WorkloadType.SERVING:
                for key, value in rep.output_tokens_per_s.items():
                    figures = serving.setdefault((name, key), {})
                    if value > 0:
                        figures.setdefault("tokens", []).append(value)
                    if rep.ttft_median_ms.get(key):
                        figures.setdefault("ttft", []).append(rep.ttft_median_ms[key])
        if result.workload_type == WorkloadType.LATENCY and ms:
            first_latency = False  # the headline latency is the first latency workload's
    return Repeats(ms, tput, serving, count or None)


def _interval(estimate: Estimate | None) -> Interval | None:
    return None if estimate is None else Interval(low=estimate.low, high=estimate.high)


def _with_serving_ratios(
    points: list[ServingPoint],
    baseline: Sequence[ServingPoint],
    reps: Repeats | None = None,
    base_reps: Repeats | None = None,
) -> list[ServingPoint]:
    base = {(p.workload, p.request_rate): p for p in baseline}
    out = []
    for p in points:
        b = base.get((p.workload, p.request_rate))
        if b is None:
            out.append(p)
            continue
        key = (p.workload or "", p.request_rate)
        mine = reps.serving.get(key, {}) if reps is not None else {}
        theirs = base_reps.serving.get(key, {}) if base_reps is not None else {}
        out.append(
            p.model_copy(
                update={
                    "ttft_ratio_interval95": _interval(
                        ratio_interval(theirs.get("ttft", []), mine.get("ttft", []))
                    ),
                    "throughput_ratio_interval95": _interval(
                        ratio_interval(theirs.get("tokens", []), mine.get("tokens", []))
                    ),
                    "ttft_ratio_to_baseline": ratio(p.ttft_median_ms, b.ttft_median_ms),
                    "itl_ratio_to_baseline": ratio(p.itl_median_ms, b.itl_median_ms),
                    "throughput_ratio_to_baseline": ratio(
                        p.output_tokens_per_second, b.output_tokens_per_second
                    ),
                }
            )
        )
    return out


def _phase(vr: VariantResults) -> tuple[VariantPhase, ServerInfo | None]:
    if vr.server is None:
        if vr.loadgen or vr.accuracy is not None:
            return VariantPhase.SUCCEEDED, None
        return VariantPhase.FAILED, None
    return VariantPhase(vr.server.phase), vr.server


# ------------------------------------------------------------------------------------------------ accuracy


def answer_sheet(correct: Mapping[str, bool]) -> AnswerSheet:
    digest, bits = pack_answers(correct)
    return AnswerSheet(questions_digest=digest, correct_bits=bits)


def _accuracy_alone(acc: AccuracyResult) -> AccuracySummary:
    low, high = wilson_interval(acc.strict.correct, acc.strict.questions)
    return AccuracySummary(
        task=acc.task,
        questions=acc.strict.questions,
        correct=acc.strict.correct,
        accuracy=acc.strict.accuracy,
        flexible_accuracy=acc.flexible.accuracy,
        interval95=Interval(low=low, high=high),
        server=_load_of(acc.server_telemetry, "accuracy"),
        answers=answer_sheet(acc.correct_by_question()) if acc.outcomes else None,
    )


def _pairable(base: AccuracyResult, acc: AccuracyResult) -> str | None:
    """Why the two runs cannot be paired, or None."""
    if base.dataset_sha256 != acc.dataset_sha256:
        return "the baseline and this variant read different GSM8K files"
    if base.num_fewshot != acc.num_fewshot:
        return f"different few-shot counts ({base.num_fewshot} vs {acc.num_fewshot})"
    return None


def compare_accuracy(
    base: AccuracyResult, acc: AccuracyResult, settings: SummarySettings
) -> tuple[AccuracySummary, str | None]:
    """The variant's accuracy with its paired comparison to the baseline, and why pairing failed if it did."""
    summary = _accuracy_alone(acc)
    why_not = _pairable(base, acc)
    if why_not is not None:
        return summary, why_not
    counts = paired_counts(base.correct_by_question(), acc.correct_by_question())
    if counts.n == 0:
        return summary, "no question was answered by both the baseline and this variant"
    discordance = counts.discordant / counts.n
    mdd = minimum_detectable_difference(counts.n, discordance, settings.power, settings.alpha)
    margin = settings.accuracy_margin
    test = ni.assess(counts.n, counts.only_b, counts.only_a, margin, settings.alpha)
    plan = ni.plan_sequential(margin, discordance, 0.0, settings.alpha, settings.power, settings.looks)
    verdict, sequential = test.verdict, None
    record = acc.sequential
    if record is not None:  # the design's decision, taken at its boundaries, is the verdict
        verdict = record.verdict
        how = "stopped early" if record.stopped_early else "ran to the end"
        where = f"at look {record.look} of {len(record.look_sizes)}" if record.look else "between looks"
        share = (
            f", {record.information_fraction:.0%} of the design's information"
            if record.information_fraction is not None
            else ""
        )
        screened = (
            f"; {record.screened} screened (the variant's greedy answer is the baseline's, one prefill each), "
            f"{record.questions - record.screened} generated"
            if record.screened
            else ""
        )
        sequential = (
            f"{how} {where}: {record.verdict} after {record.questions} questions{share} "
            f"(fixed-sample design: {record.fixed_questions}){screened}"
        )
    return (
        summary.model_copy(
            update={
                "delta_to_baseline": counts.difference,
                "paired_questions": counts.n,
                "baseline_only_correct": counts.only_a,
                "variant_only_correct": counts.only_b,
                "paired_p_value": mcnemar_exact(counts.only_a, counts.only_b),
                "minimum_detectable_delta": mdd,
                "margin": margin,
                "quality": verdict,
                "sequential": sequential,
                "delta_bounds": Interval(low=test.lower_bound, high=test.upper_bound),
                "noninferiority_p_value": test.p_value,
                "exact_test": test.exact,
                "power_at_margin": ni.power(counts.n, margin, discordance, 0.0, settings.alpha),
                "questions_needed": plan.fixed_questions,
                "questions_needed_sequential": round(plan.expected_questions(1.0), 1),
            }
        ),
        None,
    )


# ------------------------------------------------------------------------------------------------ bandwidth


def memory_bandwidth(results: RunResults, variant: str) -> tuple[float | None, str | None]:
    """Bytes/s for the variant's floors: measured in run.json, else the read bandwidth the roofline probe
    measured on the variant's GPU, else the datasheet figure of that GPU (quantbench.probe.specs)."""
    if results.info.memory_bandwidth_bytes_per_s:
        return results.info.memory_bandwidth_bytes_per_s, results.info.memory_bandwidth_source or "measured"
    probe = results.probe_for(variant)
    if probe is not None:
        return probe.bandwidth.bytes_per_s, f"probe: {probe.bandwidth.method}"
    vr = results.variants.get(variant)
    gpu = (vr.server.gpu if vr is not None and vr.server is not None else None) or results.info.gpu
    if gpu:
        spec = match_gpu_spec(gpu)
        if spec is not None:
            return spec.memory_bandwidth_bytes_per_s, f"datasheet: {spec.name}"
    return None, None


# ------------------------------------------------------------------------------------------------ verdicts


def format_gib(value: float) -> str:
    """Memory in GiB: two decimals, or three significant digits below 1 GiB (small test models)."""
    return f"{value:,.2f}" if value >= 1 else f"{value:.3g}"


def _pct(x: float) -> str:
    return f"{x * 100:.1f}%"


def _points(x: float) -> str:
    return f"{x * 100:+.1f} points"


# The probe's weight format that times a precision's kernel class (quantbench.probe.precisions).
PROBED_AS: dict[Precision, WeightFormatName] = {
    Precision.FP8: "fp8",
    Precision.AWQ_INT4: "int4",
    Precision.GPTQ_INT4: "int4",
}
# A measured crossover within this factor of the probe's counts as the kernel's own.
CROSSOVER_MATCH_FACTOR = 2.0


def crossover_source(
    precision: str, kernel: str | None, measured: float, probe: ProbeResult | None
) -> str | None:
    """Whether a variant's throughput crossover comes from its kernel (the roofline probe predicts it on this
    GPU) or from the server around it; None without a probe figure for the precision."""
    name = PROBED_AS.get(Precision(precision)) if precision in set(Precision) else None
    if probe is None or name is None:
        return None
    try:
        predicted = probe.precision(name)
    except KeyError:
        return None
    crossover = predicted.crossover_vs_baseline
    if crossover is None:
        return None
    ran = f"; the server ran {kernel}" if kernel else ""
    timed = f"the probe's {predicted.kernel}"
    stops = crossover.stops_winning_at
    if stops is not None:
        if stops / CROSSOVER_MATCH_FACTOR <= measured <= stops * CROSSOVER_MATCH_FACTOR:
            return f"the crossover comes from the kernel: {timed} falls behind BF16 at batch ~{stops:.0f} too{ran}"
        return (
            f"{timed} falls behind BF16 at batch ~{stops:.0f}, not ~{measured:.0f}: the server changes where "
            f"the variant loses{ran}"
        )
    largest = max(probe.batch_sizes)
    if crossover.faster_at_largest:
        since = crossover.crossings[-1].batch_size if crossover.crossings else None
        where = "stays faster than BF16" if since is None else f"is faster than BF16 from batch ~{since:.0f}"
        return f"the crossover comes from the server: {timed} {where} up to batch {largest}{ran}"
    return f"{timed} is not faster than BF16 at any batch up to {largest} on this GPU{ran}"


def noninferiority_sentence(acc: AccuracySummary, settings: SummarySettings) -> str:
    """The accuracy verdict at the margin with its bound, power and the questions that would settle it."""
    margin = acc.margin or settings.accuracy_margin
    low = acc.delta_bounds.low if acc.delta_bounds is not None else None
    high = acc.delta_bounds.high if acc.delta_bounds is not None else None
    conf = f"{1 - settings.alpha:.0%}"
    test = "exact test" if acc.exact_test else "score test"
    p = f"p = {acc.noninferiority_p_value:.3g}" if acc.noninferiority_p_value is not None else "p unknown"
    need = (
        f"; {acc.questions_needed} questions settle it at a {margin * 100:g}-point margin with "
        f"{settings.power:.0%} power if the variant is truly as accurate (about "
        f"{acc.questions_needed_sequential:.0f} expected with early stopping)"
        if acc.questions_needed is not None and acc.questions_needed_sequential is not None
        else ""
    )
    power = (
        f", power {acc.power_at_margin:.0%} at {acc.paired_questions} questions"
        if acc.power_at_margin is not None
        else ""
    )
    if acc.quality == QualityVerdict.NON_INFERIOR and low is not None:
        return (
            f"non-inferior at a {margin * 100:g}-point margin: the difference is at least {_points(low)} "
            f"({conf} bound, {test}, {p}{power})"
        )
    if acc.quality == QualityVerdict.INFERIOR and high is not None:
        return (
            f"inferior at a {margin * 100:g}-point margin: the difference is at most {_points(high)} "
            f"({conf} bound)"
        )
    bounds = f"{_points(low)} to {_points(high)}" if low is not None and high is not None else "unknown"
    return (
        f"undecided at a {margin * 100:g}-point margin: the difference lies in {bounds} ({conf} one-sided "
        f"bounds, {test}, {p}{power}){need}"
    )


def verdict_of(
    row: VariantSummary,
    baseline: VariantSummary,
    settings: SummarySettings,
    accuracy_note: str | None,
    probe: ProbeResult | None = None,
) -> tuple[Verdict, list[str]]:
    """The verdict and its evidence for a variant whose steps succeeded."""
    margin = settings.speed_margin
    evidence: list[str] = []
    lat = row.latency_ratio_to_baseline
    lat_ci = row.latency_ratio_interval95
    # With repetitions "equal" means the ratio's interval contains 1; with one run, within the margin.
    latency_win = lat is not None and (lat_ci.high < 1 if lat_ci is not None else lat <= 1 - margin)
    latency_loss = lat is not None and (lat_ci.low > 1 if lat_ci is not None else lat >= 1 + margin)
    if lat is not None:
        ci = (
            f", 95% CI of the speed ratio {1 / lat_ci.high:.2f}-{1 / lat_ci.low:.2f}x over "
            f"{row.repetitions} repetitions"
            if lat_ci is not None
            else ""
        )
        evidence.append(
            f"batch 1: {row.ms_per_token_bs1:.2f} ms/token vs {baseline.ms_per_token_bs1:.2f} "
            f"({1 / lat:.2f}x the baseline's speed{ci})"
        )
    ratios = {p.batch_size: p.ratio_to_baseline for p in row.throughput if p.ratio_to_baseline is not None}
    ratio_cis = {p.batch_size: p.ratio_interval95 for p in row.throughput if p.ratio_interval95 is not None}

    def above(b: int, r: float) -> bool:
        ci = ratio_cis.get(b)
        return ci.low > 1 if ci is not None else r >= 1 + margin

    def below(b: int, r: float) -> bool:
        ci = ratio_cis.get(b)
        return ci.high < 1 if ci is not None else r <= 1 - margin

    throughput_win = any(above(b, r) for b, r in ratios.items())
    throughput_all_below = bool(ratios) and all(below(b, r) for b, r in ratios.items())
    if ratios:
        evidence.append(
            "throughput vs baseline: " + ", ".join(f"bs {b}: {r:.2f}x" for b, r in sorted(ratios.items()))
        )
    base_tp = {p.batch_size: p.output_tokens_per_second for p in baseline.throughput}
    var_tp = {p.batch_size: p.output_tokens_per_second for p in row.throughput}
    crossover = crossover_batch_size(base_tp, var_tp)
    stops = crossover.stops_winning_at if crossover is not None else None
    starts = crossover.starts_winning_at if crossover is not None else None
    # A crossing counts only when the variant is clearly slower (or faster) somewhere after it.
    loses_under_load = stops is not None and any(below(b, r) for b, r in ratios.items() if b > stops)
    if loses_under_load and stops is not None:
        evidence.append(f"throughput falls below the baseline's at batch size ~{stops:.0f}")
        source = crossover_source(row.precision, row.kernel, stops, probe)
        if source is not None:
            evidence.append(source)
        behind = min(b for b, r in ratios.items() if b > stops and below(b, r))
        server = server_evidence(row, baseline, behind)
        if server is not None:
            evidence.append(server)
    if starts is not None and any(above(b, r) for b, r in ratios.items() if b > starts):
        evidence.append(f"throughput rises above the baseline's from batch size ~{starts:.0f}")
    faster = latency_win or throughput_win
    slower = latency_loss or throughput_all_below

    acc = row.accuracy
    quality = acc.quality if acc is not None else None
    quality_loss = quality == QualityVerdict.INFERIOR
    paired = quality is not None
    if acc is not None and quality is not None and acc.delta_to_baseline is not None:
        evidence.append(
            f"GSM8K {_pct(acc.accuracy)} (95% CI {_pct(acc.interval95.low)}-{_pct(acc.interval95.high)}), "
            f"{_points(acc.delta_to_baseline)} vs baseline on {acc.paired_questions} paired questions "
            f"({acc.baseline_only_correct} lost, {acc.variant_only_correct} gained)"
        )
        evidence.append(noninferiority_sentence(acc, settings))
        if acc.sequential is not None:
            evidence.append(f"sequential evaluation {acc.sequential}")
    elif acc is not None:
        evidence.append(f"GSM8K {_pct(acc.accuracy)}; not compared with the baseline: {accuracy_note}")
    else:
        evidence.append("accuracy not measured")

    memory_win = (
        row.weights_ratio_to_baseline is not None and row.weights_ratio_to_baseline <= MEMORY_WIN_RATIO
    )
    if row.weights_gib is not None and baseline.weights_gib is not None:
        evidence.append(
            f"weights {format_gib(row.weights_gib)} GiB vs {format_gib(baseline.weights_gib)} GiB"
        )

    if quality_loss:
        return (Verdict.SPEEDUP_BUT_INFERIOR if faster else Verdict.INFERIOR), evidence
    if faster and (loses_under_load or (latency_win and throughput_all_below)):
        return Verdict.LATENCY_WIN_LOSES_UNDER_LOAD, evidence
    if faster:
        if not paired:
            return Verdict.SPEEDUP_QUALITY_UNTESTED, evidence
        if quality == QualityVerdict.NON_INFERIOR:
            return Verdict.FREE_SPEEDUP, evidence
        return Verdict.SPEEDUP_QUALITY_UNDECIDED, evidence
    if memory_win:
        return Verdict.MEMORY_WIN_ONLY, evidence
    if slower:
        return Verdict.SLOWER, evidence
    return Verdict.NO_SIGNIFICANT_DIFFERENCE, evidence


# ------------------------------------------------------------------------------------------------ the run


def _load_words(load: ServerLoad) -> tuple[str, str] | None:
    """(what the variant's server did, the same figures bare) for the evidence, or None without figures."""
    parts, bare = [], []
    if load.kv_cache_usage_peak is not None:
        parts.append(f"its KV cache is {load.kv_cache_usage_peak * 100:.0f}% full")
        bare.append(f"{load.kv_cache_usage_peak * 100:.0f}%")
    if load.waiting_peak is not None:
        parts.append(f"{load.waiting_peak:.0f} requests wait")
        bare.append(f"{load.waiting_peak:.0f}")
    if load.preemptions:
        parts.append(f"{load.preemptions:.0f} were preempted")
        bare.append(f"{load.preemptions:.0f} preempted")
    return (" and ".join(parts), ", ".join(bare)) if parts else None


def server_evidence(row: VariantSummary, baseline: VariantSummary, batch_size: int) -> str | None:
    """What the servers did where the variant falls behind: 'at batch 64 its KV cache is 97% full and 12
    requests wait (bf16: 60%, 0)', from the telemetry the load generator sampled."""
    mine = next((p.server for p in row.throughput if p.batch_size == batch_size), None)
    theirs = next((p.server for p in baseline.throughput if p.batch_size == batch_size), None)
    words = _load_words(mine) if mine is not None else None
    if words is None:
        return None
    base = _load_words(theirs) if theirs is not None else None
    compared = f" ({baseline.variant}: {base[1]})" if base is not None else ""
    return f"at batch {batch_size} {words[0]}{compared}"


def _row(name: str, precision: str, vr: VariantResults, bandwidth: float | None) -> VariantSummary:
    phase, server = _phase(vr)
    ms, tps = _latency_bs1(vr.loadgen)
    reps = repeats(vr.loadgen)
    weights = server.weights_gib if server is not None else None
    floor = bandwidth_floor_ms_per_token(weights * GIB, bandwidth) if weights and bandwidth else None
    return VariantSummary(
        variant=name,
        precision=precision,
        phase=phase.value,
        kernel=server.kernel if server is not None else None,
        ms_per_token_bs1=ms,
        tokens_per_second_bs1=tps,
        repetitions=reps.count,
        ms_per_token_interval95=_interval(figure_interval(reps.ms_per_token)),
        throughput=[
            ThroughputPoint(
                batch_size=b,
                output_tokens_per_second=t,
                server=load,
                interval95=_interval(figure_interval(reps.throughput.get(b, []))),
            )
            for b, (t, load) in sorted(_throughput(vr.loadgen).items())
        ],
        serving=_serving(vr.loadgen),
        weights_gib=weights,
        startup_seconds=server.startup_s if server is not None else None,
        bandwidth_floor_ms_per_token=floor,
        bandwidth_efficiency=floor / ms if floor is not None and ms else None,
        accuracy=_accuracy_alone(vr.accuracy) if vr.accuracy is not None else None,
        verdict=Verdict.NO_SIGNIFICANT_DIFFERENCE,
    )


# ------------------------------------------------------------------------------------ capacity and cost


def _slo_words(wl: CapacityWorkload) -> str:
    p = f"p{wl.percentile}"
    parts = [
        f"{p} {name} <= {limit:g} ms"
        for name, limit in (
            ("TTFT", wl.slo.ttft_ms),
            ("ITL", wl.slo.itl_ms),
            ("TPOT", wl.slo.tpot_ms),
            ("E2E", wl.slo.e2e_ms),
        )
        if limit is not None
    ]
    return ", ".join(parts)


def _pct_of(stats: LatencyStats, p: int) -> float | None:
    if stats.count == 0:
        return None
    return {50: stats.median_ms, 90: stats.p90_ms, 95: stats.p95_ms, 99: stats.p99_ms}[p]


def capacity_summary(
    spec: QuantBenchmarkSpec, variant: str, vr: VariantResults, row: VariantSummary
) -> CapacitySummary | None:
    """The variant's capacity from its first capacity workload, per GPU, quality-gated."""
    for wl in spec.workloads:
        if not isinstance(wl, CapacityWorkload):
            continue
        result = vr.loadgen.get(wl.name)
        if result is None or result.capacity is None:
            continue
        cap = result.capacity
        gpus = spec.placement_for(spec.variant(variant)).gpus
        trials = [
            CapacityTrial(
                request_rate=rate,
                ttft_ms=_pct_of(step.ttft, cap.percentile),
                itl_ms=_pct_of(step.itl, cap.percentile),
                passed=ok,
            )
            for rate, ok, step in zip(cap.tried_rates_per_s, cap.passed, result.serving, strict=False)
        ]
        quality = row.accuracy.quality if row.accuracy is not None else None
        baseline = row.verdict == Verdict.BASELINE
        counts = baseline or quality == QualityVerdict.NON_INFERIOR
        gate = None
        if not counts:
            gate = (
                f"accuracy {quality} at the margin"
                if quality is not None
                else "accuracy not compared with the baseline"
            )
        rps = cap.capacity_requests_per_s
        return CapacitySummary(
            workload=wl.name,
            slo=_slo_words(wl),
            slo_ttft_ms=wl.slo.ttft_ms,
            gpus=gpus,
            requests_per_second=rps,
            requests_per_second_per_gpu=rps / gpus if rps is not None else None,
            goodput_tokens_per_second_per_gpu=cap.goodput_tokens_per_s / gpus
            if cap.goodput_tokens_per_s is not None
            else None,
            counts=counts,
            gate=gate,
            lower_bound_only=cap.reached_max_rate or cap.budget_exhausted,
            trials=trials,
        )
    return None


def cost_summary(
    prices: Mapping[str, float], node_pool: str | None, capacity: CapacitySummary | None
) -> CostSummary | None:
    found = price_for(prices, node_pool)
    if found is None:
        return None
    pool, price = found
    per_million = None
    if capacity is not None and capacity.goodput_tokens_per_second_per_gpu:
        per_million = usd_per_million_tokens(price, 1, capacity.goodput_tokens_per_second_per_gpu)
    return CostSummary(node_pool=pool, usd_per_gpu_hour=price, usd_per_million_output_tokens=per_million)


def _money(x: float) -> str:
    return f"${x:,.2f}" if x >= 0.1 else f"${x:.3g}"


def recommendation(rows: Sequence[VariantSummary]) -> tuple[str | None, str | None]:
    """The cheapest non-inferior variant meeting the SLO, with the sentence that says why (None: no costs)."""
    candidates = [
        Candidate(
            variant=r.variant,
            usd_per_million=r.cost.usd_per_million_output_tokens if r.cost is not None else None,
            non_inferior=r.capacity is not None and r.capacity.counts,
            meets_slo=r.capacity is not None and r.capacity.requests_per_second is not None,
            capacity_per_gpu=r.capacity.requests_per_second_per_gpu if r.capacity is not None else None,
            goodput_tokens_per_gpu=r.capacity.goodput_tokens_per_second_per_gpu
            if r.capacity is not None
            else None,
        )
        for r in rows
        if r.phase == VariantPhase.SUCCEEDED
    ]
    if not any(c.usd_per_million is not None for c in candidates):
        return None, None
    best, ranked = recommend(candidates)
    others = []
    for c in sorted(candidates, key=lambda c: (c.usd_per_million is None, c.usd_per_million or 0.0)):
        if c.variant == best:
            continue
        row = next(r for r in rows if r.variant == c.variant)
        cost = _money(c.usd_per_million) if c.usd_per_million is not None else "no cost"
        why = ""
        if row.capacity is None:
            why = ", capacity not measured"
        elif not c.meets_slo:
            why = ", no tried rate met the SLO"
        elif not c.non_inferior and row.capacity is not None:
            why = f", not counted: {row.capacity.gate}"
        others.append(f"{c.variant} {cost}{why}")
    tail = f" (others: {'; '.join(others)})" if others else ""
    if best is None:
        return None, "no variant is both non-inferior in accuracy and within the SLO at a known price" + tail
    top = ranked[0]
    row = next(r for r in rows if r.variant == best)
    slo = row.capacity.slo if row.capacity is not None else "the SLO"
    assert top.usd_per_million is not None and top.capacity_per_gpu is not None
    goodput = top.goodput_tokens_per_gpu or 0.0
    return best, (
        f"{best}: {_money(top.usd_per_million)} per million output tokens at {top.capacity_per_gpu:.3g} "
        f"requests/s per GPU ({goodput:,.0f} output tokens/s per GPU) within {slo}, the cheapest variant "
        f"whose accuracy is non-inferior{tail}"
    )


# Speed verdicts a slower kernel than the GPU supports would explain (accuracy verdicts stand).
KERNEL_BOUND_VERDICTS = frozenset(
    {
        Verdict.SLOWER,
        Verdict.LATENCY_WIN_LOSES_UNDER_LOAD,
        Verdict.MEMORY_WIN_ONLY,
        Verdict.NO_SIGNIFICANT_DIFFERENCE,
    }
)


def _gpu_of(results: RunResults, variant: str) -> str | None:
    """The GPU a variant's server ran on: its own record, else the roofline probe's, else the run's."""
    vr = results.variants.get(variant)
    if vr is not None and vr.server is not None and vr.server.gpu:
        return vr.server.gpu
    probe = results.probe_for(variant)
    if probe is not None:
        return probe.gpu.name
    return results.info.gpu


def _failed_evidence(vr: VariantResults) -> list[str]:
    server = vr.server
    if server is None:
        return ["no results were recorded for this variant"]
    words = [server.reason or "the variant's steps did not succeed"]
    if server.message:
        words.append(server.message)
    return words


def build_summary(results: RunResults, settings: SummarySettings | None = None) -> RunSummary:
    """The run's summary: one row per variant in spec order, the baseline's first figures as reference."""
    spec = results.info.spec
    settings = settings or SummarySettings()
    if spec.accuracy is not None:
        settings = replace(settings, accuracy_margin=spec.accuracy.margin / 100.0)
    # The summary's bandwidth is the baseline's GPU's; each row's floor uses its own GPU's.
    bandwidth, source = memory_bandwidth(results, spec.baseline)
    rows = {
        v.name: _row(
            v.name,
            str(v.precision),
            results.variants.get(v.name) or VariantResults(v.name),
            memory_bandwidth(results, v.name)[0],
        )
        for v in spec.variants
    }
    base = rows[spec.baseline]
    base_results = results.variants.get(spec.baseline)
    base_acc = base_results.accuracy if base_results is not None else None
    notes: list[str] = []
    if base.phase != VariantPhase.SUCCEEDED:
        notes.append(f"the baseline {spec.baseline} did not succeed: no variant can be compared with it")
    notes += _measurement_notes(results)
    floor_note = _accuracy_floor_note(spec.baseline, base.accuracy)
    if floor_note is not None:
        notes.append(floor_note)

    out: list[VariantSummary] = []
    for v in spec.variants:
        row = rows[v.name]
        vr = results.variants.get(v.name) or VariantResults(v.name)
        if v.name == spec.baseline:
            out.append(row.model_copy(update={"verdict": Verdict.BASELINE, "evidence": ["the reference"]}))
            continue
        if row.phase in (VariantPhase.FAILED, VariantPhase.UNSUPPORTED):
            verdict = Verdict.UNSUPPORTED if row.phase == VariantPhase.UNSUPPORTED else Verdict.FAILED
            out.append(row.model_copy(update={"verdict": verdict, "evidence": _failed_evidence(vr)}))
            continue
        if base.phase != VariantPhase.SUCCEEDED:
            out.append(
                row.model_copy(
                    update={
                        "verdict": Verdict.NO_SIGNIFICANT_DIFFERENCE,
                        "evidence": ["no baseline to compare with"],
                    }
                )
            )
            continue
        base_tp = {p.batch_size: p.output_tokens_per_second for p in base.throughput}
        reps, base_reps = repeats(vr.loadgen), repeats(base_results.loadgen if base_results else {})
        throughput = [
            p.model_copy(
                update={
                    "ratio_to_baseline": ratio(p.output_tokens_per_second, base_tp.get(p.batch_size)),
                    "ratio_interval95": _interval(
                        ratio_interval(
                            base_reps.throughput.get(p.batch_size, []), reps.throughput.get(p.batch_size, [])
                        )
                    ),
                }
            )
            for p in row.throughput
        ]
        crossover = crossover_batch_size(
            base_tp, {p.batch_size: p.output_tokens_per_second for p in row.throughput}
        )
        accuracy = row.accuracy
        accuracy_note: str | None = None
        if vr.accuracy is not None:
            if base_acc is None:
                accuracy_note = "the baseline has no accuracy result"
            else:
                accuracy, accuracy_note = compare_accuracy(base_acc, vr.accuracy, settings)
        row = row.model_copy(
            update={
                "throughput": throughput,
                "serving": _with_serving_ratios(row.serving, base.serving, reps, base_reps),
                "latency_ratio_to_baseline": ratio(row.ms_per_token_bs1, base.ms_per_token_bs1),
                "latency_ratio_interval95": _interval(
                    ratio_interval(base_reps.ms_per_token, reps.ms_per_token)
                ),
                "weights_ratio_to_baseline": ratio(row.weights_gib, base.weights_gib),
                "crossover_batch_size": crossover.stops_winning_at if crossover is not None else None,
                "wins_from_batch_size": crossover.starts_winning_at if crossover is not None else None,
                "accuracy": accuracy,
            }
        )
        fidelity = None
        if vr.fidelity is not None:
            f = vr.fidelity
            fidelity = FidelitySummary(
                prompts=f.prompts,
                positions=f.positions,
                mean_kl=f.mean_kl,
                p99_kl=f.p99_kl,
                top1_agreement=f.top1_agreement,
                greedy_agreement=f.greedy_agreement,
            )
            row = row.model_copy(update={"fidelity": fidelity})
        verdict, evidence = verdict_of(row, base, settings, accuracy_note, results.probe_for(v.name))
        if fidelity is not None:
            evidence.append(
                f"fidelity on {fidelity.prompts} questions ({fidelity.positions} tokens): mean KL "
                f"{fidelity.mean_kl:.3g} nats (p99 {fidelity.p99_kl:.3g}), top-1 token agreement "
                f"{fidelity.top1_agreement:.1%}, same greedy answer on {fidelity.greedy_agreement:.0%}"
            )
        advice = slower_kernel(row.kernel, _gpu_of(results, v.name))
        advice_text = None
        if advice is not None:
            advice_text = f"{advice.evidence()}; fix: {advice.fix()}"
            evidence.append(advice_text)
            if verdict in KERNEL_BOUND_VERDICTS:
                verdict = Verdict.SLOW_KERNEL
        out.append(
            row.model_copy(update={"verdict": verdict, "evidence": evidence, "kernel_advice": advice_text})
        )

    prices = {**settings.prices, **spec.gpu_hour_prices}
    for i, row in enumerate(out):
        vr = results.variants.get(row.variant) or VariantResults(row.variant)
        cap = capacity_summary(spec, row.variant, vr, row)
        pool = (vr.server.node_pool if vr.server is not None else None) or spec.placement_for(
            spec.variant(row.variant)
        ).node_pool
        out[i] = row.model_copy(update={"capacity": cap, "cost": cost_summary(prices, pool, cap)})
    cheapest, why = recommendation(out)

    base_probe = results.probe_for(spec.baseline)
    return RunSummary(
        baseline=spec.baseline,
        gpu=results.info.gpu or (base_probe.gpu.name if base_probe is not None else None),
        memory_bandwidth_bytes_per_s=bandwidth,
        bandwidth_source=source,
        alpha=settings.alpha,
        power=settings.power,
        speed_margin=settings.speed_margin,
        accuracy_margin=settings.accuracy_margin if spec.accuracy is not None else None,
        best=cheapest if why is not None else _best(out, spec.baseline),
        recommendation=why,
        variants=out,
        notes=notes,
    )


# Below this strict and flexible accuracy the task says nothing about a quantized variant of the model.
ACCURACY_FLOOR = 0.05


def _accuracy_floor_note(baseline: str, acc: AccuracySummary | None) -> str | None:
    """A note when the baseline scores near zero: the task cannot show a quantization effect there."""
    if acc is None or acc.questions == 0 or acc.accuracy >= ACCURACY_FLOOR:
        return None
    if acc.flexible_accuracy is not None and acc.flexible_accuracy >= ACCURACY_FLOOR:
        return None
    flexible = f", flexible {acc.flexible_accuracy:.0%}" if acc.flexible_accuracy is not None else ""
    return (
        f"the baseline {baseline} scores {acc.accuracy:.0%} on the accuracy task ({acc.correct}/{acc.questions} "
        f"strict{flexible}): near zero, so on this model the task cannot show what quantization costs; the "
        "fidelity figures (KL divergence, token and answer agreement with the baseline) can"
    )


def _measurement_notes(results: RunResults) -> list[str]:
    """Failed requests, runs that stopped early, and the result files' own warnings."""
    notes: list[str] = []
    for name, vr in results.variants.items():
        for workload, result in vr.loadgen.items():
            where = f"{name}/{workload}"
            if not result.complete:
                notes.append(f"{where}: the load generator stopped early; its figures cover part of the run")
            if result.total_failed:
                notes.append(f"{where}: {result.total_failed} measured requests failed")
            notes += [f"{where}: {n}" for n in result.notes]
        if vr.accuracy is not None:
            notes += [f"{name}/accuracy: {n}" for n in vr.accuracy.notes]
    return notes


def _best(rows: Sequence[VariantSummary], baseline: str) -> str | None:
    """The free speedup with the lowest batch-1 ms/token; else the baseline (when it succeeded)."""
    free = [r for r in rows if r.verdict == Verdict.FREE_SPEEDUP]
    if free:
        return min(free, key=lambda r: r.latency_ratio_to_baseline or math.inf).variant
    base = next((r for r in rows if r.variant == baseline), None)
    return baseline if base is not None and base.phase == VariantPhase.SUCCEEDED else None
