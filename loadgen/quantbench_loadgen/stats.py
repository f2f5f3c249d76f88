"""Pure statistics: raw request timings → records → per-step results. No I/O, no clock."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from quantbench_loadgen.results import FailureReason, LatencyStats, RequestRecord
from quantbench_loadgen.specs import Slo


@dataclass(slots=True)
class RequestTiming:
    """What the client records while a request runs (monotonic seconds, absolute). Kept as a plain slotted
    dataclass: it is filled on the hot path, and becomes a validated `RequestRecord` after the run."""

    request_id: str | None = None
    send: float = 0.0
    end: float = 0.0
    chunk_times: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    error: FailureReason | None = None
    error_detail: str | None = None
    http_status: int | None = None
    text_parts: list[str] | None = None

    @property
    def success(self) -> bool:
        return self.error is None


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) of ascending values, interpolating linearly like numpy's default."""
    if not sorted_values:
        return 0.0
    rank = (len(sorted_values) - 1) * p / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    frac = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * frac


def latency_stats(values_ms: Iterable[float]) -> LatencyStats:
    """Mean, median, p90/p95/p99, population std, min and max of values in milliseconds."""
    ordered = sorted(values_ms)
    n = len(ordered)
    if n == 0:
        return LatencyStats(
            count=0, mean_ms=0, median_ms=0, p90_ms=0, p95_ms=0, p99_ms=0, std_ms=0, min_ms=0, max_ms=0
        )
    mean = math.fsum(ordered) / n
    var = math.fsum((v - mean) ** 2 for v in ordered) / n
    return LatencyStats(
        count=n,
        mean_ms=mean,
        median_ms=percentile(ordered, 50),
        p90_ms=percentile(ordered, 90),
        p95_ms=percentile(ordered, 95),
        p99_ms=percentile(ordered, 99),
        std_ms=math.sqrt(var),
        min_ms=ordered[0],
        max_ms=ordered[-1],
    )


def to_record(
    timing: RequestTiming,
    *,
    index: int,
    group: str,
    origin: float,
    warmup: bool = False,
    scheduled: float | None = None,
    expected_prompt_tokens: int | None = None,
    requested_output_tokens: int | None = None,
) -> RequestRecord:
    """A validated record with times relative to ``origin`` and the derived latencies (ms).

    TTFT is to the first token chunk, E2E to the last, TPOT = (E2E - TTFT) / (output tokens - 1) with the
    output token count from the server's usage, ITL every gap between token chunks."""
    chunks = timing.chunk_times
    ttft_ms = e2e_ms = tpot_ms = None
    itl_ms: list[float] = []
    if chunks:
        ttft_ms = (chunks[0] - timing.send) * 1000.0
        e2e_ms = (chunks[-1] - timing.send) * 1000.0
        itl_ms = [(b - a) * 1000.0 for a, b in itertools.pairwise(chunks)]
        if timing.output_tokens is not None and timing.output_tokens > 1:
            tpot_ms = (e2e_ms - ttft_ms) / (timing.output_tokens - 1)
    return RequestRecord(
        index=index,
        group=group,
        warmup=warmup,
        request_id=timing.request_id,
        scheduled_s=None if scheduled is None else scheduled - origin,
        send_s=timing.send - origin,
        first_token_s=chunks[0] - origin if chunks else None,
        end_s=timing.end - origin,
        chunk_times_s=[c - origin for c in chunks],
        prompt_tokens=timing.prompt_tokens,
        output_tokens=timing.output_tokens,
        expected_prompt_tokens=expected_prompt_tokens,
        requested_output_tokens=requested_output_tokens,
        success=timing.success,
        error=timing.error,
        error_detail=timing.error_detail,
        http_status=timing.http_status,
        ttft_ms=ttft_ms,
        e2e_ms=e2e_ms,
        tpot_ms=tpot_ms,
        itl_ms=itl_ms,
        generated_text="".join(timing.text_parts) if timing.text_parts is not None else None,
    )


def meets_slo(record: RequestRecord, slo: Slo) -> bool:
    """A completed request meets the SLO when every objective that is set holds (ITL: every gap)."""
    if not record.success:
        return False
    checks = (
        (slo.ttft_ms, [record.ttft_ms]),
        (slo.tpot_ms, [record.tpot_ms] if record.tpot_ms is not None else []),
        (slo.e2e_ms, [record.e2e_ms]),
        (slo.itl_ms, record.itl_ms),
    )
    for limit, values in checks:
        if limit is None:
            continue
        for value in values:
            if value is None or value > limit:
                return False
    return True


def measured(records: Iterable[RequestRecord]) -> list[RequestRecord]:
    """The records that count: warm-up requests excluded."""
    return [r for r in records if not r.warmup]


def step_span_s(records: Sequence[RequestRecord]) -> float:
    """From the first send to the last end of the given records, seconds."""
    if not records:
        return 0.0
    return max(r.end_s for r in records) - min(r.send_s for r in records)


def step_fields(records: Sequence[RequestRecord], duration_s: float) -> dict[str, Any]:
    """The `StepResult` fields of measured records over a duration (the denominator of every rate)."""
    done = [r for r in records if r.success]
    failures = Counter(str(r.error) for r in records if not r.success and r.error is not None)
    total_in = sum(r.prompt_tokens or 0 for r in done)
    total_out = sum(r.output_tokens or 0 for r in done)

    def rate(x: float) -> float:
        return x / duration_s if duration_s > 0 else 0.0

    return {
        "num_requests": len(records),
        "completed": len(done),
        "failed": len(records) - len(done),
        "failures": dict(sorted(failures.items())),
        "duration_s": duration_s,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput_per_s": rate(len(done)),
        "input_tokens_per_s": rate(total_in),
        "output_tokens_per_s": rate(total_out),
        "total_tokens_per_s": rate(total_in + total_out),
        "ttft": latency_stats(r.ttft_ms for r in done if r.ttft_ms is not None),
        "tpot": latency_stats(r.tpot_ms for r in done if r.tpot_ms is not None),
        "itl": latency_stats(v for r in done for v in r.itl_ms),
        "e2e": latency_stats(r.e2e_ms for r in done if r.e2e_ms is not None),
    }


def peak_concurrency(records: Sequence[RequestRecord]) -> int:
    """Most requests in flight at once (a request is in flight from its send to its end)."""
    events = sorted([(r.send_s, 1) for r in records] + [(r.end_s, -1) for r in records])
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak
