"""``quantbench-loadgen``: run one workload against an OpenAI-compatible server and write its results.

    quantbench-loadgen run --url http://localhost:8000 --workload workload.yaml --output result.json
    quantbench-loadgen run --url http://localhost:8000 \\
        --workload '{name: s, type: serving, requestRates: [1, 4, inf], numPrompts: 100,
                     dataset: {kind: random, inputLen: 512, outputLen: 128}}'

Exit status: 0 when the run finished (failed requests are counted in the result, not fatal); 1 with
``--strict`` when any request failed; 2 for bad input (the message names the field); 3 when the server
could not be asked for its model or tokenizer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from pydantic import TypeAdapter, ValidationError

from quantbench_loadgen import __version__, fidelity
from quantbench_loadgen.client import api_base
from quantbench_loadgen.datasets import DatasetError, gsm8k_prompts, public_gsm8k_prompts
from quantbench_loadgen.export import vllm_results, write_samples, write_vllm_export
from quantbench_loadgen.fidelity import DEFAULT_TOP_K
from quantbench_loadgen.live import LiveCounters, ProgressFile, ProgressLine, PrometheusExporter
from quantbench_loadgen.runner import AnyWorkload, run_workload
from quantbench_loadgen.sender import Runner, RunOptions
from quantbench_loadgen.specs import CapacityWorkload, ServingWorkload, Workload
from quantbench_loadgen.telemetry import DEFAULT_INTERVAL_S
from quantbench_loadgen.tokenization import LocalTokenizer, ServerTokenizer, Tokenizer

EXIT_FAILURES, EXIT_INPUT, EXIT_SERVER = 1, 2, 3
_WORKLOAD = TypeAdapter(Workload)


class InputError(Exception):
    """Bad input from the user; the message says what to fix."""


def load_workload(text_or_path: str, dataset_path: str | None = None) -> AnyWorkload:
    """A workload from a YAML/JSON file, or from YAML text given inline."""
    path = Path(text_or_path)
    try:
        is_file = path.is_file()
    except OSError:
        is_file = False
    try:
        raw = yaml.safe_load(path.read_text() if is_file else text_or_path)
    except yaml.YAMLError as exc:
        raise InputError(f"--workload: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        where = f"file {path}" if is_file else "text"
        raise InputError(f"--workload {where} must be one workload mapping (name, type, ...), or a file path")
    if dataset_path is not None:
        dataset = raw.get("dataset")
        if not isinstance(dataset, dict):
            raise InputError("--dataset-path applies to a serving workload with a 'dataset' mapping")
        raw["dataset"] = {k: v for k, v in dataset.items() if k not in ("configMap", "volume", "huggingFace")}
        raw["dataset"]["path"] = dataset_path
    try:
        workload: AnyWorkload = _WORKLOAD.validate_python(raw)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '(workload)'}: {err['msg']}" for err in exc.errors()
        ]
        raise InputError("--workload is not a valid workload:\n" + "\n".join(lines)) from exc
    return workload


def discover_model(url: str, api_key: str | None, timeout_s: float = 10.0) -> str:
    """The first model the server lists at ``/v1/models``."""
    req = urllib.request.Request(api_base(url) + "/models")
    if api_key:
        req.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            data: dict[str, Any] = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ConnectionError(f"cannot list models at {api_base(url)}/models ({exc}); pass --model") from exc
    models = data.get("data") or []
    if not models:
        raise ConnectionError(f"{api_base(url)}/models lists no model; pass --model")
    return str(models[0]["id"])


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run one workload against a server", description=__doc__)
    p.add_argument("--url", required=True, help="server base URL, e.g. http://localhost:8000 (or .../v1)")
    p.add_argument(
        "--workload", required=True, help="workload YAML/JSON file, or the workload as inline YAML"
    )
    p.add_argument("--model", help="model name to request (default: the first of /v1/models)")
    p.add_argument("--tokenizer", help="model folder with tokenizer.json (default: the server's /tokenize)")
    p.add_argument("--dataset-path", help="local path of the workload's dataset (overrides dataset.path)")
    p.add_argument("--output", "-o", default="-", help="result JSON file ('-' = stdout)")
    p.add_argument("--vllm-export", help="also write the result shaped like vllm bench serve --save-result")
    p.add_argument("--samples", help="write every request's record as JSON lines here")
    p.add_argument("--keep-text", action="store_true", help="keep generated texts in samples and export")
    p.add_argument("--metrics-port", type=int, help="serve live Prometheus metrics on this port")
    p.add_argument(
        "--telemetry-interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"scrape the server's /metrics every S seconds into the result (0: never; default {DEFAULT_INTERVAL_S})",
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress line")
    p.add_argument(
        "--progress-file",
        type=Path,
        help="keep the step's live counters in this JSON file (for another program)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="per-request timeout, seconds (600)")
    p.add_argument(
        "--drain-timeout", type=float, default=60.0, help="duration runs: wait for in-flight (60 s)"
    )
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="client processes for serving steps (live histograms then fill at the end of each step)",
    )
    p.add_argument("--api-key", help="bearer token (default: $OPENAI_API_KEY)")
    p.add_argument("--strict", action="store_true", help="exit 1 when any request failed")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    if args.processes < 1:
        print("error: --processes must be >= 1", file=sys.stderr)
        return EXIT_INPUT
    if args.telemetry_interval < 0:
        print("error: --telemetry-interval must be >= 0 (0: no server telemetry)", file=sys.stderr)
        return EXIT_INPUT
    try:
        workload = load_workload(args.workload, args.dataset_path)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    try:
        model = args.model or discover_model(args.url, args.api_key)
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SERVER
    except ValueError as exc:
        print(f"error: --url: {exc}", file=sys.stderr)
        return EXIT_INPUT
    tokenizer: Tokenizer | None
    try:
        tokenizer = LocalTokenizer(args.tokenizer) if args.tokenizer else ServerTokenizer(args.url, model)
    except ValueError as exc:
        print(f"error: --tokenizer: {exc}", file=sys.stderr)
        return EXIT_INPUT
    counters = LiveCounters()
    exporter = PrometheusExporter(workload.name, args.metrics_port) if args.metrics_port else None
    options = RunOptions(
        model=model,
        request_timeout_s=args.timeout,
        drain_timeout_s=args.drain_timeout,
        keep_text=args.keep_text,
        exporter=exporter,
        counters=counters,
        processes=args.processes,
        telemetry_interval_s=args.telemetry_interval or None,
    )
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress

    async def main() -> Any:
        shows = [
            *([ProgressLine(counters)] if show_progress else []),
            *([ProgressFile(counters, args.progress_file)] if args.progress_file else []),
        ]
        for show in shows:
            show.start()
        runners: list[Runner] = []

        def stop() -> None:
            for r in runners:
                r.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # stop early, keep what was measured
            loop.add_signal_handler(sig, stop)
        try:
            return await run_workload(
                workload,
                url=args.url,
                options=options,
                tokenizer=tokenizer,
                api_key=args.api_key,
                runner_ready=runners.append,
            )
        finally:
            for show in shows:
                await show.stop()

    _use_uvloop()
    try:
        result, steps = asyncio.run(main())
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except RuntimeError as exc:  # the server's tokenizer could not be reached
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SERVER
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    records = [s.records() for s in steps]
    text = json.dumps(result.to_wire(), indent=2)
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text + "\n")
    if args.vllm_export:
        write_vllm_export(Path(args.vllm_export), vllm_results(result, records))
    if args.samples:
        with open(args.samples, "wb") as f:
            write_samples(f, (r for recs in records for r in recs))
    _summary(
        result.serving if isinstance(workload, ServingWorkload | CapacityWorkload) else None,
        result.total_failed,
    )
    if result.capacity is not None:
        cap = result.capacity
        where = (
            f"{cap.capacity_requests_per_s:g} req/s, {cap.goodput_tokens_per_s or 0:.1f} goodput tok/s"
            if cap.capacity_requests_per_s is not None
            else f"no tried rate met the SLO (down to {min(cap.tried_rates_per_s, default=0):g} req/s)"
        )
        print(f"capacity (p{cap.percentile} SLO): {where}", file=sys.stderr)
    if args.strict and result.total_failed:
        print(f"error: {result.total_failed} requests failed (--strict)", file=sys.stderr)
        return EXIT_FAILURES
    return 0


def _summary(serving: Sequence[Any] | None, failed: int) -> None:
    for s in serving or []:
        print(
            f"rate {s.rate_label}: {s.completed}/{s.num_requests} ok, {s.request_throughput_per_s:.2f} req/s, "
            f"{s.output_tokens_per_s:.1f} out tok/s, TTFT p50 {s.ttft.median_ms:.1f} ms, "
            f"ITL p50 {s.itl.median_ms:.2f} ms",
            file=sys.stderr,
        )
    if failed:
        print(f"{failed} requests failed (see failures in the result)", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="quantbench-loadgen", description="QuantBench load generator")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_run(sub)
    _add_fidelity(sub)
    return parser


def _add_fidelity(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "fidelity",
        help="KL divergence and agreement of a variant's token distributions with the baseline's",
        description="reference: the baseline's greedy answers and teacher-forced top-k log-probabilities "
        "(vLLM prompt_logprobs) on the prompts; compare: a variant against that reference.",
    )
    p.add_argument("phase", choices=["reference", "compare"])
    p.add_argument("--url", required=True, help="server base URL")
    p.add_argument("--model", help="model name to request (default: the first of /v1/models)")
    p.add_argument("--prompts", help="reference: a text file, one prompt per line")
    p.add_argument("--gsm8k", help="reference: a GSM8K folder; its test questions are the prompts")
    p.add_argument(
        "--gsm8k-public",
        action="store_true",
        help="reference: the public GSM8K test split from the Hub (needs the datasets package)",
    )
    p.add_argument("--count", type=int, default=16, help="reference with GSM8K: questions (16)")
    p.add_argument(
        "--reference",
        required=True,
        help="reference JSON file (written, or read by compare; read gzip-compressed too)",
    )
    p.add_argument("--max-tokens", type=int, default=64, help="reference: greedy answer length (64)")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="log-probabilities per position")
    p.add_argument("--output", "-o", default="-", help="compare: result JSON file ('-' = stdout)")
    p.set_defaults(func=cmd_fidelity)


def cmd_fidelity(args: argparse.Namespace) -> int:
    try:
        model = args.model or discover_model(args.url, None)
        if args.phase == "reference":
            if args.gsm8k:
                prompts = [p.text for p in gsm8k_prompts(Path(args.gsm8k), args.count, 0, output_len=None)]
            elif args.gsm8k_public:
                prompts = [p.text for p in public_gsm8k_prompts(args.count, 0, output_len=None)]
            elif args.prompts:
                prompts = [line for line in Path(args.prompts).read_text().splitlines() if line.strip()]
            else:
                raise InputError(
                    "fidelity reference needs --prompts FILE (one prompt per line), --gsm8k DIR or "
                    "--gsm8k-public"
                )
            ref = asyncio.run(fidelity.reference(args.url, model, prompts, args.max_tokens, args.top_k))
            Path(args.reference).write_text(json.dumps(ref.to_wire()) + "\n")
            return 0
        ref = fidelity.read_reference(Path(args.reference))
        result = asyncio.run(fidelity.compare(args.url, model, ref))
    except aiohttp.ClientError as exc:  # before OSError: connection errors are both
        print(f"error: {args.url}: {exc}", file=sys.stderr)
        return EXIT_SERVER
    except (InputError, OSError, ValidationError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SERVER
    text = json.dumps(result.to_wire(), indent=2)
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
