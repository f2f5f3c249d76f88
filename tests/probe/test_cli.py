from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantbench.commands import probe as probe_command

from .common import LLAMA_CONFIG, TINY_CONFIG, cuda_available


def test_registers_probe_subcommand() -> None:
    parser = argparse.ArgumentParser()
    probe_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["probe", "--model-config", "c.json", "--batch-sizes", "1,8", "--out", "r.json"])
    assert args.func is probe_command.run and args.out == Path("r.json")
    assert args.fp8_kernel == "auto"  # vLLM's FP8 kernels when importable, else torch._scaled_mm
    assert (
        parser.parse_args(["probe", "--model-config", "c.json", "--fp8-kernel", "torch"]).fp8_kernel
        == "torch"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["probe", "--model-config", "c.json", "--fp8-kernel", "cublas"])
    assert args.int4_kernel == "auto"  # vLLM's Marlin when importable, else tinygemm
    assert (
        parser.parse_args(["probe", "--model-config", "c.json", "--int4-kernel", "vllm"]).int4_kernel
        == "vllm"
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["probe", "--model-config", "c.json", "--int4-kernel", "exllama"])


def test_floors_only_needs_no_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    rc = probe_command.main(["--model-config", str(LLAMA_CONFIG), "--floors-only", "--gpu", "h100-sxm"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Datasheet floors: meta-llama/Llama-3.1-8B-Instruct on H100 SXM5 80GB" in out
    assert "| weights GB | 15.01 | 8.04 | 4.68 |" in out
    assert "| 1 | 4.482 |" in out


def test_floors_only_skips_fp8_on_gpus_without_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        probe_command.main(["--model-config", str(LLAMA_CONFIG), "--floors-only", "--gpu", "a100-40gb"]) == 0
    )
    assert "| batch | bf16 ms | int4 ms |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--floors-only"], "--floors-only needs --gpu"),
        (["--floors-only", "--gpu", "x9000"], "unknown GPU 'x9000'"),
        (["--batch-sizes", "1,a"], "--batch-sizes: expected comma-separated integers"),
        (["--batch-sizes", "0,4"], "--batch-sizes: expected positive integers"),
        (["--precisions", "fp4"], "--precisions: unknown precision"),
        (["--min-repeats", "0"], "--min-repeats"),
    ],
)
def test_bad_arguments_are_named(extra: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert probe_command.main(["--model-config", str(LLAMA_CONFIG), *extra]) == 2
    assert message in capsys.readouterr().err


def test_bad_model_config_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**TINY_CONFIG, "num_local_experts": 8}))
    assert probe_command.main(["--model-config", str(config)]) == 2
    assert "num_local_experts" in capsys.readouterr().err


@pytest.mark.skipif(cuda_available(), reason="this machine has a CUDA GPU")
def test_without_gpu_the_probe_errors_clearly(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "quantbench.probe", "--model-config", str(LLAMA_CONFIG), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "quantbench probe: error: quantbench probe needs an NVIDIA GPU" in proc.stderr
    assert "--floors-only" in proc.stderr
    assert not out.exists()


def test_importing_the_probe_package_does_not_import_torch() -> None:
    code = (
        "import sys, quantbench.probe, quantbench.probe.assemble, quantbench.probe.render, "
        "quantbench.commands.probe; print('torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "False"


def test_probe_is_wired_into_the_quantbench_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from quantbench.cli import COMMAND_MODULES, main

    assert "quantbench.commands.probe" in COMMAND_MODULES
    assert main(["probe", "--model-config", str(LLAMA_CONFIG), "--floors-only", "--gpu", "h200"]) == 0
    assert "on H200 SXM 141GB" in capsys.readouterr().out


def _probe_cli(args: list[str], hub_cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_CACHE": str(hub_cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "quantbench.probe", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_a_hugging_face_id_reads_config_json_from_the_hub_cache(tmp_path: Path) -> None:
    """`--model-config org/name` (what the operator's probe Job passes for a Hub model): huggingface_hub
    resolves it, here from its cache alone, as in a pod whose model cache already holds the model."""
    snapshot = tmp_path / "models--acme--llama-like" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(LLAMA_CONFIG.read_text())
    (tmp_path / "models--acme--llama-like" / "refs").mkdir()
    (tmp_path / "models--acme--llama-like" / "refs" / "main").write_text("0123abcd")
    proc = _probe_cli(["--model-config", "acme/llama-like", "--floors-only", "--gpu", "h100-sxm"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    floors = _probe_cli(["--model-config", str(LLAMA_CONFIG), "--floors-only", "--gpu", "h100-sxm"], tmp_path)
    assert proc.stdout == floors.stdout  # the same shapes, the same floors


def test_a_hugging_face_id_that_cannot_be_fetched_is_a_clear_error(tmp_path: Path) -> None:
    proc = _probe_cli(["--model-config", "acme/not-here", "--floors-only", "--gpu", "h100-sxm"], tmp_path)
    assert proc.returncode == 2
    assert "cannot fetch config.json of the model acme/not-here from the Hugging Face Hub" in proc.stderr
    assert "give the path of a local copy" in proc.stderr
    # A path that does not exist (not an id) keeps its own message.
    proc = _probe_cli(
        ["--model-config", str(tmp_path / "nope.json"), "--floors-only", "--gpu", "h100"], tmp_path
    )
    assert proc.returncode == 2 and "no such file" in proc.stderr
