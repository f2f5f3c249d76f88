from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from quantbench.commands import probe as probe_command

from .common import LLAMA_CONFIG, TINY_CONFIG


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def test_registers_probe_subcommand() -> None:
    parser = argparse.ArgumentParser()
    probe_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["probe", "--model-config", "c.json", "--batch-sizes", "1,8", "--out", "r.json"])
    assert args.func is probe_command.run and args.out == Path("r.json")


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


@pytest.mark.skipif(_cuda_available(), reason="this machine has a CUDA GPU")
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
