"""Run ``vllm bench serve`` in-process and report the CPU and wall time of its measured phase only.

Usage (with the vLLM virtualenv's Python): ``python vllm_bench_serve.py OUT.json -- <vllm bench serve args>``.
The benchmark coroutine is wrapped so that tokenizer loading and prompt generation are not counted, the
same as the load generator's own figures. OUT.json holds ``cpuS``, ``wallS`` and vLLM's result (with
``--save-detailed``: per-request TTFTs and ITLs in seconds).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def main() -> int:
    out_path, sep, *rest = sys.argv[1:]
    if sep != "--":
        raise SystemExit("usage: vllm_bench_serve.py OUT.json -- ARGS...")
    from vllm.benchmarks import serve
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    spans: dict[str, float] = {}
    inner = serve.benchmark

    async def timed(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return await inner(*args, **kwargs)
        finally:
            spans["cpuS"] = time.process_time() - cpu
            spans["wallS"] = time.perf_counter() - wall

    serve.benchmark = timed
    parser = FlexibleArgumentParser()
    serve.add_cli_args(parser)
    result = serve.main(parser.parse_args(rest))
    with open(out_path, "w") as f:
        json.dump({**spans, "result": result}, f)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
