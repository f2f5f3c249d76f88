"""Sequential accuracy evaluation end to end: lm-eval asked in chunks (its `samples` option) against a real
vLLM CPU server, stopping at the design's looks. The server is compared with itself, so every question is
concordant and the design shows non-inferiority by its last look at the latest. The runner is the one the
operator's accuracy Jobs run, with the baseline's result mounted where this test passes a file."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from quantbench_loadgen.accuracy.results import AccuracyResult
from quantbench_loadgen.accuracy.screening import BaselineResponses
from quantbench_loadgen.noninferiority import QualityVerdict
from quantbench_loadgen.publish import split_parts

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(1800)]

SPEC = {"margin": 20, "maxGenTokens": 16, "concurrency": 4, "sequential": {"looks": 2, "discordance": 0.05}}


def _accuracy(python: Path, server: Any, gsm8k: Path, spec: Path, out: Path, *extra: str) -> AccuracyResult:
    cmd = [
        str(python), "-m", "quantbench_loadgen.accuracy",
        "--base-url", server.url, "--model", server.served_model_name, "--dataset", str(gsm8k),
        "--spec", str(spec), "--tokenizer", str(server.model_path), "--out", str(out), *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, check=False)
    assert proc.returncode == 0, f"accuracy runner failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return AccuracyResult.model_validate_json(out.read_text())


def test_variant_is_asked_in_chunks_against_the_baseline(
    vllm_server: Callable[[str], Any], accuracy_python: Path, gsm8k_dir: Path, tmp_path: Path
) -> None:
    server = vllm_server("bf16")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    responses = tmp_path / "responses.json"
    base = _accuracy(
        accuracy_python, server, gsm8k_dir, spec, tmp_path / "base.json", "--responses-out", str(responses)
    )
    assert base.sequential is None and base.strict.questions == 30  # the design's maximum (looks 15, 30)
    var = _accuracy(
        accuracy_python,
        server,
        gsm8k_dir,
        spec,
        tmp_path / "var.json",
        "--baseline-result",
        str(tmp_path / "base.json"),
        "--unscreened-reason",
        "the baseline kept no responses",
    )
    assert "no question screened (the baseline kept no responses): every question generated" in var.notes
    record = var.sequential
    assert record is not None and record.look_sizes == [15, 30]
    # Looks come on information: every answer the same, so a look needs fewer questions than planned at 5%
    # discordance (chunks aim at it from below), and the deciding look's information was reached.
    assert record.look in (1, 2) and record.questions <= record.look_sizes[record.look - 1]
    assert record.information_fraction is not None and record.information_fraction >= record.look / 2
    assert var.strict.questions == record.questions
    assert record.verdict == QualityVerdict.NON_INFERIOR
    assert [o.key for o in var.outcomes] == [o.key for o in base.outcomes[: record.questions]]
    assert record.screened == 0 and record.generated == record.questions

    # Screening: the same server answers as the baseline did, so a question is screened by one prefill and
    # takes the baseline's outcome unless there is doubt: BF16 log-probabilities that tie exactly, answers
    # ending in bytes that do not retokenize. Those are generated.
    refs = BaselineResponses.model_validate_json(responses.read_text())
    assert [r.key for r in refs.responses] == [o.key for o in base.outcomes]
    assert refs.stop and refs.max_gen_tokens == SPEC["maxGenTokens"]
    # The tiny model's random weights give flat distributions: few positions lead by the default 0.25 nats, so
    # this test screens at 0 (everything but exact ties); SmolLM2's figures at the default: bench_screening.py.
    both = (
        "--baseline-result", str(tmp_path / "base.json"), "--baseline-responses", str(responses),
        "--screen-min-gap", "0",
    )  # fmt: skip
    # Read as a Job reads them on Kubernetes: gzip-compressed pieces, one per ConfigMap, joined in order.
    parts = split_parts(responses.read_bytes(), 8, part_bytes=10_000)
    assert len(parts.chunks) > 1
    pieces = [tmp_path / f"responses.json.gz.{i}" for i in range(len(parts.chunks))]
    for piece, chunk in zip(pieces, parts.chunks, strict=True):
        piece.write_bytes(chunk)
    in_pieces = (
        "--baseline-result", str(tmp_path / "base.json"), "--baseline-responses", *map(str, pieces),
        "--screen-min-gap", "0",
    )  # fmt: skip
    same = _accuracy(accuracy_python, server, gsm8k_dir, spec, tmp_path / "same.json", *in_pieces)
    record = same.sequential
    assert record is not None and record.verdict == QualityVerdict.NON_INFERIOR
    assert [o.key for o in same.outcomes] == [o.key for o in base.outcomes[: record.questions]]
    # screened questions take the baseline's outcome; a generated one can differ even on the same server (a
    # near-tie decided the other way in another batch: why it was not screened)
    screened = set(record.screened_keys)
    assert all(o == b for o, b in zip(same.outcomes, base.outcomes, strict=False) if o.key in screened)
    assert record.screened + (record.generated or 0) == record.questions
    # 19 of 30 here; batches differ between runs, so only a quarter is required
    assert record.screened >= record.questions // 4, f"only {record.screened} of {record.questions} screened"
    print(f"bf16 against itself: {record.screened} of {record.questions} screened")

    # The AWQ model of the same weights answers some questions differently: those are generated.
    awq = vllm_server("awq-int4")
    other = _accuracy(accuracy_python, awq, gsm8k_dir, spec, tmp_path / "awq.json", *both)
    record = other.sequential
    assert record is not None and record.generated is not None
    assert record.generated > 0 and record.screened + record.generated == record.questions
    screened = set(record.screened_keys)
    assert all(o == b for o, b in zip(other.outcomes, base.outcomes, strict=False) if o.key in screened)
    assert screened <= {o.key for o in base.outcomes}
    print(
        f"awq-int4 against bf16: {record.screened} of {record.questions} screened, {record.generated} generated"
    )
