"""The Argo CD health check (charts/quantbench/files/argocd/health.lua), run by Debian's Lua interpreter on
QuantBenchmark objects the operator wrote (captured from tests/operator/test_recurring_cluster.py with
QUANTBENCH_CAPTURE_DIR=tests/operator/data/argocd), and on states derived from them."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.operator.argocd import health, lua_interpreter, lua_literal

DATA = Path(__file__).parent / "data" / "argocd"

pytestmark = pytest.mark.skipif(
    lua_interpreter() is None, reason="needs a Lua interpreter: apt-get install lua5.4 (.ci/run installs it)"
)


def written(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return doc


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("running", "Progressing"), ("succeeded", "Healthy"), ("regressed", "Degraded"), ("cleared", "Healthy")],
)
def test_objects_the_operator_wrote(name: str, expected: str) -> None:
    state, message = health(written(name))
    assert state == expected
    assert message


def test_regressed_message_names_the_cause() -> None:
    state, message = health(written("regressed"))
    assert state == "Degraded" and message.startswith("regressed: run ")
    assert "image vllm/vllm-openai:v0.11.0 -> vllm/vllm-openai:v0.11.1" in message


def test_a_spec_commit_not_acted_on_yet_is_progressing() -> None:
    obj = written("succeeded")
    obj["metadata"]["generation"] += 1
    assert health(obj) == (
        "Progressing",
        f"spec generation {obj['metadata']['generation']} is not acted on yet",
    )


def test_failed_run_invalid_spec_and_suspend() -> None:
    failed = written("succeeded")
    ready = condition(failed, "Ready")
    ready.update(status="False", reason="RunFailed", message="run r1 failed: no variant succeeded")
    condition(failed, "Degraded").update(
        status="True", reason="JobFailed", message="bf16: JobFailed: job x failed"
    )
    assert health(failed) == ("Degraded", "bf16: JobFailed: job x failed")
    invalid = copy.deepcopy(failed)
    condition(invalid, "Degraded").update(reason="InvalidSpec", message="spec.schedule: schedule must be ...")
    invalid["metadata"]["generation"] += 1
    assert health(invalid)[0] == "Degraded" and health(invalid)[1].startswith("invalid spec: spec.schedule")
    suspended = written("succeeded")
    suspended["status"]["phase"] = "Suspended"
    condition(suspended, "Progressing").update(status="False", reason="Suspended")
    assert health(suspended)[0] == "Suspended"


def test_no_status_yet() -> None:
    obj = written("succeeded")
    del obj["status"]
    assert health(obj) == ("Progressing", "waiting for the QuantBench operator")


def test_lua_literal_quotes_strings() -> None:
    assert (
        lua_literal({"a": 'x"y\\z', "b": [1, None, True]}) == '{["a"] = "x\\"y\\\\z", ["b"] = {1, nil, true}}'
    )
