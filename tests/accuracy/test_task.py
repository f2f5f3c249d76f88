"""The accuracy runner's pure parts: the task config, the dataset folder, the CLI settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantbench_loadgen.accuracy.cli import build_parser, request_from_args
from quantbench_loadgen.accuracy.results import AccuracyResult, question_key
from quantbench_loadgen.accuracy.runner import AccuracyRequest, endpoint_url, model_args
from quantbench_loadgen.accuracy.screening import BaselineResponse, BaselineResponses
from quantbench_loadgen.accuracy.task import (
    DATASET_ENV,
    DatasetError,
    dataset_fingerprint,
    reference_answer,
    resolve_dataset_dir,
    task_config,
)
from quantbench_loadgen.fidelity import FidelityResult
from quantbench_loadgen.publish import split_parts
from tests.operator import factories


def test_task_config_reads_the_local_files(gsm8k_dir: Path) -> None:
    config = task_config(gsm8k_dir, num_fewshot=5, max_gen_tokens=128)
    assert config["task"] == "gsm8k_local"
    assert config["dataset_path"] == "json"  # datasets' packaged JSON builder: no hub
    assert config["dataset_kwargs"]["data_files"] == {
        "train": str(gsm8k_dir / "train.jsonl"),
        "test": str(gsm8k_dir / "test.jsonl"),
    }
    assert config["fewshot_split"] == "train" and config["test_split"] == "test"
    assert config["num_fewshot"] == 5
    assert config["generation_kwargs"]["max_gen_toks"] == 128
    assert [f["name"] for f in config["filter_list"]] == ["strict-match", "flexible-extract"]


def test_dataset_folder_errors_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "train.jsonl").write_text("{}\n")
    with pytest.raises(DatasetError, match=r"lacks test\.jsonl"):
        resolve_dataset_dir(str(tmp_path))


def test_a_folder_with_only_the_test_split_draws_few_shot_examples_from_it(
    tmp_path: Path, gsm8k_dir: Path
) -> None:
    """What a ConfigMap can hold (GSM8K's test split fits its 1 MiB limit, the train split does not)."""
    (tmp_path / "test.jsonl").write_bytes((gsm8k_dir / "test.jsonl").read_bytes())
    assert resolve_dataset_dir(str(tmp_path)) == tmp_path
    config = task_config(tmp_path, num_fewshot=8, max_gen_tokens=64)
    assert config["dataset_kwargs"]["data_files"] == {"test": str(tmp_path / "test.jsonl")}
    assert config["fewshot_split"] == "test" == config["test_split"] and "training_split" not in config
    assert dataset_fingerprint(tmp_path) != dataset_fingerprint(gsm8k_dir)
    assert (gsm8k_dir / "test.jsonl").stat().st_size < 2**20  # fits one ConfigMap


def test_without_a_folder_the_public_dataset_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATASET_ENV, raising=False)
    assert resolve_dataset_dir(None) is None
    config = task_config(None, num_fewshot=8, max_gen_tokens=256)
    assert (config["dataset_path"], config["dataset_name"]) == ("openai/gsm8k", "main")
    assert "dataset_kwargs" not in config
    assert config["test_split"] == "test" and config["fewshot_split"] == "train"


def test_dataset_folder_from_the_environment(gsm8k_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATASET_ENV, str(gsm8k_dir))
    assert resolve_dataset_dir(None) == gsm8k_dir
    assert len(dataset_fingerprint(gsm8k_dir)) == 64


def test_reference_answer_and_question_key(gsm8k_dir: Path) -> None:
    first = json.loads((gsm8k_dir / "test.jsonl").read_text().splitlines()[0])
    assert reference_answer(first["answer"]) == "18"
    assert question_key(first["question"]) == question_key(first["question"])
    assert len(question_key("x")) == 16


def test_cli_flags_override_the_spec(tmp_path: Path, gsm8k_dir: Path) -> None:
    spec = tmp_path / "accuracy.yaml"
    spec.write_text(f"numFewshot: 5\nlimit: 50\nseed: 7\ndataset: {{kind: gsm8k, path: {gsm8k_dir}}}\n")
    args = build_parser().parse_args(
        [
            "--base-url",
            "http://h:8000",
            "--model",
            "m",
            "--spec",
            str(spec),
            "--limit",
            "20",
            "--out",
            "o.json",
        ]
    )
    request = request_from_args(args)
    assert (request.num_fewshot, request.limit, request.seed) == (5, 20, 7)
    assert request.dataset_dir == str(gsm8k_dir)
    all_args = build_parser().parse_args(["--base-url", "h", "--model", "m", "--limit", "0", "--out", "o"])
    assert request_from_args(all_args).limit is None  # 0 asks the whole test split


def test_invalid_spec_names_the_field(tmp_path: Path) -> None:
    spec = tmp_path / "accuracy.yaml"
    spec.write_text("numFewshots: 5\n")
    args = build_parser().parse_args(["--base-url", "h", "--model", "m", "--spec", str(spec), "--out", "o"])
    from quantbench_loadgen.accuracy.cli import run

    assert run(args) == 2


