"""The local executor behind `quantbench run`: pure parts, and the whole job on real vLLM CPU servers."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from quantbench.analysis.run_results import RunResults
from quantbench.api.v1alpha1 import QuantBenchmark, QuantBenchmarkSpec, Variant
from quantbench.cli import main
from quantbench.commands.run import gpu_hour_prices
from quantbench.local.executor import (
    Device,
    LocalSettings,
    accuracy_argv,
    checkpoint_gib,
    fidelity_argv,
    local_server_argv,
    overlap_words,
    overlaps_starts,
    probe_argv,
    run_cpu_probe,
    run_local,
    run_probe,
    sequential_accuracy_args,
    unsupported_here,
)
from quantbench.local.server import free_port, log_tail, start_server
from quantbench.sizes import configmap_problems
from tests.fixtures.vllm import DEFAULT_PYTHON, VllmServerPool

ROOT = Path(__file__).resolve().parents[2]
H100 = Device("NVIDIA H100 80GB HBM3")
A100 = Device("NVIDIA A100-SXM4-80GB")


def _spec(**kw: object) -> QuantBenchmarkSpec:
    return QuantBenchmarkSpec.model_validate(
        {
            "model": "m",
            "baseline": "bf16",
            "variants": [{"name": "bf16", "precision": "bf16"}],
            "accuracy": {},
            **kw,
        }
    )


@pytest.mark.parametrize(
    ("variant", "device", "unsupported"),
    [
        ({"name": "a", "precision": "bf16"}, Device(), False),
        ({"name": "a", "precision": "fp8"}, Device(), True),
        ({"name": "a", "precision": "awq-int4"}, Device(), True),  # Marlin is CUDA-only
        ({"name": "a", "precision": "awq-int4", "quantizationKernel": "awq"}, Device(), False),
        ({"name": "a", "precision": "fp8"}, H100, False),
        ({"name": "a", "precision": "fp8"}, A100, True),
        ({"name": "a", "precision": "awq-int4"}, A100, False),
    ],
)
def test_unsupported_here(variant: dict[str, str], device: Device, unsupported: bool) -> None:
    why = unsupported_here(Variant.model_validate(variant), device)
    assert (why is not None) == unsupported, why
    if why is not None:
        assert (
            ("compute capability" in why)
            if variant["precision"] == "fp8"
            else ("quantizationKernel: awq" in why)
        )


def test_server_argv_is_the_operators_flags_on_loopback() -> None:
    spec = _spec(server={"maxModelLen": 2048, "extraArgs": ["--seed", "0"]})
    argv = local_server_argv(spec, spec.variants[0], "/venv/bin/python", 8123)
    assert argv[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "8123"
    assert argv[argv.index("--dtype") + 1] == "bfloat16" and argv[-2:] == ["--seed", "0"]
    assert argv[argv.index("--max-model-len") + 1] == "2048"


def test_accuracy_uses_the_local_checkpoints_tokenizer(tmp_path: Path) -> None:
    spec = _spec()
    settings = LocalSettings(out_dir=tmp_path, accuracy_python="py", gsm8k_dir="/data/gsm8k")
    argv = accuracy_argv(settings, spec, "http://x", str(tmp_path), tmp_path / "a.yaml", tmp_path / "o.json")
    assert argv[argv.index("--tokenizer") + 1] == str(tmp_path)
    assert argv[argv.index("--dataset") + 1] == "/data/gsm8k"
    hub = accuracy_argv(settings, spec, "http://x", "org/model", tmp_path / "a.yaml", tmp_path / "o.json")
    assert "--tokenizer" not in hub


def test_checkpoint_size(tmp_path: Path) -> None:
    assert checkpoint_gib("org/model") is None
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 2**20)
    assert checkpoint_gib(str(tmp_path)) == pytest.approx(2**20 / 2**30, abs=1e-4)


def test_run_rejects_a_bad_spec_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    doc = yaml.safe_load((ROOT / "examples" / "local.yaml").read_text())
    doc["spec"]["baseline"] = "int3"
    bad.write_text(yaml.safe_dump(doc))
    assert main(["run", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "spec.baseline: baseline must name one of spec.variants" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_quantbench_run_end_to_end(
    tmp_path: Path,
    vllm_pool: VllmServerPool,
    accuracy_python: Path,
    gsm8k_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The embedded default, trimmed and on the tiny model: bf16 and AWQ on vLLM CPU, fp8 reported unsupported,
    the CPU's bandwidth floor measured, the table printed, the report written."""
    manifest = vllm_pool.manifest()
    doc = yaml.safe_load((ROOT / "examples" / "local.yaml").read_text())
    spec = doc["spec"]
    spec["model"] = str(manifest.model_dir(vllm_pool.models_dir, "bf16"))
    variants = {v["name"]: v for v in spec["variants"]}
    variants["awq-int4"]["model"] = str(manifest.model_dir(vllm_pool.models_dir, "awq-int4"))
    spec["variants"] = [variants["bf16"], variants["awq-int4"], variants["fp8"]]
    spec["workloads"] = [
        {"name": "latency", "type": "latency", "inputLen": 64, "outputLen": 16, "iterations": 3},
        {"name": "sweep", "type": "throughput", "batchSizes": [1, 4], "inputLen": 64, "outputLen": 16},
        {
            "name": "serving",
            "type": "serving",
            "dataset": {"kind": "random", "inputLen": 64, "outputLen": 16},
            "numPrompts": 6,
            "requestRates": [4, "inf"],
        },
    ]
    spec["accuracy"] = {"numFewshot": 2, "limit": 4, "maxGenTokens": 32, "concurrency": 4}
    bench = tmp_path / "bench.yaml"
    bench.write_text(yaml.safe_dump(doc))
    vllm_pool.stop_all()  # two cores: leave them to the run's own servers
    monkeypatch.chdir(ROOT)
    code = main(
        [
            "run",
            str(bench),
            "--out",
            str(tmp_path / "results"),
            "--vllm-python",
            str(DEFAULT_PYTHON),
            "--accuracy-python",
            str(accuracy_python),
            "--gsm8k",
            str(gsm8k_dir),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out  # fp8 is unsupported on CPU: reported as such, not a failure of the run
    [root] = list((tmp_path / "results" / doc["metadata"]["name"]).iterdir())
    results = RunResults.load(root)
    servers = {name: v.server for name, v in results.variants.items()}
    assert servers["bf16"] is not None and servers["bf16"].phase == "Succeeded", servers["bf16"]
    assert servers["awq-int4"] is not None and servers["awq-int4"].phase == "Succeeded", servers["awq-int4"]
    assert servers["awq-int4"].kernel == "awq"
    assert servers["fp8"] is not None and servers["fp8"].phase == "Unsupported"
    bf16 = results.variants["bf16"]
    assert set(bf16.loadgen) == {"latency", "sweep", "serving"}
    latency = bf16.loadgen["latency"].latency
    assert latency is not None and latency.ms_per_token > 0
    assert bf16.accuracy is not None and len(bf16.accuracy.outcomes) == 4
    awq_weights, bf16_weights = servers["awq-int4"].weights_gib, servers["bf16"].weights_gib
    assert awq_weights is not None and bf16_weights is not None and awq_weights < bf16_weights
    summary = json.loads((root / "report" / "summary.json").read_text())
    verdicts = {v["variant"]: v["verdict"] for v in summary["variants"]}
    assert verdicts["bf16"] == "Baseline" and verdicts["fp8"] == "Unsupported"
    assert (root / "report" / "report.html").is_file()
    assert summary["bandwidthSource"].startswith("CPU, measured: cpu-torch-sum-read")
    assert all(v.get("bandwidthEfficiency", 0) > 0 for v in summary["variants"] if v["variant"] != "fp8")
    # The table is printed as a table, then the verdicts in words; progress went line by line (no terminal).
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert any(line.split("│")[1].strip() == "awq-int4" and " awq " in line for line in rows), out
    assert "- fp8 is unsupported here:" in out
    assert "bf16: workload latency" in out and "awq-int4: Succeeded" in out


def test_gpu_probe_needs_a_local_config(tmp_path: Path) -> None:
    logged: list[str] = []
    spec = _spec(probe=True)
    gpu = LocalSettings(out_dir=tmp_path, log=logged.append, device=H100, vllm_python="/venv/bin/python")
    assert run_probe(spec, tmp_path, gpu) is None and "not a local model folder" in logged[-1]
    assert not (tmp_path / "probe.json").exists()
    argv = probe_argv(gpu, tmp_path, tmp_path / "probe.json")
    assert argv[:3] == ["/venv/bin/python", "-m", "quantbench.probe"]
    assert argv[argv.index("--model-config") + 1] == str(tmp_path / "config.json")


def test_a_failing_probe_does_not_fail_the_run(tmp_path: Path) -> None:
    """On a GPU machine whose Python cannot run the probe, the run goes on without probe.json."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    logged: list[str] = []
    settings = LocalSettings(out_dir=tmp_path, log=logged.append, device=H100, vllm_python="/bin/false")
    assert run_probe(_spec(model=str(tmp_path / "model"), probe=True), tmp_path, settings) is None
    assert "probe: failed (exit 1), the run goes on without it" in logged[-1]
    assert not (tmp_path / "probe.json").exists()


def test_gpu_hour_prices_option() -> None:
    assert gpu_hour_prices(["2.5", "h100=4.1"]) == {"*": 2.5, "h100": 4.1}
    assert gpu_hour_prices([]) == {}


def test_a_failing_cpu_probe_does_not_fail_the_run(tmp_path: Path) -> None:
    logged: list[str] = []
    settings = LocalSettings(out_dir=tmp_path, log=logged.append, vllm_python="/bin/false")
    assert run_cpu_probe(tmp_path, settings) is None
    assert "probe: failed (exit 1), the run goes on without it" in logged[-1]


@pytest.mark.vllm
def test_cpu_probe_measures_the_read_bandwidth(tmp_path: Path) -> None:
    """The CPU probe runs under the vLLM environment's Python (torch) with our source lent to it."""
    logged: list[str] = []
    settings = LocalSettings(out_dir=tmp_path, log=logged.append, vllm_python=str(DEFAULT_PYTHON))
    bandwidth = run_cpu_probe(tmp_path, settings)
    assert bandwidth is not None, logged
    assert bandwidth.method.startswith("cpu-torch-sum-read") and len(bandwidth.passes_bytes_per_s) == 2
    # Any machine of this century streams between 1 GB/s and 10 TB/s from memory.
    assert 1e9 < bandwidth.bytes_per_s < 1e13
    assert logged[-1].startswith("probe: CPU streaming read")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--dataset", "serving", "--dataset 'serving': write WORKLOAD=PATH"),
        ("--dataset", "serving=", "--dataset 'serving=': write WORKLOAD=PATH"),
        ("--server-env", "=1", "--server-env '=1': write NAME=VALUE"),
        ("--gpu-hour-price", "h100=cheap", "--gpu-hour-price 'h100=cheap': write USD or POOL=USD"),
        ("--gpu-hour-price", "-2", "--gpu-hour-price '-2': write USD or POOL=USD"),
    ],
)
def test_run_rejects_malformed_pairs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    args = ["run", str(ROOT / "examples" / "local.yaml"), "--out", str(tmp_path / "out"), option, value]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_fidelity_commands(tmp_path: Path) -> None:
    spec = _spec(
        variants=[{"name": "bf16", "precision": "bf16"}, {"name": "int8", "precision": "int8-w8a8"}],
        accuracy={"limit": 10, "fidelity": {"prompts": 4, "maxTokens": 8, "topK": 5}},
    )
    logged: list[str] = []
    settings = LocalSettings(out_dir=tmp_path, log=logged.append, gsm8k_dir="/data/gsm8k")
    base = fidelity_argv(settings, spec, spec.baseline, "http://127.0.0.1:1", "m", tmp_path)
    assert base is not None and base[3:5] == ["fidelity", "reference"]
    assert base[base.index("--count") + 1] == "4" and base[base.index("--top-k") + 1] == "5"
    other = next(v.name for v in spec.variants if v.name != spec.baseline)
    assert fidelity_argv(settings, spec, other, "u", "m", tmp_path) is None  # no reference yet
    assert "the baseline wrote no reference" in logged[-1]
    (tmp_path / spec.baseline).mkdir()
    (tmp_path / spec.baseline / "fidelity-reference.json").write_text("{}")
    compare = fidelity_argv(settings, spec, other, "u", "m", tmp_path)
    assert compare is not None and compare[4] == "compare"
    assert compare[-1] == str(tmp_path / other / "fidelity.json")
    assert fidelity_argv(settings, _spec(), spec.baseline, "u", "m", tmp_path) is None
    # A local run has no ConfigMap to fill: a reference the operator would refuse runs here as asked.
    largest = {"prompts": 1000, "maxTokens": 1024, "topK": 20}
    big = _spec(
        variants=spec.model_dump(by_alias=True)["variants"], accuracy={"limit": 10, "fidelity": largest}
    )
    assert configmap_problems(big)
    argv = fidelity_argv(settings, big, big.baseline, "u", "m", tmp_path)
    assert argv is not None and argv[argv.index("--count") + 1] == "1000"


