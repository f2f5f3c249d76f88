"""What a screen costs against generating the answer, on the real vLLM CPU server (`make bench-screening`).

The baseline (the tiny model, or SmolLM2-135M, in BF16) answers the first N GSM8K questions through the accuracy runner, which
keeps its prompts and responses (--responses-out). Then, one request at a time and with prefix caching off
(so that neither pass reuses the other's prompt), the same server
- generates each answer again (the prompt, the task's stop strings and generation cap: what a variant
  asking the question does), and
- screens each question (`quantbench_loadgen.accuracy.screening.screen`: one teacher-forced prefill of
  prompt + response, a few greedy tokens after it, and the tokenizer calls that check the round trip),
and prints seconds per question of both, their ratio (the cost of a screen in generations: the sequential
design's simulation, `make bench-sequential`, uses it), and the share screened for BF16 against itself and
for the AWQ model against BF16. Run from the repository root with the main virtualenv:

    .venv/bin/python -m tests.accuracy.bench_screening [--model tiny-llama|smollm2] [--questions 20] [--max-gen-tokens 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from quantbench.local.server import free_port, start_server
from quantbench_loadgen.accuracy.screening import MIN_GAP, BaselineResponses, screen
from tests.fixtures.accuracy import GSM8K_DIR, REPO
from tests.fixtures.vllm import (
    DEFAULT_PYTHON,
    ROOT,
    VllmServer,
    build_models,
    server_command,
    vllm_env,
)
from tests.models.manifest import Precision

MODELS = {
    "tiny-llama": ROOT / ".cache" / "models" / "tiny-llama",
    "smollm2": ROOT / ".cache" / "models" / "smollm2-135m",
}

ACCURACY_PYTHON = Path(os.environ.get("ACCURACY_VENV", REPO / ".cache" / "venv-accuracy")) / "bin" / "python"


def baseline_responses(server: VllmServer, folder: Path, questions: int, cap: int) -> BaselineResponses:
    out, responses = folder / "base.json", folder / "responses.json"
    cmd = [
        str(ACCURACY_PYTHON), "-m", "quantbench_loadgen.accuracy", "--base-url", server.url,
        "--model", server.served_model_name, "--dataset", str(GSM8K_DIR), "--tokenizer",
        str(server.model_path), "--limit", str(questions), "--max-gen-tokens", str(cap),
        "--concurrency", "1", "--telemetry-interval", "0", "--out", str(out),
        "--responses-out", str(responses),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["PYTHONPATH"] = str(REPO / "loadgen")  # this checkout's runner, not the environment's install
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"accuracy runner failed:\n{proc.stderr[-3000:]}")
    return BaselineResponses.model_validate_json(responses.read_text())


def generate_all(server: VllmServer, refs: BaselineResponses) -> tuple[float, int, int]:
    """Seconds to generate every answer one at a time, tokens generated, answers equal to the baseline's."""
    tokens = same = 0
    start = time.perf_counter()
    for r in refs.responses:
        body = {
            "model": server.served_model_name,
            "prompt": r.prompt,
            "max_tokens": refs.max_gen_tokens,
            "temperature": 0.0,
            "stop": refs.stop,
        }
        request = urllib.request.Request(
            f"{server.url}/v1/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as resp:
            data = json.load(resp)
        tokens += int(data["usage"]["completion_tokens"])
        same += data["choices"][0]["text"] == r.response
    return time.perf_counter() - start, tokens, same


def serve(model: str, precision: Precision, log_dir: Path) -> VllmServer:
    """One vLLM CPU server of the model's checkpoint in that precision, prefix caching off."""
    folder = MODELS[model]
    manifest = build_models(DEFAULT_PYTHON, folder, [precision], model=model)
    path = manifest.model_dir(folder, precision)
    port = free_port()
    name = f"{model}-{precision.value}"
    extra = [*manifest.models[precision].vllm_args, "--no-enable-prefix-caching"]
    log = log_dir / f"{name}.log"
    proc = start_server(
        name,
        server_command(DEFAULT_PYTHON, path, name, port, extra),
        log,
        env=vllm_env(),
        port=port,
        cwd=ROOT,
    )
    try:
        proc.wait_ready(900, poll_s=1.0)
    except BaseException:
        proc.stop()
        raise
    return VllmServer(proc.url, path, name, precision.value, proc.pid, log, proc)


def screen_all(server: VllmServer, refs: BaselineResponses, min_gap: float = MIN_GAP) -> tuple[float, int]:
    ids = [r.doc_id for r in refs.responses]
    start = time.perf_counter()
    found = asyncio.run(screen(server.url, server.served_model_name, refs, ids, 1, min_gap))
    return time.perf_counter() - start, len(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny-llama")
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--max-gen-tokens", type=int, default=256)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="screen-bench-") as tmp:
        folder = Path(tmp)
        base = serve(args.model, Precision.BF16, folder)
        try:
            refs = baseline_responses(base, folder, args.questions, args.max_gen_tokens)
            n = len(refs.responses)
            gen_s, tokens, same = generate_all(base, refs)
            screen_s, screened = screen_all(base, refs)
            at_zero = screen_all(base, refs, 0.0)[1]
        finally:
            base.process.stop()
        print(
            f"{args.model} bf16, {n} GSM8K questions, cap {refs.max_gen_tokens} tokens, mean answer "
            f"{tokens / n:.0f} tokens ({same} of {n} regenerated exactly)"
        )
        print(f"generate: {gen_s / n:.3f} s/question; screen: {screen_s / n:.3f} s/question")
        print(f"cost of a screen: {screen_s / gen_s:.3f} generations")
        print(f"bf16 against itself: {screened} of {n} screened ({at_zero} at a 0-nat margin)", flush=True)
        awq = serve(args.model, Precision.AWQ_INT4, folder)
        try:
            awq_s, awq_screened = screen_all(awq, refs)
            awq_zero = screen_all(awq, refs, 0.0)[1]
        finally:
            awq.process.stop()
        print(
            f"awq-int4 against bf16: {awq_screened} of {n} screened ({awq_zero} at a 0-nat margin; "
            f"{awq_s / n:.3f} s/question)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
