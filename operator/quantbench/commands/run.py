"""`quantbench run bench.yaml`: the whole comparison on this machine, without Kubernetes.

Exit status: 0 when every variant succeeded or is unsupported here (reported as such), 1 when one failed,
2 for a bad spec or bad options.

Servers run one after another as local vLLM processes (on the CPU the next one starts during the current one's
accuracy and fidelity steps when the servers' OMP_NUM_THREADS leave a core free for it; `--no-overlap-starts`
turns that off); the load generator and the accuracy runner are
the commands the Kubernetes Jobs run; the results folder, summary and report are the same as the operator's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from quantbench.analysis.cost import ANY_POOL
from quantbench.api.summary import RunSummary
from quantbench.api.v1alpha1 import VariantPhase
from quantbench.api.validation import SpecError, load_benchmarks
from quantbench.local.executor import LocalSettings, detect_device, run_local
from quantbench.local.progress import RunProgress, make_display
from quantbench.report import write_report
from quantbench.report.console import print_summary


def _pairs(option: str, pairs: list[str], form: str, empty_value: bool = False) -> dict[str, str]:
    """KEY=VALUE options (repeatable) as a dict; a malformed one is an error naming the option and its form."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not (value or empty_value):
            raise ValueError(f"{option} {pair!r}: write {form}")
        out[key] = value
    return out


def gpu_hour_prices(values: list[str]) -> dict[str, float]:
    """--gpu-hour-price [POOL=]USD options: a bare price applies to any pool ('*')."""
    out: dict[str, float] = {}
    for item in values:
        pool, sep, price = item.rpartition("=")
        key = pool if sep else ANY_POOL
        try:
            usd = float(price)
        except ValueError:
            usd = -1.0
        if not key or not usd >= 0:
            raise ValueError(f"--gpu-hour-price {item!r}: write USD or POOL=USD, e.g. 2.5 or h100=4.1")
        out[key] = usd
    return out


def run(args: argparse.Namespace) -> int:
    try:
        benchmarks = load_benchmarks(Path(args.file))
        datasets = _pairs("--dataset", args.dataset, "WORKLOAD=PATH, e.g. serving=/data/sharegpt.json")
        server_env = _pairs("--server-env", args.server_env, "NAME=VALUE", empty_value=True)
        prices = gpu_hour_prices(args.gpu_hour_price)
    except SpecError as exc:
        print(f"{args.file}: invalid", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"quantbench run: error: {exc}", file=sys.stderr)
        return 2
    device = detect_device()
    status = 0
    for bench in benchmarks:
        if prices:  # the spec's own prices win over the flag's
            spec = bench.spec.model_copy(update={"gpu_hour_prices": prices | bench.spec.gpu_hour_prices})
            bench = bench.model_copy(update={"spec": spec})
        progress = RunProgress.of([v.name for v in bench.spec.variants])
        with make_display(progress, sys.stdout) as display:
            settings = LocalSettings(
                out_dir=Path(args.out),
                vllm_python=args.vllm_python,
                jobs_python=args.jobs_python,
                accuracy_python=args.accuracy_python,
                gsm8k_dir=args.gsm8k,
                dataset_paths=datasets,
                server_env=server_env,
                device=device,
                log=display.note,
                display=display,
                overlap_starts=not args.no_overlap_starts,
            )
            root, servers = run_local(bench, settings)
        written = write_report(root, root / "report")
        summary = RunSummary.model_validate_json((root / "report" / "summary.json").read_text())
        print_summary(summary, sys.stdout)
        print("report: " + ", ".join(str(p) for p in written))
        if any(s.phase == VariantPhase.FAILED for s in servers.values()):
            status = 1  # a variant failed; one unsupported on this machine is a result, not a failure
    return status


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run", help="run a QuantBenchmark on this machine (no Kubernetes)", description=__doc__
    )
    p.add_argument("file", metavar="BENCH.yaml", help="QuantBenchmark file")
    p.add_argument("--out", default="results", help="results root folder (default: ./results)")
    for flag, env, what, default_note in (
        ("--vllm-python", "QUANTBENCH_VLLM_PYTHON", "vLLM installed", ", else this Python"),
        ("--jobs-python", "QUANTBENCH_JOBS_PYTHON", "quantbench-loadgen", ", else this Python"),
        ("--accuracy-python", "QUANTBENCH_ACCURACY_PYTHON", "quantbench-loadgen[accuracy] (lm-eval)", ""),
    ):
        p.add_argument(
            flag,
            default=os.environ.get(env, sys.executable),
            help=f"Python with {what} (default: ${env}{default_note})",
        )
    p.add_argument(
        "--gsm8k",
        default=os.environ.get("QUANTBENCH_GSM8K_DIR"),
        help="GSM8K folder with train.jsonl and test.jsonl (default: $QUANTBENCH_GSM8K_DIR)",
    )
    p.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="WORKLOAD=PATH",
        help="local dataset file for a serving workload (repeatable)",
    )
    p.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="environment for vLLM servers"
    )
    p.add_argument(
        "--gpu-hour-price",
        action="append",
        default=[],
        metavar="[POOL=]USD",
        help="price of one GPU for an hour, for the cost per million output tokens (repeatable; a bare "
        "price applies to any pool; spec.gpuHourPrices wins)",
    )
    p.add_argument(
        "--no-overlap-starts",
        action="store_true",
        help="on the CPU, start each server only after the previous one stopped (default: the next one starts "
        "during the current one's accuracy and fidelity steps when the servers' OMP_NUM_THREADS leave a core "
        "free for it)",
    )
    p.set_defaults(func=run)
