"""Fidelity-first screening: a question the variant would answer exactly as the baseline did is not generated.

A variant whose greedy decoding reproduces the baseline's response has the baseline's outcome on that
question (a concordant pair), so the sequential test's statistics are unchanged when that outcome is taken
without generating. It is checked with one teacher-forced prefill on the variant's server: prompt + the
baseline's response through vLLM's ``prompt_logprobs`` (top 2 per position), plus a few greedy tokens after
it to see how the variant would end. The response's trailing whitespace is left to those greedy tokens: a
response cut at a stop string ends in e.g. "\n\n", which tokenizes as one token where the model generated
two, so forcing it would fail on a token the model never chose. The question is *screened* iff

- the tokens of the response without its trailing whitespace (prompt + that text tokenized together, the
  prompt's tokens a prefix of them, the text decoding back) are each the variant's most likely token, ahead
  of the runner-up by more than ``min_gap`` nats (a near-tie can fall either way between a prefill and a
  decode: BF16 moved one by 0.125 nats on the CPU server);
- and the variant's greedy tokens after it give exactly the trailing whitespace and then end: its end of
  sequence, one of the task's stop strings (no stop string completed earlier), or the generation cap.

Any doubt (a tokenization that does not round-trip, missing log-probabilities, a near-tie, an answer
longer than the cap) leaves the question unscreened: it is generated as without screening.
The deciding function (`screened`) is pure; `screen` does the HTTP.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp
from pydantic import Field

from quantbench_loadgen.accuracy.results import STRICT, question_key
from quantbench_loadgen.client import api_base, post_json, server_root
from quantbench_loadgen.schema import ApiModel

RESPONSES_API_VERSION: Final = "quantbench.dev/accuracy-responses-v1"
MIN_GAP: Final = 0.25  # nats between the forced token and the runner-up below which a position is a tie
ENDING_TOKENS: Final = 8  # greedy tokens after the response to see a stop string (or EOS) come


class BaselineResponse(ApiModel):
    """One question as the baseline answered it: the exact prompt sent and the text that came back."""

    doc_id: int = Field(ge=0, description="Position of the question in test.jsonl (0-based).")
    key: str = Field(description="question_key() of the question text.")
    prompt: str = Field(description="The prompt sent (few-shot examples and the question).")
    response: str = Field(description="The generated text as the server returned it (stop string removed).")


class BaselineResponses(ApiModel):
    """The baseline's responses, kept beside its AccuracyResult (not in it: at GSM8K size they are megabytes,
    more than the ConfigMap an operator's Job writes its result to)."""

    api_version: Literal["quantbench.dev/accuracy-responses-v1"] = Field(default=RESPONSES_API_VERSION)
    max_gen_tokens: int = Field(ge=1, description="Generation cap per answer.")
    stop: list[str] = Field(default_factory=list, description="Stop strings the requests carried.")
    responses: list[BaselineResponse] = Field(default_factory=list, description="Every question, in order.")


class PublishedResponses(ApiModel):
    """How a sequential baseline's accuracy Job published its responses on Kubernetes (the JSON of its
    results ConfigMap's ``quantbench.dev/responses`` annotation, written by ``quantbench_loadgen.publish
    --part``): gzip-compressed and cut into ``parts`` ConfigMaps, or none and why."""

    parts: int = Field(ge=0, description="ConfigMaps holding the pieces, in order (0: not published).")
    bytes: int = Field(ge=0, description="Size of the responses file as text.")
    gzip_bytes: int = Field(
        ge=0, description="Size of the responses file gzip-compressed (the pieces joined)."
    )
    sha256: str | None = Field(default=None, description="SHA-256 of the gzip-compressed file.")
    reason: str | None = Field(default=None, description="Why the responses were not published.")


GZIP_MAGIC: Final = b"\x1f\x8b"


