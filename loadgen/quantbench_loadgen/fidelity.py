"""Fidelity to the baseline: how closely a variant's next-token distributions follow the baseline's.

Quantization damage shows in the token distributions long before it shows in a task score, and it shows
where the task score is near zero (small models, hard tasks). The method follows llama.cpp's
``--kl-divergence``: on the same prompts, the baseline answers greedily (its reference text); then both
servers are teacher-forced on prompt + reference text through vLLM's ``prompt_logprobs`` (top-k
log-probabilities of every position, non-streaming ``/v1/completions``), so position i of both sides
predicts the same next token from the same context. Per position:

- KL(baseline || variant) over the baseline's top-k tokens plus one "rest" bucket. A token missing from the
  variant's top-k gets the smaller of the variant's k-th probability and its left-over mass (an upper bound
  of its true probability, so the KL is not inflated by truncation); both sides' rest buckets take the mass
  outside those tokens.
- top-1 agreement: both sides' most likely token is the same.

Per prompt, greedy answer agreement: the variant's own greedy answer is the baseline's reference text.
Two phases, so that the servers need not run at the same time: `reference` on the baseline writes a
`FidelityReference`; `compare` on a variant reads it.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import aiohttp
from pydantic import Field

from quantbench_loadgen.client import api_base, post_json
from quantbench_loadgen.schema import ApiModel

FIDELITY_API_VERSION: Literal["quantbench.dev/fidelity-v1"] = "quantbench.dev/fidelity-v1"
DEFAULT_TOP_K = 20
_FLOOR = 1e-12


class PromptReference(ApiModel):
    prompt: str = Field(description="The prompt sent.")
    text: str = Field(description="The baseline's greedy answer (the teacher-forced continuation).")
    prompt_tokens: int = Field(ge=0, description="Tokens of the prompt alone.")
    top_logprobs: list[dict[str, float]] = Field(
        default_factory=list,
        description="Per continuation position, the baseline's top-k token id -> log-probability.",
    )


class FidelityReference(ApiModel):
    api_version: Literal["quantbench.dev/fidelity-v1"] = Field(default=FIDELITY_API_VERSION)
    model: str = Field(description="The baseline's served model name.")
    top_k: int = Field(ge=1, description="Log-probabilities kept per position.")
    max_tokens: int = Field(ge=1, description="Greedy answer length cap.")
    prompts: list[PromptReference] = Field(default_factory=list)


class FidelityResult(ApiModel):
    api_version: Literal["quantbench.dev/fidelity-v1"] = Field(default=FIDELITY_API_VERSION)
    prompts: int = Field(ge=0, description="Prompts compared.")
    positions: int = Field(ge=0, description="Teacher-forced positions compared.")
    top_k: int = Field(ge=1, description="Log-probabilities per position.")
    mean_kl: float = Field(ge=0, description="Mean KL(baseline || variant) per position, nats.")
    p99_kl: float = Field(ge=0, description="99th percentile of the per-position KL, nats.")
    top1_agreement: float = Field(ge=0, le=1, description="Share of positions with the same top token.")
    greedy_agreement: float = Field(
        ge=0, le=1, description="Share of prompts whose greedy answer equals the baseline's."
    )


GZIP_MAGIC = b"\x1f\x8b"


def read_reference(path: Path) -> FidelityReference:
    """A reference file, plain JSON or gzip-compressed (as a Kubernetes Job publishes it: the reference of
    many prompts outgrows a ConfigMap as text)."""
    raw = path.read_bytes()
    if raw[:2] == GZIP_MAGIC:
        raw = gzip.decompress(raw)
    return FidelityReference.model_validate_json(raw)


# ------------------------------------------------------------------------------------------ pure parts


def kl_top_k(base: dict[str, float], var: dict[str, float]) -> float:
    """KL(baseline || variant) in nats over the baseline's top-k tokens plus a rest bucket (see above)."""
    if not base:
        raise ValueError("no baseline log-probabilities at this position")
    p = {t: math.exp(lp) for t, lp in base.items()}
    q_known = {t: math.exp(lp) for t, lp in var.items()}
    q_min = min(q_known.values()) if q_known else _FLOOR
    q_rest_total = max(0.0, 1.0 - sum(q_known.values()))
    q = {t: q_known.get(t, min(q_min, q_rest_total)) for t in p}
    p_rest = max(0.0, 1.0 - sum(p.values()))
    q_rest = max(_FLOOR, 1.0 - sum(q.values()))
    kl = sum(pt * math.log(pt / max(q[t], _FLOOR)) for t, pt in p.items() if pt > 0)
    if p_rest > 1e-9:
        kl += p_rest * math.log(p_rest / q_rest)
    return max(0.0, kl)


