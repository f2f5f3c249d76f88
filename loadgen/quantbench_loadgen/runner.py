"""Runs a workload against a server: latency (one at a time), throughput (batches released together) and
serving (arrivals at a rate, or a closed loop), and turns what was measured into a `LoadgenResult`."""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

from quantbench_loadgen import __version__
from quantbench_loadgen.arrivals import arrival_offsets, schedule
from quantbench_loadgen.capacity import Trial, bracket, next_rate, slo_misses
from quantbench_loadgen.client import Endpoint, StreamingClient, request_body, server_root
from quantbench_loadgen.datasets import Prompt, describe, load_prompts, random_prompts
from quantbench_loadgen.results import (
    CapacityResult,
    LatencyResult,
    LoadgenResult,
    RepetitionFigures,
    ServingRateResult,
    ThroughputBatchResult,
)
from quantbench_loadgen.schema import duration_seconds, rate_label
from quantbench_loadgen.sender import Planned, Runner, RunOptions, StepRun
from quantbench_loadgen.shards import ShardJob, run_sharded, split
from quantbench_loadgen.specs import (
    CapacityWorkload,
    DatasetKind,
    DatasetSource,
    LatencyWorkload,
    ServingWorkload,
    ThroughputWorkload,
    WorkloadType,
)
from quantbench_loadgen.stats import (
    latency_stats,
    measured,
    meets_slo,
    peak_concurrency,
    step_fields,
    step_span_s,
)
from quantbench_loadgen.telemetry import TelemetryScraper
from quantbench_loadgen.tokenization import Tokenizer

AnyWorkload = LatencyWorkload | ThroughputWorkload | ServingWorkload | CapacityWorkload
DURATION_PROMPT_POOL = 1000  # distinct prompts cycled through by a duration-bounded serving step


def _bodies(prompts: Sequence[Prompt], model: str, endpoint: str, warmup: bool = False) -> list[Planned]:
    ep: Endpoint = "chat" if endpoint == "chat" else "completions"
    return [
        Planned(
            request_body(
                endpoint=ep, model=model, prompt=p.text, max_tokens=p.output_len, ignore_eos=p.exact_output
            ),
            p,
            warmup,
        )
        for p in prompts
    ]


def _random_source(input_len: int, output_len: int) -> DatasetSource:
    return DatasetSource(kind=DatasetKind.RANDOM, input_len=input_len, output_len=output_len)


async def run_latency(
    runner: Runner, wl: LatencyWorkload, tokenizer: Tokenizer | None
) -> tuple[LatencyResult, StepRun]:
    if tokenizer is None:
        raise ValueError("a latency workload builds random prompts: it needs a tokenizer")
    n = wl.warmup_iterations + wl.iterations
    prompts = random_prompts(tokenizer, n, wl.input_len, wl.output_len, wl.seed)
    model = runner.options.model
    reqs = _bodies(prompts[: wl.warmup_iterations], model, wl.endpoint, True)
    reqs += _bodies(prompts[wl.warmup_iterations :], model, wl.endpoint)
    run = runner.start_step("latency", n)
    await runner.sequential(run, reqs)
    recs = measured(run.records())
    fields = step_fields(recs, sum((r.end_s - r.send_s) for r in recs))
    result = LatencyResult(
        **fields,
        batch_size=1,
        input_len=wl.input_len,
        output_len=wl.output_len,
        ms_per_token=fields["tpot"].mean_ms,
    )
    return result, run


