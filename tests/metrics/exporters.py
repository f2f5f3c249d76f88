"""Real exporters for the dashboard and rule tests: the operator's /metrics over a realistic benchmark, and the
load generator's live /metrics during a run.

The benchmark's summary comes from the real analysis (`build_summary`) of the hand-made results folder the
report tests use (every verdict, serving rates, accuracy, a roofline probe); its status has a finished run
with a regression and a run in progress, as a recurring benchmark does.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from quantbench.analysis.run_results import RunResults, write_probe_result
from quantbench.analysis.summary import build_summary
from quantbench.api.v1alpha1 import (
    Phase,
    QuantBenchmarkStatus,
    Regression,
    RunRecord,
    VariantPhase,
    VariantStatus,
)
from quantbench.local.server import free_port
from quantbench.metrics import BenchmarkCollector, OperatorMetrics, samples_of_body
from quantbench_loadgen.telemetry import ServerTelemetry, TelemetrySample, summarize
from tests.analysis import builders

NAMESPACE = "bench"
BENCHMARK = "llama31-8b"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def benchmark_body(tmp: Path) -> dict[str, Any]:
    """A QuantBenchmark as the API returns it: spec, and a status written by the operator."""
    variants = builders.demo_variants()
    root = builders.write_run(tmp / "results", variants, "bf16")
    write_probe_result(root, builders.probe_result())
    results = RunResults.load(root)
    for vr in results.variants.values():  # the servers' load, as the load generator sampled it
        for workload, result in vr.loadgen.items():
            steps = [f"bs{p.batch_size}" for p in result.throughput] + [p.rate_label for p in result.serving]
            vr.loadgen[workload] = result.model_copy(update={"server_telemetry": _telemetry(steps)})
    summary = build_summary(results)
    spec = builders.spec_for(variants, "bf16")
    t0 = builders.T0
    previous = RunRecord(
        id="r20261116-0300",
        generation=1,
        phase=Phase.SUCCEEDED,
        started_at=t0 - timedelta(days=7),
        finished_at=t0 - timedelta(days=7) + timedelta(minutes=40),
        summary=summary,
    )
    last = previous.model_copy(
        update={
            "id": "r20261123-0300",
            "started_at": t0,
            "finished_at": t0 + timedelta(minutes=42),
            "phase": Phase.PARTIALLY_SUCCEEDED,
            "regressions": [
                Regression(
                    variant="awq-int4",
                    family="latency",
                    metric="msPerTokenBs1",
                    at="batch 1",
                    before=5.0,
                    after=5.9,
                    change=0.18,
                    reference_run="r20261116-0300",
                    message="awq-int4: msPerTokenBs1 at batch 1 rose 18%: 5 -> 5.9 ms/token",
                )
            ],
        }
    )
    now = t0 + timedelta(days=7)
    status = QuantBenchmarkStatus(
        phase=Phase.RUNNING,
        observed_generation=1,
        current_run=RunRecord(id="r20261130-0300", generation=1, phase=Phase.RUNNING, started_at=now),
        variants=[
            VariantStatus(name="bf16", precision="bf16", phase=VariantPhase.BENCHMARKING, step="wl-serving"),
            VariantStatus(name="fp8", precision="fp8", phase=VariantPhase.EVALUATING, step="accuracy"),
            VariantStatus(name="awq-int4", precision="awq-int4", phase=VariantPhase.SUCCEEDED),
            VariantStatus(
                name="gptq-int4", precision="gptq-int4", phase=VariantPhase.STARTING, step="server"
            ),
            VariantStatus(
                name="int8", precision="int8-w8a8", phase=VariantPhase.WAITING_FOR_GPU, step="server"
            ),
            VariantStatus(name="fp16", precision="fp16", phase=VariantPhase.FAILED, reason="OutOfMemory"),
        ],
        summary=summary,
        history=[last, previous],
        last_run_time=now,
        next_run_time=now + timedelta(days=7),
    )
    return {
        "apiVersion": "quantbench.dev/v1alpha1",
        "kind": "QuantBenchmark",
        "metadata": {"name": BENCHMARK, "namespace": NAMESPACE},
        "spec": spec.to_wire(),
        "status": status.to_wire(),
    }


def _telemetry(steps: list[str]) -> ServerTelemetry:
    samples = [
        TelemetrySample(
            t_s=float(i), step=step, kv_cache_usage=0.1 + 0.8 * i / len(steps), waiting=float(i), running=4
        )
        for i, step in enumerate(steps)
    ]
    return ServerTelemetry(
        metrics_url="http://server/metrics", interval_s=1, samples=samples, steps=summarize(samples)
    )


@dataclass
class OperatorExporter:
    target: str
    collector: BenchmarkCollector
    operator: OperatorMetrics


@contextmanager
def operator_exporter(body: dict[str, Any]) -> Iterator[OperatorExporter]:
    """The operator's /metrics (the registry `quantbench.metrics.serve` serves) with `body` exported."""
    registry = CollectorRegistry()
    collector = BenchmarkCollector()
    registry.register(collector)
    operator = OperatorMetrics(registry)
    operator.observe(0.02, ok=True)
    collector.update(NAMESPACE, BENCHMARK, samples_of_body(body))
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    assert isinstance(server, WSGIServer) and isinstance(thread, threading.Thread)
    try:
        yield OperatorExporter(f"127.0.0.1:{port}", collector, operator)
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def loadgen_run(url: str, model: str | None, tokenizer: str | None, seconds: int = 30) -> Iterator[str]:
    """`quantbench-loadgen run` of a steady serving workload against `url`, serving live metrics; yields
    the metrics target once a request completed. The run is stopped on exit."""
    port = free_port()
    workload = (
        f"{{name: serving, type: serving, requestRates: [8], duration: {seconds}s, "
        "dataset: {kind: random, inputLen: 8, outputLen: 8}}"
    )
    cmd = [sys.executable, "-m", "quantbench_loadgen.cli", "run", "--url", url, "--workload", workload]
    cmd += ["--metrics-port", str(port), "--no-progress", "-o", "/dev/null"]
    if model:
        cmd += ["--model", model]
    if tokenizer:
        cmd += ["--tokenizer", tokenizer]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (
                f"the load generator ended early: {proc.stderr.read() if proc.stderr else ''}"
            )
            assert time.monotonic() < deadline, "the load generator completed no request in 60 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    text = r.read().decode()
            except OSError:
                text = ""
            done = [
                ln for ln in text.splitlines() if ln.startswith("quantbench_loadgen_requests_completed_total")
            ]
            if any(float(ln.split()[-1]) > 0 for ln in done):
                break
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
