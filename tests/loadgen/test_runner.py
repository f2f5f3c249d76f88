"""Workloads end to end against the scripted server: counts, warm-up, concurrency caps, goodput, processes."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from quantbench_loadgen.live import LiveCounters
from quantbench_loadgen.results import LoadgenResult
from quantbench_loadgen.runner import run_workload
from quantbench_loadgen.sender import RunOptions, StepRun
from quantbench_loadgen.specs import Workload
from quantbench_loadgen.stats import peak_concurrency
from quantbench_loadgen.tokenization import LocalTokenizer, ServerTokenizer
from tests.loadgen.conftest import ScriptedFactory, closed_port

WORKLOAD: TypeAdapter[Any] = TypeAdapter(Workload)
SCRIPTED_VERSION = "0.0.0+scripted"


def _run(
    url: str, spec: dict[str, Any], tokdir: Path | None, **opts: Any
) -> tuple[LoadgenResult, list[StepRun]]:
    wl = WORKLOAD.validate_python(spec)
    tok = LocalTokenizer(tokdir) if tokdir else ServerTokenizer(url, "scripted")
    options = RunOptions(model="scripted", counters=LiveCounters(), **opts)
    return asyncio.run(run_workload(wl, url=url, options=options, tokenizer=tok))


def _serving(**kw: Any) -> dict[str, Any]:
    spec = {
        "name": "s",
        "type": "serving",
        "requestRates": [50],
        "numPrompts": 30,
        "dataset": {"kind": "random", "inputLen": 16, "outputLen": 8},
    }
    return spec | kw


def test_serving_counts_rates_and_excludes_warmup(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path
) -> None:
    url = scripted_server(ttft_ms=5, itl_ms=2)
    result, steps = _run(url, _serving(requestRates=[50, "inf"], warmupRequests=3), scripted_tokenizer)
    assert [s.rate_label for s in result.serving] == ["50", "inf"]
    for s, step in zip(result.serving, steps, strict=True):
        assert (s.num_requests, s.completed, s.failed) == (30, 30, 0)
        assert s.total_input_tokens == 30 * 16 and s.total_output_tokens == 30 * 8
        assert s.ttft.count == 30 and s.ttft.min_ms >= 5.0
        assert s.itl.count == 30 * 7
        assert sum(r.warmup for r in step.records()) == 3
    rate50 = result.serving[0]
    assert rate50.request_rate_per_s == 50 and rate50.schedule_lag_ms is not None
    assert 20 < rate50.request_throughput_per_s < 80  # Poisson at 50/s over 30 requests
    assert result.serving[1].request_rate_per_s is None and result.serving[1].schedule_lag_ms is None
    assert result.complete and result.total_failed == 0
    assert result.server_version == SCRIPTED_VERSION  # what the server reported at GET /version
    assert LoadgenResult.model_validate(result.to_wire()) == result  # the wire shape round-trips


def test_server_tokenizer_gives_the_same_exact_lengths(scripted_server: ScriptedFactory) -> None:
    result, _ = _run(scripted_server(), _serving(numPrompts=5, requestRates=["inf"]), None)
    assert result.serving[0].total_input_tokens == 5 * 16


def test_max_concurrency_caps_requests_in_flight(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path
) -> None:
    url = scripted_server(ttft_ms=5, itl_ms=2)
    result, steps = _run(url, _serving(requestRates=["inf", 1000], maxConcurrency=4), scripted_tokenizer)
    for s, step in zip(result.serving, steps, strict=True):
        assert s.completed == 30 and s.peak_concurrency <= 4
        assert peak_concurrency(step.records()) == s.peak_concurrency


def test_duration_mode(scripted_server: ScriptedFactory, scripted_tokenizer: Path) -> None:
    url = scripted_server(ttft_ms=5, itl_ms=2)
    spec = _serving(numPrompts=None, duration="1s", requestRates=[40, "inf"], maxConcurrency=3)
    result, _ = _run(url, spec, scripted_tokenizer)
    paced, closed = result.serving
    assert 20 <= paced.num_requests <= 70 and paced.failed == 0
    assert closed.completed > 10 and closed.peak_concurrency <= 3
    assert closed.duration_s < 3.0


def test_goodput_under_slo(scripted_server: ScriptedFactory, scripted_tokenizer: Path) -> None:
    url = scripted_server(ttft_ms=20, itl_ms=2)
    met, _ = _run(url, _serving(slo={"ttftMs": 5000}), scripted_tokenizer)
    missed, _ = _run(url, _serving(slo={"ttftMs": 10}), scripted_tokenizer)  # scripted TTFT is 20 ms
    assert met.serving[0].goodput_ratio == 1.0 and met.serving[0].goodput_per_s
    assert missed.serving[0].goodput_ratio == 0.0 and missed.serving[0].goodput_per_s == 0.0
    no_slo, _ = _run(url, _serving(), scripted_tokenizer)
    assert no_slo.serving[0].goodput_ratio is None


def test_latency_and_throughput_workloads(scripted_server: ScriptedFactory, scripted_tokenizer: Path) -> None:
    url = scripted_server(ttft_ms=5, itl_ms=4)
    spec = {
        "name": "l",
        "type": "latency",
        "inputLen": 32,
        "outputLen": 10,
        "iterations": 4,
        "warmupIterations": 1,
    }
    lat, steps = _run(url, spec, scripted_tokenizer)
    assert lat.latency is not None and lat.latency.completed == 4
    assert (
        lat.latency.ms_per_token == pytest.approx(lat.latency.tpot.mean_ms) and lat.latency.ms_per_token > 0
    )
    # token k is written ttft + k*itl after the request arrived: never earlier
    assert lat.latency.e2e.min_ms >= 5 + 9 * 4
    assert peak_concurrency(steps[0].records()) == 1
    spec = {
        "name": "t",
        "type": "throughput",
        "batchSizes": [1, 4],
        "inputLen": 32,
        "outputLen": 10,
        "iterations": 2,
    }
    thr, steps = _run(url, spec, scripted_tokenizer)
    assert [b.batch_size for b in thr.throughput] == [1, 4]
    b4 = thr.throughput[1]
    assert b4.completed == 8 and len(b4.batch_output_tokens_per_s) == 2
    assert b4.output_tokens_per_s > thr.throughput[0].output_tokens_per_s  # 4 streams in parallel
    assert peak_concurrency([r for r in steps[1].records() if not r.warmup]) == 4


def test_repetitions_record_each_repetitions_figures(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path
) -> None:
    url = scripted_server(ttft_ms=3, itl_ms=2)
    spec = {"name": "l", "type": "latency", "inputLen": 8, "outputLen": 6, "iterations": 2, "repetitions": 3}
    lat, steps = _run(url, spec, scripted_tokenizer)
    assert len(lat.repetitions) == 3 and len(steps) == 3
    assert all(r.ms_per_token is not None and r.ms_per_token > 1.0 for r in lat.repetitions)
    assert lat.latency is not None and lat.latency.ms_per_token == lat.repetitions[0].ms_per_token
    served, _ = _run(url, _serving(requestRates=["inf"], numPrompts=6, repetitions=2), scripted_tokenizer)
    assert [sorted(r.output_tokens_per_s) for r in served.repetitions] == [["inf"], ["inf"]]
    assert all(r.ttft_median_ms["inf"] >= 3.0 for r in served.repetitions)
    single, _ = _run(url, _serving(numPrompts=3), scripted_tokenizer)
    assert single.repetitions == []


def test_unreachable_server_gives_a_partial_result(scripted_tokenizer: Path) -> None:
    result, _ = _run(closed_port(), _serving(numPrompts=3, requestRates=["inf"]), scripted_tokenizer)
    s = result.serving[0]
    assert (s.completed, s.failed, s.failures) == (0, 3, {"connect": 3})
    assert not result.complete and "every request failed" in result.notes[0]


def test_faulty_server_counts_failures_by_reason(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path
) -> None:
    wl = WORKLOAD.validate_python(_serving(numPrompts=4, requestRates=["inf"]))
    opts = RunOptions(model="fault-disconnect", counters=LiveCounters())
    tok = LocalTokenizer(scripted_tokenizer)
    result, _ = asyncio.run(run_workload(wl, url=scripted_server(itl_ms=1), options=opts, tokenizer=tok))
    assert result.serving[0].failures == {"disconnect": 4} and result.total_failed == 4


@pytest.mark.slow
def test_several_processes_run_the_same_step(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path
) -> None:
    url = scripted_server(ttft_ms=2, itl_ms=1)
    spec = _serving(numPrompts=60, requestRates=[200, "inf"], maxConcurrency=8)
    result, steps = _run(url, spec, scripted_tokenizer, processes=2)
    for s, step in zip(result.serving, steps, strict=True):
        assert s.completed == 60 and s.peak_concurrency <= 8
        ids = {r.request_id for r in step.records()}
        assert len(ids) == 60
    lag = result.serving[0].schedule_lag_ms
    assert lag is not None and not math.isnan(lag.median_ms)
