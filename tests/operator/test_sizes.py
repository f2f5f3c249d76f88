"""The fidelity reference must fit its Job's results ConfigMap on Kubernetes: specs that cannot are refused
before anything runs, with the limit and the figures; `quantbench run` has no such limit."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from quantbench.api.v1alpha1 import QuantBenchmarkSpec
from quantbench.commands import validate
from quantbench.driver import spec_problem
from quantbench.sizes import REFERENCE_BUDGET, configmap_problems, most_prompts, reference_bytes
from quantbench_loadgen.specs import FidelitySpec
from tests.operator import factories

LARGEST = {"prompts": 1000, "maxTokens": 1024, "topK": 20}


def fidelity_spec(fidelity: dict[str, int]) -> QuantBenchmarkSpec:
    return factories.spec(accuracy={"limit": 20, "fidelity": fidelity})


def test_the_default_fidelity_fits_and_the_largest_is_refused_with_the_limit_and_the_figures() -> None:
    assert configmap_problems(fidelity_spec({})) == []
    assert configmap_problems(factories.spec()) == []  # no fidelity, nothing to check
    (problem,) = configmap_problems(fidelity_spec(LARGEST))
    fit = most_prompts(FidelitySpec.model_validate(LARGEST))
    for words in ("spec.accuracy.fidelity", "1000 prompts x 1024 maxTokens x topK 20", "1 MiB", "MB gzip"):
        assert words in problem
    assert f"at most {fit} prompts fit" in problem and "quantbench run" in problem


def test_the_most_prompts_said_to_fit_do_and_one_more_does_not() -> None:
    for max_tokens, top_k in ((1024, 20), (256, 5), (64, 1)):
        fid = FidelitySpec(prompts=1, max_tokens=max_tokens, top_k=top_k)
        fit = most_prompts(fid)
        assert fit >= 1
        assert reference_bytes(fid.model_copy(update={"prompts": fit})) <= REFERENCE_BUDGET
        assert reference_bytes(fid.model_copy(update={"prompts": fit + 1})) > REFERENCE_BUDGET


def test_the_operator_refuses_it_as_an_invalid_spec() -> None:
    body = factories.benchmark("big", accuracy={"limit": 20, "fidelity": LARGEST})
    body["metadata"]["namespace"] = "team-a"
    problem = spec_problem(body)
    assert problem is not None and "spec.accuracy.fidelity" in problem and "1 MiB" in problem
    small = factories.benchmark("small", accuracy={"limit": 20, "fidelity": {}})
    small["metadata"]["namespace"] = "team-a"
    assert spec_problem(small) is None


def test_quantbench_validate_accepts_it_for_a_local_run_and_says_the_operator_would_refuse_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(factories.benchmark("big", accuracy={"limit": 20, "fidelity": LARGEST})))
    parser = validate_parser()
    assert validate.run(parser.parse_args(["validate", str(path)])) == 0
    out = capsys.readouterr()
    assert "big ok" in out.out
    assert "the operator would refuse it" in out.err and "spec.accuracy.fidelity" in out.err


def validate_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    validate.register(parser.add_subparsers())
    return parser