def test_sequential_accuracy_commands_carry_the_baselines_responses(tmp_path: Path) -> None:
    spec = _spec(
        variants=[{"name": "bf16", "precision": "bf16"}, {"name": "int8", "precision": "int8-w8a8"}],
        accuracy={"sequential": {"looks": 5, "discordance": 0.05}},
    )
    logged: list[str] = []
    settings = LocalSettings(out_dir=tmp_path, log=logged.append)
    responses = tmp_path / "bf16" / "accuracy-responses.json"
    assert sequential_accuracy_args(settings, spec, "bf16", tmp_path) == ["--responses-out", str(responses)]
    assert sequential_accuracy_args(settings, spec, "int8", tmp_path) == []  # the baseline has no result
    assert "every planned question" in logged[-1]
    (tmp_path / "bf16").mkdir()
    (tmp_path / "bf16" / "accuracy.json").write_text("{}")
    result = ["--baseline-result", str(tmp_path / "bf16" / "accuracy.json")]
    unscreened = ["--unscreened-reason", "the baseline wrote no accuracy-responses.json"]
    assert sequential_accuracy_args(settings, spec, "int8", tmp_path) == [*result, *unscreened]
    responses.write_text("{}")
    with_responses = [*result, "--baseline-responses", str(responses)]
    assert sequential_accuracy_args(settings, spec, "int8", tmp_path) == with_responses
    assert sequential_accuracy_args(settings, _spec(), "bf16", tmp_path) == []  # not sequential
    # screen: false: the baseline keeps no responses, the variant stops early without screening (no reason).
    off = _spec(
        variants=spec.model_dump(by_alias=True)["variants"], accuracy={"sequential": {"screen": False}}
    )
    assert sequential_accuracy_args(settings, off, "bf16", tmp_path) == []
    assert sequential_accuracy_args(settings, off, "int8", tmp_path) == result


