"""Server telemetry: the vLLM server's /metrics, scraped at a fixed interval while a step runs.

What explains speed is on the server: how full the KV cache is, how many requests run and how many wait,
preemptions, prefix-cache hits, token counters. `TelemetryScraper` samples them every `interval_s` while a
workload (or the accuracy task) runs, each sample tagged with the step then running; `summarize` turns the
samples into one `TelemetryStepSummary` per step (peak and mean KV-cache use, peak queue, preemptions...).

vLLM's metric names differ between versions (`vllm:kv_cache_usage_perc` was `vllm:gpu_cache_usage_perc`;
prefix-cache counters had a `gpu_` prefix): `SOURCES` lists each field's names in order of preference.
Values of a metric with several label sets (one per model or engine) are summed.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from pydantic import Field

from quantbench_loadgen.schema import ApiModel

DEFAULT_INTERVAL_S = 1.0
# Samples kept in a result: a result travels in a ConfigMap (~1 MiB), and a sample is ~200 bytes. Longer
# runs keep every k-th sample (the per-step summaries always use all of them).
MAX_STORED_SAMPLES = 1000

# Sample field -> vLLM sample names (first one present wins).
SOURCES: dict[str, tuple[str, ...]] = {
    "kv_cache_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
    "running": ("vllm:num_requests_running",),
    "waiting": ("vllm:num_requests_waiting",),
    "preemptions": ("vllm:num_preemptions_total",),
    "prefix_cache_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
    "prefix_cache_queries": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
    "prompt_tokens": ("vllm:prompt_tokens_total",),
    "generation_tokens": ("vllm:generation_tokens_total",),
}


class TelemetrySample(ApiModel):
    """The server's state at one moment (None: the server does not expose that metric)."""

    t_s: float = Field(ge=0, description="Seconds since the workload started.")
    step: str = Field(description="The step running then: 'latency', 'bs<N>', a rate label, or 'accuracy'.")
    kv_cache_usage: float | None = Field(default=None, description="Fraction of KV-cache blocks in use.")
    running: float | None = Field(default=None, description="Requests the server is running.")
    waiting: float | None = Field(default=None, description="Requests waiting in the server's queue.")
    preemptions: float | None = Field(default=None, description="Preemptions since server start (counter).")
    prefix_cache_hits: float | None = Field(default=None, description="Prefix-cache hit tokens (counter).")
    prefix_cache_queries: float | None = Field(
        default=None, description="Prefix-cache queried tokens (counter)."
    )
    prompt_tokens: float | None = Field(default=None, description="Prompt tokens processed (counter).")
    generation_tokens: float | None = Field(default=None, description="Tokens generated (counter).")


class TelemetryStepSummary(ApiModel):
    """The server during one step."""

    step: str = Field(description="Step label, as in the samples.")
    samples: int = Field(ge=0, description="Samples taken during the step.")
    kv_cache_usage_peak: float | None = Field(default=None, description="Highest KV-cache use (fraction).")
    kv_cache_usage_mean: float | None = Field(default=None, description="Mean KV-cache use (fraction).")
    running_peak: float | None = Field(default=None, description="Most requests running at once.")
    waiting_peak: float | None = Field(default=None, description="Most requests waiting at once.")
    waiting_mean: float | None = Field(default=None, description="Mean requests waiting.")
    preemptions: float | None = Field(default=None, description="Preemptions during the step.")
    prefix_cache_hit_rate: float | None = Field(
        default=None, description="Prefix-cache hits / queries during the step."
    )
    generation_tokens: float | None = Field(
        default=None, description="Tokens the server generated in the step."
    )


class ServerTelemetry(ApiModel):
    """The server's /metrics over one workload: every sample, and a summary per step."""

    metrics_url: str = Field(description="Where the samples came from.")
    interval_s: float = Field(gt=0, description="Scrape interval, seconds.")
    samples: list[TelemetrySample] = Field(default_factory=list, description="Samples in time order.")
    stored_every: int = Field(
        default=1, ge=1, description="Every k-th sample taken is stored (long runs), the last one always."
    )
    steps: list[TelemetryStepSummary] = Field(default_factory=list, description="One summary per step.")
    failed_scrapes: int = Field(default=0, ge=0, description="Scrapes that got no answer or no metrics.")


