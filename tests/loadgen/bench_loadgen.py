"""Benchmark of the load generator against a scripted server (the ground truth). Run: ``make bench-loadgen``.

Prints three tables:

1. Maximum sustained rate, closed loop: requests/s and streamed output tokens/s of quantbench-loadgen and
   of ``vllm bench serve`` (from the vLLM virtualenv) against the same scripted server in the same run, with
   answers written whole (the server costs almost nothing, so the client is the bottleneck). Rounds
   alternate between the tools; the median round is reported.
2. Client CPU per streamed token, with one write per token (every token a separate SSE event and socket
   read): client CPU seconds of the measured phase per token, and the tokens/s that one core would stream.
3. Timing accuracy: TTFT and ITL measured minus scripted (TTFT 20 ms, ITL 5 ms) at p50/p99, at low load
   and at 50% of our maximum request rate; and measured minus the server's own clock (when it actually wrote
   each chunk), which separates the client's error from the scripted server's timer lateness.

Environment: QB_BENCH_QUICK=1 for a shorter run; QB_VLLM_PYTHON (default .venv-vllm/bin/python);
QB_BENCH_PROCESSES (client processes of the sharded row, default 2); QB_BENCH_NICE=-10 to run every
process of the benchmark at a higher priority and QB_BENCH_REALTIME=1 to run the accuracy table under
real-time scheduling (both need root), on a machine shared with other work; QB_BENCH_ONLY=rate|accuracy
for one part (with QB_BENCH_HALF_LOAD_RPS giving the half-load rate to the accuracy part).
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantbench_loadgen.client import StreamingClient
from quantbench_loadgen.live import LiveCounters
from quantbench_loadgen.results import RequestRecord
from quantbench_loadgen.runner import run_serving, serving_prompts
from quantbench_loadgen.sender import Runner, RunOptions
from quantbench_loadgen.specs import ServingWorkload
from quantbench_loadgen.stats import percentile
from quantbench_loadgen.testing.scripted_server import write_tokenizer
from quantbench_loadgen.tokenization import LocalTokenizer

ROOT = Path(__file__).resolve().parents[2]
QUICK = os.environ.get("QB_BENCH_QUICK") == "1"
VLLM_PYTHON = Path(os.environ.get("QB_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
WRAPPER = Path(__file__).with_name("vllm_bench_serve.py")
TTFT_MS, ITL_MS = 20.0, 5.0
INPUT_LEN, OUTPUT_LEN, CONCURRENCY = 32, 128, 64
PROCESSES = int(os.environ.get("QB_BENCH_PROCESSES", "2"))
NICE = int(os.environ.get("QB_BENCH_NICE", "0"))
REALTIME = os.environ.get("QB_BENCH_REALTIME") == "1"
ONLY = os.environ.get("QB_BENCH_ONLY", "")  # "rate" or "accuracy": one part only
HALF_LOAD_RPS = float(os.environ.get("QB_BENCH_HALF_LOAD_RPS", "0"))  # with ONLY=accuracy


@dataclass
class Rate:
    tool: str
    requests_per_s: float
    tokens_per_s: float
    cpu_s: float
    tokens: int
    failed: int


@contextmanager
def scripted_server(*flags: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        cmd = [sys.executable, "-m", "quantbench_loadgen.testing.scripted_server", "--port", "0"]
        proc = subprocess.Popen([*cmd, "--port-file", str(port_file), *flags], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while not port_file.exists() or not port_file.read_text():
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the scripted server did not start")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port_file.read_text()}"
        finally:
            proc.terminate()
            proc.wait(10)


def _workload(
    rate: float | str, count: int, output_len: int, concurrency: int | None = None, warmup: int = 0
) -> ServingWorkload:
    spec: dict[str, Any] = {
        "name": "bench",
        "type": "serving",
        "requestRates": [rate if isinstance(rate, str) or float(rate).is_integer() else f"{rate:.3f}"],
        "numPrompts": count,
        "arrival": "poisson",
        "dataset": {"kind": "random", "inputLen": INPUT_LEN, "outputLen": output_len},
    }
    if concurrency is not None:
        spec["maxConcurrency"] = concurrency
    if warmup:
        spec["warmupRequests"] = warmup
    return ServingWorkload.model_validate(spec)


def _cpu_s() -> float:
    """CPU seconds of this process and of its reaped children (the client processes of a sharded run)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


