"""Datasets: exact random lengths, ShareGPT filtering, GSM8K and JSONL, all seeded; clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from quantbench_loadgen.datasets import (
    DatasetError,
    dataset_path,
    hub_file,
    load_prompts,
    random_prompts,
    sharegpt_prompts,
)
from quantbench_loadgen.specs import DatasetKind, DatasetSource
from quantbench_loadgen.tokenization import LocalTokenizer

ROOT = Path(__file__).resolve().parents[2]
GSM8K_DIR = Path(os.environ.get("QUANTBENCH_GSM8K_DIR", ROOT.parent / "shared" / "datasets" / "gsm8k"))


@pytest.fixture(scope="module")
def tokenizer(scripted_tokenizer: Path) -> LocalTokenizer:
    return LocalTokenizer(scripted_tokenizer)


@pytest.mark.parametrize("length", [1, 7, 128, 512])
def test_random_prompts_have_exact_token_lengths(tokenizer: LocalTokenizer, length: int) -> None:
    prompts = random_prompts(tokenizer, 5, length, 16, seed=3)
    for p in prompts:
        assert len(tokenizer.encode(p.text, add_special_tokens=True)) == length == p.prompt_len
        assert p.output_len == 16 and p.exact_output
    if length > 1:  # distinct prompts: no accidental prefix caching
        assert len({p.text for p in prompts}) == 5
    assert random_prompts(tokenizer, 5, length, 16, seed=3) == prompts


def test_random_range_ratio(tokenizer: LocalTokenizer) -> None:
    prompts = random_prompts(tokenizer, 50, 100, 100, seed=1, range_ratio=0.5)
    lengths = {p.prompt_len for p in prompts}
    assert len(lengths) > 10 and all(50 <= n <= 150 for n in lengths if n is not None)
    assert all(len(tokenizer.encode(p.text)) == p.prompt_len for p in prompts)


def test_sharegpt_filters_like_vllm(tmp_path: Path, tokenizer: LocalTokenizer) -> None:
    words = ["time", "year", "people", "way", "day", "man", "thing", "woman", "life", "child"]
    conv = [
        {
            "conversations": [
                {"from": "human", "value": " ".join(words[:5])},
                {"from": "gpt", "value": " ".join(words)},
            ]
        },
        {
            "conversations": [{"from": "human", "value": "time"}, {"from": "gpt", "value": " ".join(words)}]
        },  # < 4
        {
            "conversations": [
                {"from": "human", "value": " ".join(words * 200)},
                {"from": "gpt", "value": "a b c d"},
            ]
        },
        {"conversations": [{"from": "human", "value": "only one turn"}]},
    ]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(conv))
    prompts = sharegpt_prompts(path, tokenizer, 10, seed=0, max_prompt_len=None, output_len=None)
    assert [(p.prompt_len, p.output_len, p.exact_output) for p in prompts] == [(5, 10, False)]
    fixed = sharegpt_prompts(path, tokenizer, 10, seed=0, max_prompt_len=None, output_len=64)
    assert [(p.output_len, p.exact_output) for p in fixed] == [(64, True)]


@pytest.mark.skipif(not (GSM8K_DIR / "test.jsonl").exists(), reason=f"no GSM8K at {GSM8K_DIR}")
def test_gsm8k_questions() -> None:
    source = DatasetSource(kind="gsm8k", path=str(GSM8K_DIR), output_len=64)
    prompts = load_prompts(source, 20, seed=5, tokenizer=None)
    assert len(prompts) == 20
    assert all(p.text.startswith("Question: ") and p.text.endswith("\nAnswer:") for p in prompts)
    assert prompts == load_prompts(source, 20, seed=5, tokenizer=None)
    assert prompts != load_prompts(source, 20, seed=6, tokenizer=None)


def test_jsonl_prompts_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "p.jsonl"
    good.write_text('{"prompt": "hello", "output_len": 8}\n\n{"prompt": "bye", "max_tokens": 4}\n')
    prompts = load_prompts(DatasetSource(kind="jsonl", path=str(good)), 10, seed=0, tokenizer=None)
    assert sorted((p.text, p.output_len) for p in prompts) == [("bye", 4), ("hello", 8)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(DatasetError, match=r"line 1: give 'output_len'.*dataset.outputLen"):
        load_prompts(DatasetSource(kind="jsonl", path=str(bad)), 10, seed=0, tokenizer=None)
    bad.write_text("not json\n")
    with pytest.raises(DatasetError, match="line 1: not JSON"):
        load_prompts(DatasetSource(kind="jsonl", path=str(bad)), 10, seed=0, tokenizer=None)
    with pytest.raises(DatasetError, match="does not exist"):
        load_prompts(DatasetSource(kind="jsonl", path=str(tmp_path / "nope")), 1, seed=0, tokenizer=None)


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("sharegpt", "anon/ShareGPT", ("anon/ShareGPT", "ShareGPT_V3_unfiltered_cleaned_split.json")),
        ("jsonl", "org/prompts:data/train.jsonl", ("org/prompts", "data/train.jsonl")),
    ],
)
def test_hub_file_names(kind: str, value: str, expected: tuple[str, str]) -> None:
    assert hub_file(DatasetKind(kind), value) == expected


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [("jsonl", "org/prompts", "name the file"), ("sharegpt", "no-org", "write '<org>/<name>'")],
)
def test_hub_file_errors(kind: str, value: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        hub_file(DatasetKind(kind), value)


def test_hub_source_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the Hub unreachable (offline mode here: tests send no traffic off this machine), a huggingFace
    source fails with an error that says how to give a local copy instead."""
    import socket

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    source = DatasetSource(kind=DatasetKind.SHAREGPT, hugging_face="anon/ShareGPT")
    with pytest.raises(
        DatasetError, match=r"huggingFace anon/ShareGPT: cannot download .* give dataset.path"
    ):
        dataset_path(source)