async def run_throughput(
    runner: Runner, wl: ThroughputWorkload, tokenizer: Tokenizer | None
) -> list[tuple[ThroughputBatchResult, StepRun]]:
    if tokenizer is None:
        raise ValueError("a throughput workload builds random prompts: it needs a tokenizer")
    out = []
    model = runner.options.model
    for bs in wl.batch_sizes:
        if runner.stopping:
            break
        batches = wl.warmup_iterations + wl.iterations
        prompts = random_prompts(tokenizer, bs * batches, wl.input_len, wl.output_len, wl.seed + bs)
        run = runner.start_step(f"bs{bs}", bs * batches)
        durations: list[float] = []
        per_batch: list[float] = []
        for b in range(batches):
            warm = b < wl.warmup_iterations
            chunk = _bodies(prompts[b * bs : (b + 1) * bs], model, wl.endpoint, warm)
            first = len(run.timings)
            await runner.together(run, chunk)
            if not warm:
                timings = run.timings[first:]
                span = max(t.end for t in timings) - min(t.send for t in timings)
                tokens = sum(t.output_tokens or 0 for t in timings if t.error is None)
                durations.append(span)
                per_batch.append(tokens / span if span > 0 else 0.0)
        recs = measured(run.records())
        fields = step_fields(recs, sum(durations))
        result = ThroughputBatchResult(
            **fields,
            batch_size=bs,
            iterations=wl.iterations,
            input_len=wl.input_len,
            output_len=wl.output_len,
            batch_output_tokens_per_s=per_batch,
        )
        out.append((result, run))
    return out


def serving_prompts(wl: ServingWorkload, tokenizer: Tokenizer | None) -> list[Prompt]:
    """The prompts of a serving workload: ``numPrompts`` of them, or a pool cycled through for a duration."""
    count = wl.num_prompts if wl.num_prompts is not None else DURATION_PROMPT_POOL
    return load_prompts(wl.dataset, count + wl.warmup_requests, wl.seed, tokenizer)


async def run_serving(
    runner: Runner, wl: ServingWorkload, prompts: Sequence[Prompt]
) -> list[tuple[ServingRateResult, StepRun]]:
    duration_s = duration_seconds(wl.duration) if wl.duration is not None else None
    model = runner.options.model
    warm = _bodies(prompts[: wl.warmup_requests], model, wl.endpoint, True)
    measured_pool = _bodies(prompts[wl.warmup_requests :] or prompts, model, wl.endpoint)
    out = []
    for rate in wl.request_rates:
        if runner.stopping:
            break
        label = rate_label(rate)
        if math.isinf(rate) and duration_s is not None and wl.max_concurrency is None:
            raise ValueError("requestRates 'inf' with a duration is a closed loop: set maxConcurrency")
        run = runner.start_step(label, wl.num_prompts)
        if warm:
            await runner.together(run, warm)
            run.origin = time.perf_counter()
        if runner.options.processes > 1:
            await _paced_sharded(runner, run, wl, rate, measured_pool, duration_s)
        else:
            await runner.paced(
                run,
                itertools.cycle(measured_pool),
                arrival_offsets(rate, wl.arrival, wl.burstiness, wl.seed),
                closed_loop=math.isinf(rate),
                max_concurrency=wl.max_concurrency,
                count=wl.num_prompts,
                duration_s=duration_s,
            )
        records = run.records()
        recs = measured(records)
        fields = step_fields(recs, step_span_s(recs))
        good = [r for r in recs if meets_slo(r, wl.slo)] if wl.slo is not None else None
        lags = [(r.send_s - r.scheduled_s) * 1000.0 for r in recs if r.scheduled_s is not None]
        result = ServingRateResult(
            **fields,
            rate_label=label,
            request_rate_per_s=None if math.isinf(rate) else rate,
            arrival=str(wl.arrival),
            burstiness=wl.burstiness,
            max_concurrency=wl.max_concurrency,
            peak_concurrency=peak_concurrency(recs),
            warmup_requests=wl.warmup_requests,
            goodput_per_s=None
            if good is None
            else (len(good) / fields["duration_s"] if fields["duration_s"] else 0.0),
            goodput_ratio=None if good is None else (len(good) / len(recs) if recs else 0.0),
            goodput_tokens_per_s=None
            if good is None
            else (
                sum(r.output_tokens or 0 for r in good) / fields["duration_s"]
                if fields["duration_s"]
                else 0.0
            ),
            schedule_lag_ms=latency_stats(lags) if lags and not math.isinf(rate) else None,
        )
        out.append((result, run))
    return out


