"""The comparison summary kept in a QuantBenchmark's status and in each history entry.

It holds figures, not raw samples: per-variant headline numbers, ratios to the baseline, accuracy with its
interval and paired test, and a verdict with its evidence. `quantbench.analysis` computes it from a run's
results; the report renders it.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from quantbench_loadgen.noninferiority import QualityVerdict as QualityVerdict  # part of this API
from quantbench_loadgen.schema import ApiModel


class Verdict(StrEnum):
    FREE_SPEEDUP = "FreeSpeedup"  # faster and its accuracy is non-inferior
    SPEEDUP_BUT_INFERIOR = "SpeedupButInferior"
    LATENCY_WIN_LOSES_UNDER_LOAD = "LatencyWinLosesUnderLoad"
    MEMORY_WIN_ONLY = "MemoryWinOnly"
    NO_SIGNIFICANT_DIFFERENCE = "NoSignificantDifference"
    SPEEDUP_QUALITY_UNTESTED = "SpeedupQualityUntested"
    SPEEDUP_QUALITY_UNDECIDED = "SpeedupQualityUndecided"  # faster; too few questions to settle accuracy
    INFERIOR = "Inferior"  # accuracy shown worse than the baseline's by more than the margin
    SLOW_KERNEL = (
        "SlowKernel"  # ran a slower kernel than its GPU supports: speed says nothing of the precision
    )
    SLOWER = "Slower"
    BASELINE = "Baseline"
    FAILED = "Failed"
    UNSUPPORTED = "Unsupported"


class Interval(ApiModel):
    low: float = Field(description="Lower bound.")
    high: float = Field(description="Upper bound.")


class ServerLoad(ApiModel):
    """The vLLM server during one step, from its /metrics sampled by the load generator."""

    kv_cache_usage_peak: float | None = Field(
        default=None, ge=0, description="Highest KV-cache use (fraction)."
    )
    kv_cache_usage_mean: float | None = Field(default=None, ge=0, description="Mean KV-cache use (fraction).")
    running_peak: float | None = Field(default=None, ge=0, description="Most requests running at once.")
    waiting_peak: float | None = Field(default=None, ge=0, description="Most requests waiting in the queue.")
    preemptions: float | None = Field(default=None, ge=0, description="Requests preempted during the step.")
    prefix_cache_hit_rate: float | None = Field(
        default=None, ge=0, le=1, description="Prefix-cache hits / queries during the step."
    )


class ThroughputPoint(ApiModel):
    batch_size: int = Field(ge=1, description="Requests released together.")
    output_tokens_per_second: float = Field(ge=0, description="Generated tokens per second.")
    ratio_to_baseline: float | None = Field(
        default=None, description="This / baseline at the same batch size."
    )
    server: ServerLoad | None = Field(default=None, description="The server during this batch size.")
    interval95: Interval | None = Field(
        default=None, description="95% interval of tokens/s over the workload's repetitions."
    )
    ratio_interval95: Interval | None = Field(
        default=None, description="95% interval of the ratio to the baseline (contains 1: equal)."
    )


class ServingPoint(ApiModel):
    workload: str | None = Field(default=None, description="Serving workload the point belongs to.")
    request_rate: str = Field(description="Requests/s, or 'inf' for a closed loop.")
    ttft_median_ms: float | None = Field(default=None, ge=0, description="Median time to first token, ms.")
    ttft_p99_ms: float | None = Field(default=None, ge=0, description="99th percentile TTFT, ms.")
    itl_median_ms: float | None = Field(default=None, ge=0, description="Median inter-token latency, ms.")
    itl_p99_ms: float | None = Field(default=None, ge=0, description="99th percentile ITL, ms.")
    e2e_median_ms: float | None = Field(default=None, ge=0, description="Median end-to-end latency, ms.")
    output_tokens_per_second: float | None = Field(default=None, ge=0, description="Output tokens/s.")
    goodput_requests_per_second: float | None = Field(
        default=None, ge=0, description="Requests/s within SLO."
    )
    ttft_ratio_to_baseline: float | None = Field(default=None, description="Median TTFT / baseline's.")
    itl_ratio_to_baseline: float | None = Field(default=None, description="Median ITL / baseline's.")
    throughput_ratio_to_baseline: float | None = Field(
        default=None, description="Output tokens/s / baseline's."
    )
    server: ServerLoad | None = Field(default=None, description="The server during this request rate.")
    ttft_ratio_interval95: Interval | None = Field(
        default=None, description="95% interval of the median-TTFT ratio over repetitions."
    )
    throughput_ratio_interval95: Interval | None = Field(
        default=None, description="95% interval of the output tokens/s ratio over repetitions."
    )


class CapacityTrial(ApiModel):
    request_rate: float = Field(ge=0, description="Rate tried, requests/s.")
    ttft_ms: float | None = Field(default=None, ge=0, description="TTFT at the SLO's percentile, ms.")
    itl_ms: float | None = Field(default=None, ge=0, description="ITL at the SLO's percentile, ms.")
    passed: bool = Field(description="Met the SLO.")


class CapacitySummary(ApiModel):
    """The highest request rate meeting the SLO, per GPU, and whether it counts (quality gate)."""

    workload: str = Field(description="Capacity workload name.")
    slo: str = Field(description="The SLO held, in words, e.g. 'p90 TTFT <= 500 ms'.")
    slo_ttft_ms: float | None = Field(default=None, description="The SLO's TTFT limit, ms (for the plot).")
    gpus: int = Field(ge=1, description="GPUs of the variant's server.")
    requests_per_second: float | None = Field(
        default=None, ge=0, description="Capacity, requests/s (null: no tried rate met the SLO)."
    )
    requests_per_second_per_gpu: float | None = Field(default=None, ge=0, description="Capacity per GPU.")
    goodput_tokens_per_second_per_gpu: float | None = Field(
        default=None, ge=0, description="Output tokens/s of requests meeting the SLO at capacity, per GPU."
    )
    counts: bool = Field(
        description="Quality gate: the capacity counts only when accuracy is non-inferior (or the baseline)."
    )
    gate: str | None = Field(default=None, description="Why the capacity does not count.")
    lower_bound_only: bool = Field(
        default=False,
        description="The search hit maxRate or its step budget: the true capacity may be higher.",
    )
    trials: list[CapacityTrial] = Field(default_factory=list, description="Every rate tried, in order.")


class CostSummary(ApiModel):
    node_pool: str | None = Field(default=None, description="Node pool whose price was used.")
    usd_per_gpu_hour: float = Field(ge=0, description="Price of one GPU for an hour, USD.")
    usd_per_million_output_tokens: float | None = Field(
        default=None, ge=0, description="At capacity within the SLO (goodput tokens/s per GPU)."
    )


class FidelitySummary(ApiModel):
    """The variant's token distributions against the baseline's on the same GSM8K questions."""

    prompts: int = Field(ge=0, description="Questions compared.")
    positions: int = Field(ge=0, description="Teacher-forced token positions compared.")
    mean_kl: float = Field(ge=0, description="Mean KL(baseline || variant) per position, nats.")
    p99_kl: float = Field(ge=0, description="99th percentile of the per-position KL, nats.")
    top1_agreement: float = Field(ge=0, le=1, description="Share of positions with the same top token.")
    greedy_agreement: float = Field(
        ge=0, le=1, description="Share of questions whose greedy answer equals the baseline's."
    )


class AnswerSheet(ApiModel):
    """Which questions a variant answered correctly, compactly: enough to pair two runs on the same questions
    (a later run of the same variant) without the per-question results."""

    questions_digest: str = Field(description="SHA-256 (16 hex digits) of the sorted question keys.")
    correct_bits: str = Field(
        description="Base64 bitmap of strict correctness, one bit per question in sorted-key order."
    )


class AccuracySummary(ApiModel):
    task: str = Field(description="Accuracy task, e.g. gsm8k.")
    questions: int = Field(ge=0, description="Questions scored.")
    correct: int = Field(default=0, ge=0, description="Questions answered correctly (strict match).")
    accuracy: float = Field(ge=0, le=1, description="Fraction correct (strict match).")
    flexible_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="Fraction correct with the flexible extractor (last number)."
    )
    interval95: Interval = Field(description="Wilson 95% interval of the accuracy.")
    delta_to_baseline: float | None = Field(
        default=None, description="Accuracy minus the baseline's, on the questions both answered."
    )
    paired_questions: int | None = Field(default=None, ge=0, description="Questions both sides answered.")
    baseline_only_correct: int | None = Field(
        default=None, ge=0, description="Paired questions the baseline got right and this variant wrong."
    )
    variant_only_correct: int | None = Field(
        default=None, ge=0, description="Paired questions this variant got right and the baseline wrong."
    )
    paired_p_value: float | None = Field(
        default=None, ge=0, le=1, description="Exact McNemar test on the same questions."
    )
    minimum_detectable_delta: float | None = Field(
        default=None, ge=0, description="Smallest drop this sample detects with 80% power at alpha 0.05."
    )
    server: ServerLoad | None = Field(default=None, description="The server while the task ran.")
    margin: float | None = Field(
        default=None, gt=0, lt=1, description="Non-inferiority margin (a fraction: 0.02 = 2 points)."
    )
    quality: QualityVerdict | None = Field(
        default=None, description="NonInferior, Inferior or Undecided at the margin (paired score test)."
    )
    delta_bounds: Interval | None = Field(
        default=None,
        description="One-sided confidence bounds of the accuracy difference (each at 1 - alpha).",
    )
    noninferiority_p_value: float | None = Field(
        default=None, ge=0, le=1, description="p-value of 'worse than the baseline by the margin or more'."
    )
    exact_test: bool | None = Field(
        default=None, description="The p-value is exact (small samples) rather than the score test's."
    )
    power_at_margin: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Probability this many questions show non-inferiority when the variant is truly as "
        "accurate as the baseline (at the observed share of changed answers).",
    )
    questions_needed: int | None = Field(
        default=None, ge=1, description="Questions the fixed-sample test needs for the wanted power."
    )
    sequential: str | None = Field(
        default=None,
        description="When the variant was evaluated in chunks (accuracy.sequential): where it stopped and why.",
    )
    questions_needed_sequential: float | None = Field(
        default=None,
        ge=0,
        description="Expected questions of the group-sequential design (10 looks on information, early "
        "stopping) for the same power and error rate, at the observed share of changed answers.",
    )
    answers: AnswerSheet | None = Field(
        default=None, description="Per-question correctness, for paired comparisons across runs."
    )


class VariantSummary(ApiModel):
    variant: str = Field(description="Variant name.")
    precision: str = Field(description="Precision of the variant.")
    phase: str = Field(description="How the variant's run ended.")
    kernel: str | None = Field(default=None, description="Quantization kernel the server used.")
    ms_per_token_bs1: float | None = Field(default=None, ge=0, description="Decode ms/token at batch 1.")
    tokens_per_second_bs1: float | None = Field(default=None, ge=0, description="Output tokens/s at batch 1.")
    latency_ratio_to_baseline: float | None = Field(default=None, description="ms/token / baseline's.")
    repetitions: int | None = Field(
        default=None, ge=1, description="Repetitions behind the intervals (the most of any workload)."
    )
    ms_per_token_interval95: Interval | None = Field(
        default=None, description="95% interval of ms/token at batch 1 over repetitions."
    )
    latency_ratio_interval95: Interval | None = Field(
        default=None, description="95% interval of the ms/token ratio to the baseline (contains 1: equal)."
    )
    throughput: list[ThroughputPoint] = Field(default_factory=list, description="Throughput sweep.")
    crossover_batch_size: float | None = Field(
        default=None, description="Batch size where throughput falls below the baseline's (interpolated)."
    )
    wins_from_batch_size: float | None = Field(
        default=None,
        description="Batch size from which throughput, below the baseline's before, rises above it (interpolated).",
    )
    serving: list[ServingPoint] = Field(default_factory=list, description="Serving results per rate.")
    weights_gib: float | None = Field(default=None, ge=0, description="Model weight memory, GiB.")
    weights_ratio_to_baseline: float | None = Field(default=None, description="Weight memory / baseline's.")
    startup_seconds: float | None = Field(default=None, ge=0, description="Server start to ready, seconds.")
    bandwidth_floor_ms_per_token: float | None = Field(
        default=None, ge=0, description="Weight bytes / GPU memory bandwidth: the fastest possible bs=1 step."
    )
    bandwidth_efficiency: float | None = Field(
        default=None, ge=0, description="Bandwidth floor / measured ms/token at batch 1 (1.0 = at the floor)."
    )
    accuracy: AccuracySummary | None = Field(default=None, description="Accuracy and its comparison.")
    fidelity: FidelitySummary | None = Field(default=None, description="Fidelity to the baseline.")
    capacity: CapacitySummary | None = Field(default=None, description="Capacity under the SLO.")
    cost: CostSummary | None = Field(default=None, description="Price and cost per million output tokens.")
    kernel_advice: str | None = Field(
        default=None,
        description="When the variant ran a slower kernel than its GPU supports: the evidence and the fix.",
    )
    verdict: Verdict = Field(description="What this variant is, compared with the baseline.")
    evidence: list[str] = Field(default_factory=list, description="Facts behind the verdict, in plain words.")


class RunSummary(ApiModel):
    baseline: str = Field(description="Baseline variant name.")
    gpu: str | None = Field(default=None, description="GPU model the run measured.")
    memory_bandwidth_bytes_per_s: float | None = Field(
        default=None, ge=0, description="Memory bandwidth used for the floors (measured or datasheet)."
    )
    bandwidth_source: str | None = Field(default=None, description="Where that bandwidth came from.")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Significance level of the paired tests.")
    power: float = Field(default=0.8, gt=0, lt=1, description="Power for the minimum detectable difference.")
    speed_margin: float = Field(
        default=0.05,
        ge=0,
        lt=1,
        description="Relative speed difference below which two variants count as equal.",
    )
    accuracy_margin: float | None = Field(
        default=None, gt=0, lt=1, description="Non-inferiority margin of the accuracy verdicts (a fraction)."
    )
    best: str | None = Field(default=None, description="Variant recommended by the verdicts, if any.")
    recommendation: str | None = Field(
        default=None,
        description="Why best was chosen, with the figures: the cheapest non-inferior variant meeting the SLO "
        "when prices and a capacity workload are given.",
    )
    variants: list[VariantSummary] = Field(default_factory=list, description="One row per variant.")
    notes: list[str] = Field(default_factory=list, description="Caveats about the whole run.")