STAND_IN_SERVER = '''
"""A stand-in for vLLM's OpenAI server: answers /health, writes when it stops."""
import argparse, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int)
p.add_argument("--served-model-name")
args, _ = p.parse_known_args()
events = os.environ["STAND_IN_EVENTS"]


def note(what):
    with open(events, "a") as fh:
        fh.write(f"{what} {args.served_model_name}\\n")


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a):
        pass


def stop(*_):
    note("stop")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
HTTPServer(("127.0.0.1", args.port), Health).serve_forever()
'''


def _stand_in_vllm(tmp_path: Path) -> Path:
    """A folder to put on PYTHONPATH so that `python -m vllm.entrypoints.openai.api_server` is the stand-in."""
    package = tmp_path / "stand-in" / "vllm" / "entrypoints" / "openai"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    (package / "api_server.py").write_text(STAND_IN_SERVER)
    return tmp_path / "stand-in"


def test_a_server_started_early_keeps_its_own_start_up_time(tmp_path: Path) -> None:
    """watch_ready notes when /health first answers; wait_ready, called later, returns that start-up time and
    not the time of its own call."""
    port = free_port()
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--port", str(port)]
    env = {"PYTHONPATH": str(_stand_in_vllm(tmp_path)), "STAND_IN_EVENTS": str(tmp_path / "events")}
    server = start_server("early", argv, tmp_path / "server.log", env=env, port=port)
    try:
        server.watch_ready(poll_s=0.05)
        while server.ready_seconds is None and server.process.poll() is None:
            time.sleep(0.05)
        noted = server.ready_seconds
        assert noted is not None, log_tail(server.log_path)
        time.sleep(0.5)
        assert server.wait_ready(60) == noted
    finally:
        server.stop()