def parse_metrics(text: str) -> dict[str, float | None]:
    """The sample fields from a Prometheus text exposition (vLLM's /metrics)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            totals[s.name] = totals.get(s.name, 0.0) + float(s.value)
    out: dict[str, float | None] = {}
    for field, names in SOURCES.items():
        out[field] = next((totals[n] for n in names if n in totals), None)
    return out


def _values(samples: Sequence[TelemetrySample], field: str) -> list[float]:
    return [v for s in samples if (v := getattr(s, field)) is not None]


def _delta(samples: Sequence[TelemetrySample], field: str) -> float | None:
    values = _values(samples, field)
    return max(0.0, values[-1] - values[0]) if len(values) >= 2 else None


def summarize(
    samples: Sequence[TelemetrySample], before: TelemetrySample | None = None
) -> list[TelemetryStepSummary]:
    """One summary per step, in the order the steps ran. Gauges are over the step's samples; counter figures
    are differences from the last sample before the step (the previous step's, or ``before``, taken before
    the first step) to the step's last, so a step shorter than the scrape interval still gets them."""
    by_step: dict[str, list[TelemetrySample]] = {}
    for s in samples:
        by_step.setdefault(s.step, []).append(s)
    out = []
    previous = before
    for step, group in by_step.items():
        kv, waiting, running = (_values(group, f) for f in ("kv_cache_usage", "waiting", "running"))
        span = [previous, *group] if previous is not None else group
        hits, queries = _delta(span, "prefix_cache_hits"), _delta(span, "prefix_cache_queries")
        out.append(
            TelemetryStepSummary(
                step=step,
                samples=len(group),
                kv_cache_usage_peak=max(kv) if kv else None,
                kv_cache_usage_mean=sum(kv) / len(kv) if kv else None,
                running_peak=max(running) if running else None,
                waiting_peak=max(waiting) if waiting else None,
                waiting_mean=sum(waiting) / len(waiting) if waiting else None,
                preemptions=_delta(span, "preemptions"),
                prefix_cache_hit_rate=hits / queries if hits is not None and queries else None,
                generation_tokens=_delta(span, "generation_tokens"),
            )
        )
        previous = group[-1]
    return out


class TelemetryScraper:
    """Scrapes `metrics_url` every `interval_s` in the background of a running event loop.

    async with TelemetryScraper(url, 1.0, lambda: counters.step) as scraper: ...run the workload...
    scraper.result()   # ServerTelemetry, or None when the server answered no scrape
    """

    def __init__(
        self,
        metrics_url: str,
        interval_s: float,
        step: Callable[[], str],
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"telemetry interval must be > 0 s (got {interval_s})")
        self.metrics_url = metrics_url
        self.interval_s = interval_s
        self._step = step
        self._headers = dict(headers or {})
        self._samples: list[TelemetrySample] = []
        self._before: TelemetrySample | None = None  # the last sample before the first step
        self._failed = 0
        self._origin = time.perf_counter()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> TelemetryScraper:
        self._origin = time.perf_counter()
        timeout = aiohttp.ClientTimeout(total=max(1.0, self.interval_s * 2))
        self._session = aiohttp.ClientSession(timeout=timeout, headers=self._headers)
        await self.scrape()  # where the counters stand before the first step
        self._task = asyncio.get_running_loop().create_task(self._loop())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.scrape()  # the state at the end of the last step
        if self._session is not None:
            await self._session.close()

    async def _loop(self) -> None:
        next_at = time.perf_counter()
        while True:
            next_at += self.interval_s
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await self.scrape()

    async def scrape(self) -> None:
        """Take one sample now (a failed scrape is counted, never raised)."""
        assert self._session is not None
        step, t = self._step(), time.perf_counter() - self._origin
        try:
            async with self._session.get(self.metrics_url) as resp:
                text = await resp.text() if resp.status == 200 else ""
        except (aiohttp.ClientError, TimeoutError, OSError):
            text = ""
        try:
            values = parse_metrics(text) if text else {}
        except ValueError:  # not a Prometheus exposition
            values = {}
        if not any(v is not None for v in values.values()):
            if step:  # a failed scrape before the first step costs no step a sample
                self._failed += 1
            return
        if not step:  # before the first step: only where the counters started from
            self._before = TelemetrySample(t_s=t, step="", **values)
            return
        self._samples.append(TelemetrySample(t_s=t, step=step, **values))

    def result(self) -> ServerTelemetry | None:
        if not self._samples:
            return None
        every, stored = thin(self._samples, MAX_STORED_SAMPLES)
        return ServerTelemetry(
            metrics_url=self.metrics_url,
            interval_s=self.interval_s,
            samples=stored,
            stored_every=every,
            steps=summarize(self._samples, self._before),
            failed_scrapes=self._failed,
        )


def thin(samples: Sequence[TelemetrySample], limit: int) -> tuple[int, list[TelemetrySample]]:
    """(k, every k-th sample and the last one), with k the smallest that keeps at most `limit` samples."""
    every = max(1, -(-(len(samples) - 1) // max(1, limit - 1)))
    kept = list(samples[::every])
    if kept[-1] is not samples[-1]:
        kept.append(samples[-1])
    return every, kept


@contextlib.contextmanager
def sampling_in_background(metrics_url: str, interval_s: float, step: str) -> Iterator[TelemetryScraper]:
    """Scrape in a thread of its own while synchronous code runs (the accuracy task: lm-eval blocks);
    call `.result()` on the yielded scraper after the block."""
    scraper = TelemetryScraper(metrics_url, interval_s, lambda: step)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        async with scraper:
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), name="telemetry", daemon=True)
    thread.start()
    started.wait(30)
    try:
        yield scraper
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()
