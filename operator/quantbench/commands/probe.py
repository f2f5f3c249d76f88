"""``quantbench probe``: measure the roofline of each precision on this machine's GPU.

quantbench probe --model-config config.json [--batch-sizes 1,2,4,...] [--out result.json]
quantbench probe --model-config config.json --floors-only --gpu h100-sxm
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quantbench.probe.measure import KERNEL_CHOICES
from quantbench.probe.precisions import PRECISIONS, parse_precisions
from quantbench.probe.render import render_floors, render_markdown
from quantbench.probe.shapes import ModelConfigError, derive_shape, load_model_config, resolve_model_config
from quantbench.probe.specs import DATASHEETS, gpu_spec_by_key
from quantbench.units import GIB

DEFAULT_BATCH_SIZES: tuple[int, ...] = tuple(2**i for i in range(13))  # 1 ... 4096


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``1,2,4,8`` -> (1, 2, 4, 8); sorted, distinct, positive."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--batch-sizes: expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"--batch-sizes: expected positive integers, got {text!r}")
    return tuple(sorted(set(values)))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "probe",
        help="measure each precision's decode floor and crossover on this GPU",
        description=(
            "Measure streaming bandwidth and time one decode step's linear layers (BF16, FP8, 4-bit "
            "weight-only) for a model's shapes at batch sizes 1..4096; print floors, step times and "
            "crossovers. Needs an NVIDIA GPU and PyTorch, except with --floors-only."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-config",
        required=True,
        help="HF config.json, its model folder, or a Hugging Face model id (config.json fetched from the Hub)",
    )
    parser.add_argument("--model-name", help="label for the report (default: the config's _name_or_path)")
    parser.add_argument(
        "--batch-sizes",
        default=",".join(map(str, DEFAULT_BATCH_SIZES)),
        help="comma-separated (default 1..4096)",
    )
    parser.add_argument(
        "--precisions",
        default=",".join(PRECISIONS),
        help=f"subset of {','.join(PRECISIONS)} (bf16 always runs)",
    )
    parser.add_argument("--out", type=Path, help="write the ProbeResult JSON here")
    parser.add_argument("--markdown", type=Path, help="also write the Markdown tables here")
    parser.add_argument("--min-repeats", type=int, default=10, help="timed replays per pass, at least")
    parser.add_argument("--max-repeats", type=int, default=100, help="timed replays per pass, at most")
    parser.add_argument("--target-seconds", type=float, default=0.4, help="timed seconds per pass to aim for")
    parser.add_argument(
        "--bandwidth-buffer-gib", type=float, default=4.0, help="buffer for the bandwidth probe"
    )
    parser.add_argument(
        "--fp8-scaling",
        choices=("rowwise", "tensorwise"),
        default="rowwise",
        help="FP8 scales: per-token activations and per-channel weights (rowwise, default), or per-tensor",
    )
    parser.add_argument(
        "--fp8-kernel",
        choices=KERNEL_CHOICES,
        default="auto",
        help="FP8 kernels to time: vLLM's (CUTLASS) when vLLM is importable (auto, default), vllm, or torch "
        "(torch._scaled_mm)",
    )
    parser.add_argument(
        "--int4-kernel",
        choices=KERNEL_CHOICES,
        default="auto",
        help="4-bit kernels to time: vLLM's (Marlin, as it serves AWQ) when vLLM is importable (auto, default), "
        "vllm, or torch (tinygemm)",
    )
    parser.add_argument(
        "--floors-only",
        action="store_true",
        help="print datasheet floors for --gpu; measure nothing (no GPU needed)",
    )
    parser.add_argument("--gpu", help=f"with --floors-only: one of {', '.join(s.key for s in DATASHEETS)}")


def _fail(message: str) -> int:
    print(f"quantbench probe: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    try:
        config_path = resolve_model_config(args.model_config)
        config = load_model_config(config_path)
        shape = derive_shape(config)
        batch_sizes = parse_batch_sizes(args.batch_sizes)
        precisions = parse_precisions(args.precisions)
    except (ModelConfigError, ValueError) as exc:
        return _fail(str(exc))
    hub_id = not Path(args.model_config).exists()
    model_name = args.model_name or str(
        config.get("_name_or_path") or (args.model_config if hub_id else config_path.resolve().parent.name)
    )

    if args.floors_only:
        if not args.gpu:
            return _fail("--floors-only needs --gpu KEY (" + ", ".join(s.key for s in DATASHEETS) + ")")
        try:
            spec = gpu_spec_by_key(args.gpu)
        except ValueError as exc:
            return _fail(str(exc))
        sys.stdout.write(render_floors(shape, model_name, spec, batch_sizes))
        return 0
    if args.min_repeats < 1 or args.max_repeats < args.min_repeats:
        return _fail("--min-repeats must be >= 1 and --max-repeats >= --min-repeats")

    # Imported here so that `quantbench --help` and --floors-only never touch torch.
    from quantbench.probe.assemble import build_result, linear_specs
    from quantbench.probe.measure import MeasureSettings, ProbeUnavailable, measure

    settings = MeasureSettings(
        batch_sizes=batch_sizes,
        precisions=precisions,
        num_layers=shape.num_hidden_layers,
        linears=linear_specs(shape),
        min_repeats=args.min_repeats,
        max_repeats=args.max_repeats,
        target_seconds_per_pass=args.target_seconds,
        bandwidth_buffer_bytes=int(args.bandwidth_buffer_gib * GIB),
        fp8_scaling=args.fp8_scaling,
        fp8_kernel=args.fp8_kernel,
        int4_kernel=args.int4_kernel,
    )
    try:
        raw = measure(settings)
    except ProbeUnavailable as exc:
        return _fail(str(exc))
    try:
        result = build_result(shape, model_name, raw, created_at=datetime.now(UTC))
    except ValueError as exc:
        return _fail(f"no result: {exc}")
    markdown = render_markdown(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(result.to_json(), encoding="utf-8")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown, encoding="utf-8")
    sys.stdout.write(markdown)
    return 1 if result.failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantbench probe", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)