def read_responses(paths: Sequence[Path]) -> BaselineResponses:
    """The baseline's responses from one file, or from the pieces of a gzip-compressed one joined in order
    (how a variant's Job reads them from the ConfigMaps they were published to)."""
    data = b"".join(p.read_bytes() for p in paths)
    if data.startswith(GZIP_MAGIC):
        data = gzip.decompress(data)
    return BaselineResponses.model_validate_json(data)


def responses_from_samples(samples: Iterable[Mapping[str, Any]], max_gen_tokens: int) -> BaselineResponses:
    """The responses of lm-eval's logged samples (completions endpoint: each sample's arguments are the
    prompt text and the generation settings, its resps the returned text)."""
    stop: list[str] = []
    out: list[BaselineResponse] = []
    for s in sorted((s for s in samples if s["filter"] == STRICT), key=lambda s: int(s["doc_id"])):
        args = s["arguments"]
        first = args[0] if isinstance(args, list | tuple) else next(iter(args.values()))
        if isinstance(first, Mapping):
            first = list(first.values())
        prompt, gen_kwargs = first[0], first[1]
        if not isinstance(prompt, str) or not isinstance(gen_kwargs, Mapping):
            raise ValueError(f"question {s['doc_id']}: lm-eval's arguments are not (prompt text, settings)")
        until = gen_kwargs.get("until") or []
        stop = [until] if isinstance(until, str) else [str(u) for u in until]
        resp = s["resps"]
        while isinstance(resp, list | tuple):
            resp = resp[0]
        out.append(
            BaselineResponse(
                doc_id=int(s["doc_id"]),
                key=question_key(str(s["doc"]["question"])),
                prompt=prompt,
                response=str(resp),
            )
        )
    return BaselineResponses(max_gen_tokens=max_gen_tokens, stop=stop, responses=out)


@dataclass(frozen=True)
class Forced:
    """What the variant's server said about prompt + response (see `screened`)."""

    prompt_ids: Sequence[int]  # tokens of the prompt alone
    full_ids: Sequence[int]  # tokens of prompt + the response without its trailing whitespace
    prompt_text: str  # full_ids[: len(prompt_ids)] decoded
    full_text: str  # full_ids decoded
    # vLLM prompt_logprobs: per token of full_ids, None or {token id: {"logprob": x, "rank": r}}
    prompt_logprobs: Sequence[Mapping[str, Any] | None] | None
    ending_text: str  # what the greedy tokens after full_ids produced (stop string included)
    ending_tokens: int  # how many greedy tokens that was
    finish_reason: str | None
    stop_reason: str | int | None


def forced_tokens_lead(forced: Forced, first: int, min_gap: float = MIN_GAP) -> bool:
    """Every token of full_ids from `first` on is the variant's top-1, ahead of the runner-up by > min_gap."""
    entries = forced.prompt_logprobs
    if entries is None or len(entries) != len(forced.full_ids):
        return False
    for position in range(first, len(forced.full_ids)):
        entry = entries[position]
        token = str(forced.full_ids[position])
        if not entry or token not in entry or len(entry) < 2:
            return False
        chosen = entry[token]
        if not isinstance(chosen, Mapping) or chosen.get("rank") != 1:
            return False
        others = [float(v["logprob"]) for t, v in entry.items() if t != token and isinstance(v, Mapping)]
        if not others or float(chosen["logprob"]) - max(others) <= min_gap:
            return False
    return True


def ends_like_the_baseline(
    response: str, forced: Forced, stop: Sequence[str], forced_tokens: int, max_gen_tokens: int
) -> bool:
    """The variant's greedy tokens after the forced text give the response's trailing whitespace and stop
    there, as its answer would: end of sequence, a stop string right after the response, or the cap."""
    if any(s and s in response for s in stop):
        return False  # the baseline would have stopped earlier: this response is not a plain generation
    tail = response[len(response.rstrip()) :]
    if forced_tokens == max_gen_tokens:
        return tail == ""  # the cap: nothing after the forced tokens is generated
    if forced.finish_reason == "length":
        return forced.ending_text == tail and forced_tokens + forced.ending_tokens == max_gen_tokens
    if forced.finish_reason != "stop":
        return False
    if forced.stop_reason is None or isinstance(forced.stop_reason, int):  # end of sequence / stop token
        return forced.ending_text == tail
    if forced.stop_reason not in stop or forced.ending_text != tail + forced.stop_reason:
        return False
    joined = response + forced.stop_reason
    return all(joined.find(s) in (-1, len(response)) for s in stop if s)