async def _ours(
    url: str, wl: ServingWorkload, tokdir: Path, processes: int
) -> tuple[Any, list[RequestRecord], float, float]:
    prompts = serving_prompts(wl, LocalTokenizer(tokdir))
    async with StreamingClient(url) as client:
        runner = Runner(client, RunOptions(model="scripted", counters=LiveCounters(), processes=processes))
        cpu = _cpu_s()
        (result, run), *_ = await run_serving(runner, wl, prompts)
        cpu = _cpu_s() - cpu
    return result, run.records(), cpu, run.origin


def run_ours(
    url: str, wl: ServingWorkload, tokdir: Path, processes: int = 1
) -> tuple[Rate, list[RequestRecord], float]:
    import uvloop

    result, records, cpu, origin = uvloop.run(_ours(url, wl, tokdir, processes))
    rate = Rate(
        "quantbench-loadgen" + (f" x{processes}" if processes > 1 else ""),
        result.request_throughput_per_s,
        result.output_tokens_per_s,
        cpu,
        result.total_output_tokens,
        result.failed,
    )
    return rate, records, origin


def run_vllm(url: str, count: int, tokdir: Path, rate: str = "inf") -> tuple[Rate, dict[str, Any]] | None:
    if not VLLM_PYTHON.exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        args = [
            "--backend", "openai", "--base-url", url, "--model", "scripted", "--tokenizer", str(tokdir),
            "--dataset-name", "random", "--random-input-len", str(INPUT_LEN),
            "--random-output-len", str(OUTPUT_LEN), "--num-prompts", str(count), "--request-rate", rate,
            "--ignore-eos", "--disable-tqdm", "--save-detailed", "--percentile-metrics", "ttft,tpot,itl,e2el",
        ]  # fmt: skip
        if rate == "inf":
            args += ["--max-concurrency", str(CONCURRENCY)]
        env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR", "TOKENIZERS_PARALLELISM": "false"}
        proc = subprocess.run(
            [str(VLLM_PYTHON), str(WRAPPER), str(out), "--", *args], capture_output=True, text=True, env=env
        )
        if proc.returncode != 0 or not out.exists():
            print(f"vllm bench serve failed ({proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
            return None
        doc = json.loads(out.read_text())
    r = doc["result"]
    return (
        Rate(
            "vllm bench serve",
            r["request_throughput"],
            r["output_throughput"],
            doc["cpuS"],
            r["total_output_tokens"],
            r.get("failed", 0),
        ),
        r,
    )


def _median(rates: Sequence[Rate]) -> Rate:
    ordered = sorted(rates, key=lambda r: r.tokens_per_s)
    return ordered[len(ordered) // 2]


def max_rate(
    tokdir: Path, *, separate_writes: bool, rounds: int, count: int, processes: int
) -> dict[str, Rate]:
    """Median rounds of ours (one process, and ``processes`` when > 1) and vllm bench serve, alternating."""
    flags = ["--separate-writes"] if separate_writes else []
    runs: dict[str, list[Rate]] = {}
    with scripted_server(*flags) as url:
        for _ in range(rounds):
            for p in sorted({1, processes}):
                wl = _workload("inf", count, OUTPUT_LEN, CONCURRENCY)
                runs.setdefault(f"ours{p}", []).append(run_ours(url, wl, tokdir, p)[0])
            v = run_vllm(url, count, tokdir)
            if v is not None:
                runs.setdefault("vllm", []).append(v[0])
    return {k: _median(v) for k, v in runs.items()}


def _server_log(url: str) -> dict[str, list[float]]:
    with urllib.request.urlopen(url + "/scripted/log", timeout=30) as resp:
        log: dict[str, list[float]] = json.loads(resp.read())
        return log


def _errors(
    records: Sequence[RequestRecord], origin: float, log: dict[str, list[float]]
) -> dict[str, list[float]]:
    """Signed errors in ms: measured minus scripted, and measured minus the server's actual writes."""
    errs: dict[str, list[float]] = {"ttft_script": [], "itl_script": [], "ttft_server": [], "itl_server": []}
    for r in records:
        if r.warmup or not r.success or r.ttft_ms is None:
            continue
        errs["ttft_script"].append(r.ttft_ms - TTFT_MS)
        errs["itl_script"].extend(v - ITL_MS for v in r.itl_ms)
        writes = log.get(r.request_id or "")
        if not writes or len(writes) - 1 != len(r.chunk_times_s):
            continue
        recv, chunks = writes[0], writes[1:]
        errs["ttft_server"].append(r.ttft_ms - (chunks[0] - recv) * 1000.0)
        server_gaps = [(b - a) * 1000.0 for a, b in itertools.pairwise(chunks)]
        errs["itl_server"].extend(m - s for m, s in zip(r.itl_ms, server_gaps, strict=True))
    return errs


def _vllm_errors(result: dict[str, Any]) -> dict[str, list[float]]:
    ttfts = [t * 1000.0 - TTFT_MS for t, e in zip(result["ttfts"], result["errors"], strict=True) if not e]
    itls = [
        g * 1000.0 - ITL_MS
        for gaps, e in zip(result["itls"], result["errors"], strict=True)
        if not e
        for g in gaps
    ]
    return {"ttft_script": ttfts, "itl_script": itls}


def accuracy(
    tokdir: Path, rate: float, count: int
) -> tuple[dict[str, list[float]], dict[str, list[float]] | None]:
    flags = ["--ttft-ms", str(TTFT_MS), "--itl-ms", str(ITL_MS), "--record"]
    with _realtime(), scripted_server(*flags) as url:
        # One warm-up request, as vllm bench serve sends one before it measures.
        _, records, origin = run_ours(url, _workload(rate, count, OUTPUT_LEN, warmup=1), tokdir)
        ours = _errors(records, origin, _server_log(url))
        v = run_vllm(url, count, tokdir, rate=f"{rate:.3f}")
        theirs = _vllm_errors(v[1]) if v is not None else None
    return ours, theirs


@contextmanager
def _realtime() -> Iterator[None]:
    """With QB_BENCH_REALTIME=1 (root): round-robin real-time scheduling for the accuracy runs, inherited
    by the scripted server and both clients, so that other work on the machine cannot delay them."""
    if not REALTIME:
        yield
        return
    os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
    try:
        yield
    finally:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _p(values: Sequence[float], q: float) -> str:
    return f"{percentile(sorted(values), q):+.3f}" if values else "n/a"


def main() -> int:
    rounds, count = (1, 600) if QUICK else (3, 2000)
    if NICE:
        # Raise this process's priority (root): the scripted server, both clients and the client processes
        # inherit it, so other work on a shared machine disturbs them less, and all equally.
        os.nice(NICE)
    with tempfile.TemporaryDirectory() as tmp:
        tokdir = write_tokenizer(Path(tmp) / "tokenizer")
        load = os.getloadavg()[0]
        print(
            f"# quantbench-loadgen benchmark ({os.cpu_count()} CPUs, load average {load:.1f} at start, "
            f"nice {os.nice(0)})"
        )
        if not VLLM_PYTHON.exists():
            print(f"(no {VLLM_PYTHON}: run tests/vllm/setup.sh for the vllm bench serve comparison)")

        half = HALF_LOAD_RPS
        if ONLY != "accuracy":
            half = rate_tables(tokdir, rounds, count) / 2
        if ONLY != "rate":
            accuracy_table(tokdir, half, count)
        print(
            "\n(half load = 50% of our request rate in table 2, where every token is a separate write; "
            f"median of {rounds} alternating rounds per tool; the cores are shared, so figures vary run to run)"
        )
    return 0


def rate_tables(tokdir: Path, rounds: int, count: int) -> float:
    """Tables 1 and 2; returns our request rate of table 2 (requests/s)."""
    whole = max_rate(tokdir, separate_writes=False, rounds=rounds, count=count, processes=PROCESSES)
    print(
        f"\n## 1. Maximum sustained rate: closed loop, concurrency {CONCURRENCY}, {OUTPUT_LEN} tokens/answer"
    )
    print(f"{'tool':<24} {'requests/s':>11} {'tokens/s':>11} {'failed':>7} {'CPU us/token':>13}")
    for r in whole.values():
        print(
            f"{r.tool:<24} {r.requests_per_s:>11.1f} {r.tokens_per_s:>11.0f} {r.failed:>7} "
            f"{r.cpu_s / max(r.tokens, 1) * 1e6:>13.2f}"
        )
    if "vllm" in whole:
        for key in ("ours1", f"ours{PROCESSES}") if PROCESSES > 1 else ("ours1",):
            ratio = whole[key].tokens_per_s / whole["vllm"].tokens_per_s
            print(
                f"ratio {whole[key].tool} / vllm bench serve, streamed tokens/s: {ratio:.2f}x  (goal >= 2x)"
            )
        o, v = whole["ours1"], whole["vllm"]
        cpu_ratio = (v.cpu_s / max(v.tokens, 1)) / (o.cpu_s / max(o.tokens, 1))
        print(f"ratio per CPU-second (tokens/s one client core sustains): {cpu_ratio:.2f}x")

    per_token = max_rate(tokdir, separate_writes=True, rounds=rounds, count=count // 2, processes=1)
    print("\n## 2. Client CPU per streamed token, one write per token (the server is the bottleneck here)")
    print(f"{'tool':<24} {'requests/s':>11} {'tokens/s':>11} {'CPU us/token':>13} {'tokens/s/core':>14}")
    for r in per_token.values():
        us = r.cpu_s / max(r.tokens, 1) * 1e6
        print(f"{r.tool:<24} {r.requests_per_s:>11.1f} {r.tokens_per_s:>11.0f} {us:>13.2f} {1e6 / us:>14.0f}")
    if "vllm" in per_token:
        o, v = per_token["ours1"], per_token["vllm"]
        ratio = (v.cpu_s / max(v.tokens, 1)) / (o.cpu_s / max(o.tokens, 1))
        print(f"ratio ours / vllm bench serve, streamed tokens per CPU-second: {ratio:.2f}x")

    return per_token["ours1"].requests_per_s


def accuracy_table(tokdir: Path, half: float, count: int) -> None:
    loads = [
        ("low load (2 req/s)", 2.0, 40 if QUICK else 100),
        (f"50% load ({half:.0f} req/s)", half, count // 2),
    ]
    if half <= 0:
        loads.pop()  # QB_BENCH_ONLY=accuracy without QB_BENCH_HALF_LOAD_RPS
    print(f"\n## 3. Timing error, ms (measured - truth), TTFT {TTFT_MS:g} ms, ITL {ITL_MS:g} ms scripted")
    print(f"{'load':<24} {'tool':<20} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8}   truth")
    for name, rate, n in loads:
        ours, theirs = accuracy(tokdir, rate, n)
        rows = [("quantbench-loadgen", ours, "script"), ("quantbench-loadgen", ours, "server")]
        if theirs is not None:
            rows.append(("vllm bench serve", theirs, "script"))
        for tool, errs, truth in rows:
            t, i = errs[f"ttft_{truth}"], errs[f"itl_{truth}"]
            label = "server's write clock" if truth == "server" else "scripted delays"
            print(
                f"{name:<24} {tool:<20} {_p(t, 50):>9} {_p(t, 99):>9} {_p(i, 50):>8} {_p(i, 99):>8}   {label}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
