"""Fidelity figures: the KL over top-k log-probabilities and agreement, on hand-made distributions; the real
vLLM CPU servers in tests/vllm/test_fidelity.py."""

from __future__ import annotations

import gzip
import json
import math
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from quantbench_loadgen.cli import main
from quantbench_loadgen.datasets import DatasetError, gsm8k_prompts, public_gsm8k_prompts
from quantbench_loadgen.fidelity import (
    FidelityReference,
    PromptReference,
    continuation_logprobs,
    kl_top_k,
    read_reference,
    summarise,
    top1,
)
from tests.loadgen.conftest import closed_port

REPO = Path(__file__).resolve().parents[2]


def _lp(**probs: float) -> dict[str, float]:
    return {t: math.log(p) for t, p in probs.items()}


def test_identical_distributions_have_zero_kl_and_agree() -> None:
    d = _lp(a=0.6, b=0.3, c=0.05)
    assert kl_top_k(d, d) == pytest.approx(0.0, abs=1e-12)
    result = summarise([[d, d]], [[d, d]], [True], top_k=3)
    assert (result.mean_kl, result.top1_agreement, result.greedy_agreement) == (0.0, 1.0, 1.0)


def test_kl_matches_the_full_distribution_when_top_k_covers_it() -> None:
    p, q = _lp(a=0.7, b=0.3), _lp(a=0.4, b=0.6)
    exact = 0.7 * math.log(0.7 / 0.4) + 0.3 * math.log(0.3 / 0.6)
    assert kl_top_k(p, q) == pytest.approx(exact, rel=1e-9)


def test_a_token_missing_from_the_variants_top_k_counts_at_an_upper_bound() -> None:
    p, q = _lp(a=0.5, b=0.4), _lp(a=0.5, c=0.45)
    kl = kl_top_k(p, q)
    # b gets min(0.45, 1 - 0.95) = 0.05; the rest buckets hold 0.1 (baseline) and 1 - 0.55 (variant).
    assert kl == pytest.approx(0.4 * math.log(0.4 / 0.05) + 0.1 * math.log(0.1 / 0.45), rel=1e-9)
    assert top1(p) == top1(q) == "a"


def test_summary_of_a_changed_top_token() -> None:
    b, v = _lp(a=0.6, b=0.4), _lp(a=0.4, b=0.6)
    result = summarise([[b, b], [b]], [[b, v], [v]], [True, False], top_k=2)
    assert result.positions == 3 and result.prompts == 2
    assert result.top1_agreement == pytest.approx(1 / 3)
    assert result.greedy_agreement == 0.5
    assert result.mean_kl > 0 and result.p99_kl >= result.mean_kl


def test_prompt_logprobs_are_read_after_the_prompt() -> None:
    choice = {
        "prompt_logprobs": [
            None,
            {"5": {"logprob": -0.1}},
            {"7": {"logprob": -0.2, "rank": 1}, "9": {"logprob": -2.0, "rank": 2}},
        ]
    }
    assert continuation_logprobs(choice, 2) == [{"7": -0.2, "9": -2.0}]
    with pytest.raises(ValueError, match="prompt_logprobs"):
        continuation_logprobs({}, 1)


def test_fidelity_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = str(tmp_path / "ref.json")
    assert main(["fidelity", "reference", "--url", closed_port(), "--model", "m", "--reference", ref]) == 2
    assert "needs --prompts" in capsys.readouterr().err
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("The capital of France is\n")
    args = ["fidelity", "reference", "--url", closed_port(), "--model", "m", "--prompts", str(prompts)]
    assert main([*args, "--reference", ref]) == 3
    assert "error:" in capsys.readouterr().err


def test_a_reference_reads_back_the_same_from_plain_or_gzip_compressed_json(tmp_path: Path) -> None:
    ref = FidelityReference(
        model="m",
        top_k=2,
        max_tokens=4,
        prompts=[PromptReference(prompt="Q", text=" A", prompt_tokens=3, top_logprobs=[_lp(a=0.7, b=0.2)])],
    )
    text = json.dumps(ref.to_wire())
    (tmp_path / "plain.json").write_text(text)
    (tmp_path / "packed.json.gz").write_bytes(gzip.compress(text.encode()))
    assert read_reference(tmp_path / "plain.json") == ref == read_reference(tmp_path / "packed.json.gz")


def test_the_public_gsm8k_gives_the_questions_a_folder_with_the_same_split_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = Path(os.environ.get("QUANTBENCH_GSM8K_DIR", REPO.parent / "shared" / "datasets" / "gsm8k"))
    rows = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines() if line.strip()]
    asked: list[tuple[Any, ...]] = []

    def load_dataset(*args: Any, split: str) -> dict[str, list[str]]:
        asked.append((*args, split))
        return {"question": [r["question"] for r in rows]}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    public = public_gsm8k_prompts(16, 0, output_len=None)
    assert asked == [("openai/gsm8k", "main", "test")]
    assert [p.text for p in public] == [p.text for p in gsm8k_prompts(folder, 16, 0, output_len=None)]

    def offline(*args: Any, split: str) -> None:
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(DatasetError, match=r"from the Hub .*give a GSM8K folder"):
        public_gsm8k_prompts(16, 0, output_len=None)
    monkeypatch.setitem(sys.modules, "datasets", None)  # not installed
    with pytest.raises(DatasetError, match="datasets package"):
        public_gsm8k_prompts(16, 0, output_len=None)
