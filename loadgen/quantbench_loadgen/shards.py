"""A serving step spread over several client processes, for rates one Python process cannot stream.

The parent plans everything (prompts, bodies, the arrival schedule); request ``i`` goes to process
``i mod N``, which sends it at the same absolute time it would have had in one process (the monotonic clock
is shared by all processes of a machine). A closed loop splits its concurrency and request count instead.
Each process reports live counts through shared memory and its timings at the end; the parent assembles
one `StepRun` as if a single process had run it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing as mp
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized, SynchronizedArray
from typing import Any

from quantbench_loadgen.client import Endpoint, StreamingClient
from quantbench_loadgen.live import LiveCounters
from quantbench_loadgen.sender import Runner, RunOptions, StepRun
from quantbench_loadgen.stats import RequestTiming

_FIELDS = 4  # sent, completed, failed, output tokens

# Shared state of one pool, set in each child by the pool initializer.
_ready: Synchronized[int] | None = None
_start: Synchronized[float] | None = None
_counts: SynchronizedArray[int] | None = None


@dataclass(frozen=True)
class ShardJob:
    """What one process runs: its requests (global index, planned request) and, for an open loop, their
    arrival offsets from the common start."""

    shard: int
    url: str
    endpoint: Endpoint
    api_key: str | None
    timeout_s: float
    drain_timeout_s: float
    keep_text: bool
    group: str
    requests: Sequence[tuple[int, Any]]  # (key, runner.Planned); a duration-bounded closed loop cycles them
    offsets: Sequence[float] | None  # None: closed loop
    max_concurrency: int | None
    duration_s: float | None


def _init(ready: Synchronized[int], start: Synchronized[float], counts: SynchronizedArray[int]) -> None:
    global _ready, _start, _counts
    _ready, _start, _counts = ready, start, counts


def _child(job: ShardJob) -> list[tuple[int, RequestTiming]]:
    try:
        import uvloop

        return uvloop.run(_child_async(job))
    except ImportError:  # pragma: no cover
        return asyncio.run(_child_async(job))


async def _child_async(job: ShardJob) -> list[tuple[int, RequestTiming]]:
    assert _ready is not None and _start is not None and _counts is not None
    counters = LiveCounters()
    async with StreamingClient(
        job.url, endpoint=job.endpoint, api_key=job.api_key, timeout_s=job.timeout_s, keep_text=job.keep_text
    ) as client:
        runner = Runner(client, RunOptions(model="", drain_timeout_s=job.drain_timeout_s, counters=counters))
        with _ready.get_lock():
            _ready.value += 1
        while _start.value == 0.0:
            await asyncio.sleep(0.001)
        run = StepRun(group=job.group, origin=_start.value)
        base = job.shard * _FIELDS
        counts = _counts

        async def publish() -> None:
            while True:
                counts[base : base + _FIELDS] = [
                    counters.sent,
                    counters.completed,
                    counters.failed,
                    counters.output_tokens,
                ]
                await asyncio.sleep(0.1)

        reporter = asyncio.get_running_loop().create_task(publish())
        index_of = {id(p): i for i, p in job.requests}
        planned = [p for _, p in job.requests]
        closed = job.offsets is None
        offsets = itertools.repeat(0.0) if job.offsets is None else iter(job.offsets)
        reqs = itertools.cycle(planned) if closed and job.duration_s is not None else iter(planned)
        try:
            await runner.paced(
                run,
                reqs,
                offsets,
                closed_loop=closed,
                max_concurrency=job.max_concurrency,
                count=len(planned) if job.duration_s is None else None,
                duration_s=job.duration_s,
            )
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            counts[base : base + _FIELDS] = [
                counters.sent,
                counters.completed,
                counters.failed,
                counters.output_tokens,
            ]
    return [(index_of[id(p)], t) for p, t in zip(run.planned, run.timings, strict=True)]


def split(total: int | None, parts: int) -> list[int | None]:
    """``total`` split into ``parts`` near-equal shares (None stays None)."""
    if total is None:
        return [None] * parts
    return [total // parts + (1 if k < total % parts else 0) for k in range(parts)]


async def run_sharded(
    jobs_for: Any,
    processes: int,
    counters: LiveCounters,
) -> tuple[float, list[tuple[int, RequestTiming]]]:
    """Start ``processes`` workers, let them all begin at one instant, and gather their timings.

    ``jobs_for(k)`` builds the `ShardJob` of process ``k``. Returns the common origin and (global index,
    timing) pairs of every request sent."""
    ctx = mp.get_context("spawn")
    ready = ctx.Value("i", 0)
    start = ctx.Value("d", 0.0)
    counts = ctx.Array("q", processes * _FIELDS)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(
        processes, mp_context=ctx, initializer=_init, initargs=(ready, start, counts)
    ) as pool:
        futures = [loop.run_in_executor(pool, _child, jobs_for(k)) for k in range(processes)]
        while ready.value < processes:
            done = [f for f in futures if f.done()]
            for f in done:
                f.result()  # a worker that failed to start raises here
            await asyncio.sleep(0.005)
        origin = time.perf_counter() + 0.005
        start.value = origin
        counters.started = origin
        gathered = asyncio.gather(*futures)
        while not gathered.done():
            values = counts[:]
            counters.sent = sum(values[0::_FIELDS])
            counters.completed = sum(values[1::_FIELDS])
            counters.failed = sum(values[2::_FIELDS])
            counters.output_tokens = sum(values[3::_FIELDS])
            await asyncio.wait([gathered], timeout=0.1)
        results = gathered.result()
    return origin, [pair for shard in results for pair in shard]