async def _paced_sharded(
    runner: Runner,
    run: StepRun,
    wl: ServingWorkload,
    rate: float,
    pool: Sequence[Planned],
    duration_s: float | None,
) -> None:
    """`Runner.paced` over ``runner.options.processes`` processes (see `quantbench_loadgen.shards`)."""
    opts = runner.options
    n = opts.processes
    closed = math.isinf(rate)
    offsets: list[float] | None = None
    if closed:
        total = wl.num_prompts if wl.num_prompts is not None else len(pool)
    else:
        offsets = schedule(
            rate, wl.arrival, wl.burstiness, wl.seed, count=wl.num_prompts, duration_s=duration_s
        )
        total = len(offsets)
    caps = split(wl.max_concurrency, n)
    ep: Endpoint = "chat" if wl.endpoint == "chat" else "completions"

    def job(k: int) -> ShardJob:
        keys = range(k, total, n)
        return ShardJob(
            shard=k,
            url=runner.client.base_url,
            endpoint=ep,
            api_key=runner.client.api_key,
            timeout_s=opts.request_timeout_s,
            drain_timeout_s=opts.drain_timeout_s,
            keep_text=opts.keep_text,
            group=run.group,
            requests=[(i, pool[i % len(pool)]) for i in keys],
            offsets=None if offsets is None else [offsets[i] for i in keys],
            max_concurrency=caps[k],
            duration_s=duration_s,
        )

    origin, pairs = await run_sharded(job, n, opts.counters)
    run.origin = origin
    for key, timing in sorted(pairs, key=lambda kt: kt[1].send):
        planned = pool[key % len(pool)]
        run.planned.append(planned)
        run.timings.append(timing)
        run.scheduled.append(None if offsets is None else origin + offsets[key])
        if opts.exporter is not None:
            opts.exporter.sent()
            opts.exporter.finished(timing)


@contextlib.asynccontextmanager
async def server_telemetry(url: str, options: RunOptions) -> AsyncIterator[TelemetryScraper | None]:
    """Scrape the server's /metrics while the workload runs, each sample tagged with the running step."""
    if not options.telemetry_interval_s:
        yield None
        return
    counters = options.counters
    scraper = TelemetryScraper(
        f"{server_root(url)}/metrics", options.telemetry_interval_s, lambda: counters.step
    )
    async with scraper:
        yield scraper


async def run_capacity(
    runner: Runner, wl: CapacityWorkload, prompts: Sequence[Prompt]
) -> tuple[CapacityResult, list[ServingRateResult]]:
    """Search the highest rate meeting the SLO (`quantbench_loadgen.capacity`), one serving run per step."""
    trials: list[Trial] = []
    steps: list[ServingRateResult] = []
    out = CapacityResult(percentile=wl.percentile)
    while len(trials) < wl.steps and not runner.stopping:
        rate = next_rate(trials, wl.start_rate, wl.max_rate, wl.growth, wl.tolerance, wl.min_rate)
        if rate is None:
            break
        [(step, _)] = await run_serving(runner, wl.serving_at(rate), prompts)
        misses = slo_misses(step, wl.slo, wl.percentile, wl.max_failed_ratio)
        trials.append(Trial(rate, not misses))
        steps.append(step)
        out.tried_rates_per_s.append(rate)
        out.passed.append(not misses)
        out.misses.append(misses)
    lo, hi = bracket(trials)
    out.capacity_requests_per_s, out.failing_rate_per_s = lo, hi
    out.reached_max_rate = lo is not None and lo >= wl.max_rate
    out.budget_exhausted = (
        len(trials) >= wl.steps
        and next_rate(trials, wl.start_rate, wl.max_rate, wl.growth, wl.tolerance, wl.min_rate) is not None
    )
    if lo is not None:
        at = steps[trials.index(Trial(lo, True))]
        out.output_tokens_per_s = at.output_tokens_per_s
        out.goodput_tokens_per_s = at.goodput_tokens_per_s
    return out, steps


