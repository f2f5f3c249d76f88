"""Start one real vLLM CPU server per precision and print what each costs: seconds to healthy, memory
(PSS of the server's processes, shared pages counted once), time to first token and decode rate of one
streamed request. Run with the main virtualenv from the repository root (`make bench-vllm`):

    .venv/bin/python -m tests.vllm.bench_startup [--precisions bf16,awq-int4,w8a8-int8] [--extra-args ...]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

from quantbench.local.server import ServerStartError
from tests.fixtures.vllm import (
    DEFAULT_MODELS_DIR,
    DEFAULT_PYTHON,
    VllmServerPool,
    process_tree_pss_bytes,
)
from tests.vllm.client import stream_events


def first_token_and_rate(url: str, model: str, max_tokens: int = 64) -> tuple[float, float]:
    body = {
        "model": model,
        "prompt": "Question: How many clips did Natalia sell?\nAnswer:",
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0,
    }
    start = time.perf_counter()
    first: float | None = None
    for event in stream_events(f"{url}/v1/completions", body):
        if first is None and isinstance(event, dict) and event.get("choices"):
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    assert first is not None
    return first, (max_tokens - 1) / max(total - first, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", default="bf16,awq-int4,w8a8-int8")
    parser.add_argument(
        "--extra-args", default="", help='server flags for every server, e.g. "--enforce-eager"'
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as logs:
        pool = VllmServerPool(
            DEFAULT_PYTHON,
            DEFAULT_MODELS_DIR,
            Path(logs),
            timeout_s=900,
            max_servers=3,
            extra_args=shlex.split(args.extra_args),
        )
        pool.manifest()
        print(f"{'precision':<11} {'start_s':>8} {'pss_mib':>8} {'ttft_s':>7} {'decode_tok_s':>12}")
        try:
            for precision in args.precisions.split(","):
                try:
                    server = pool.get(precision)
                except ServerStartError as exc:
                    print(f"{precision:<11} failed to start: {str(exc).splitlines()[0]}")
                    continue
                ttft, rate = first_token_and_rate(server.url, server.served_model_name)
                pss = process_tree_pss_bytes(server.pid) / 2**20
                print(
                    f"{precision:<11} {pool.start_seconds[precision]:>8.1f} {pss:>8.0f} {ttft:>7.3f} "
                    f"{rate:>12.1f}",
                    flush=True,
                )
        finally:
            pool.stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
