"""Server telemetry: vLLM's /metrics parsed under every name vLLM has used, summarized per step, and sampled
during real runs (the scripted server here; the real vLLM CPU server in test_telemetry_vllm below)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from quantbench_loadgen.cli import main
from quantbench_loadgen.live import LiveCounters
from quantbench_loadgen.results import LoadgenResult
from quantbench_loadgen.runner import RunOptions, run_workload
from quantbench_loadgen.specs import Workload
from quantbench_loadgen.telemetry import (
    TelemetrySample,
    parse_metrics,
    sampling_in_background,
    summarize,
    thin,
)
from quantbench_loadgen.tokenization import LocalTokenizer
from tests.fixtures.vllm import VllmServer
from tests.loadgen.conftest import ScriptedFactory

# As vLLM 0.11 exposes them (two engines to show label sets are summed), and as older versions named them.
NEW = """\
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 12.0
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{engine="0",model_name="m"} 4.0
vllm:num_preemptions_created{engine="0",model_name="m"} 1.7e9
# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 30.0
# TYPE vllm:prefix_cache_queries counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 120.0
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="m"} 500.0
"""
OLD = """\
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="m"} 0.97
# TYPE vllm:gpu_prefix_cache_hits counter
vllm:gpu_prefix_cache_hits_total{model_name="m"} 5.0
"""


def test_parse_every_name_vllm_used() -> None:
    new = parse_metrics(NEW)
    assert new["kv_cache_usage"] == 0.75 and new["running"] == 3 and new["waiting"] == 12
    assert new["preemptions"] == 4 and new["prefix_cache_hits"] == 30 and new["prefix_cache_queries"] == 120
    assert new["generation_tokens"] == 500 and new["prompt_tokens"] is None
    old = parse_metrics(OLD)
    assert old["kv_cache_usage"] == 0.97 and old["prefix_cache_hits"] == 5 and old["running"] is None


def _s(t: float, step: str, **values: float) -> TelemetrySample:
    return TelemetrySample(t_s=t, step=step, **values)


def test_summary_per_step() -> None:
    samples = [
        _s(0, "1", kv_cache_usage=0.1, waiting=0, running=1, preemptions=0, generation_tokens=0),
        _s(1, "1", kv_cache_usage=0.3, waiting=0, running=2, preemptions=0, generation_tokens=100),
        _s(2, "inf", kv_cache_usage=0.9, waiting=5, running=8, preemptions=0, generation_tokens=150,
           prefix_cache_hits=10, prefix_cache_queries=100),
        _s(3, "inf", kv_cache_usage=0.97, waiting=12, running=8, preemptions=3, generation_tokens=600,
           prefix_cache_hits=40, prefix_cache_queries=200),
    ]  # fmt: skip
    low, high = summarize(samples)
    assert (low.step, low.samples, low.kv_cache_usage_peak, low.waiting_peak) == ("1", 2, 0.3, 0)
    assert low.kv_cache_usage_mean == pytest.approx(0.2) and low.generation_tokens == 100
    assert low.prefix_cache_hit_rate is None  # the server did not report prefix caching
    assert high.kv_cache_usage_peak == 0.97 and high.waiting_peak == 12 and high.running_peak == 8
    assert high.preemptions == 3 and high.prefix_cache_hit_rate == pytest.approx(0.3)
    assert high.waiting_mean == pytest.approx(8.5)
    single = summarize([_s(0, "bs1", kv_cache_usage=0.5, preemptions=2)])[0]
    assert single.preemptions is None and single.kv_cache_usage_peak == 0.5  # a counter needs two samples


def test_a_step_shorter_than_the_interval_gets_its_counters_from_the_sample_before_it() -> None:
    """One sample in a step (it ran faster than the scrape interval): its counters are measured from the
    previous step's last sample, or from the one taken before the first step."""
    before = _s(0, "", generation_tokens=10, preemptions=0)
    samples = [
        _s(0.2, "bs1", kv_cache_usage=0.1, generation_tokens=74, preemptions=0),
        _s(0.4, "bs8", kv_cache_usage=0.4, generation_tokens=330, preemptions=1),
    ]
    first, second = summarize(samples, before)
    assert (first.samples, first.generation_tokens, first.preemptions) == (1, 64, 0)
    assert (second.samples, second.generation_tokens, second.preemptions) == (1, 256, 1)
    assert second.kv_cache_usage_peak == 0.4  # gauges stay the step's own
    assert summarize(samples)[0].generation_tokens is None  # nothing before the first step's one sample


