"""Streaming completions, chat and /metrics from a real vLLM CPU server, for every precision the tiny
model is built in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fixtures.vllm import VllmServer
from tests.vllm.client import get_text, metric_samples, post_json, stream_events

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]

PRECISIONS = ["bf16", "awq-int4", "w8a8-int8"]
MAX_TOKENS = 16

ServerFactory = Callable[[str], VllmServer]


def _collect(events: list[dict[str, Any] | str]) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    assert events, "no events streamed"
    assert events[-1] == "[DONE]", f"stream did not end with [DONE]: {events[-1]!r}"
    chunks = [e for e in events[:-1] if isinstance(e, dict)]
    usage = next((c["usage"] for c in reversed(chunks) if c.get("usage")), None)
    return [c for c in chunks if c.get("choices")], usage


@pytest.mark.parametrize("precision", PRECISIONS)
def test_streams_completions(vllm_server: ServerFactory, precision: str) -> None:
    server = vllm_server(precision)
    body = {
        "model": server.served_model_name,
        "prompt": "Question: Natalia sold clips to 48 of her friends in April. How many clips?\nAnswer:",
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    chunks, usage = _collect(list(stream_events(f"{server.openai_base}/completions", body)))
    assert all(c["object"] == "text_completion" and c["model"] == server.served_model_name for c in chunks)
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text, "no text streamed"
    assert len(chunks) >= 2, "the answer came in one piece: not streamed token by token"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert usage is not None and usage["completion_tokens"] == MAX_TOKENS
    assert usage["prompt_tokens"] > 5


@pytest.mark.parametrize("precision", PRECISIONS)
def test_streams_chat(vllm_server: ServerFactory, precision: str) -> None:
    server = vllm_server(precision)
    body = {
        "model": server.served_model_name,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Weng earns $12 an hour. How much for 50 minutes?"},
        ],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "ignore_eos": True,
        "stream_options": {"include_usage": True},
    }
    chunks, usage = _collect(list(stream_events(f"{server.openai_base}/chat/completions", body)))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert content, "no content streamed"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert usage is not None and usage["completion_tokens"] == MAX_TOKENS
    # The chat template wrapped both turns: more prompt tokens than the two messages' text alone.
    plain = post_json(
        f"{server.url}/tokenize", {"model": server.served_model_name, "prompt": "Weng earns $12 an hour."}
    )
    assert usage["prompt_tokens"] > plain["count"] + 8


@pytest.mark.parametrize("precision", PRECISIONS)
def test_metrics_count_served_tokens(vllm_server: ServerFactory, precision: str) -> None:
    server = vllm_server(precision)
    body = {
        "model": server.served_model_name,
        "prompt": "The quick brown fox",
        "max_tokens": 4,
        "ignore_eos": True,
    }
    post_json(f"{server.openai_base}/completions", body)
    text = get_text(f"{server.url}/metrics")
    mine = {"model_name": server.served_model_name}

    def value(name: str) -> float:
        samples = [v for labels, v in metric_samples(text, name) if labels.items() >= mine.items()]
        assert samples, f"{name} for {server.served_model_name} missing from /metrics"
        return sum(samples)

    assert value("vllm:generation_tokens_total") >= 4
    assert value("vllm:prompt_tokens_total") >= 4
    assert value("vllm:request_success_total") >= 1
    assert value("vllm:time_to_first_token_seconds_count") >= 1
    assert value("vllm:num_requests_running") == 0


@pytest.mark.parametrize(("precision", "min_overlap"), [("awq-int4", 8), ("w8a8-int8", 14)])
def test_quantized_checkpoint_tracks_bf16(
    vllm_server: ServerFactory, precision: str, min_overlap: int
) -> None:
    """A real quantization of the same weights: the next-token top-20 of the quantized server shares
    most tokens with BF16's (unrelated weights would share ~0 of 4096)."""
    prompts = [
        "Question: Natalia sold clips to 48 of her friends",
        "The quick brown fox",
        "Weng earns $12 an hour for babysitting.",
        "How many apples",
    ]

    def top20(server: VllmServer, prompt: str) -> set[str]:
        body = {
            "model": server.served_model_name,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": 0,
            "logprobs": 20,
        }
        out = post_json(f"{server.openai_base}/completions", body)
        return set(out["choices"][0]["logprobs"]["top_logprobs"][0])

    base, quant = vllm_server("bf16"), vllm_server(precision)
    overlaps = [len(top20(base, p) & top20(quant, p)) for p in prompts]
    assert sum(overlaps) / len(overlaps) >= min_overlap, overlaps
