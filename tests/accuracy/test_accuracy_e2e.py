"""lm-eval end to end: GSM8K (20 questions, offline) against a real vLLM CPU server, through the runner's CLI.

The tiny random model scores about 0%, so the test checks the pipeline, not the score: every question is
asked and recorded, both extractors are scored, the same seed gives the same prompts and outcomes, another
seed gives other few-shot examples, and two runs pair up in the analysis.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from quantbench.analysis.stats import mcnemar_exact, paired_counts
from quantbench_loadgen.accuracy.results import AccuracyResult, question_key
from quantbench_loadgen.accuracy.task import reference_answer

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]

LIMIT = 20


def _run(
    python: Path,
    server: Any,
    gsm8k: Path,
    out: Path,
    seed: int,
    endpoint: str = "completions",
    local_tokenizer: bool = True,
) -> AccuracyResult:
    samples = out.with_suffix(".samples.jsonl")
    cmd = [
        str(python), "-m", "quantbench_loadgen.accuracy",
        "--base-url", server.url,
        "--model", server.served_model_name,
        "--dataset", str(gsm8k),
        "--limit", str(LIMIT),
        "--num-fewshot", "8",
        "--seed", str(seed),
        "--max-gen-tokens", "48",
        "--concurrency", "4",
        "--out", str(out),
        "--samples-out", str(samples),
        "--endpoint", endpoint,
    ]  # fmt: skip
    if local_tokenizer:
        cmd += ["--tokenizer", str(server.model_path)]  # else prompts go as text
    # No hub settings from outside (the runner sets the offline flags itself), and a fresh $HOME that must
    # stay empty: nothing downloaded or cached there, as for a Job whose user cannot write its home.
    home = out.parent / f"home-{out.stem}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["HOME"] = str(home)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert proc.returncode == 0, f"accuracy runner failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert not home.exists(), f"the runner wrote under $HOME: {sorted(str(p) for p in home.rglob('*'))[:10]}"
    assert f"/{LIMIT} strict" in proc.stdout
    return AccuracyResult.model_validate_json(out.read_text())


@pytest.fixture(scope="module")
def runs(
    vllm_server: Callable[[str], Any],
    accuracy_python: Path,
    gsm8k_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[AccuracyResult, AccuracyResult, AccuracyResult, Path]:
    server = vllm_server("bf16")
    work = tmp_path_factory.mktemp("accuracy")
    first = _run(accuracy_python, server, gsm8k_dir, work / "a.json", seed=1234)
    again = _run(accuracy_python, server, gsm8k_dir, work / "b.json", seed=1234)
    other = _run(accuracy_python, server, gsm8k_dir, work / "c.json", seed=99, local_tokenizer=False)
    return first, again, other, work


def test_every_question_is_answered_and_recorded(
    runs: tuple[AccuracyResult, AccuracyResult, AccuracyResult, Path], gsm8k_dir: Path
) -> None:
    result, _, _, work = runs
    docs = [json.loads(line) for line in (gsm8k_dir / "test.jsonl").read_text().splitlines()[:LIMIT]]
    assert [o.doc_id for o in result.outcomes] == list(range(LIMIT))
    assert [o.key for o in result.outcomes] == [question_key(d["question"]) for d in docs]
    assert [o.target for o in result.outcomes] == [reference_answer(d["answer"]) for d in docs]
    assert result.num_fewshot == 8 and result.limit == LIMIT and result.lm_eval_version == "0.4.13"
    samples = [json.loads(line) for line in (work / "a.samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 * LIMIT  # one per question and extractor
    assert {s["filter"] for s in samples} == {"strict-match", "flexible-extract"}
    assert all(isinstance(s["response"], str) and s["response"] for s in samples), (
        "every question got an answer"
    )


def test_scores_match_the_per_question_outcomes(
    runs: tuple[AccuracyResult, AccuracyResult, AccuracyResult, Path],
) -> None:
    result = runs[0]
    for score, field in ((result.strict, "strict_correct"), (result.flexible, "flexible_correct")):
        correct = sum(1 for o in result.outcomes if getattr(o, field))
        assert score.questions == LIMIT and score.correct == correct
        assert score.accuracy == pytest.approx(correct / LIMIT)
    for o in result.outcomes:  # lm-eval's exact match, as the report states it: the extracted number
        if o.strict_correct:
            assert o.strict_answer.replace(",", "").rstrip(".") == o.target.replace(",", "")


def test_same_seed_reproduces_and_another_seed_changes_the_prompts(
    runs: tuple[AccuracyResult, AccuracyResult, AccuracyResult, Path],
) -> None:
    first, again, other, _ = runs
    assert first.prompts_sha256 == again.prompts_sha256
    assert [o.model_dump() for o in first.outcomes] == [o.model_dump() for o in again.outcomes]
    assert other.prompts_sha256 != first.prompts_sha256  # other few-shot examples (no client tokenizer)
    assert [o.key for o in other.outcomes] == [o.key for o in first.outcomes]  # the same questions


def test_runs_pair_up_in_the_analysis(
    runs: tuple[AccuracyResult, AccuracyResult, AccuracyResult, Path],
) -> None:
    first, again, _, _ = runs
    counts = paired_counts(first.correct_by_question(), again.correct_by_question())
    assert counts.n == LIMIT and counts.discordant == 0
    assert mcnemar_exact(counts.only_a, counts.only_b) == 1.0


def test_chat_endpoint(
    vllm_server: Callable[[str], Any], accuracy_python: Path, gsm8k_dir: Path, tmp_path: Path
) -> None:
    result = _run(
        accuracy_python, vllm_server("bf16"), gsm8k_dir, tmp_path / "chat.json", 1234, endpoint="chat"
    )
    assert result.endpoint == "chat"
    assert [o.doc_id for o in result.outcomes] == list(range(LIMIT))
    assert result.strict.questions == LIMIT
