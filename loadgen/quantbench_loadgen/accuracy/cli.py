"""`python -m quantbench_loadgen.accuracy`: run GSM8K against one server and write an AccuracyResult JSON.

Settings come from flags, or from an AccuracySpec file (the `accuracy:` block of a QuantBenchmark, as YAML
or JSON) with flags overriding it:

    python -m quantbench_loadgen.accuracy --base-url http://127.0.0.1:8000 --model m \\
        --tokenizer /models/m --dataset /data/gsm8k --limit 100 --out accuracy.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml
from pydantic import ValidationError

from quantbench_loadgen.accuracy.results import AccuracyResult
from quantbench_loadgen.accuracy.runner import AccuracyRequest, AccuracyRunError, run_accuracy
from quantbench_loadgen.accuracy.screening import MIN_GAP, read_responses
from quantbench_loadgen.accuracy.sequential import plan_for
from quantbench_loadgen.accuracy.task import DatasetError
from quantbench_loadgen.fidelity import FidelityResult
from quantbench_loadgen.specs import AccuracySpec
from quantbench_loadgen.telemetry import DEFAULT_INTERVAL_S


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(
        prog="python -m quantbench_loadgen.accuracy",
        description="GSM8K accuracy of an OpenAI-compatible server.",
    )
    p.add_argument("--base-url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--spec", type=Path, help="AccuracySpec file (YAML or JSON); flags below override it")
    p.add_argument(
        "--dataset", help="GSM8K folder with train.jsonl and test.jsonl (default: $QUANTBENCH_GSM8K_DIR)"
    )
    p.add_argument("--tokenizer", help="local tokenizer/model folder (default: none; prompts go as text)")
    p.add_argument("--limit", type=int, help="questions to ask: the first N of test.jsonl (0: all)")
    p.add_argument("--num-fewshot", type=int, help="worked examples per prompt (default 8)")
    p.add_argument("--seed", type=int, help="seed of few-shot sampling and generation")
    p.add_argument("--max-gen-tokens", type=int, help="generation cap per answer")
    p.add_argument("--concurrency", type=int, help="requests in flight")
    p.add_argument(
        "--endpoint",
        choices=("completions", "chat"),
        default="completions",
        help="completions (default; the few-shot prompt as text) or chat (the server's chat template)",
    )
    p.add_argument("--max-length", type=int, default=4096, help="model context length, tokens")
    p.add_argument("--out", type=Path, required=True, help="where to write the AccuracyResult JSON")
    p.add_argument("--samples-out", type=Path, help="also write every generation as JSONL here")
    p.add_argument(
        "--telemetry-interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"sample the server's /metrics every S seconds into the result (0: never; default {DEFAULT_INTERVAL_S})",
    )
    p.add_argument(
        "--baseline-result",
        type=Path,
        help="with accuracy.sequential: the baseline's AccuracyResult; ask its questions in chunks and stop "
        "once the variant's verdict is decided",
    )
    p.add_argument(
        "--responses-out",
        type=Path,
        help="also write the prompt and response of every question as JSON here (completions endpoint): a "
        "sequential variant given it with --baseline-responses screens questions instead of generating them",
    )
    p.add_argument(
        "--baseline-responses",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="with --baseline-result: the baseline's --responses-out file (or the pieces of it gzip-compressed, "
        "in order, as published to ConfigMaps); a question whose response this variant would give exactly "
        "(one teacher-forced prefill) takes the baseline's outcome ungenerated. Files that cannot be read: "
        "no question is screened, and the result's notes say why",
    )
    p.add_argument(
        "--unscreened-reason",
        metavar="TEXT",
        help="with --baseline-result and no --baseline-responses: why there are no responses to screen with "
        "(kept as a note of the result)",
    )
    p.add_argument(
        "--screen-min-gap",
        type=float,
        default=MIN_GAP,
        metavar="NATS",
        help="a response token is the variant's choice only when it leads the runner-up by more than this "
        f"(default {MIN_GAP}: prefill and decode numerics differ; 0 screens everything but exact ties)",
    )
    p.add_argument(
        "--fidelity-result",
        type=Path,
        help="with --baseline-result: this variant's FidelityResult; its greedy answer disagreement sizes "
        "the first chunks (it changes how soon the looks come, never the error rate)",
    )
    return p


def load_spec(path: Path | None) -> AccuracySpec:
    if path is None:
        return AccuracySpec()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return AccuracySpec.model_validate(data)


def request_from_args(args: argparse.Namespace) -> AccuracyRequest:
    spec = load_spec(args.spec)
    flags = {
        "num_fewshot": args.num_fewshot,
        "seed": args.seed,
        "max_gen_tokens": args.max_gen_tokens,
        "concurrency": args.concurrency,
    }
    overrides: dict[str, int | None] = {k: v for k, v in flags.items() if v is not None}
    if args.limit is not None:
        overrides["limit"] = args.limit or None  # 0: the whole test split
    spec = AccuracySpec.model_validate({**spec.model_dump(), **overrides})
    dataset = args.dataset or (spec.dataset.path if spec.dataset is not None else None)
    baseline = None
    expected = None
    if args.fidelity_result is not None:
        if args.baseline_result is None:
            raise ValueError("--fidelity-result needs --baseline-result")
        fidelity = FidelityResult.model_validate_json(args.fidelity_result.read_text(encoding="utf-8"))
        expected = 1.0 - fidelity.greedy_agreement
    if args.baseline_result is not None:
        if spec.sequential is None:
            raise ValueError("--baseline-result needs accuracy.sequential in the spec")
        baseline = AccuracyResult.model_validate_json(args.baseline_result.read_text(encoding="utf-8"))
    responses = None
    unscreened = args.unscreened_reason
    if args.baseline_responses is not None:
        if args.baseline_result is None:
            raise ValueError("--baseline-responses needs --baseline-result")
        try:
            responses = read_responses(args.baseline_responses)
        except (OSError, EOFError, ValueError) as exc:  # gzip, JSON and validation errors are ValueErrors
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            unscreened = f"the baseline's responses cannot be read: {first}"
    if responses is not None:
        keys = {o.doc_id: o.key for o in baseline.outcomes} if baseline is not None else {}
        wrong = [r.doc_id for r in responses.responses if keys.get(r.doc_id, r.key) != r.key]
        if wrong:
            raise ValueError(
                f"--baseline-responses: question {wrong[0]} is not the baseline result's question there "
                f"({len(wrong)} differ): the responses come from another run"
            )
    return AccuracyRequest(
        base_url=args.base_url,
        model=args.model,
        dataset_dir=dataset,
        tokenizer=args.tokenizer,
        num_fewshot=spec.num_fewshot,
        limit=spec.limit,
        seed=spec.seed,
        max_gen_tokens=spec.max_gen_tokens,
        concurrency=spec.concurrency,
        max_length=args.max_length,
        endpoint=args.endpoint,
        telemetry_interval_s=args.telemetry_interval or None,
        plan=plan_for(spec) if spec.sequential is not None else None,
        baseline=baseline,
        expected_discordance=expected,
        baseline_responses=responses,
        screen_min_gap=args.screen_min_gap,
        unscreened_reason=unscreened,
    )


def run(args: argparse.Namespace) -> int:
    if args.screen_min_gap < 0:
        print("error: --screen-min-gap must be >= 0", file=sys.stderr)
        return 2
    if args.telemetry_interval < 0:
        print("error: --telemetry-interval must be >= 0 (0: no server telemetry)", file=sys.stderr)
        return 2
    try:
        request = request_from_args(args)
        result = run_accuracy(request, samples_out=args.samples_out, responses_out=args.responses_out)
    except ValidationError as exc:
        print(f"error: invalid accuracy settings:\n{exc}", file=sys.stderr)
        return 2
    except (DatasetError, AccuracyRunError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(result.model_dump_json(by_alias=True, indent=2) + "\n", encoding="utf-8")
    print(
        f"gsm8k: {result.strict.correct}/{result.strict.questions} strict "
        f"({result.strict.accuracy:.1%}), {result.flexible.correct}/{result.flexible.questions} flexible "
        f"({result.flexible.accuracy:.1%}) in {result.duration_s:.0f} s -> {args.out}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(build_parser().parse_args(argv))
