"""The load generator against a real vLLM CPU server (tests/fixtures/vllm.py): exact prompt lengths,
usage-based token counts, every workload type, both endpoints, the vLLM-shaped export."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from quantbench_loadgen.cli import main
from quantbench_loadgen.live import LiveCounters
from quantbench_loadgen.results import LoadgenResult
from quantbench_loadgen.runner import run_workload
from quantbench_loadgen.sender import RunOptions, StepRun
from quantbench_loadgen.specs import Workload
from quantbench_loadgen.tokenization import LocalTokenizer, ServerTokenizer, Tokenizer
from tests.fixtures.vllm import VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]

WORKLOAD: TypeAdapter[Any] = TypeAdapter(Workload)
ServerFactory = Callable[[str], VllmServer]


@pytest.fixture(scope="module")
def server(vllm_server: ServerFactory) -> VllmServer:
    return vllm_server("bf16")


def _run(
    server: VllmServer, spec: dict[str, Any], tokenizer: Tokenizer
) -> tuple[LoadgenResult, list[StepRun]]:
    options = RunOptions(model=server.served_model_name, counters=LiveCounters(), request_timeout_s=300)
    return asyncio.run(
        run_workload(WORKLOAD.validate_python(spec), url=server.url, options=options, tokenizer=tokenizer)
    )


@pytest.mark.parametrize("tokenizer_from", ["server", "local"])
def test_serving_random_prompts_have_exact_lengths(server: VllmServer, tokenizer_from: str) -> None:
    tok: Tokenizer = (
        ServerTokenizer(server.url, server.served_model_name)
        if tokenizer_from == "server"
        else LocalTokenizer(server.model_path)
    )
    spec = {
        "name": "serving",
        "type": "serving",
        "requestRates": [8, "inf"],
        "numPrompts": 6,
        "maxConcurrency": 3,
        "warmupRequests": 1,
        "dataset": {"kind": "random", "inputLen": 40, "outputLen": 12},
        "slo": {"ttftMs": 60_000},
    }
    result, steps = _run(server, spec, tok)
    for rate, step in zip(result.serving, steps, strict=True):
        assert (rate.completed, rate.failed) == (6, 0), rate.failures
        records = [r for r in step.records() if not r.warmup]
        # The server's own usage counts: exactly the prompt length built, exactly max_tokens out.
        assert all(r.prompt_tokens == 40 and r.output_tokens == 12 for r in records)
        assert all(r.expected_prompt_tokens == r.prompt_tokens for r in records)
        # (TPOT may be 0 when a busy client reads every token of a request in one go)
        assert all(r.ttft_ms is not None and r.ttft_ms > 0 for r in records)
        assert all(r.tpot_ms is not None and r.tpot_ms >= 0 for r in records)
        assert rate.itl.count >= 6 and rate.peak_concurrency <= 3
        assert rate.goodput_ratio == 1.0
    assert result.model == server.served_model_name and result.complete


def test_latency_and_throughput(server: VllmServer) -> None:
    tok = LocalTokenizer(server.model_path)
    spec = {
        "name": "lat",
        "type": "latency",
        "inputLen": 32,
        "outputLen": 8,
        "iterations": 3,
        "warmupIterations": 1,
    }
    lat, _ = _run(server, spec, tok)
    assert lat.latency is not None and lat.latency.completed == 3
    assert lat.latency.ms_per_token > 0 and lat.latency.total_output_tokens == 24
    spec = {
        "name": "thr",
        "type": "throughput",
        "batchSizes": [1, 4],
        "inputLen": 32,
        "outputLen": 8,
        "iterations": 1,
    }
    thr, _ = _run(server, spec, tok)
    assert [(b.batch_size, b.completed, b.total_output_tokens) for b in thr.throughput] == [
        (1, 1, 8),
        (4, 4, 32),
    ]
    assert all(b.output_tokens_per_s > 0 for b in thr.throughput)


def test_chat_and_gsm8k_and_the_cli_export(server: VllmServer, tmp_path: Path) -> None:
    gsm8k = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "gsm8k"
    if not (gsm8k / "test.jsonl").exists():
        pytest.skip(f"no GSM8K at {gsm8k}")
    wl = {
        "name": "chat",
        "type": "serving",
        "endpoint": "chat",
        "requestRates": ["inf"],
        "numPrompts": 3,
        "dataset": {"kind": "gsm8k", "path": str(gsm8k), "outputLen": 10},
    }
    out, export = tmp_path / "r.json", tmp_path / "v.json"
    code = main(
        ["run", "--url", server.url, "--workload", json.dumps(wl), "--tokenizer", str(server.model_path),
         "-o", str(out), "--vllm-export", str(export), "--strict", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    result = LoadgenResult.model_validate_json(out.read_text())
    rate = result.serving[0]
    assert rate.completed == 3 and rate.total_output_tokens == 30 and rate.total_input_tokens > 3 * 10
    doc = json.loads(export.read_text())
    assert doc["completed"] == 3 and doc["backend"] == "openai-chat" and doc["output_lens"] == [10, 10, 10]
