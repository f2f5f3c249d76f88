"""Refused children (quantbench.rejection): the API's message, and whose object a 409 found."""

from __future__ import annotations

import json

from quantbench.rejection import api_message, is_own, name_taken, refusal


def test_the_api_message_is_read_from_the_status_body() -> None:
    body = json.dumps(
        {"kind": "Status", "message": 'Deployment.apps "x" is invalid: spec.template: Required'}
    )
    failure = refusal({"kind": "Deployment", "metadata": {"name": "x"}}, 422, body)
    assert failure.reason == "Rejected"
    assert failure.message.startswith(
        "the API server refused to create Deployment x (HTTP 422): Deployment.apps"
    )
    assert api_message("plain text") == "plain text" and len(api_message("y" * 5000)) == 600


def _obj(uid: str, variant: str, step: str) -> dict[str, object]:
    return {
        "kind": "Job",
        "metadata": {
            "name": "b-r1-a-wl-b-accuracy",
            "ownerReferences": [{"kind": "QuantBenchmark", "name": "b", "uid": uid}],
            "labels": {
                "quantbench.dev/run": "r1",
                "quantbench.dev/variant": variant,
                "quantbench.dev/step": step,
            },
        },
    }


def test_a_409_is_ours_only_with_our_owner_and_labels() -> None:
    mine = _obj("u1", "a", "wl-b-accuracy")
    assert is_own(mine, _obj("u1", "a", "wl-b-accuracy"))
    assert not is_own(mine, _obj("u1", "a-wl-b", "accuracy"))  # another variant's child with that name
    assert not is_own(mine, _obj("u2", "a", "wl-b-accuracy"))  # another benchmark's
    assert "owned by QuantBenchmark/b" in name_taken(mine, _obj("u2", "a", "x")).message