def repetition_figures(
    latency: LatencyResult | None,
    throughput: Sequence[ThroughputBatchResult],
    serving: Sequence[ServingRateResult],
) -> RepetitionFigures:
    """The headline figures of one repetition of a workload."""
    done = [s for s in serving if s.completed > 0]
    return RepetitionFigures(
        ms_per_token=latency.ms_per_token if latency is not None and latency.completed > 0 else None,
        output_tokens_per_s={str(t.batch_size): t.output_tokens_per_s for t in throughput if t.completed > 0}
        | {s.rate_label: s.output_tokens_per_s for s in done},
        ttft_median_ms={s.rate_label: s.ttft.median_ms for s in done},
        itl_median_ms={s.rate_label: s.itl.median_ms for s in done if s.itl.count},
    )


async def run_workload(
    wl: AnyWorkload,
    *,
    url: str,
    options: RunOptions,
    tokenizer: Tokenizer | None,
    api_key: str | None = None,
    runner_ready: Callable[[Runner], None] | None = None,
) -> tuple[LoadgenResult, list[StepRun]]:
    """Run one workload end to end and build its result (partial when the server fails)."""
    started = datetime.now(UTC)
    ep: Endpoint = "chat" if wl.endpoint == "chat" else "completions"
    prompts = (
        serving_prompts(wl.serving_at(1.0) if isinstance(wl, CapacityWorkload) else wl, tokenizer)
        if isinstance(wl, ServingWorkload | CapacityWorkload)
        else []
    )
    async with (
        StreamingClient(
            url,
            endpoint=ep,
            api_key=api_key,
            timeout_s=options.request_timeout_s,
            keep_text=options.keep_text,
        ) as client,
        server_telemetry(url, options) as scraper,
    ):
        runner = Runner(client, options)
        if runner_ready is not None:
            runner_ready(runner)
        result = LoadgenResult(
            workload_name=wl.name,
            workload_type=WorkloadType(wl.type),
            server_url=url,
            model=options.model,
            endpoint=wl.endpoint,
            seed=wl.seed,
            dataset=describe(wl.dataset)
            if isinstance(wl, ServingWorkload | CapacityWorkload)
            else describe(_random_source(wl.input_len, wl.output_len)),
            started_at=started,
            finished_at=started,
            tool_version=__version__,
            server_version=await client.server_version(),
        )
        figures: list[RepetitionFigures] = []
        for rep in range(wl.repetitions):
            if runner.stopping:
                break
            latency: LatencyResult | None = None
            throughput: list[ThroughputBatchResult] = []
            serving: list[ServingRateResult] = []
            if isinstance(wl, LatencyWorkload):
                latency, _ = await run_latency(runner, wl, tokenizer)
            elif isinstance(wl, ThroughputWorkload):
                throughput = [r for r, _ in await run_throughput(runner, wl, tokenizer)]
            elif isinstance(wl, CapacityWorkload):
                capacity, serving = await run_capacity(runner, wl, prompts)
                if rep == 0:
                    result.capacity = capacity
            else:
                serving = [r for r, _ in await run_serving(runner, wl, prompts)]
            if rep == 0:
                result.latency, result.throughput, result.serving = latency, throughput, serving
            else:
                result.total_failed += sum(
                    s.failed for s in [*([latency] if latency else []), *throughput, *serving]
                )
            figures.append(repetition_figures(latency, throughput, serving))
        if wl.repetitions > 1:
            result.repetitions = figures
    if scraper is not None:
        result.server_telemetry = scraper.result()
        if result.server_telemetry is None:
            result.notes.append(f"no server telemetry: {scraper.metrics_url} answered no scrape")
    steps = [result.latency] if result.latency is not None else [*result.throughput, *result.serving]
    result.total_failed += sum(s.failed for s in steps)
    for s in steps:
        if s.num_requests and s.completed == 0 and not runner.stopping:
            result.notes.append(f"every request failed ({s.failures}): check the server url and model")
            result.complete = False
            break
    if runner.stopping:
        result.complete = False
        result.notes.append("stopped early by a signal: the last step is partial, later steps did not run")
    result.finished_at = datetime.now(UTC)
    return result, runner.steps
