"""Sends planned requests through one streaming client: the sender every workload step uses, in one
process or in each shard process (quantbench_loadgen.shards), updating live counters and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from quantbench_loadgen.client import StreamingClient
from quantbench_loadgen.datasets import Prompt
from quantbench_loadgen.live import LiveCounters, PrometheusExporter
from quantbench_loadgen.results import RequestRecord
from quantbench_loadgen.stats import RequestTiming, to_record


@dataclass(frozen=True, slots=True)
class Planned:
    """One request ready to send."""

    body: bytes
    prompt: Prompt
    warmup: bool = False


@dataclass
class StepRun:
    """The raw outcome of one step: timings in send order, with the monotonic origin of the step."""

    group: str
    origin: float
    planned: list[Planned] = field(default_factory=list)
    timings: list[RequestTiming] = field(default_factory=list)
    scheduled: list[float | None] = field(default_factory=list)

    def records(self) -> list[RequestRecord]:
        return [
            to_record(
                t,
                index=i,
                group=self.group,
                origin=self.origin,
                warmup=p.warmup,
                scheduled=s,
                expected_prompt_tokens=p.prompt.prompt_len,
                requested_output_tokens=p.prompt.output_len,
            )
            for i, (p, t, s) in enumerate(zip(self.planned, self.timings, self.scheduled, strict=True))
        ]


@dataclass
class RunOptions:
    """How to run, beyond what the workload spec says."""

    model: str
    request_timeout_s: float = 600.0
    drain_timeout_s: float = 60.0
    keep_text: bool = False
    exporter: PrometheusExporter | None = None
    counters: LiveCounters = field(default_factory=LiveCounters)
    processes: int = 1  # serving steps: client processes sharing the load
    telemetry_interval_s: float | None = None  # scrape the server's /metrics this often (None: never)


class Runner:
    """Sends planned requests through one client, updating live counters and metrics."""

    def __init__(self, client: StreamingClient, options: RunOptions) -> None:
        self.client = client
        self.options = options
        self._nonce = secrets.token_hex(4)
        self.steps: list[StepRun] = []
        self.stopping = False
        self._stop_event: asyncio.Event | None = None
        self._inflight: set[asyncio.Task[None]] = set()

    def stop(self) -> None:
        """Stop early (a signal): send nothing more, cancel what is in flight (counted as cancelled)."""
        self.stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
        for task in list(self._inflight):
            task.cancel()

    def _track(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return task

    async def _pause(self, delay: float) -> None:
        """Sleep, but wake at once when the run is stopped."""
        if self._stop_event is None:
            self._stop_event = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), delay)

    def start_step(self, group: str, planned: int | None) -> StepRun:
        c = self.options.counters
        c.step, c.planned, c.sent, c.completed, c.failed, c.output_tokens = group, planned, 0, 0, 0, 0
        c.started = time.perf_counter()
        if self.options.exporter is not None:
            self.options.exporter.start_step(group)
        run = StepRun(group=group, origin=time.perf_counter())
        self.steps.append(run)
        return run

    def _add(self, run: StepRun, req: Planned, scheduled: float | None) -> RequestTiming:
        timing = RequestTiming()
        run.planned.append(req)
        run.timings.append(timing)
        run.scheduled.append(scheduled)
        return timing

    async def _send(self, run: StepRun, req: Planned, timing: RequestTiming, index: int) -> None:
        counters, exporter = self.options.counters, self.options.exporter
        counters.sent += 1
        if exporter is not None:
            exporter.sent()
        try:
            await self.client.send(req.body, timing, f"qb-{self._nonce}-{run.group}-{index}")
        finally:
            if timing.error is None:
                counters.completed += 1
                counters.output_tokens += timing.output_tokens or 0
            else:
                counters.failed += 1
            if exporter is not None:
                exporter.finished(timing)

    async def sequential(self, run: StepRun, reqs: Sequence[Planned]) -> None:
        for req in reqs:
            if self.stopping:
                return
            await asyncio.wait(
                [self._track(self._send(run, req, self._add(run, req, None), len(run.timings) - 1))]
            )

    async def together(self, run: StepRun, reqs: Sequence[Planned]) -> None:
        if self.stopping:
            return
        sends = [
            self._track(self._send(run, req, self._add(run, req, None), len(run.timings) - 1)) for req in reqs
        ]
        await asyncio.wait(sends)

    async def paced(
        self,
        run: StepRun,
        reqs: Iterator[Planned],
        offsets: Iterator[float],
        *,
        closed_loop: bool,
        max_concurrency: int | None,
        count: int | None,
        duration_s: float | None,
    ) -> None:
        """Open loop: send at ``run.origin + offset``; a request that finds ``max_concurrency`` requests in
        flight waits for a slot (that wait is not part of its latency). Closed loop: keep ``max_concurrency``
        requests in flight (all at once without a cap). Stop after ``count`` requests or ``duration_s``; then
        wait for those in flight (cancelling them after the drain timeout in duration mode)."""
        origin = run.origin
        deadline = math.inf if duration_s is None else origin + duration_s
        sem = asyncio.Semaphore(max_concurrency) if max_concurrency is not None else None
        tasks: set[asyncio.Task[None]] = set()

        async def open_loop(req: Planned, scheduled: float, index: int) -> None:
            if sem is None:
                await self._send(run, req, self._add(run, req, scheduled), index)
                return
            async with sem:
                if time.perf_counter() < deadline:
                    await self._send(run, req, self._add(run, req, scheduled), index)

        async def slot_held(req: Planned, index: int) -> None:
            assert sem is not None
            try:
                await self._send(run, req, self._add(run, req, None), index)
            finally:
                sem.release()

        for index, (req, offset) in enumerate(zip(reqs, offsets, strict=False)):
            if (count is not None and index >= count) or self.stopping:
                break
            if closed_loop:
                if sem is not None:
                    await sem.acquire()
                    if time.perf_counter() >= deadline or self.stopping:
                        sem.release()
                        break
                    coro = slot_held(req, index)
                else:
                    coro = self._send(run, req, self._add(run, req, None), index)
            else:
                target = origin + offset
                if target >= deadline:
                    break
                delay = target - time.perf_counter()
                if delay > 0:
                    await self._pause(delay)
                    if self.stopping:
                        break
                coro = open_loop(req, target, index)
            task = self._track(coro)
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if index % 64 == 63:
                await asyncio.sleep(0)  # let responses in while a backlog is released
        if tasks:
            timeout = (
                None
                if duration_s is None
                else max(deadline - time.perf_counter(), 0) + self.options.drain_timeout_s
            )
            _, pending = await asyncio.wait(set(tasks), timeout=timeout)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