def top1(logprobs: dict[str, float]) -> str | None:
    return max(logprobs.items(), key=lambda kv: (kv[1], kv[0]))[0] if logprobs else None


def _p99(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = 0.99 * (len(ordered) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def summarise(
    base: Sequence[Sequence[dict[str, float]]],
    var: Sequence[Sequence[dict[str, float]]],
    greedy_same: Sequence[bool],
    top_k: int,
) -> FidelityResult:
    """Per-prompt lists of per-position top-k log-probabilities of both sides -> the fidelity figures."""
    kls: list[float] = []
    agree = 0
    for bp, vp in zip(base, var, strict=True):
        for b, v in zip(bp, vp, strict=False):
            kls.append(kl_top_k(b, v))
            agree += top1(b) == top1(v)
    n = len(kls)
    return FidelityResult(
        prompts=len(greedy_same),
        positions=n,
        top_k=top_k,
        mean_kl=sum(kls) / n if n else 0.0,
        p99_kl=_p99(kls),
        top1_agreement=agree / n if n else 0.0,
        greedy_agreement=sum(greedy_same) / len(greedy_same) if greedy_same else 0.0,
    )


def continuation_logprobs(choice: dict[str, Any], prompt_tokens: int) -> list[dict[str, float]]:
    """The top-k log-probabilities of the positions after the prompt, from a vLLM ``prompt_logprobs``
    answer (a list with one entry per prompt token, None for the first; each maps a token id to
    ``{"logprob": ...}``)."""
    raw = choice.get("prompt_logprobs")
    if not isinstance(raw, list):
        raise ValueError("the server returned no prompt_logprobs: is it vLLM?")
    out: list[dict[str, float]] = []
    for entry in raw[prompt_tokens:]:
        if not entry:
            continue
        out.append({str(t): float(v["logprob"] if isinstance(v, dict) else v) for t, v in entry.items()})
    return out


# ------------------------------------------------------------------------------------------ the servers


async def _complete(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    return await post_json(http, f"{api_base(url)}/completions", body)


async def _greedy(
    http: aiohttp.ClientSession, url: str, model: str, prompt: str, max_tokens: int
) -> tuple[str, int]:
    data = await _complete(
        http,
        url,
        {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "seed": 0},
    )
    return str(data["choices"][0]["text"]), int(data["usage"]["prompt_tokens"])


async def _forced(
    http: aiohttp.ClientSession, url: str, model: str, text: str, prompt_tokens: int, top_k: int
) -> list[dict[str, float]]:
    data = await _complete(
        http,
        url,
        {"model": model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": top_k},
    )
    return continuation_logprobs(data["choices"][0], prompt_tokens)


async def reference(
    url: str, model: str, prompts: Sequence[str], max_tokens: int = 64, top_k: int = DEFAULT_TOP_K
) -> FidelityReference:
    """The baseline's greedy answers and its teacher-forced top-k log-probabilities on them."""
    out = FidelityReference(model=model, top_k=top_k, max_tokens=max_tokens)
    async with aiohttp.ClientSession() as http:
        for prompt in prompts:
            text, n_prompt = await _greedy(http, url, model, prompt, max_tokens)
            forced = await _forced(http, url, model, prompt + text, n_prompt, top_k)
            out.prompts.append(
                PromptReference(prompt=prompt, text=text, prompt_tokens=n_prompt, top_logprobs=forced)
            )
    return out


async def compare(url: str, model: str, ref: FidelityReference) -> FidelityResult:
    """A variant against the baseline's reference: teacher-forced on the same texts, and its own greedy
    answers compared with the baseline's."""
    base: list[list[dict[str, float]]] = []
    var: list[list[dict[str, float]]] = []
    same: list[bool] = []
    async with aiohttp.ClientSession() as http:
        for p in ref.prompts:
            text, n_prompt = await _greedy(http, url, model, p.prompt, ref.max_tokens)
            same.append(text == p.text)
            var.append(await _forced(http, url, model, p.prompt + p.text, n_prompt, ref.top_k))
            base.append(p.top_logprobs)
    return summarise(base, var, same, ref.top_k)
