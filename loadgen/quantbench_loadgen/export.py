"""Writing results: the pydantic JSON, the ``vllm bench serve --save-result`` shape, per-request JSONL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from quantbench_loadgen.results import (
    LatencyResult,
    LoadgenResult,
    RequestRecord,
    ServingRateResult,
    StepResult,
    ThroughputBatchResult,
)

_VLLM_PERCENTILES = (("median", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0))


def vllm_save_result(
    result: LoadgenResult, step: StepResult, records: Sequence[RequestRecord], *, label: str | None = None
) -> dict[str, Any]:
    """One step as ``vllm bench serve --save-result --save-detailed`` writes a run: the same keys and units
    (seconds in lists, milliseconds in ``*_ms``), so that scripts written for vLLM's files read it."""
    done = [r for r in records if not r.warmup]
    rate: float | str = "inf"
    burstiness = 1.0
    max_concurrency: int | None = None
    peak: int | None = None
    goodput: float | None = None
    if isinstance(step, ServingRateResult):
        rate = "inf" if step.request_rate_per_s is None else step.request_rate_per_s
        burstiness, max_concurrency = step.burstiness, step.max_concurrency
        peak, goodput = step.peak_concurrency, step.goodput_per_s
    elif isinstance(step, ThroughputBatchResult):
        max_concurrency = peak = step.batch_size
    elif isinstance(step, LatencyResult):
        max_concurrency = peak = 1
    out: dict[str, Any] = {
        "date": result.started_at.strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": "openai-chat" if result.endpoint == "chat" else "openai",
        "backend": "openai-chat" if result.endpoint == "chat" else "openai",
        "label": label or result.workload_name,
        "model_id": result.model,
        "tokenizer_id": result.model,
        "num_prompts": step.num_requests,
        "request_rate": rate,
        "burstiness": burstiness,
        "max_concurrency": max_concurrency,
        "duration": step.duration_s,
        "completed": step.completed,
        "failed": step.failed,
        "total_input_tokens": step.total_input_tokens,
        "total_output_tokens": step.total_output_tokens,
        "request_throughput": step.request_throughput_per_s,
        "request_goodput": goodput,
        "output_throughput": step.output_tokens_per_s,
        "total_token_throughput": step.total_tokens_per_s,
        "input_lens": [r.prompt_tokens or 0 for r in done],
        "output_lens": [r.output_tokens or 0 for r in done],
        "ttfts": [(r.ttft_ms or 0.0) / 1000.0 for r in done],
        "itls": [[v / 1000.0 for v in r.itl_ms] for r in done],
        "latencies": [(r.e2e_ms or 0.0) / 1000.0 for r in done],
        "start_times": [r.send_s for r in done],
        "generated_texts": [r.generated_text or "" for r in done],
        "errors": ["" if r.success else f"{r.error}: {r.error_detail or ''}" for r in done],
        "max_concurrent_requests": peak,
    }
    metrics = {"ttft": step.ttft, "tpot": step.tpot, "itl": step.itl, "e2el": step.e2e}
    for name, stats in metrics.items():
        out[f"mean_{name}_ms"] = stats.mean_ms
        out[f"median_{name}_ms"] = stats.median_ms
        out[f"std_{name}_ms"] = stats.std_ms
        for key, _ in _VLLM_PERCENTILES[1:]:
            out[f"{key}_{name}_ms"] = getattr(stats, f"{key}_ms")
    return out


def vllm_results(
    result: LoadgenResult, records_by_step: Sequence[Sequence[RequestRecord]]
) -> list[dict[str, Any]]:
    """Every step of a result in vLLM's shape, in step order."""
    steps: list[StepResult] = (
        [result.latency] if result.latency is not None else [*result.throughput, *result.serving]
    )
    return [vllm_save_result(result, s, recs) for s, recs in zip(steps, records_by_step, strict=True)]


def write_vllm_export(path: Path, docs: Sequence[dict[str, Any]]) -> None:
    """One step: a single JSON object (as ``--save-result``); several: one per line (as ``--append-result``)."""
    data = orjson.dumps(docs[0]) if len(docs) == 1 else b"\n".join(orjson.dumps(d) for d in docs)
    path.write_bytes(data + b"\n")


def write_samples(stream: IO[bytes], records: Iterable[RequestRecord]) -> int:
    """Per-request records as JSON lines (camelCase keys); returns how many were written."""
    n = 0
    for r in records:
        stream.write(orjson.dumps(r.to_wire()) + b"\n")
        n += 1
    return n
