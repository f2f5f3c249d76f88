"""Fidelity-first screening's decision on hand-made server answers: a question is screened only when every
response token is the variant's clear top-1 and the variant would end where the baseline did; any doubt
leaves it to be generated. The real vLLM CPU server in tests/accuracy/test_sequential_e2e.py."""

from __future__ import annotations

from typing import Any

import pytest

from quantbench_loadgen.accuracy.results import question_key
from quantbench_loadgen.accuracy.screening import (
    BaselineResponse,
    Forced,
    responses_from_samples,
    screened,
)

STOP = ["Question:", "</s>", "<|im_end|>"]
PROMPT_IDS = [1, 10, 11]
RESPONSE = " 6 #### 6"
RESPONSE_IDS = [20, 21, 22]  # the response's three tokens


def _entry(token: int, lead: float = 2.0, rank: int = 1) -> dict[str, Any]:
    """prompt_logprobs at one position: the forced token and the variant's other top tokens."""
    if rank == 1:
        return {str(token): {"logprob": -0.1, "rank": 1}, "999": {"logprob": -0.1 - lead, "rank": 2}}
    return {str(token): {"logprob": -3.0, "rank": rank}, "999": {"logprob": -0.1, "rank": 1}}


def _forced(
    entries: list[dict[str, Any] | None] | None = None,
    ending: str = "",
    finish: str | None = "stop",
    reason: str | int | None = None,
    full_text: str | None = None,
    full_ids: list[int] | None = None,
    ending_tokens: int = 1,
) -> Forced:
    ids = full_ids if full_ids is not None else PROMPT_IDS + RESPONSE_IDS
    default: list[dict[str, Any] | None] = [None, *(_entry(t) for t in ids[1:])]
    return Forced(
        prompt_ids=PROMPT_IDS,
        full_ids=ids,
        prompt_text="<s> Q?",
        full_text=full_text if full_text is not None else "<s> Q?" + RESPONSE,
        prompt_logprobs=default if entries is None else entries,
        ending_text=ending,
        ending_tokens=ending_tokens,
        finish_reason=finish,
        stop_reason=reason,
    )


RESP = BaselineResponse(doc_id=0, key="k", prompt=" Q?", response=RESPONSE)


def test_ended_at_eos_screened_when_the_variant_ends_there_too() -> None:
    assert screened(RESP, _forced(), STOP, max_gen_tokens=16)
    # the variant would go on: finish "length" on the ending tokens, or text after the response
    assert not screened(RESP, _forced(finish="length", ending=" and"), STOP, max_gen_tokens=16)
    assert not screened(RESP, _forced(ending="\n", reason=None), STOP, max_gen_tokens=16)


def test_ended_at_a_stop_string_screened_only_when_it_starts_right_after_the_response() -> None:
    assert screened(RESP, _forced(ending="Question:", reason="Question:"), STOP, max_gen_tokens=16)
    # text before the stop string: the variant's answer would be longer than the baseline's
    assert not screened(RESP, _forced(ending="\nQuestion:", reason="Question:"), STOP, max_gen_tokens=16)
    # a stop string the task does not use
    assert not screened(RESP, _forced(ending="Answer:", reason="Answer:"), STOP, max_gen_tokens=16)
    # a stop string completed across the response's end would have cut the variant's answer earlier
    cut = BaselineResponse(doc_id=0, key="k", prompt=" Q?", response=" 6 #### 6 Quest")
    forced = _forced(ending="Question:", reason="Question:", full_text="<s> Q?" + cut.response)
    assert not screened(cut, forced, ["Question:", "Quest"], max_gen_tokens=16)


def test_ended_at_the_length_cap_needs_only_the_positions() -> None:
    assert screened(RESP, _forced(finish="length", ending=" and"), STOP, max_gen_tokens=3)
    # the response retokenizes longer than the cap: the variant would have been cut earlier
    assert not screened(RESP, _forced(finish="length", ending=" and"), STOP, max_gen_tokens=2)


