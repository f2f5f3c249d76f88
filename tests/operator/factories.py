"""Specs and Job results for operator tests: the tests play the Jobs' part with these.

Results are real `LoadgenResult` / `AccuracyResult` models (the Jobs' contract), with figures chosen per
variant so that the summary has something to compare. Accuracy outcomes use real GSM8K questions read from
the shared dataset folder ($QUANTBENCH_GSM8K_DIR, default ../shared/datasets/gsm8k from the repo root).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quantbench.api.v1alpha1 import QuantBenchmarkSpec
from quantbench_loadgen.accuracy.results import QuestionOutcome, question_key
from quantbench_loadgen.fidelity import FidelityReference, FidelityResult, PromptReference
from quantbench_loadgen.results import (
    LatencyResult,
    LoadgenResult,
    RepetitionFigures,
    ThroughputBatchResult,
)
from quantbench_loadgen.specs import WorkloadType
from tests.analysis import builders
from tests.analysis.builders import accuracy_from_outcomes, stats

REPO = Path(__file__).resolve().parents[2]
GSM8K_DIR = Path(os.environ.get("QUANTBENCH_GSM8K_DIR", REPO.parent / "shared" / "datasets" / "gsm8k"))


def spec_dict(
    variants: list[dict[str, Any]] | None = None,
    pool: str = "h100",
    workloads: list[dict[str, Any]] | None = None,
    accuracy: bool | dict[str, Any] = True,
    **extra: Any,
) -> dict[str, Any]:
    """A QuantBenchmark spec (wire form) comparing bf16 / fp8 / awq-int4 on ``pool``."""
    spec: dict[str, Any] = {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "baseline": "bf16",
        "variants": variants
        or [
            {"name": "bf16", "precision": "bf16"},
            {"name": "fp8", "precision": "fp8"},
            {
                "name": "awq-int4",
                "precision": "awq-int4",
                "model": "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4",
            },
        ],
        "placement": {"nodePool": pool, "gpus": 1},
        "server": {"startupTimeout": "10m"},
        "workloads": workloads
        if workloads is not None
        else [
            {"name": "latency", "type": "latency", "inputLen": 512, "outputLen": 128},
            {
                "name": "throughput",
                "type": "throughput",
                "batchSizes": [1, 16],
                "inputLen": 512,
                "outputLen": 128,
            },
        ],
    }
    if isinstance(accuracy, dict):
        spec["accuracy"] = accuracy
    elif accuracy:
        spec["accuracy"] = {"numFewshot": 8, "limit": 20}
    spec.update(extra)
    return spec


def spec(**kwargs: Any) -> QuantBenchmarkSpec:
    return QuantBenchmarkSpec.model_validate(spec_dict(**kwargs))


def benchmark(name: str, **kwargs: Any) -> dict[str, Any]:
    return {
        "apiVersion": "quantbench.dev/v1alpha1",
        "kind": "QuantBenchmark",
        "metadata": {"name": name},
        "spec": spec_dict(**kwargs),
    }


SPEED = {"bf16": 1.0, "fp8": 0.62, "awq-int4": 0.45}  # ms/token relative to bf16 (seed-like figures)


def _step(ms_per_token: float, n: int, batch: int, output_len: int) -> dict[str, Any]:
    duration = n * output_len * ms_per_token / 1000 / batch
    out_tokens = n * output_len
    return {
        "num_requests": n,
        "completed": n,
        "failed": 0,
        "duration_s": duration,
        "total_input_tokens": n * 512,
        "total_output_tokens": out_tokens,
        "request_throughput_per_s": n / duration,
        "input_tokens_per_s": n * 512 / duration,
        "output_tokens_per_s": out_tokens / duration,
        "total_tokens_per_s": (n * 512 + out_tokens) / duration,
        "ttft": stats(40.0, n),
        "tpot": stats(ms_per_token, n),
        "itl": stats(ms_per_token, n * 10),
        "e2e": stats(ms_per_token * output_len, n),
    }


def loadgen_result(
    variant: str,
    workload: dict[str, Any],
    slowdown: float = 1.0,
    server_version: str | None = None,
    batch_spread: float = 0.0,
    sweep_slowdown: float = 1.0,
) -> str:
    """A workload result; ``slowdown`` scales every time (1.3: 30% slower), ``sweep_slowdown`` further scales
    the throughput sweep's, ``batch_spread`` records three repetitions of the sweep whose throughput spreads
    around the measured figure by that fraction (noise: the summary's interval)."""
    ms = 7.0 * SPEED.get(variant, 1.0) * slowdown
    now = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    common: dict[str, Any] = {
        "workload_name": workload["name"],
        "workload_type": WorkloadType(workload["type"]),
        "server_url": f"http://{variant}-server:8000",
        "model": "m",
        "endpoint": "completions",
        "seed": 0,
        "dataset": "random(512,128)",
        "started_at": now,
        "finished_at": now + timedelta(seconds=30),
        "tool_version": "0.1.0",
        "server_version": server_version,
    }
    if workload["type"] == "latency":
        result = LoadgenResult(
            **common,
            latency=LatencyResult(**_step(ms, 20, 1, 128), input_len=512, output_len=128, ms_per_token=ms),
        )
    else:
        points = []
        for bs in workload["batchSizes"]:
            step = _step(ms * sweep_slowdown * (1 + bs / 64), 3 * bs, bs, 128)
            points.append(
                ThroughputBatchResult(
                    **step,
                    batch_size=bs,
                    iterations=3,
                    input_len=512,
                    output_len=128,
                )
            )
        if batch_spread:
            # Three repetitions of the sweep, spread around the measured figure: an interval to compare with.
            reps = [
                RepetitionFigures(
                    output_tokens_per_s={str(p.batch_size): p.output_tokens_per_s * k for p in points}
                )
                for k in (1 - batch_spread, 1.0, 1 + batch_spread)
            ]
            return LoadgenResult(**common, throughput=points, repetitions=reps).model_dump_json(by_alias=True)
        result = LoadgenResult(**common, throughput=points)
    return result.model_dump_json(by_alias=True)


def gsm8k_questions(n: int) -> list[dict[str, str]]:
    """The first ``n`` GSM8K test questions; past the 1319 of the test split, the split again with each
    question marked as a copy (a larger GSM8K-format dataset, for size limits)."""
    path = GSM8K_DIR / "test.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"GSM8K not found at {GSM8K_DIR}: set QUANTBENCH_GSM8K_DIR to a folder with train/test.jsonl"
        )
    rows: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == n:
                return rows
    split = list(rows)
    while len(rows) < n:
        row = split[len(rows) % len(split)]
        rows.append({**row, "question": f"{row['question']} (copy {len(rows) // len(split)})"})
    return rows