def test_cli_samples_the_server_during_every_step(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.json"
    wl = ("{name: s, type: serving, requestRates: [50, inf], numPrompts: 40, maxConcurrency: 8, "
          "dataset: {kind: random, inputLen: 8, outputLen: 20}}")  # fmt: skip
    code = main(
        ["run", "--url", scripted_server(itl_ms=10), "--workload", wl, "--tokenizer", str(scripted_tokenizer),
         "--telemetry-interval", "0.05", "-o", str(out), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    result = LoadgenResult.model_validate_json(out.read_text())
    telemetry = result.server_telemetry
    assert telemetry is not None and telemetry.metrics_url.endswith("/metrics")
    assert [s.step for s in telemetry.steps] == ["50", "inf"]
    times = [s.t_s for s in telemetry.samples]
    assert times == sorted(times) and len(times) >= 10
    for step in telemetry.steps:
        # Requests overlap (each answer takes ~200 ms), up to maxConcurrency.
        assert step.running_peak is not None and 2 <= step.running_peak <= 8, step
        assert step.waiting_peak == 0 and step.kv_cache_usage_peak is None  # the scripted server has none
        assert step.generation_tokens is not None and step.generation_tokens > 0
    # The last sample is taken after the last request: every generated token is counted by then.
    assert telemetry.samples[-1].generation_tokens == 2 * 40 * 20


def test_no_telemetry_when_disabled_and_a_negative_interval_refused(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path, tmp_path: Path
) -> None:
    wl = "{name: l, type: latency, inputLen: 4, outputLen: 4, iterations: 2, warmupIterations: 0}"
    out = tmp_path / "r.json"
    args = ["run", "--url", scripted_server(), "--workload", wl, "--tokenizer", str(scripted_tokenizer)]
    assert main([*args, "--telemetry-interval", "0", "-o", str(out), "--no-progress"]) == 0
    assert LoadgenResult.model_validate_json(out.read_text()).server_telemetry is None
    assert main([*args, "--telemetry-interval", "-1", "-o", str(out), "--no-progress"]) != 0


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_telemetry_vllm(vllm_server: Callable[[str], VllmServer]) -> None:
    """The real server exposes the metrics under the names parsed here, and they move under load."""
    server = vllm_server("bf16")
    spec: dict[str, Any] = {"name": "t", "type": "throughput", "batchSizes": [1, 8], "inputLen": 32,
                            "outputLen": 64, "iterations": 2, "warmupIterations": 0}  # fmt: skip
    options = RunOptions(
        model=server.served_model_name,
        counters=LiveCounters(),
        request_timeout_s=300,
        telemetry_interval_s=0.1,
    )
    workload = TypeAdapter(Workload).validate_python(spec)
    tokenizer = LocalTokenizer(str(server.model_path))
    result, _ = asyncio.run(run_workload(workload, url=server.url, options=options, tokenizer=tokenizer))
    telemetry = result.server_telemetry
    assert telemetry is not None, result.notes
    by_step = {s.step: s for s in telemetry.steps}
    assert set(by_step) == {"bs1", "bs8"}, json.dumps([s.step for s in telemetry.samples])
    for s in by_step.values():
        # A gauge is what a scrape saw (a short step may be scraped between its requests); a counter is
        # measured from the sample before the step, so every step has its own.
        assert s.kv_cache_usage_peak is not None and 0 <= s.kv_cache_usage_peak <= 1, s
        assert s.generation_tokens is not None and s.generation_tokens > 0, s
    assert by_step["bs8"].kv_cache_usage_peak > 0  # type: ignore[operator]
    assert by_step["bs8"].running_peak is not None and by_step["bs8"].running_peak > 1
    assert by_step["bs8"].kv_cache_usage_peak >= by_step["bs1"].kv_cache_usage_peak  # type: ignore[operator]


def test_background_sampling_while_synchronous_code_runs(scripted_server: ScriptedFactory) -> None:
    """The accuracy task blocks in lm-eval: telemetry is sampled from a thread of its own meanwhile."""
    url = scripted_server(itl_ms=5)
    body = json.dumps({"model": "m", "prompt": "a b c", "max_tokens": 40, "stream": True}).encode()
    with sampling_in_background(f"{url}/metrics", 0.02, "accuracy") as scraper:
        for _ in range(3):  # ~200 ms each: several samples see a request running
            req = urllib.request.Request(f"{url}/v1/completions", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
    telemetry = scraper.result()
    assert telemetry is not None and [s.step for s in telemetry.steps] == ["accuracy"]
    step = telemetry.steps[0]
    assert step.running_peak == 1 and step.samples >= 10
    assert telemetry.samples[-1].generation_tokens is not None and telemetry.samples[-1].running == 0


def test_long_runs_store_every_kth_sample() -> None:
    samples = [_s(float(t), "inf", running=float(t)) for t in range(2500)]
    every, kept = thin(samples, 1000)
    assert every == 3 and len(kept) <= 1000 and kept[0] is samples[0] and kept[-1] is samples[-1]
    assert thin(samples[:1000], 1000) == (1, samples[:1000])
    assert thin(samples[:1], 1000) == (1, samples[:1])
