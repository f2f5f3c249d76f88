"""The quantbench-loadgen command: files it writes, exit codes, live metrics."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from quantbench_loadgen.cli import main
from quantbench_loadgen.results import LoadgenResult, RequestRecord
from tests.loadgen.conftest import ScriptedFactory, closed_port

SERVING = (
    "{name: s, type: serving, requestRates: [100, inf], numPrompts: 12, warmupRequests: 2, "
    "dataset: {kind: random, inputLen: 16, outputLen: 6}, slo: {ttftMs: 1000}}"
)


def test_run_writes_result_vllm_export_and_samples(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path, tmp_path: Path
) -> None:
    wl = tmp_path / "workload.yaml"
    wl.write_text(SERVING.replace("{name", '{"name"', 0))
    out, export, samples = tmp_path / "r.json", tmp_path / "v.json", tmp_path / "s.jsonl"
    code = main(
        ["run", "--url", scripted_server(itl_ms=1), "--workload", str(wl), "--tokenizer", str(scripted_tokenizer),
         "-o", str(out), "--vllm-export", str(export), "--samples", str(samples), "--keep-text", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    result = LoadgenResult.model_validate_json(out.read_text())
    assert result.model == "scripted" and [s.completed for s in result.serving] == [12, 12]
    assert result.serving[0].goodput_ratio == 1.0
    # One JSON object per rate, with vllm bench serve's keys and units.
    docs = [json.loads(line) for line in export.read_text().splitlines()]
    assert [d["request_rate"] for d in docs] == [100, "inf"]
    for d, s in zip(docs, result.serving, strict=True):
        assert d["completed"] == 12 and d["total_output_tokens"] == 72
        assert d["median_ttft_ms"] == pytest.approx(s.ttft.median_ms)
        assert d["p99_itl_ms"] == pytest.approx(s.itl.p99_ms)
        assert d["ttfts"][0] == pytest.approx(d["ttfts"][0]) and len(d["itls"]) == 12
        assert {"mean_tpot_ms", "std_e2el_ms", "request_goodput", "output_throughput"} <= d.keys()
        assert d["generated_texts"][0] == " tok" * 6
    records = [RequestRecord.model_validate_json(line) for line in samples.read_text().splitlines()]
    assert len(records) == 2 * (12 + 2) and sum(r.warmup for r in records) == 4


def test_model_is_discovered_and_tokens_come_from_the_server(
    scripted_server: ScriptedFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--url", scripted_server() + "/v1", "--workload", SERVING, "--no-progress"])
    assert code == 0
    result = LoadgenResult.model_validate_json(capsys.readouterr().out)
    assert result.model == "scripted" and result.serving[1].total_input_tokens == 12 * 16


def test_strict_exits_non_zero_only_when_asked(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path
) -> None:
    args = ["run", "--url", scripted_server(itl_ms=1), "--workload", SERVING, "--model", "fault-malformed",
            "--tokenizer", str(scripted_tokenizer), "-o", "/dev/null", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert main([*args, "--strict"]) == 1


def test_bad_workload_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["run", "--url", "http://127.0.0.1:1", "--workload", "{name: s, type: serving, requestRates: [0]}"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "requestRates.0" in err or "requestRates" in err
    assert main(["run", "--url", "http://x", "--workload", "[1, 2]"]) == 2
    assert "one workload mapping" in capsys.readouterr().err


def test_unreachable_server(
    scripted_tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = closed_port()
    assert main(["run", "--url", url, "--workload", SERVING]) == 3
    assert "pass --model" in capsys.readouterr().err
    out = tmp_path / "r.json"
    args = ["run", "--url", url, "--workload", SERVING, "--model", "m", "--tokenizer", str(scripted_tokenizer),
            "-o", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0  # partial result, failures counted
    result = LoadgenResult.model_validate_json(out.read_text())
    assert result.serving[0].failures == {"connect": 12} and not result.complete


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape_when_running(proc: subprocess.Popen[str], port: int, timeout_s: float = 60.0) -> str:
    """/metrics of a running CLI once at least one request completed (startup is slow on a busy machine)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            time.sleep(0.1)
            continue
        done = [
            line
            for line in text.splitlines()
            if line.startswith("quantbench_loadgen_requests_completed_total")
        ]
        if any(float(line.split()[-1]) > 0 for line in done):
            return text
        time.sleep(0.1)
    raise AssertionError("the run did not complete a request while metrics were watched")


def _completed(text: str, step: str, workload: str) -> float:
    prefix = f'quantbench_loadgen_requests_completed_total{{step="{step}",workload="{workload}"}}'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def test_live_prometheus_metrics_and_progress(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path
) -> None:
    port = _free_port()
    wl = ("{name: live, type: serving, requestRates: [20], duration: 10s, "
          "dataset: {kind: random, inputLen: 8, outputLen: 4}}")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantbench_loadgen.cli", "run", "--url", scripted_server(itl_ms=2),
         "--workload", wl, "--tokenizer", str(scripted_tokenizer), "--metrics-port", str(port), "--progress",
         "-o", "/dev/null"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        text = _scrape_when_running(proc, port)
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert _completed(text, "20", "live") > 0  # the run was in progress: counters are live
    assert 'quantbench_loadgen_ttft_seconds_bucket{le="0.001",step="20",workload="live"}' in text
    assert "quantbench_loadgen_itl_seconds_count" in text and "quantbench_loadgen_requests_in_flight" in text
    assert "done," in err and "req/s" in err  # the progress line


def test_sigterm_stops_early_with_partial_results(
    scripted_server: ScriptedFactory, scripted_tokenizer: Path, tmp_path: Path
) -> None:
    out, port = tmp_path / "r.json", _free_port()
    wl = ("{name: long, type: serving, requestRates: [20, 40], duration: 60s, "
          "dataset: {kind: random, inputLen: 8, outputLen: 50}}")  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantbench_loadgen.cli", "run", "--url", scripted_server(itl_ms=5),
         "--workload", wl, "--tokenizer", str(scripted_tokenizer), "-o", str(out), "--no-progress",
         "--metrics-port", str(port)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _scrape_when_running(proc, port)
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    result = LoadgenResult.model_validate_json(out.read_text())
    assert not result.complete and "stopped early" in result.notes[0]
    assert [s.rate_label for s in result.serving] == ["20"]  # the second rate never started
    step = result.serving[0]
    assert step.completed >= 1 and step.failures.get("cancelled", 0) >= 1