def screened(
    response: BaselineResponse,
    forced: Forced,
    stop: Sequence[str],
    max_gen_tokens: int,
    min_gap: float = MIN_GAP,
) -> bool:
    """Whether the variant's greedy answer to this question is the baseline's response (see the module)."""
    n_prompt, n_full = len(forced.prompt_ids), len(forced.full_ids)
    if list(forced.full_ids[:n_prompt]) != list(forced.prompt_ids):
        return False  # the response's first token merged with the prompt's last
    if forced.full_text != forced.prompt_text + response.response.rstrip():
        return False  # the tokens do not decode back to the response
    generated = n_full - n_prompt
    if generated > max_gen_tokens:
        return False
    if not forced_tokens_lead(forced, n_prompt, min_gap):
        return False
    return ends_like_the_baseline(response.response, forced, stop, generated, max_gen_tokens)


# ------------------------------------------------------------------------------------------ the server


async def _forced(
    http: aiohttp.ClientSession, root: str, model: str, r: BaselineResponse, refs: BaselineResponses
) -> Forced:
    prompt_ids = (await post_json(http, f"{root}/tokenize", {"model": model, "prompt": r.prompt}))["tokens"]
    head = r.prompt + r.response.rstrip()
    full_ids = (await post_json(http, f"{root}/tokenize", {"model": model, "prompt": head}))["tokens"]
    prompt_text = (
        await post_json(http, f"{root}/detokenize", {"model": model, "tokens": full_ids[: len(prompt_ids)]})
    )["prompt"]
    full_text = (await post_json(http, f"{root}/detokenize", {"model": model, "tokens": full_ids}))["prompt"]
    room = refs.max_gen_tokens - (len(full_ids) - len(prompt_ids))
    data = await post_json(
        http,
        f"{api_base(root)}/completions",
        {
            "model": model,
            "prompt": full_ids,  # exactly the tokens checked above
            "max_tokens": max(1, min(ENDING_TOKENS, room)),
            "temperature": 0.0,
            "prompt_logprobs": 2,
            "stop": refs.stop,
            "include_stop_str_in_output": True,
        },
    )
    choice = data["choices"][0]
    return Forced(
        prompt_ids=prompt_ids,
        full_ids=full_ids,
        prompt_text=prompt_text,
        full_text=full_text,
        prompt_logprobs=choice.get("prompt_logprobs"),
        ending_text=str(choice.get("text") or ""),
        ending_tokens=int(data.get("usage", {}).get("completion_tokens", 0)),
        finish_reason=choice.get("finish_reason"),
        stop_reason=choice.get("stop_reason"),
    )


async def screen(
    url: str,
    model: str,
    refs: BaselineResponses,
    doc_ids: Sequence[int],
    concurrency: int = 8,
    min_gap: float = MIN_GAP,
) -> set[int]:
    """The doc ids among ``doc_ids`` whose baseline response the variant at ``url`` would give exactly.
    Questions without a recorded response, and any request that fails, stay unscreened."""
    by_id = {r.doc_id: r for r in refs.responses}
    root = server_root(url)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(http: aiohttp.ClientSession, r: BaselineResponse) -> int | None:
        async with gate:
            try:
                forced = await _forced(http, root, model, r, refs)
            except (aiohttp.ClientError, TimeoutError, RuntimeError, KeyError, TypeError, ValueError):
                return None
        return r.doc_id if screened(r, forced, refs.stop, refs.max_gen_tokens, min_gap) else None

    async with aiohttp.ClientSession() as http:
        found = await asyncio.gather(*(one(http, by_id[d]) for d in doc_ids if d in by_id))
    return {d for d in found if d is not None}
