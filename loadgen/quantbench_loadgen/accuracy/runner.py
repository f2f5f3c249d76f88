"""Run GSM8K through lm-eval against an OpenAI-compatible server and build an `AccuracyResult`.

lm-eval is imported only inside `run_accuracy` (it lives in the `accuracy` extra). Hub access is switched
off before the import: the dataset comes from the local GSM8K folder and the tokenizer, when one is used,
from the local model folder (without one, prompts go to the server as text).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from quantbench_loadgen.accuracy.results import (
    FLEXIBLE,
    STRICT,
    AccuracyResult,
    ExtractorScore,
    QuestionOutcome,
    SequentialRecord,
    question_key,
)
from quantbench_loadgen.accuracy.screening import (
    MIN_GAP,
    BaselineResponses,
    responses_from_samples,
    screen,
)
from quantbench_loadgen.accuracy.sequential import evaluate_sequentially
from quantbench_loadgen.accuracy.task import (
    FEWSHOT_FROM_TEST_NOTE,
    PUBLIC_DATASET,
    TASK_NAME,
    dataset_fingerprint,
    has_train_split,
    reference_answer,
    resolve_dataset_dir,
    task_config,
)
from quantbench_loadgen.noninferiority import SequentialPlan
from quantbench_loadgen.telemetry import DEFAULT_INTERVAL_S, sampling_in_background

log = logging.getLogger(__name__)

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


class AccuracyRunError(RuntimeError):
    """The evaluation could not run or returned something unusable."""


@dataclass(frozen=True)
class AccuracyRequest:
    """Everything one accuracy run needs."""

    base_url: str  # server root, e.g. http://127.0.0.1:8000 (with or without /v1)
    model: str  # served model name
    dataset_dir: str | None  # GSM8K folder; None: $QUANTBENCH_GSM8K_DIR
    tokenizer: str | None = None  # local tokenizer folder; None: prompts go as text, the server tokenizes
    num_fewshot: int = 8
    limit: int | None = 100
    seed: int = 1234
    max_gen_tokens: int = 256
    concurrency: int = 8
    max_length: int = (
        4096  # model context: prompts longer than max_length - max_gen_tokens are cut from the left
    )
    timeout_s: int = 600
    endpoint: Literal["completions", "chat"] = "completions"  # chat: the server applies the chat template
    telemetry_interval_s: float | None = DEFAULT_INTERVAL_S  # sample the server's /metrics (None: never)

    # accuracy.sequential: the design; with the baseline's result, this run is a variant asked in chunks
    # that stops once its verdict is decided; without one, it is the baseline (at most the design's maximum).
    plan: SequentialPlan | None = None
    baseline: AccuracyResult | None = None
    # the discordance the chunk sizes start from (fidelity's greedy answer disagreement); None: the plan's
    expected_discordance: float | None = None
    # the baseline's responses (completions endpoint): a question the variant would answer exactly as the
    # baseline did, by one teacher-forced prefill, takes the baseline's outcome without generating
    baseline_responses: BaselineResponses | None = None
    screen_min_gap: float = MIN_GAP  # nats the forced token must lead the runner-up by to be screened
    # a sequential variant without the baseline's responses: why (kept as a note of the result)
    unscreened_reason: str | None = None


def metrics_url(base_url: str) -> str:
    """The server's Prometheus endpoint: <root>/metrics."""
    return endpoint_url(base_url).removesuffix("/v1/completions") + "/metrics"


def endpoint_url(base_url: str, endpoint: str = "completions") -> str:
    """The OpenAI-compatible URL of the endpoint: <root>/v1/completions or <root>/v1/chat/completions."""
    path = "/chat/completions" if endpoint == "chat" else "/completions"
    root = base_url.rstrip("/")
    for suffix in ("/v1/chat/completions", "/v1/completions"):
        if root.endswith(suffix):
            root = root[: -len(suffix)]
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    return root + "/v1" + path


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _first(value: Any) -> Any:
    while isinstance(value, list | tuple) and value:
        value = value[0]
    return value


def outcomes_from_samples(samples: Iterable[Mapping[str, Any]]) -> list[QuestionOutcome]:
    """One outcome per question from lm-eval's logged samples (one sample per question and extractor)."""
    by_doc: dict[int, dict[str, Mapping[str, Any]]] = {}
    for sample in samples:
        by_doc.setdefault(int(sample["doc_id"]), {})[str(sample["filter"])] = sample
    outcomes: list[QuestionOutcome] = []
    for doc_id in sorted(by_doc):
        per_filter = by_doc[doc_id]
        missing = {STRICT, FLEXIBLE} - set(per_filter)
        if missing:
            raise AccuracyRunError(
                f"lm-eval logged no {', '.join(sorted(missing))} result for question {doc_id}"
            )
        strict, flexible = per_filter[STRICT], per_filter[FLEXIBLE]
        doc = strict["doc"]
        outcomes.append(
            QuestionOutcome(
                doc_id=doc_id,
                key=question_key(str(doc["question"])),
                target=reference_answer(str(doc["answer"])),
                strict_answer=str(_first(strict["filtered_resps"])),
                strict_correct=float(strict["exact_match"]) >= 1.0,
                flexible_answer=str(_first(flexible["filtered_resps"])),
                flexible_correct=float(flexible["exact_match"]) >= 1.0,
            )
        )
    return outcomes


