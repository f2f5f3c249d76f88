"""The model factory's command line: reproducible builds, a cache that is reused, clear errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.vllm import DEFAULT_PYTHON, ROOT
from tests.models.manifest import FACTORY_VERSION, Manifest, Precision, parse_precisions


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def factory(*args: str) -> subprocess.CompletedProcess[str]:
    if not DEFAULT_PYTHON.exists():
        pytest.fail("no .venv-vllm: run `make vllm-env` first", pytrace=False)
    return subprocess.run(
        [str(DEFAULT_PYTHON), "-m", "tests.models", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_parse_precisions_names_the_bad_one() -> None:
    assert parse_precisions("bf16, awq-int4") == [Precision.BF16, Precision.AWQ_INT4]
    with pytest.raises(ValueError, match=r"unknown precision 'int3'.*bf16, awq-int4, w8a8-int8"):
        parse_precisions("bf16,int3")
    with pytest.raises(ValueError, match="empty"):
        parse_precisions(" , ")


@pytest.mark.vllm
def test_bf16_build_is_reproducible_and_cached(tmp_path: Path) -> None:
    first = factory("build", "--out", str(tmp_path / "a"), "--precisions", "bf16")
    assert first.returncode == 0, first.stderr
    manifest = Manifest.model_validate(json.loads(first.stdout))
    assert manifest.factory_version == FACTORY_VERSION and list(manifest.models) == [Precision.BF16]
    second = factory("build", "--out", str(tmp_path / "b"), "--precisions", "bf16")
    assert second.returncode == 0, second.stderr
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert sha256(tmp_path / "a" / "bf16" / name) == sha256(tmp_path / "b" / "bf16" / name), name
    config = json.loads((tmp_path / "a" / "bf16" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (4, 256, 4096)
    again = factory("build", "--out", str(tmp_path / "a"), "--precisions", "bf16")
    assert again.returncode == 0 and "built" not in again.stderr, again.stderr  # reused, not rebuilt


@pytest.mark.vllm
def test_unknown_precision_is_refused() -> None:
    out = factory("build", "--out", "/nonexistent", "--precisions", "fp4")
    assert out.returncode == 2
    assert "unknown precision 'fp4'" in out.stderr