@pytest.mark.parametrize("overlap", [True, False])
def test_the_next_server_starts_during_the_untimed_steps_on_the_cpu(tmp_path: Path, overlap: bool) -> None:
    """On the CPU the next variant's server starts once the current one's timed workloads are done and before
    the current one stops; `--no-overlap-starts` keeps them apart. An unsupported variant in between starts
    nothing. A stand-in takes vLLM's place and `true` the load generator's: what is tested is the order in
    which the run starts and stops processes."""
    stand_in = _stand_in_vllm(tmp_path)
    events = tmp_path / "events"

    def log(line: str) -> None:  # the run's stage changes, in the file the stand-in servers write to
        with events.open("a") as fh:
            fh.write(line.split(" (")[0] + "\n")

    bench = QuantBenchmark.model_validate(
        {
            "apiVersion": "quantbench.dev/v1alpha1",
            "kind": "QuantBenchmark",
            "metadata": {"name": "order"},
            "spec": {
                "model": "m-bf16",
                "baseline": "bf16",
                "variants": [
                    {"name": "w8a8", "precision": "int8-w8a8", "model": "m-w8a8"},
                    {"name": "fp8", "precision": "fp8"},
                    {"name": "bf16", "precision": "bf16"},
                ],
                "workloads": [{"name": "latency", "type": "latency"}],
            },
        }
    )
    settings = LocalSettings(
        out_dir=tmp_path / "out",
        jobs_python="true",
        server_env={"PYTHONPATH": str(stand_in), "STAND_IN_EVENTS": str(events), "OMP_NUM_THREADS": "1"},
        log=log,
        overlap_starts=overlap,
        cores=2,  # a core is left for the starting server
    )
    _, servers = run_local(bench, settings)
    assert {n: s.phase for n, s in servers.items()} == {
        "bf16": "Succeeded",
        "fp8": "Unsupported",
        "w8a8": "Succeeded",
    }
    seen = [
        e for e in events.read_text().splitlines() if "starting server" in e or "workload" in e or "stop" in e
    ]
    first = ["bf16: starting server", "bf16: workload latency"]
    second = ["w8a8: workload latency", "stop m-w8a8"]
    if overlap:
        assert seen == [*first, "w8a8: starting server", "stop m-bf16", *second]
    else:
        assert seen == [*first, "stop m-bf16", "w8a8: starting server", *second]
    assert not overlaps_starts(LocalSettings(out_dir=tmp_path, device=H100), bench.spec)