def accuracy_result(variant: str, n: int = 20, wrong_every: int | None = None) -> str:
    if wrong_every is None:
        wrong_every = {"bf16": 0, "fp8": 10, "awq-int4": 5}.get(variant, 0)
    outcomes = []
    for i, row in enumerate(gsm8k_questions(n)):
        target = row["answer"].split("####")[-1].strip()
        correct = not (wrong_every and i % wrong_every == 0)
        answer = target if correct else "[invalid]"
        outcomes.append(
            QuestionOutcome(
                doc_id=i,
                key=question_key(row["question"]),
                target=target,
                strict_answer=answer,
                strict_correct=correct,
                flexible_answer=answer,
                flexible_correct=correct,
            )
        )
    result = accuracy_from_outcomes(
        outcomes, dataset=str(GSM8K_DIR), dataset_sha="0" * 64, server_url=f"http://{variant}-server:8000"
    )
    return result.model_dump_json(by_alias=True)


def probe_result(gpu: str | None = None, bandwidth_bytes_per_s: float | None = None) -> str:
    """A probe Job's result: the committed H100 reference, optionally as if measured on another GPU."""
    return builders.probe_result(gpu, bandwidth_bytes_per_s).to_json()


def fidelity_reference(prompts: int = 4, positions: int = 8, top_k: int = 5) -> str:
    """A baseline's fidelity reference: ``positions`` teacher-forced positions of ``top_k`` log-probabilities
    per prompt, on real GSM8K questions."""
    rows = [
        PromptReference(
            prompt=f"Question: {row['question']}\nAnswer:",
            text=" 42",
            prompt_tokens=60,
            top_logprobs=[
                {str(1000 + 7 * k + i): -0.05 - 0.9 * k for k in range(top_k)} for i in range(positions)
            ],
        )
        for row in gsm8k_questions(prompts)
    ]
    ref = FidelityReference(model="bf16", top_k=top_k, max_tokens=positions, prompts=rows)
    return ref.model_dump_json(by_alias=True)


def fidelity_result(variant: str) -> str:
    """A variant's comparison with the baseline's reference, figures chosen per variant."""
    kl = {"bf16": 0.0, "fp8": 0.004, "awq-int4": 0.02}.get(variant, 0.01)
    result = FidelityResult(
        prompts=4,
        positions=32,
        top_k=5,
        mean_kl=kl,
        p99_kl=10 * kl,
        top1_agreement=1 - 5 * kl,
        greedy_agreement=0.75,
    )
    return result.model_dump_json(by_alias=True)


def gzipped_base64(text: str) -> str:
    """``text`` as a Job publishes it with ``--gzip`` (binaryData: gzip, base64)."""
    return base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()