def docs_fingerprint(samples: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 over the questions and answers evaluated, in order (for data read from the hub)."""
    digest = hashlib.sha256()
    for s in sorted(samples, key=lambda s: int(s["doc_id"])):
        digest.update(f"{s['doc']['question']}\x00{s['doc']['answer']}\x00".encode())
    return digest.hexdigest()


def prompts_fingerprint(samples: Iterable[Mapping[str, Any]]) -> str:
    """SHA-256 over the prompt hashes of the strict samples, in question order."""
    strict = sorted((int(s["doc_id"]), str(s["prompt_hash"])) for s in samples if s["filter"] == STRICT)
    return hashlib.sha256("\n".join(h for _, h in strict).encode()).hexdigest()


def score(outcomes: list[QuestionOutcome], strict: bool) -> ExtractorScore:
    """Accuracy and its standard error (sample standard deviation / sqrt(n), lm-eval's convention)."""
    correct = sum(1 for o in outcomes if (o.strict_correct if strict else o.flexible_correct))
    n = len(outcomes)
    p = correct / n if n else 0.0
    stderr = math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else 0.0
    return ExtractorScore(correct=correct, questions=n, accuracy=p, stderr=stderr)


def model_args(request: AccuracyRequest) -> dict[str, Any]:
    """Arguments of lm-eval's local-completions model for this request."""
    args: dict[str, Any] = {
        "model": request.model,
        "base_url": endpoint_url(request.base_url, request.endpoint),
        "num_concurrent": request.concurrency,
        "max_retries": 3,
        "max_gen_toks": request.max_gen_tokens,
        "max_length": request.max_length,
        "seed": request.seed,
        "tokenized_requests": False,
        "timeout": request.timeout_s,
    }
    if request.endpoint == "completions" and request.tokenizer:
        # The local tokenizer lets lm-eval measure prompts (context length) before sending them.
        args |= {"tokenizer_backend": "huggingface", "tokenizer": request.tokenizer}
    else:
        # Prompts (or chat messages) go as text and the server tokenizes them. (lm-eval's "remote"
        # backend needs vLLM's optional /tokenizer_info endpoint, which servers do not enable by default.)
        args |= {"tokenizer_backend": None}
    return args


def run_accuracy(
    request: AccuracyRequest, samples_out: Path | None = None, responses_out: Path | None = None
) -> AccuracyResult:
    """Evaluate GSM8K on the server and return the result (writes only the optional samples file and, for the
    completions endpoint, the optional responses file that lets a sequential variant screen questions)."""
    folder = resolve_dataset_dir(request.dataset_dir)
    if request.tokenizer and not Path(request.tokenizer).is_dir():
        raise AccuracyRunError(
            f"tokenizer folder {request.tokenizer} does not exist (give the local model folder)"
        )
    if folder is not None:  # a local folder: nothing may reach a hub
        for key, value in OFFLINE_ENV.items():
            os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory(prefix="quantbench-accuracy-") as scratch:
        # datasets converts the JSONL files into a cache; keep it out of $HOME, which a Job's user may
        # not be able to write, unless the caller chose a cache folder.
        if "HF_DATASETS_CACHE" not in os.environ and "HF_HOME" not in os.environ:
            os.environ["HF_DATASETS_CACHE"] = scratch
        return _evaluate(request, folder, samples_out, responses_out)


def _evaluate(
    request: AccuracyRequest, folder: Path | None, samples_out: Path | None, responses_out: Path | None
) -> AccuracyResult:
    try:
        import lm_eval  # noqa: F401
        from lm_eval.evaluator import simple_evaluate
        from lm_eval.tasks import TaskManager
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise AccuracyRunError(
            "lm-eval is not installed: install quantbench-loadgen with its accuracy extra "
            "(pip install 'quantbench-loadgen[accuracy]')"
        ) from exc

    started = datetime.now(UTC)
    t0 = time.monotonic()

    def evaluate(limit: int | None, doc_ids: Sequence[int] | None) -> list[Mapping[str, Any]]:
        output = simple_evaluate(
            # The task is handed over as a config, so lm-eval's index of its thousands of built-in task files
            # is not needed: building it (simple_evaluate's default) took 10-16 s on 2 cores, on every call.
            # The metadata is what simple_evaluate gives its own TaskManager.
            task_manager=TaskManager(include_defaults=False, metadata=model_args(request)),
            model="local-chat-completions" if request.endpoint == "chat" else "local-completions",
            model_args=model_args(request),
            apply_chat_template=request.endpoint == "chat",
            fewshot_as_multiturn=request.endpoint == "chat",
            tasks=[task_config(folder, request.num_fewshot, request.max_gen_tokens)],
            num_fewshot=request.num_fewshot,
            limit=limit,
            samples=None if doc_ids is None else {TASK_NAME: list(doc_ids)},
            log_samples=True,
            random_seed=request.seed,
            numpy_random_seed=request.seed,
            torch_random_seed=None,
            fewshot_random_seed=request.seed,
            bootstrap_iters=0,
        )
        if not output or TASK_NAME not in output.get("samples", {}):
            raise AccuracyRunError(f"lm-eval returned no samples for {TASK_NAME}")
        return list(output["samples"][TASK_NAME])

    record: SequentialRecord | None = None
    paired: list[QuestionOutcome] | None = None
    with contextlib.ExitStack() as stack:
        scraper = (
            stack.enter_context(
                sampling_in_background(
                    metrics_url(request.base_url), request.telemetry_interval_s, "accuracy"
                )
            )
            if request.telemetry_interval_s
            else None
        )
        if request.plan is not None and request.baseline is not None:
            asked: list[Mapping[str, Any]] = []

            def ask(doc_ids: Sequence[int]) -> list[QuestionOutcome]:
                chunk = evaluate(None, doc_ids)
                asked.extend(chunk)
                return outcomes_from_samples(chunk)

            paired, record = evaluate_sequentially(
                request.plan, request.baseline.outcomes, ask, request.expected_discordance, _screener(request)
            )
            samples: list[Mapping[str, Any]] = asked
        else:
            limit = request.limit
            if request.plan is not None:  # the baseline of a sequential design
                limit = min(limit or request.plan.max_questions, request.plan.max_questions)
            samples = evaluate(limit, None)
    telemetry = scraper.result() if scraper is not None else None
    duration = time.monotonic() - t0
    # screened questions have no sample: their outcome is the baseline's
    outcomes = paired if paired is not None else outcomes_from_samples(samples)
    notes: list[str] = []
    if record is not None and record.stopped_early:
        where = f"at look {record.look} of {len(record.look_sizes)}" if record.look else "between looks"
        notes.append(
            f"stopped early {where}: {record.verdict} after {record.questions} questions (the fixed-sample "
            f"design needs {record.fixed_questions})"
        )
    if request.plan is None and request.limit is not None and len(outcomes) < request.limit:
        notes.append(f"asked for {request.limit} questions, the test split has {len(outcomes)}")
    if folder is not None and not has_train_split(folder) and request.num_fewshot > 0:
        notes.append(FEWSHOT_FROM_TEST_NOTE)
    if record is not None and record.screened:
        notes.append(
            f"{record.screened} of {record.questions} questions screened (the variant's greedy answer is the "
            f"baseline's, checked by one prefill), {record.generated} generated"
        )
    if record is not None and request.baseline_responses is None and request.unscreened_reason:
        notes.append(unscreened_note(request.unscreened_reason))
    if samples_out is not None:
        _write_samples(samples_out, samples)
    if responses_out is not None and request.endpoint == "completions":
        responses_out.parent.mkdir(parents=True, exist_ok=True)
        responses_out.write_text(
            responses_from_samples(samples, request.max_gen_tokens).model_dump_json(by_alias=True) + "\n",
            encoding="utf-8",
        )
    return AccuracyResult(
        server_url=request.base_url,
        model=request.model,
        endpoint=request.endpoint,
        num_fewshot=request.num_fewshot,
        limit=request.limit,
        seed=request.seed,
        max_gen_tokens=request.max_gen_tokens,
        dataset=str(folder) if folder else "/".join(PUBLIC_DATASET),
        dataset_sha256=dataset_fingerprint(folder) if folder else docs_fingerprint(samples),
        prompts_sha256=prompts_fingerprint(samples),
        started_at=started,
        finished_at=datetime.now(UTC),
        duration_s=duration,
        tool_version=_version("quantbench-loadgen"),
        lm_eval_version=_version("lm-eval"),
        strict=score(outcomes, strict=True),
        flexible=score(outcomes, strict=False),
        outcomes=outcomes,
        server_telemetry=telemetry,
        sequential=record,
        notes=notes,
    )


def unscreened_note(reason: str) -> str:
    """The result's note for a sequential variant that had no baseline responses to screen with."""
    return f"no question screened ({reason}): every question generated"


def _screener(request: AccuracyRequest) -> Callable[[Sequence[int]], set[int]] | None:
    """Screening against the baseline's responses (completions endpoint only: a chat prompt is messages)."""
    refs = request.baseline_responses
    if refs is None or request.endpoint != "completions":
        return None

    def screen_chunk(doc_ids: Sequence[int]) -> set[int]:
        return asyncio.run(
            screen(
                request.base_url, request.model, refs, doc_ids, request.concurrency, request.screen_min_gap
            )
        )

    return screen_chunk


def _write_samples(path: Path, samples: Iterable[Mapping[str, Any]]) -> None:
    """Generated text and extracted answers per question and extractor, one JSON object a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for s in samples:
            record = {
                "docId": s["doc_id"],
                "filter": s["filter"],
                "question": s["doc"]["question"],
                "target": reference_answer(str(s["doc"]["answer"])),
                "response": _first(s["resps"]),
                "extracted": _first(s["filtered_resps"]),
                "correct": float(s["exact_match"]) >= 1.0,
                "promptHash": s["prompt_hash"],
            }
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