def test_model_args_point_at_the_completions_endpoint() -> None:
    assert endpoint_url("http://h:8000") == "http://h:8000/v1/completions"
    assert endpoint_url("http://h:8000/v1/") == "http://h:8000/v1/completions"
    assert endpoint_url("http://h:8000/v1/completions", "chat") == "http://h:8000/v1/chat/completions"
    from quantbench_loadgen.accuracy.runner import AccuracyRequest

    local = model_args(AccuracyRequest("http://h:8000", "m", None, tokenizer="/models/m", seed=3))
    assert local["tokenizer_backend"] == "huggingface" and local["tokenizer"] == "/models/m"
    assert local["seed"] == 3 and local["tokenized_requests"] is False
    remote = model_args(AccuracyRequest("http://h:8000", "m", None))
    assert remote["tokenizer_backend"] is None
    chat = model_args(AccuracyRequest("http://h:8000", "m", None, tokenizer="/models/m", endpoint="chat"))
    assert chat["base_url"] == "http://h:8000/v1/chat/completions" and chat["tokenizer_backend"] is None


def test_the_fidelity_result_gives_the_expected_discordance(tmp_path: Path) -> None:
    spec = tmp_path / "accuracy.yaml"
    spec.write_text("limit: 20\nsequential: {looks: 5, discordance: 0.05}\n")
    base = tmp_path / "base.json"
    base.write_text(factories.accuracy_result("bf16", 20))
    fidelity = tmp_path / "fidelity.json"
    fidelity.write_text(
        FidelityResult(
            prompts=16,
            positions=512,
            top_k=20,
            mean_kl=0.01,
            p99_kl=0.2,
            top1_agreement=0.97,
            greedy_agreement=0.875,
        ).model_dump_json(by_alias=True)
    )
    head = ["--base-url", "h", "--model", "m", "--spec", str(spec), "--out", "o"]
    args = build_parser().parse_args(
        [*head, "--baseline-result", str(base), "--fidelity-result", str(fidelity)]
    )
    request = request_from_args(args)
    assert request.expected_discordance == pytest.approx(0.125)
    assert request.baseline is not None and request.plan is not None
    alone = build_parser().parse_args([*head, "--fidelity-result", str(fidelity)])
    with pytest.raises(ValueError, match="--baseline-result"):
        request_from_args(alone)


def test_baseline_responses_must_come_from_the_baseline_result(tmp_path: Path) -> None:
    spec = tmp_path / "accuracy.yaml"
    spec.write_text("limit: 20\nsequential: {looks: 5, discordance: 0.05}\n")
    base = tmp_path / "base.json"
    base.write_text(factories.accuracy_result("bf16", 20))
    outcomes = AccuracyResult.model_validate_json(base.read_text()).outcomes
    responses = tmp_path / "responses.json"
    head = [
        "--base-url",
        "h",
        "--model",
        "m",
        "--spec",
        str(spec),
        "--out",
        "o",
        "--baseline-result",
        str(base),
    ]

    def with_keys(keys: list[str]) -> AccuracyRequest:
        refs = BaselineResponses(
            max_gen_tokens=256,
            responses=[
                BaselineResponse(doc_id=o.doc_id, key=k, prompt="Q", response="A")
                for o, k in zip(outcomes, keys, strict=True)
            ],
        )
        responses.write_text(refs.model_dump_json(by_alias=True))
        return request_from_args(build_parser().parse_args([*head, "--baseline-responses", str(responses)]))

    same = with_keys([o.key for o in outcomes])
    assert same.baseline_responses is not None and len(same.baseline_responses.responses) == len(outcomes)
    assert same.unscreened_reason is None
    # As published on Kubernetes: gzip-compressed, cut into pieces (one per ConfigMap), read joined in order.
    parts = split_parts(responses.read_bytes(), 4, part_bytes=200)
    assert len(parts.chunks) > 1
    pieces = [tmp_path / f"responses.json.gz.{i}" for i in range(len(parts.chunks))]
    for piece, chunk in zip(pieces, parts.chunks, strict=True):
        piece.write_bytes(chunk)
    joined = request_from_args(build_parser().parse_args([*head, "--baseline-responses", *map(str, pieces)]))
    assert joined.baseline_responses == same.baseline_responses
    # A piece missing (or out of order): nothing is screened, and the result will say why; not an error.
    for broken in (pieces[:-1], pieces[::-1]):
        request = request_from_args(
            build_parser().parse_args([*head, "--baseline-responses", *map(str, broken)])
        )
        assert request.baseline_responses is None
        assert request.unscreened_reason is not None
        assert request.unscreened_reason.startswith("the baseline's responses cannot be read")
    # No responses at all: the reason the caller gives is kept.
    told = request_from_args(build_parser().parse_args([*head, "--unscreened-reason", "none published"]))
    assert told.baseline_responses is None and told.unscreened_reason == "none published"
    with pytest.raises(ValueError, match="question 3 is not the baseline result's question"):
        with_keys([o.key if o.doc_id != 3 else "0" * 16 for o in outcomes])
