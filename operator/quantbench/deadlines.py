"""How long a step and a run may take before the operator gives their GPUs back (pure functions).

A benchmark Job gets ``activeDeadlineSeconds``: ``spec.timeouts.step`` when set, else an estimate sized from
its workload — every request it sends, at a slow decode rate, plus a fixed allowance for the image pull and
the client start. The estimate is deliberately generous (a deadline that cuts a healthy run short is worse
than one that waits too long); what it must never be is unbounded.

A run gets ``spec.timeouts.run`` when set, else the sum over its longest lane of what each variant may take
at most (server startupTimeout plus its steps' deadlines), plus the probes' deadline.
"""

from __future__ import annotations

import math

from quantbench.api.v1alpha1 import QuantBenchmarkSpec
from quantbench.naming import STEP_ACCURACY, STEP_FIDELITY, workload_step
from quantbench_loadgen.schema import duration_seconds
from quantbench_loadgen.specs import LatencyWorkload, ServingWorkload, ThroughputWorkload, Workload

STEP_ALLOWANCE_S = 600.0  # image pull, client start, dataset read
SLOW_TOKEN_S = 0.1  # seconds per generated token at batch size 1 on a slow GPU
SLOW_PREFILL_TOKENS_PER_S = 2000.0
GSM8K_TEST_QUESTIONS = 1319
SERVING_DEFAULT_PROMPTS = 1000  # what quantbench-loadgen sends per rate when neither numPrompts nor duration


def _request_s(input_len: int, output_len: int) -> float:
    return input_len / SLOW_PREFILL_TOKENS_PER_S + output_len * SLOW_TOKEN_S


def workload_estimate_s(workload: Workload) -> float:
    """A slow-GPU estimate of how long one workload runs, seconds."""
    if isinstance(workload, LatencyWorkload):
        n = workload.iterations + workload.warmup_iterations
        return n * _request_s(workload.input_len, workload.output_len)
    if isinstance(workload, ThroughputWorkload):
        batches = (workload.iterations + workload.warmup_iterations) * len(workload.batch_sizes)
        # A batch decodes its tokens together; a large batch is slower per step: count 2x per batch.
        return batches * 2 * _request_s(workload.input_len, workload.output_len)
    assert isinstance(workload, ServingWorkload)
    rates = len(workload.request_rates)
    if workload.duration is not None:
        per_rate = duration_seconds(workload.duration)
    else:
        prompts = workload.num_prompts or SERVING_DEFAULT_PROMPTS
        tokens = (workload.dataset.output_len or 256) * SLOW_TOKEN_S
        per_rate = prompts * tokens / max(1, workload.max_concurrency or 8)
    return rates * (per_rate + (workload.warmup_requests or 0) * SLOW_TOKEN_S * 256) + rates * 60


def accuracy_estimate_s(spec: QuantBenchmarkSpec) -> float:
    accuracy = spec.accuracy
    assert accuracy is not None
    questions = accuracy.limit or GSM8K_TEST_QUESTIONS
    prompt = (accuracy.num_fewshot + 1) * 150  # a GSM8K question with its worked answer is ~150 tokens
    per_question = _request_s(prompt, accuracy.max_gen_tokens)
    return questions * per_question / accuracy.concurrency


def fidelity_estimate_s(spec: QuantBenchmarkSpec) -> float:
    """One prompt at a time: a greedy answer, then the teacher-forced prompt + answer (one token)."""
    fidelity = spec.accuracy.fidelity if spec.accuracy is not None else None
    assert fidelity is not None
    prompt = 150  # a GSM8K question
    per_prompt = _request_s(prompt, fidelity.max_tokens) + _request_s(prompt + fidelity.max_tokens, 1)
    return fidelity.prompts * per_prompt


def step_deadline_s(spec: QuantBenchmarkSpec, step: str) -> int:
    """activeDeadlineSeconds of the Job of ``step`` (``wl-<workload>``, ``fidelity`` or ``accuracy``)."""
    if spec.timeouts.step is not None:
        return max(1, math.ceil(duration_seconds(spec.timeouts.step)))
    if step == STEP_ACCURACY:
        estimate = accuracy_estimate_s(spec)
    elif step == STEP_FIDELITY:
        estimate = fidelity_estimate_s(spec)
    else:
        workload = next((w for w in spec.workloads if workload_step(w.name) == step), None)
        if workload is None:
            raise KeyError(f"no workload for step {step!r}")
        estimate = workload_estimate_s(workload)
    return math.ceil(STEP_ALLOWANCE_S + 2 * estimate)


def job_steps(spec: QuantBenchmarkSpec) -> list[str]:
    steps = [workload_step(w.name) for w in spec.workloads]
    if spec.accuracy is not None and spec.accuracy.fidelity is not None:
        steps.append(STEP_FIDELITY)
    return steps + ([STEP_ACCURACY] if spec.accuracy is not None else [])


def variant_deadline_s(spec: QuantBenchmarkSpec) -> float:
    """The longest one variant may hold its GPUs: server startup plus every step's deadline."""
    return duration_seconds(spec.server.startup_timeout) + sum(
        step_deadline_s(spec, s) for s in job_steps(spec)
    )


def run_deadline_s(spec: QuantBenchmarkSpec, longest_lane: int, probe_timeout_s: float) -> float:
    """How long a run may take: spec.timeouts.run, else its longest lane's variants at their deadlines."""
    if spec.timeouts.run is not None:
        return duration_seconds(spec.timeouts.run)
    probes = probe_timeout_s if spec.probe else 0.0
    return probes + max(1, longest_lane) * variant_deadline_s(spec)
