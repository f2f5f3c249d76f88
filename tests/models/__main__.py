"""python -m tests.models build --out DIR [--model tiny-llama|smollm2] [--precisions bf16,...] [--gsm8k-dir DIR]

Run from the repository root in an environment with torch, transformers and tokenizers (.venv-vllm).
Prints the manifest (JSON) on stdout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.models.manifest import MODEL_SPECS, Precision, parse_precisions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build (or reuse) a model's precisions under --out")
    build.add_argument("--out", type=Path, required=True, help="folder for the models and manifest.json")
    build.add_argument(
        "--model",
        choices=sorted(MODEL_SPECS),
        default="tiny-llama",
        help="tiny-llama: random 4-layer Llama (tests); smollm2: SmolLM2-135M-Instruct (the demo)",
    )
    build.add_argument(
        "--precisions",
        default=",".join(p.value for p in Precision),
        help="comma-separated: " + ", ".join(p.value for p in Precision) + " (default: all)",
    )
    build.add_argument(
        "--gsm8k-dir",
        default=None,
        help="GSM8K folder whose train.jsonl trains the tokenizer and calibrates the quantizers "
        "(default: $QUANTBENCH_GSM8K_DIR, "
        "else ../shared/datasets/gsm8k, else a built-in corpus)",
    )
    build.add_argument("--force", action="store_true", help="rebuild even when the cache matches")
    args = parser.parse_args(argv)
    try:
        precisions = parse_precisions(args.precisions)
    except ValueError as exc:
        parser.error(str(exc))
    from tests.models.build import build_models

    try:
        manifest = build_models(
            args.out, precisions, gsm8k_dir=args.gsm8k_dir, spec=MODEL_SPECS[args.model](), force=args.force
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(manifest.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
