"""Fidelity against real vLLM CPU servers: the baseline compared with itself is exact (KL 0, agreement 1);
the AWQ tiny model, quantized from the same weights, is not (KL > 0)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from quantbench_loadgen.fidelity import compare, reference
from tests.fixtures.vllm import VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]

ServerFactory = Callable[[str], VllmServer]
PROMPTS = [
    "Question: Natalia sold clips to 48 of her friends in April. How many clips?\nAnswer:",
    "The capital of France is",
    "def fibonacci(n):",
]


def test_baseline_against_itself_and_awq_against_the_baseline(vllm_server: ServerFactory) -> None:
    base = vllm_server("bf16")
    ref = asyncio.run(reference(base.url, base.served_model_name, PROMPTS, max_tokens=12, top_k=10))
    assert all(p.top_logprobs for p in ref.prompts)
    same = asyncio.run(compare(base.url, base.served_model_name, ref))
    assert same.positions > 0
    assert same.mean_kl == pytest.approx(0.0, abs=1e-6) and same.p99_kl == pytest.approx(0.0, abs=1e-6)
    assert same.top1_agreement == 1.0 and same.greedy_agreement == 1.0
    awq = vllm_server("awq-int4")
    other = asyncio.run(compare(awq.url, awq.served_model_name, ref))
    assert other.positions == same.positions
    assert other.mean_kl > 1e-4
    print(
        f"awq-int4 vs bf16: mean KL {other.mean_kl:.4g}, p99 KL {other.p99_kl:.4g}, "
        f"top-1 agreement {other.top1_agreement:.3f}, greedy agreement {other.greedy_agreement:.2f}"
    )
