"""The tiny model's tokenizer and context fit the accuracy runner's GSM8K 8-shot prompts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.vllm import MAX_MODEL_LEN, ROOT, VllmServer
from tests.vllm.client import post_json

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(900)]


def gsm8k_dir() -> Path:
    path = Path(os.environ.get("QUANTBENCH_GSM8K_DIR", ROOT.parent / "shared" / "datasets" / "gsm8k"))
    if not (path / "test.jsonl").is_file():
        pytest.fail(f"GSM8K not found at {path}: set QUANTBENCH_GSM8K_DIR", pytrace=False)
    return path


def eight_shot_prompts(n: int) -> list[str]:
    """GSM8K 8-shot prompts in lm-eval's `gsm8k` layout (Question/Answer pairs from train, then the
    test question), using the longest test questions."""
    root = gsm8k_dir()
    train = [json.loads(x) for x in (root / "train.jsonl").read_text().splitlines()[:8]]
    tests = [json.loads(x) for x in (root / "test.jsonl").read_text().splitlines()]
    tests.sort(key=lambda row: len(row["question"]), reverse=True)
    shots = "\n\n".join(f"Question: {r['question']}\nAnswer: {r['answer']}" for r in train)
    return [f"{shots}\n\nQuestion: {r['question']}\nAnswer:" for r in tests[:n]]


def test_gsm8k_eight_shot_prompts_fit(vllm_server: Callable[[str], VllmServer]) -> None:
    server = vllm_server("bf16")
    prompts = eight_shot_prompts(3)
    counts = []
    for prompt in prompts:
        tok = post_json(f"{server.url}/tokenize", {"model": server.served_model_name, "prompt": prompt})
        counts.append(tok["count"])
        # The trained BPE merges GSM8K words: far fewer tokens than characters.
        assert tok["count"] < len(prompt) / 3, (tok["count"], len(prompt))
    # Room for lm-eval's 256 generated tokens on top of the longest 8-shot prompt.
    assert max(counts) + 256 <= MAX_MODEL_LEN, counts
    body = {
        "model": server.served_model_name,
        "prompt": prompts[0],
        "max_tokens": 8,
        "temperature": 0,
        "stop": ["Question:", "</s>", "<|im_end|>"],
    }
    out = post_json(f"{server.openai_base}/completions", body)
    assert out["usage"]["prompt_tokens"] == counts[0]
