"""What an accuracy run produces: scores, and every question's outcome for paired comparisons.

A variant is compared with the baseline on the *same* questions (McNemar's test), so the result keeps one
`QuestionOutcome` per question, keyed by a hash of the question text (stable across runs, limits and file
order), plus the dataset's fingerprint so that the analysis can refuse to pair runs of different files.
It stays small (about 100 bytes a question) so that it fits the ConfigMap a Job writes its result to; the
generated texts go to an optional separate samples file.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Final, Literal

from pydantic import Field

from quantbench_loadgen.noninferiority import QualityVerdict
from quantbench_loadgen.schema import ApiModel
from quantbench_loadgen.telemetry import ServerTelemetry

ACCURACY_API_VERSION: Final = "quantbench.dev/accuracy-v1"
STRICT: Final = "strict-match"
FLEXIBLE: Final = "flexible-extract"
Extractor = Literal["strict-match", "flexible-extract"]


def question_key(question: str) -> str:
    """Stable id of a question: the first 16 hex digits of the SHA-256 of its text."""
    return hashlib.sha256(question.encode("utf-8")).hexdigest()[:16]


class QuestionOutcome(ApiModel):
    """One question: the reference answer, what each extractor found, and whether it was right."""

    doc_id: int = Field(ge=0, description="Position of the question in test.jsonl (0-based).")
    key: str = Field(description="question_key() of the question text: pairs outcomes across runs.")
    target: str = Field(description="Reference final answer (after '#### ' in the dataset).")
    strict_answer: str = Field(description="What the strict extractor found ('[invalid]' when nothing).")
    strict_correct: bool = Field(description="Strict answer matches the reference.")
    flexible_answer: str = Field(description="What the flexible extractor found.")
    flexible_correct: bool = Field(description="Flexible answer matches the reference.")


class ExtractorScore(ApiModel):
    """Accuracy under one extractor."""

    correct: int = Field(ge=0, description="Questions answered correctly.")
    questions: int = Field(ge=0, description="Questions scored.")
    accuracy: float = Field(ge=0, le=1, description="correct / questions.")
    stderr: float = Field(
        ge=0, description="Standard error of the mean: sqrt(p(1-p)/(n-1)), as lm-eval reports."
    )


class SequentialRecord(ApiModel):
    """How a sequential evaluation (accuracy.sequential) ended for a variant."""

    look_sizes: list[int] = Field(
        description="Where each look falls, in questions, when the discordance is the planning one (the looks "
        "wait for information, so they come sooner when fewer answers change)."
    )
    fixed_questions: int = Field(ge=1, description="Questions the fixed-sample design would ask.")
    look: int = Field(ge=0, description="The look that decided (or the last one reached).")
    questions: int = Field(ge=0, description="Questions the variant answered.")
    stopped_early: bool = Field(description="Stopped before the design's full information.")
    verdict: QualityVerdict = Field(description="The decision at that look.")
    information_fraction: float | None = Field(
        default=None, ge=0, description="Information at the decision over the design's maximum."
    )
    expected_discordance: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="The discordance the chunk sizes started from (fidelity's greedy answer disagreement).",
    )
    screened: int = Field(
        default=0,
        ge=0,
        description="Questions not generated: one teacher-forced prefill showed the variant's greedy answer is "
        "the baseline's, so they took the baseline's outcome.",
    )
    generated: int | None = Field(
        default=None, ge=0, description="Questions the variant generated an answer to (questions - screened)."
    )
    screened_keys: list[str] = Field(
        default_factory=list, description="question_key() of each screened question."
    )


class AccuracyResult(ApiModel):
    """The whole output of one accuracy run: one task against one server."""

    api_version: Literal["quantbench.dev/accuracy-v1"] = Field(
        default=ACCURACY_API_VERSION, description="Version of this result shape."
    )
    task: Literal["gsm8k"] = Field(default="gsm8k", description="Accuracy task.")
    server_url: str = Field(description="Base URL of the server that answered.")
    model: str = Field(description="Model name sent in requests (the server's served model name).")
    endpoint: Literal["completions", "chat"] = Field(default="completions", description="API endpoint used.")
    num_fewshot: int = Field(ge=0, description="Worked examples in each prompt.")
    limit: int | None = Field(default=None, ge=1, description="Questions asked (first N of test.jsonl).")
    seed: int = Field(ge=0, description="Seed of few-shot sampling and of generation.")
    max_gen_tokens: int = Field(ge=1, description="Generation cap per answer.")
    dataset: str = Field(description="GSM8K folder that was read.")
    dataset_sha256: str = Field(
        description="SHA-256 of train.jsonl followed by test.jsonl: pairs only like runs."
    )
    prompts_sha256: str = Field(
        description="SHA-256 over every prompt sent, in order: equal for runs with the same seed and settings."
    )
    started_at: datetime = Field(description="Wall-clock start (UTC).")
    finished_at: datetime = Field(description="Wall-clock end (UTC).")
    duration_s: float = Field(ge=0, description="Seconds the evaluation took.")
    tool_version: str = Field(description="quantbench-loadgen version.")
    lm_eval_version: str = Field(description="lm-eval version that ran the task.")
    strict: ExtractorScore = Field(description="Score with the strict extractor ('#### N'): the headline.")
    flexible: ExtractorScore = Field(description="Score with the flexible extractor (last number).")
    outcomes: list[QuestionOutcome] = Field(default_factory=list, description="Every question, in order.")
    server_telemetry: ServerTelemetry | None = Field(
        default=None, description="The server's /metrics sampled while the task ran (step 'accuracy')."
    )
    sequential: SequentialRecord | None = Field(
        default=None, description="Set when the variant was evaluated in chunks against the baseline."
    )
    notes: list[str] = Field(default_factory=list, description="Warnings a person should read.")

    @property
    def questions(self) -> int:
        return len(self.outcomes)

    def correct_by_question(self, extractor: Extractor = STRICT) -> dict[str, bool]:
        """Question key -> correct, for paired tests."""
        if extractor == STRICT:
            return {o.key: o.strict_correct for o in self.outcomes}
        return {o.key: o.flexible_correct for o in self.outcomes}
