"""What a Job writes must fit its results ConfigMap (1 MiB): the specs that cannot, refused before they run,
and how many ConfigMaps a sequential baseline's responses take (pure; Kubernetes only: `quantbench run` writes
files and has no such limit).

The one result whose size the spec sets beyond what the API's bounds already keep small is the baseline's
fidelity reference (accuracy.fidelity): its top-k log-probabilities at every teacher-forced position, about
prompts x maxTokens x (topK + 1) numbers (vLLM may add the forced token where it is outside the top k). The
baseline's Job publishes it gzip-compressed. Measured on references written by a real vLLM CPU server
(SmolLM2-135M, 49k-token vocabulary, GSM8K questions; 4 x 32 and 8 x 48 tokens asked, 81 and 160 positions
written): 564-567 bytes per position as JSON at topK 20, 130 gzip-compressed (the log-probabilities of one
position share the digits of their common normaliser, which gzip finds); 157 and 50 at topK 5; 31
gzip-compressed at topK 1 (the topK 20 reference cut down); 133-147 bytes per question for its text. The figures
below are those rounded up by about a third (a longer token id of a 128k or 152k vocabulary, flatter
distributions), counting topK + 1 numbers a position. The estimate is an upper bound for greedy answers
that run to maxTokens (one that stops earlier writes less); the Job's publisher still refuses, with its
size, a reference that does not fit after all.
"""

from __future__ import annotations

import math

from quantbench.api.v1alpha1 import QuantBenchmarkSpec
from quantbench_loadgen.accuracy.sequential import plan_for
from quantbench_loadgen.publish import MAX_CONFIGMAP_BYTES, PART_BYTES
from quantbench_loadgen.specs import AccuracySpec, FidelitySpec

# Measured, gzip-compressed (see the module's docstring): bytes per log-probability, per position beside
# them (the brackets and the answer's text), and per prompt (the GSM8K question and the fields).
GZ_BYTES_PER_LOGPROB = 7.0
GZ_BYTES_PER_POSITION = 25.0
GZ_BYTES_PER_PROMPT = 400.0
# What the reference may take of the ConfigMap: the Job's input and the key names take the rest.
REFERENCE_BUDGET = MAX_CONFIGMAP_BYTES - 20_000


def bytes_per_position(top_k: int) -> float:
    """Upper bound of one teacher-forced position's bytes in the gzip-compressed reference."""
    return (top_k + 1) * GZ_BYTES_PER_LOGPROB + GZ_BYTES_PER_POSITION


def reference_bytes(fidelity: FidelitySpec) -> int:
    """Upper bound of the baseline's gzip-compressed fidelity reference, bytes."""
    per_prompt = GZ_BYTES_PER_PROMPT + fidelity.max_tokens * bytes_per_position(fidelity.top_k)
    return math.ceil(fidelity.prompts * per_prompt)


def most_prompts(fidelity: FidelitySpec) -> int:
    """The most prompts whose reference fits at the spec's maxTokens and topK."""
    per_prompt = GZ_BYTES_PER_PROMPT + fidelity.max_tokens * bytes_per_position(fidelity.top_k)
    return int(REFERENCE_BUDGET // per_prompt)


def configmap_problems(spec: QuantBenchmarkSpec) -> list[str]:
    """Each result of the spec's Jobs that cannot fit a ConfigMap, naming the field, the limit and the
    figures."""
    fidelity = spec.accuracy.fidelity if spec.accuracy is not None else None
    if fidelity is None or reference_bytes(fidelity) <= REFERENCE_BUDGET:
        return []
    size = reference_bytes(fidelity)
    fit = most_prompts(fidelity)
    return [
        f"spec.accuracy.fidelity: the baseline's reference of {fidelity.prompts} prompts x {fidelity.max_tokens} "
        f"maxTokens x topK {fidelity.top_k} log-probabilities would take up to {size / 1e6:.2f} MB "
        f"gzip-compressed (~{bytes_per_position(fidelity.top_k):.0f} bytes per position), and on Kubernetes "
        f"it goes into its Job's results ConfigMap, which holds at most 1 MiB ({REFERENCE_BUDGET} bytes for "
        f"the reference): with maxTokens {fidelity.max_tokens} and topK {fidelity.top_k} at most {fit} prompts "
        "fit; ask for fewer prompts, maxTokens or topK (`quantbench run` has no such limit)"
    ]


# accuracy.sequential: the baseline's responses (every question's exact prompt and response), which the other
# variants screen questions with. Measured on GSM8K (README: Screening on Kubernetes): the 1,319 8-shot prompts
# of the test split take 4,669 bytes a question as JSON and 1,511 gzip-compressed (the worked examples are
# drawn per question from the 7,473 of train.jsonl, so few repeat within gzip's 32 KiB window): 2.0 MB for the
# whole split, which no single ConfigMap holds. The baseline's Job publishes them gzip-compressed across
# numbered ConfigMaps (quantbench_loadgen.publish --part); the operator creates as many as this upper bound
# needs. Per question: (numFewshot + 1) x GZ_BYTES_PER_SHOT for the prompt (1,511 / 9 = 168, rounded up by a
# third) and maxGenTokens x GZ_BYTES_PER_RESPONSE_TOKEN for a response that runs to the cap.
GZ_BYTES_PER_SHOT = 225.0
GZ_BYTES_PER_RESPONSE_TOKEN = 2.0
MAX_RESPONSE_PARTS = 8  # more than this: no screening on Kubernetes (the variants generate every question)


def baseline_questions(accuracy: AccuracySpec) -> int:
    """Questions a sequential baseline answers: the design's maximum, or accuracy.limit when lower."""
    most = plan_for(accuracy).max_questions
    return min(accuracy.limit or most, most)


def responses_bytes(accuracy: AccuracySpec) -> int:
    """Upper bound of a sequential baseline's responses file gzip-compressed, bytes."""
    per_question = (accuracy.num_fewshot + 1) * GZ_BYTES_PER_SHOT
    per_question += accuracy.max_gen_tokens * GZ_BYTES_PER_RESPONSE_TOKEN
    return math.ceil(baseline_questions(accuracy) * per_question)


def screens(spec: QuantBenchmarkSpec) -> bool:
    """Whether the spec's other variants screen questions with the baseline's responses (accuracy.sequential
    with its screen on, and a variant besides the baseline)."""
    sequential = spec.accuracy.sequential if spec.accuracy is not None else None
    return sequential is not None and sequential.screen and len(spec.variants) > 1


def responses_parts(spec: QuantBenchmarkSpec) -> int:
    """ConfigMaps the operator creates for the baseline's responses (0: no screening, see `unscreened`)."""
    if not screens(spec) or spec.accuracy is None or unscreened(spec) is not None:
        return 0
    return max(1, math.ceil(responses_bytes(spec.accuracy) / PART_BYTES))


def unscreened(spec: QuantBenchmarkSpec) -> str | None:
    """Why the baseline's responses cannot be published at all, from the spec alone (None: they can)."""
    if not screens(spec) or spec.accuracy is None:
        return None
    size = responses_bytes(spec.accuracy)
    parts = math.ceil(size / PART_BYTES)
    if parts <= MAX_RESPONSE_PARTS:
        return None
    return (
        f"the baseline's responses to {baseline_questions(spec.accuracy)} questions would take up to "
        f"{size / 1e6:.1f} MB gzip-compressed, {parts} ConfigMaps (at most {MAX_RESPONSE_PARTS} are made)"
    )
