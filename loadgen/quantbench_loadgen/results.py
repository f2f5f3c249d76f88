"""What a load-generator run produces: the contract with the operator and the analysis.

Every time is in milliseconds (``*_ms``) or seconds (``*_s``) as the field name says; every rate names
its unit (``*_per_s``). Wire names are camelCase (``ttftMs``), Python names snake_case (``ttft_ms``).

Definitions, the same as ``vllm bench serve`` uses so that figures can be compared:

- TTFT: from sending the request to the arrival of the first chunk that carries generated text.
- ITL: each gap between the arrivals of two consecutive token chunks of one request.
- TPOT: ``(E2E - TTFT) / (output tokens - 1)`` per request, for requests with more than one output token.
- E2E: from sending the request to the arrival of its last token chunk (the usage chunk and ``[DONE]``
  that follow carry no token).
- Output token counts come from the server's ``usage`` (``stream_options.include_usage``), never from counting
  chunks; prompt token counts likewise.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from quantbench_loadgen.schema import ApiModel
from quantbench_loadgen.specs import WorkloadType
from quantbench_loadgen.telemetry import ServerTelemetry

RESULT_API_VERSION: Literal["quantbench.dev/loadgen-v1"] = "quantbench.dev/loadgen-v1"


class FailureReason(StrEnum):
    """Why a request failed; results count failures by these values."""

    CONNECT = "connect"  # the server could not be reached (refused, DNS, reset before a response)
    HTTP_STATUS = "http_status"  # the server answered with a non-2xx status
    MALFORMED = "malformed"  # the stream was not valid SSE/JSON, or carried no usage/choices as expected
    DISCONNECT = "disconnect"  # the server closed the connection before the stream's end ([DONE])
    TIMEOUT = "timeout"  # the request took longer than the per-request timeout
    SERVER_ERROR = "server_error"  # the stream carried an error object
    EMPTY = "empty"  # the stream ended normally without any generated token
    CANCELLED = "cancelled"  # the run ended (duration reached, interrupt) while the request was in flight


class RequestRecord(ApiModel):
    """One request as the client saw it. Times are seconds on the run's monotonic clock, relative to the start
    of the workload (so records of one run line up); derived latencies are milliseconds."""

    index: int = Field(ge=0, description="Position of the request in its workload step (0-based).")
    group: str = Field(
        description="The step it belongs to: the rate label (serving), 'bs<N>' (throughput) or 'latency'."
    )
    warmup: bool = Field(default=False, description="A warm-up request: excluded from every statistic.")
    request_id: str | None = Field(default=None, description="X-Request-Id sent, to find it in server logs.")
    scheduled_s: float | None = Field(
        default=None, description="When the arrival process meant to send it (serving only)."
    )
    send_s: float = Field(description="When the request was handed to the connection.")
    first_token_s: float | None = Field(default=None, description="Arrival of the first token chunk.")
    end_s: float = Field(description="End of the stream, or when the failure was detected.")
    chunk_times_s: list[float] = Field(
        default_factory=list,
        description="Arrival of every chunk that carried generated text (the first one included).",
    )
    prompt_tokens: int | None = Field(
        default=None, ge=0, description="Prompt tokens, from the server's usage."
    )
    output_tokens: int | None = Field(
        default=None, ge=0, description="Output tokens, from the server's usage."
    )
    expected_prompt_tokens: int | None = Field(
        default=None, ge=0, description="Prompt tokens the dataset meant to send, when known."
    )
    requested_output_tokens: int | None = Field(default=None, ge=1, description="max_tokens sent.")
    success: bool = Field(description="The stream completed with usage and at least one token.")
    error: FailureReason | None = Field(default=None, description="Why it failed, when it did.")
    error_detail: str | None = Field(default=None, description="The error message, shortened.")
    http_status: int | None = Field(default=None, description="HTTP status of the response, when one came.")
    ttft_ms: float | None = Field(default=None, description="Time to first token, ms.")
    e2e_ms: float | None = Field(default=None, description="End-to-end latency to the last token, ms.")
    tpot_ms: float | None = Field(default=None, description="Time per output token after the first, ms.")
    itl_ms: list[float] = Field(default_factory=list, description="Inter-token gaps, ms.")
    generated_text: str | None = Field(
        default=None, description="The generated text, kept only when asked for (samples)."
    )


class LatencyStats(ApiModel):
    """Distribution of one latency over the measured requests (or gaps, for ITL), in milliseconds.
    Percentiles interpolate linearly between order statistics (numpy's default); std is the population
    standard deviation (ddof=0), as vllm bench serve reports it. All zero when ``count`` is 0."""

    count: int = Field(ge=0, description="Number of values.")
    mean_ms: float = Field(description="Mean, ms.")
    median_ms: float = Field(description="Median (p50), ms.")
    p90_ms: float = Field(description="90th percentile, ms.")
    p95_ms: float = Field(description="95th percentile, ms.")
    p99_ms: float = Field(description="99th percentile, ms.")
    std_ms: float = Field(description="Population standard deviation, ms.")
    min_ms: float = Field(description="Smallest value, ms.")
    max_ms: float = Field(description="Largest value, ms.")


class StepResult(ApiModel):
    """What every step (the latency run, one batch size, one request rate) reports."""

    num_requests: int = Field(ge=0, description="Measured requests sent (warm-up excluded).")
    completed: int = Field(ge=0, description="Measured requests that succeeded.")
    failed: int = Field(ge=0, description="Measured requests that failed.")
    failures: dict[str, int] = Field(
        default_factory=dict, description="Failed requests by reason (FailureReason values)."
    )
    duration_s: float = Field(ge=0, description="From the first measured send to the last measured end, s.")
    total_input_tokens: int = Field(ge=0, description="Prompt tokens of completed requests (server usage).")
    total_output_tokens: int = Field(ge=0, description="Output tokens of completed requests (server usage).")
    request_throughput_per_s: float = Field(ge=0, description="Completed requests per second.")
    input_tokens_per_s: float = Field(ge=0, description="Prompt tokens of completed requests per second.")
    output_tokens_per_s: float = Field(ge=0, description="Output tokens of completed requests per second.")
    total_tokens_per_s: float = Field(ge=0, description="Input plus output tokens per second.")
    ttft: LatencyStats = Field(description="Time to first token.")
    tpot: LatencyStats = Field(description="Time per output token (excluding the first).")
    itl: LatencyStats = Field(description="Inter-token latency: every gap between token chunks.")
    e2e: LatencyStats = Field(description="End-to-end request latency.")


class LatencyResult(StepResult):
    """Latency workload: one request at a time (batch size 1)."""

    batch_size: int = Field(default=1, ge=1, description="Concurrent requests (always 1).")
    input_len: int = Field(ge=1, description="Prompt tokens requested per request.")
    output_len: int = Field(ge=1, description="Output tokens requested per request (ignore_eos).")
    ms_per_token: float = Field(
        ge=0, description="Mean TPOT at batch size 1, ms/token: the headline decode latency."
    )


class ThroughputBatchResult(StepResult):
    """Throughput workload, one batch size: ``iterations`` batches of ``batch_size`` requests released
    together. Rates are over the measured batches' wall time (sum of batch durations)."""

    batch_size: int = Field(ge=1, description="Requests released together.")
    iterations: int = Field(ge=1, description="Measured batches.")
    input_len: int = Field(ge=1, description="Prompt tokens requested per request.")
    output_len: int = Field(ge=1, description="Output tokens requested per request (ignore_eos).")
    batch_output_tokens_per_s: list[float] = Field(
        default_factory=list, description="Output tokens/s of each measured batch."
    )


class ServingRateResult(StepResult):
    """Serving workload, one request rate."""

    rate_label: str = Field(description="The request rate as named everywhere: '4', '0.5' or 'inf'.")
    request_rate_per_s: float | None = Field(
        default=None, description="Target arrival rate, requests/s; null (absent) for 'inf' (closed loop)."
    )
    arrival: str = Field(description="Arrival process: poisson, gamma or constant.")
    burstiness: float = Field(description="Gamma shape used (1 = Poisson).")
    max_concurrency: int | None = Field(default=None, description="Cap on requests in flight, if any.")
    peak_concurrency: int = Field(ge=0, description="Most measured requests in flight at once.")
    warmup_requests: int = Field(ge=0, description="Unmeasured requests sent first.")
    goodput_per_s: float | None = Field(
        default=None, description="Completed requests meeting every SLO, per second; null without an SLO."
    )
    goodput_ratio: float | None = Field(
        default=None, ge=0, le=1, description="Share of measured requests meeting every SLO."
    )
    goodput_tokens_per_s: float | None = Field(
        default=None, ge=0, description="Output tokens/s of completed requests meeting every SLO."
    )
    schedule_lag_ms: LatencyStats | None = Field(
        default=None,
        description="How late requests were sent versus the arrival schedule: shows when the client lagged.",
    )


class CapacityResult(ApiModel):
    """Capacity workload: the rates tried (their full results are in ``serving``, in the order tried) and
    the highest one that met the SLO."""

    percentile: int = Field(description="Latency percentile held to the SLO.")
    tried_rates_per_s: list[float] = Field(default_factory=list, description="Rates tried, in order.")
    passed: list[bool] = Field(default_factory=list, description="Whether each tried rate met the SLO.")
    misses: list[list[str]] = Field(
        default_factory=list, description="Why each tried rate failed the SLO (empty when it passed)."
    )
    capacity_requests_per_s: float | None = Field(
        default=None, ge=0, description="Highest tried rate that met the SLO; null when none did."
    )
    failing_rate_per_s: float | None = Field(
        default=None,
        ge=0,
        description="Lowest tried rate above the capacity that failed (the bracket's top).",
    )
    output_tokens_per_s: float | None = Field(
        default=None, ge=0, description="Output tokens/s measured at the capacity rate."
    )
    goodput_tokens_per_s: float | None = Field(
        default=None,
        ge=0,
        description="Output tokens/s of the requests that met every SLO, at the capacity rate.",
    )
    reached_max_rate: bool = Field(
        default=False, description="The highest allowed rate passed: the true capacity may be higher."
    )
    budget_exhausted: bool = Field(
        default=False, description="The step budget ended the search before the bracket was within tolerance."
    )


class RepetitionFigures(ApiModel):
    """One repetition's headline figures (a workload with ``repetitions`` > 1 records one per repetition)."""

    ms_per_token: float | None = Field(default=None, ge=0, description="Latency workload: mean TPOT, ms.")
    output_tokens_per_s: dict[str, float] = Field(
        default_factory=dict,
        description="Output tokens/s per step: batch size (throughput) or rate label (serving).",
    )
    ttft_median_ms: dict[str, float] = Field(
        default_factory=dict, description="Serving: median TTFT per rate label, ms."
    )
    itl_median_ms: dict[str, float] = Field(
        default_factory=dict, description="Serving: median ITL per rate label, ms."
    )


class LoadgenResult(ApiModel):
    """The whole output of one ``quantbench-loadgen run``: one workload against one server."""

    api_version: Literal["quantbench.dev/loadgen-v1"] = Field(
        default=RESULT_API_VERSION, description="Version of this result shape."
    )
    workload_name: str = Field(description="Name of the workload in the benchmark spec.")
    workload_type: WorkloadType = Field(description="latency, throughput, serving or capacity.")
    server_url: str = Field(description="Base URL of the server that was measured.")
    model: str = Field(description="Model name sent in requests (the server's served model name).")
    endpoint: Literal["completions", "chat"] = Field(description="OpenAI-compatible endpoint used.")
    seed: int = Field(description="Seed of prompts and arrivals.")
    dataset: str = Field(description="Where the prompts came from, e.g. 'random(512,128)' or a file path.")
    started_at: datetime = Field(description="Wall-clock start (UTC).")
    finished_at: datetime = Field(description="Wall-clock end (UTC).")
    tool_version: str = Field(description="quantbench-loadgen version that measured it.")
    server_version: str | None = Field(
        default=None, description="Version the server reported at GET /version (vLLM's), if it answered."
    )
    latency: LatencyResult | None = Field(default=None, description="Latency workload result.")
    throughput: list[ThroughputBatchResult] = Field(
        default_factory=list, description="Throughput workload: one entry per batch size, in sweep order."
    )
    serving: list[ServingRateResult] = Field(
        default_factory=list, description="Serving workload: one entry per request rate, in spec order."
    )
    server_telemetry: ServerTelemetry | None = Field(
        default=None, description="The server's /metrics sampled during the run, with a summary per step."
    )
    capacity: CapacityResult | None = Field(default=None, description="Capacity workload result.")
    repetitions: list[RepetitionFigures] = Field(
        default_factory=list,
        description="Headline figures of every repetition (workloads with repetitions > 1); the step "
        "results above are the first repetition's.",
    )
    total_failed: int = Field(default=0, ge=0, description="Failed measured requests over every step.")
    complete: bool = Field(
        default=True, description="False when the run stopped early (interrupt, unreachable server)."
    )
    notes: list[str] = Field(default_factory=list, description="Warnings a person should read.")