def test_trailing_whitespace_is_left_to_the_variants_own_greedy_tokens() -> None:
    # A response cut at "Question:" ends in "\n\n": one token when tokenized, two when generated. Only the
    # text before it is forced; the variant's greedy tokens must give the "\n\n" and then stop.
    cut = BaselineResponse(doc_id=0, key="k", prompt=" Q?", response=RESPONSE + "\n\n")
    stopped = _forced(ending="\n\nQuestion:", reason="Question:", ending_tokens=4)
    assert screened(cut, stopped, STOP, max_gen_tokens=16)
    assert not screened(cut, _forced(ending="\nQuestion:", reason="Question:"), STOP, max_gen_tokens=16)
    assert screened(cut, _forced(ending="\n\n", reason=None, ending_tokens=2), STOP, max_gen_tokens=16)
    assert not screened(RESP, _forced(ending="\n\n", reason=None, ending_tokens=2), STOP, max_gen_tokens=16)
    # the cap reached within the trailing whitespace: the answer is the response only if the counts add up
    capped = _forced(finish="length", ending="\n\n", ending_tokens=2)
    assert screened(cut, capped, STOP, max_gen_tokens=5)
    assert not screened(cut, capped, STOP, max_gen_tokens=16)
    # the forced tokens already at the cap: the trailing whitespace would never be generated
    assert not screened(cut, _forced(ending="\n\n", reason=None), STOP, max_gen_tokens=3)


def test_a_position_where_the_variant_prefers_another_token_is_not_screened() -> None:
    entries: list[dict[str, Any] | None] = [None, _entry(10), _entry(11), _entry(20), _entry(21, rank=2)]
    entries.append(_entry(22))
    assert not screened(RESP, _forced(entries=entries), STOP, max_gen_tokens=16)
    # a mismatch inside the prompt does not matter: the prompt is not generated
    entries = [None, _entry(10, rank=2), _entry(11), _entry(20), _entry(21), _entry(22)]
    assert screened(RESP, _forced(entries=entries), STOP, max_gen_tokens=16)


def test_near_ties_and_missing_logprobs_are_not_screened() -> None:
    tie: list[dict[str, Any] | None] = [None, _entry(10), _entry(11), _entry(20, lead=1e-4), _entry(21)]
    tie.append(_entry(22))
    assert not screened(RESP, _forced(entries=tie), STOP, max_gen_tokens=16)
    assert screened(RESP, _forced(entries=tie), STOP, max_gen_tokens=16, min_gap=0.0)
    missing = _forced()
    assert not screened(
        RESP, Forced(**{**missing.__dict__, "prompt_logprobs": None}), STOP, max_gen_tokens=16
    )
    short: list[dict[str, Any] | None] = [None, _entry(10), _entry(11), _entry(20), _entry(21)]
    assert not screened(RESP, _forced(entries=short), STOP, max_gen_tokens=16)
    alone: list[dict[str, Any] | None] = [None, _entry(10), _entry(11), _entry(20), _entry(21)]
    alone.append({"22": {"logprob": -0.1, "rank": 1}})  # no runner-up to measure the lead against
    assert not screened(RESP, _forced(entries=alone), STOP, max_gen_tokens=16)


def test_a_tokenization_that_does_not_round_trip_is_not_screened() -> None:
    # the response's first token merged with the prompt's last
    merged = _forced(full_ids=[1, 10, 12, 21, 22])
    assert not screened(RESP, merged, STOP, max_gen_tokens=16)
    assert not screened(RESP, _forced(full_text="<s> Q? 6 ####  6"), STOP, max_gen_tokens=16)


def test_responses_come_from_lm_evals_logged_samples() -> None:
    def sample(doc_id: int, flt: str) -> dict[str, Any]:
        gen = {"until": STOP, "max_gen_toks": 16}
        return {
            "doc_id": doc_id,
            "filter": flt,
            "doc": {"question": f"q{doc_id}", "answer": "#### 1"},
            "arguments": [(f"prompt {doc_id}", gen)],
            "resps": [[f"answer {doc_id}"]],
        }

    samples = [sample(1, "strict-match"), sample(1, "flexible-extract"), sample(0, "strict-match")]
    refs = responses_from_samples(samples, max_gen_tokens=16)
    assert refs.stop == STOP and refs.max_gen_tokens == 16
    assert [(r.doc_id, r.key, r.prompt, r.response) for r in refs.responses] == [
        (0, question_key("q0"), "prompt 0", "answer 0"),
        (1, question_key("q1"), "prompt 1", "answer 1"),
    ]
    with pytest.raises(ValueError, match="not \\(prompt text, settings\\)"):
        responses_from_samples([{**sample(0, "strict-match"), "arguments": [(1, 2)]}], 16)
