"""Hand-made result sets written in the real results-folder layout (tests of the summary and the report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantbench.analysis.run_results import (
    RunInfo,
    ServerInfo,
    write_accuracy_result,
    write_fidelity_result,
    write_loadgen_result,
    write_run_info,
    write_server_info,
)
from quantbench.api.v1alpha1 import QuantBenchmarkSpec, VariantPhase
from quantbench.probe.references import load_reference
from quantbench.probe.result import ProbeResult
from quantbench_loadgen.accuracy.results import AccuracyResult, ExtractorScore, QuestionOutcome, question_key
from quantbench_loadgen.fidelity import FidelityResult
from quantbench_loadgen.results import (
    CapacityResult,
    LatencyResult,
    LatencyStats,
    LoadgenResult,
    RepetitionFigures,
    ServingRateResult,
    ThroughputBatchResult,
)
from quantbench_loadgen.specs import WorkloadType

T0 = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
DATASET_SHA = "d" * 64


def stats(median: float, count: int = 10) -> LatencyStats:
    return LatencyStats(
        count=count,
        mean_ms=median,
        median_ms=median,
        p90_ms=median * 1.2,
        p95_ms=median * 1.3,
        p99_ms=median * 1.5,
        std_ms=median * 0.1,
        min_ms=median * 0.8,
        max_ms=median * 1.6,
    )


def _step(n: int, out_tps: float, ttft: float, itl: float) -> dict[str, Any]:
    return {
        "num_requests": n,
        "completed": n,
        "failed": 0,
        "duration_s": 10.0,
        "total_input_tokens": n * 512,
        "total_output_tokens": n * 128,
        "request_throughput_per_s": n / 10.0,
        "input_tokens_per_s": n * 51.2,
        "output_tokens_per_s": out_tps,
        "total_tokens_per_s": out_tps + n * 51.2,
        "ttft": stats(ttft, n),
        "tpot": stats(itl, n),
        "itl": stats(itl, n * 127),
        "e2e": stats(ttft + 127 * itl, n),
    }


def _result(name: str, kind: WorkloadType, **parts: Any) -> LoadgenResult:
    return LoadgenResult(
        workload_name=name,
        workload_type=kind,
        server_url="http://server:8000",
        model="m",
        endpoint="completions",
        seed=0,
        dataset="random(512,128)",
        started_at=T0,
        finished_at=T0,
        tool_version="0.1.0",
        **parts,
    )


def latency_result(ms_per_token: float) -> LoadgenResult:
    step = _step(20, 1000.0 / ms_per_token, ms_per_token * 3, ms_per_token)
    return _result(
        "latency",
        WorkloadType.LATENCY,
        latency=LatencyResult(**step, input_len=512, output_len=128, ms_per_token=ms_per_token),
    )


def throughput_result(points: dict[int, float]) -> LoadgenResult:
    return _result(
        "throughput",
        WorkloadType.THROUGHPUT,
        throughput=[
            ThroughputBatchResult(
                **_step(bs * 3, tps, 50.0, 1000.0 * bs / tps),
                batch_size=bs,
                iterations=3,
                input_len=512,
                output_len=128,
            )
            for bs, tps in sorted(points.items())
        ],
    )


def with_repetitions(result: LoadgenResult, factors: list[float]) -> LoadgenResult:
    """The result as if measured len(factors) times, each repetition's times scaled by its factor (rates by
    its inverse)."""
    reps = []
    for f in factors:
        reps.append(
            RepetitionFigures(
                ms_per_token=result.latency.ms_per_token * f if result.latency is not None else None,
                output_tokens_per_s={str(t.batch_size): t.output_tokens_per_s / f for t in result.throughput}
                | {s.rate_label: s.output_tokens_per_s / f for s in result.serving},
                ttft_median_ms={s.rate_label: s.ttft.median_ms * f for s in result.serving},
                itl_median_ms={s.rate_label: s.itl.median_ms * f for s in result.serving},
            )
        )
    return result.model_copy(update={"repetitions": reps})


def capacity_result(trials: dict[float, tuple[float, bool]], goodput_tokens_per_s: float) -> LoadgenResult:
    """A capacity search: rate -> (p90 TTFT ms, met the SLO), in the order tried; the goodput tokens/s at the
    highest passing rate."""
    passing = [r for r, (_, ok) in trials.items() if ok]
    capacity = max(passing) if passing else None
    steps = [
        ServingRateResult(
            **_step(100, goodput_tokens_per_s * rate / (capacity or rate), ttft * 0.8, 12.0),
            rate_label=f"{rate:g}",
            request_rate_per_s=rate,
            arrival="poisson",
            burstiness=1.0,
            peak_concurrency=8,
            warmup_requests=0,
        )
        for rate, (ttft, _) in trials.items()
    ]
    for step, (ttft, _) in zip(steps, trials.values(), strict=True):
        step.ttft.p90_ms = ttft
    return _result(
        "capacity",
        WorkloadType.CAPACITY,
        serving=steps,
        capacity=CapacityResult(
            percentile=90,
            tried_rates_per_s=list(trials),
            passed=[ok for _, ok in trials.values()],
            misses=[[] if ok else ["p90 TTFT over"] for _, ok in trials.values()],
            capacity_requests_per_s=capacity,
            output_tokens_per_s=goodput_tokens_per_s,
            goodput_tokens_per_s=goodput_tokens_per_s if capacity else None,
        ),
    )


def serving_result(points: dict[str, tuple[float, float, float]]) -> LoadgenResult:
    """rate label -> (output tokens/s, median TTFT ms, median ITL ms)."""
    return _result(
        "serving",
        WorkloadType.SERVING,
        serving=[
            ServingRateResult(
                **_step(100, tps, ttft, itl),
                rate_label=label,
                request_rate_per_s=None if label == "inf" else float(label),
                arrival="poisson",
                burstiness=1.0,
                peak_concurrency=8,
                warmup_requests=0,
                goodput_per_s=5.0,
                goodput_ratio=0.5,
            )
            for label, (tps, ttft, itl) in points.items()
        ],
    )


def accuracy_from_outcomes(
    outcomes: list[QuestionOutcome],
    seed: int = 1234,
    dataset_sha: str = DATASET_SHA,
    dataset: str = "/data/gsm8k",
    server_url: str = "http://server:8000",
) -> AccuracyResult:
    """An AccuracyResult around given per-question outcomes, with scores computed from them."""
    n, k = len(outcomes), sum(o.strict_correct for o in outcomes)
    score = ExtractorScore(
        correct=k, questions=n, accuracy=k / n, stderr=(k / n * (1 - k / n) / (n - 1)) ** 0.5
    )
    return AccuracyResult(
        server_url=server_url,
        model="m",
        num_fewshot=8,
        limit=n,
        seed=seed,
        max_gen_tokens=256,
        dataset=dataset,
        dataset_sha256=dataset_sha,
        prompts_sha256="p" * 64,
        started_at=T0,
        finished_at=T0,
        duration_s=60.0,
        tool_version="0.1.0",
        lm_eval_version="0.4.13",
        strict=score,
        flexible=score,
        outcomes=outcomes,
    )


def accuracy_result(correct: list[bool], seed: int = 1234, dataset_sha: str = DATASET_SHA) -> AccuracyResult:
    outcomes = [
        QuestionOutcome(
            doc_id=i,
            key=question_key(f"question {i}"),
            target=str(i),
            strict_answer=str(i) if ok else "[invalid]",
            strict_correct=ok,
            flexible_answer=str(i) if ok else "0",
            flexible_correct=ok,
        )
        for i, ok in enumerate(correct)
    ]
    return accuracy_from_outcomes(outcomes, seed=seed, dataset_sha=dataset_sha)


def paired(n: int, base_correct: int, lost: int, gained: int) -> tuple[list[bool], list[bool]]:
    """Baseline and variant outcomes on n questions: the variant loses `lost` of the baseline's right answers
    and gains `gained` of its wrong ones."""
    base = [i < base_correct for i in range(n)]
    var = list(base)
    for i in range(lost):
        var[i] = False
    for i in range(gained):
        var[base_correct + i] = True
    return base, var


@dataclass
class VariantData:
    name: str
    precision: str
    ms_per_token: float | None = None
    throughput: dict[int, float] = field(default_factory=dict)
    serving: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    weights_gib: float | None = None
    correct: list[bool] | None = None
    phase: VariantPhase = VariantPhase.SUCCEEDED
    reason: str | None = None
    message: str | None = None
    kernel: str | None = None
    node_pool: str | None = None
    gpu: str | None = None
    repetitions: list[float] | None = None  # run-to-run factors of each repetition (None: one run)
    capacity: tuple[dict[float, tuple[float, bool]], float] | None = None  # capacity_result's arguments
    fidelity: tuple[float, float, float, float] | None = None  # mean KL, p99 KL, top-1, greedy agreement


def spec_for(
    variants: list[VariantData], baseline: str, prices: dict[str, float] | None = None
) -> QuantBenchmarkSpec:
    return QuantBenchmarkSpec.model_validate(
        {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "baseline": baseline,
            "variants": [{"name": v.name, "precision": v.precision} for v in variants],
            "workloads": [
                {"name": "latency", "type": "latency"},
                {"name": "throughput", "type": "throughput", "batchSizes": [1, 16, 64]},
                {
                    "name": "serving",
                    "type": "serving",
                    "dataset": {"kind": "random", "inputLen": 512, "outputLen": 128},
                    "numPrompts": 100,
                    "requestRates": [1, 4, "inf"],
                },
                {
                    "name": "capacity",
                    "type": "capacity",
                    "dataset": {"kind": "random", "inputLen": 512, "outputLen": 128},
                    "slo": {"ttftMs": 500},
                    "numPrompts": 100,
                },
            ],
            "accuracy": {"limit": 100, "margin": 5},
            "gpuHourPrices": prices or {},
        }
    )


def write_run(
    root: Path,
    variants: list[VariantData],
    baseline: str,
    gpu: str | None = "NVIDIA H100 80GB HBM3",
    prices: dict[str, float] | None = None,
) -> Path:
    spec = spec_for(variants, baseline, prices)
    write_run_info(
        root, RunInfo(benchmark="llama31-8b", run_id="r20261123-0300", started_at=T0, gpu=gpu, spec=spec)
    )
    for v in variants:
        write_server_info(
            root,
            v.name,
            ServerInfo(
                phase=v.phase,
                reason=v.reason,
                message=v.message,
                kernel=v.kernel,
                weights_gib=v.weights_gib,
                startup_s=95.0,
                gpu=v.gpu,
                node_pool=v.node_pool,
            ),
        )
        if v.phase != VariantPhase.SUCCEEDED:
            continue
        results = []
        if v.ms_per_token is not None:
            results.append(latency_result(v.ms_per_token))
        if v.throughput:
            results.append(throughput_result(v.throughput))
        if v.serving:
            results.append(serving_result(v.serving))
        if v.capacity is not None:
            results.append(capacity_result(*v.capacity))
        for result in results:
            write_loadgen_result(
                root, v.name, with_repetitions(result, v.repetitions) if v.repetitions else result
            )
        if v.correct is not None:
            write_accuracy_result(root, v.name, accuracy_result(v.correct))
        if v.fidelity is not None:
            mean_kl, p99_kl, top1, greedy = v.fidelity
            write_fidelity_result(
                root,
                v.name,
                FidelityResult(
                    prompts=16,
                    positions=512,
                    top_k=20,
                    mean_kl=mean_kl,
                    p99_kl=p99_kl,
                    top1_agreement=top1,
                    greedy_agreement=greedy,
                ),
            )
    return root


DEMO_PRICES = {"*": 3.0}  # USD per GPU-hour on any pool


def demo_variants() -> list[VariantData]:
    """A realistic comparison on an H100: every verdict appears once."""
    base, free = paired(100, 80, lost=2, gained=2)
    _, under_load = paired(100, 80, lost=4, gained=2)
    _, lossy = paired(100, 80, lost=15, gained=1)
    _, same = paired(100, 80, lost=1, gained=1)
    return [
        VariantData(
            "bf16",
            "bf16",
            10.0,
            {1: 100.0, 16: 1000.0, 64: 3000.0},
            {"1": (120.0, 40.0, 10.5), "4": (480.0, 45.0, 11.0), "inf": (2800.0, 900.0, 14.0)},
            15.0,
            base,
            kernel="none",
            repetitions=[1.0, 1.02, 1 / 1.02],
            capacity=(
                {2: (180, True), 4: (260, True), 8: (900, False), 5.66: (420, True), 6.73: (610, False)},
                1100,
            ),
        ),
        VariantData(
            "fp8",
            "fp8",
            6.0,
            {1: 166.0, 16: 1500.0, 64: 3600.0},
            {"1": (121.0, 30.0, 6.2), "4": (485.0, 33.0, 6.5), "inf": (3400.0, 700.0, 9.0)},
            8.5,
            free,
            kernel="fp8",
            repetitions=[1.0, 1.03, 1 / 1.03],
            fidelity=(0.0021, 0.031, 0.985, 0.9375),
            capacity=(
                {
                    2: (120, True),
                    4: (160, True),
                    8: (300, True),
                    16: (1400, False),
                    11.3: (480, True),
                    13.5: (800, False),
                },
                2600,
            ),
        ),
        VariantData(
            "awq-int4",
            "awq-int4",
            5.0,
            {1: 200.0, 16: 1200.0, 64: 2000.0},
            {"1": (121.0, 28.0, 5.1), "4": (483.0, 35.0, 6.0), "inf": (1900.0, 1500.0, 20.0)},
            5.4,
            under_load,
            kernel="awq_marlin",
            fidelity=(0.043, 0.61, 0.91, 0.625),
            capacity=(
                {2: (110, True), 4: (150, True), 8: (700, False), 5.66: (380, True), 6.73: (520, False)},
                1000,
            ),
        ),
        VariantData(
            "gptq-int4",
            "gptq-int4",
            5.2,
            {1: 190.0, 16: 1600.0, 64: 3300.0},
            {},
            5.4,
            lossy,
            kernel="gptq_marlin",
        ),
        VariantData("int8", "int8-w8a8", 10.2, {1: 98.0, 16: 1000.0, 64: 2950.0}, {}, 8.6, same),
        VariantData(
            "awq-legacy",
            "awq-int4",
            7.5,
            {1: 133.0, 16: 700.0, 64: 900.0},
            {},
            5.4,
            same,
            kernel="awq",
        ),
        VariantData(
            "fp16",
            "fp16",
            phase=VariantPhase.FAILED,
            reason="OutOfMemory",
            message="the server ran out of GPU memory while loading: lower maxModelLen or use more GPUs",
        ),
    ]


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "out/report-demo/results")
    print(write_run(target, demo_variants(), "bf16", prices=DEMO_PRICES))


def probe_result(gpu: str | None = None, bandwidth_bytes_per_s: float | None = None) -> ProbeResult:
    """The committed H100 probe reference, optionally as if measured on another GPU."""
    result = load_reference()
    if gpu is not None:
        result = result.model_copy(update={"gpu": result.gpu.model_copy(update={"name": gpu})})
    if bandwidth_bytes_per_s is not None:
        passes = (bandwidth_bytes_per_s,) * len(result.bandwidth.passes_bytes_per_s)
        bandwidth = result.bandwidth.model_copy(update={"passes_bytes_per_s": passes})
        result = result.model_copy(update={"bandwidth": bandwidth})
    return result
