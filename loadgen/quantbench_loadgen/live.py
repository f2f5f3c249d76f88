"""What a run shows while it happens: Prometheus counters and histograms, a terminal progress line, and a
progress file that another program (`quantbench run`'s display) reads.

All read one `LiveCounters` object that the runner updates once per request send and once per request end
(never per token chunk), so watching a run costs almost nothing on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from quantbench_loadgen.stats import RequestTiming

_LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


@dataclass
class LiveCounters:
    """Running totals of the current step, for the progress line."""

    step: str = ""
    planned: int | None = None
    sent: int = 0
    completed: int = 0
    failed: int = 0
    output_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def in_flight(self) -> int:
        return self.sent - self.completed - self.failed

    def snapshot(self) -> dict[str, object]:
        """The counters as JSON-ready data (the progress file's content)."""
        return {
            "step": self.step,
            "planned": self.planned,
            "sent": self.sent,
            "completed": self.completed,
            "failed": self.failed,
            "output_tokens": self.output_tokens,
            "elapsed_s": round(time.perf_counter() - self.started, 3),
        }


class PrometheusExporter:
    """``quantbench_loadgen_*`` metrics on a private registry, served on ``port`` when one is given."""

    def __init__(self, workload: str, port: int | None = None, addr: str = "0.0.0.0") -> None:
        self.registry = CollectorRegistry()
        labels = ["workload", "step"]
        r = self.registry
        self._sent = Counter("quantbench_loadgen_requests_sent", "Requests sent.", labels, registry=r)
        self._done = Counter(
            "quantbench_loadgen_requests_completed", "Requests completed.", labels, registry=r
        )
        self._failed = Counter(
            "quantbench_loadgen_requests_failed",
            "Requests failed, by reason.",
            [*labels, "reason"],
            registry=r,
        )
        self._inflight = Gauge(
            "quantbench_loadgen_requests_in_flight", "Requests in flight.", labels, registry=r
        )
        self._out = Counter(
            "quantbench_loadgen_output_tokens", "Output tokens of completed requests.", labels, registry=r
        )
        self._in = Counter(
            "quantbench_loadgen_prompt_tokens", "Prompt tokens of completed requests.", labels, registry=r
        )
        hist = {"registry": r, "buckets": _LATENCY_BUCKETS_S}
        self._ttft = Histogram("quantbench_loadgen_ttft_seconds", "Time to first token.", labels, **hist)  # type: ignore[arg-type]
        self._itl = Histogram("quantbench_loadgen_itl_seconds", "Inter-token latency.", labels, **hist)  # type: ignore[arg-type]
        self._e2e = Histogram("quantbench_loadgen_e2e_latency_seconds", "End-to-end latency.", labels, **hist)  # type: ignore[arg-type]
        self._workload = workload
        self._step = ""
        if port is not None:
            start_http_server(port, addr=addr, registry=self.registry)

    def start_step(self, step: str) -> None:
        self._step = step
        w = self._workload
        self._c_sent = self._sent.labels(w, step)
        self._c_done = self._done.labels(w, step)
        self._g_inflight = self._inflight.labels(w, step)
        self._c_out = self._out.labels(w, step)
        self._c_in = self._in.labels(w, step)
        self._h_ttft = self._ttft.labels(w, step)
        self._h_itl = self._itl.labels(w, step)
        self._h_e2e = self._e2e.labels(w, step)

    def sent(self) -> None:
        self._c_sent.inc()
        self._g_inflight.inc()

    def finished(self, timing: RequestTiming) -> None:
        self._g_inflight.dec()
        if timing.error is not None:
            self._failed.labels(self._workload, self._step, str(timing.error)).inc()
            return
        self._c_done.inc()
        self._c_out.inc(timing.output_tokens or 0)
        self._c_in.inc(timing.prompt_tokens or 0)
        chunks = timing.chunk_times
        if chunks:
            self._h_ttft.observe(chunks[0] - timing.send)
            self._h_e2e.observe(chunks[-1] - timing.send)
            observe = self._h_itl.observe
            prev = chunks[0]
            for t in chunks[1:]:
                observe(t - prev)
                prev = t


class _Ticker(ABC):
    """Calls `show` every `interval_s` from a background task of the running loop, and once more at stop."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    @abstractmethod
    def show(self, final: bool = False) -> None:
        """Draw or write the counters once; `final` at the end of the run."""

    async def _loop(self) -> None:
        while True:
            self.show()
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.show(final=True)


class ProgressFile(_Ticker):
    """The counters written as one JSON object to `path` a few times a second, replaced atomically so a reader
    never sees half a file."""

    def __init__(self, counters: LiveCounters, path: Path, interval_s: float = 0.5) -> None:
        super().__init__(interval_s)
        self.counters = counters
        self.path = path

    def show(self, final: bool = False) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({**self.counters.snapshot(), "finished": final}))
        os.replace(tmp, self.path)


class ProgressLine(_Ticker):
    """A one-line progress display on a terminal, redrawn a few times a second by a background task."""

    def __init__(
        self, counters: LiveCounters, stream: TextIO | None = None, interval_s: float = 0.25
    ) -> None:
        super().__init__(interval_s)
        self.counters = counters
        self.stream = stream or sys.stderr

    def render(self) -> str:
        c = self.counters
        elapsed = max(time.perf_counter() - c.started, 1e-9)
        total = f"/{c.planned}" if c.planned is not None else ""
        done = c.completed + c.failed
        bar = ""
        if c.planned:
            filled = int(20 * done / c.planned)
            bar = "[" + "#" * filled + "." * (20 - filled) + "] "
        return (
            f"{c.step:>10} {bar}{done}{total} done, {c.failed} failed, {c.in_flight} in flight, "
            f"{c.completed / elapsed:.1f} req/s, {c.output_tokens / elapsed:.0f} tok/s, {elapsed:.0f} s"
        )

    def show(self, final: bool = False) -> None:
        self.stream.write("\r\x1b[2K" + self.render() + ("\n" if final else ""))
        self.stream.flush()