def test_servers_overlap_only_where_their_threads_leave_a_core_free(tmp_path: Path) -> None:
    """A starting server beside one whose OpenMP threads fill every core slows it several-fold: the overlap
    needs OMP_NUM_THREADS below the run's cores (unset counts as every core); --server-env wins over the spec."""
    spec = _spec(server={"env": [{"name": "OMP_NUM_THREADS", "value": "2"}]})
    unset = spec.model_copy(update={"server": spec.server.model_copy(update={"env": []})})

    def settings(cores: int, **kw: Any) -> LocalSettings:
        return LocalSettings(out_dir=tmp_path, cores=cores, **kw)

    assert overlaps_starts(settings(4), spec) and not overlaps_starts(settings(2), spec)
    assert "a core is left for it" in overlap_words(settings(4), spec)
    assert overlap_words(settings(2), spec) == (
        "one after another (2 OpenMP threads of 2 cores leave none for a starting server, which would slow "
        "the running one's steps)"
    )
    assert not overlaps_starts(settings(64), unset)
    assert overlaps_starts(settings(2, server_env={"OMP_NUM_THREADS": "1"}), spec)
    assert not overlaps_starts(settings(4, server_env={"OMP_NUM_THREADS": "two"}), spec)
    assert not overlaps_starts(settings(4, overlap_starts=False), spec)
    assert not overlaps_starts(settings(4, device=H100), spec)
