"""The fidelity reference must fit its Job's results ConfigMap on Kubernetes: specs that cannot are refused
before anything runs, with the limit and the figures; `quantbench run` has no such limit. A sequential
baseline's responses get as many ConfigMaps as their bound needs, or none and the reason."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import yaml

from quantbench.api.v1alpha1 import QuantBenchmarkSpec
from quantbench.commands import validate
from quantbench.driver import spec_problem
from quantbench.sizes import (
    MAX_RESPONSE_PARTS,
    REFERENCE_BUDGET,
    baseline_questions,
    configmap_problems,
    most_prompts,
    reference_bytes,
    responses_bytes,
    responses_parts,
    unscreened,
)
from quantbench_loadgen.publish import PART_BYTES
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


def test_a_sequential_baselines_responses_take_as_many_configmaps_as_their_bound_needs() -> None:
    """Measured: GSM8K's whole test split (1,319 8-shot prompts and SmolLM2-135M's responses) is 6.4 MB as
    JSON and 2,067,831 bytes gzip-compressed: it needs 3 ConfigMaps, and the bound covers it."""
    two = [{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}]
    whole = factories.spec(
        variants=two, accuracy={"limit": 1319, "margin": 1, "sequential": {"discordance": 0.05}}
    )
    assert whole.accuracy is not None and baseline_questions(whole.accuracy) == 1319
    assert responses_bytes(whole.accuracy) >= 2_067_831
    assert responses_parts(whole) == math.ceil(responses_bytes(whole.accuracy) / PART_BYTES) >= 3
    assert unscreened(whole) is None
    # A few questions: one ConfigMap. One variant, or no sequential design: nothing to screen, none made.
    small = factories.spec(variants=two, accuracy={"limit": 20, "sequential": {"discordance": 0.05}})
    assert responses_parts(small) == 1
    assert responses_parts(factories.spec(variants=two[:1], accuracy={"limit": 20, "sequential": {}})) == 0
    assert responses_parts(factories.spec(variants=two, accuracy={"limit": 20})) == 0
    # Screening turned off: none made, and nothing to say about it.
    off = factories.spec(variants=two, accuracy={"limit": 20, "sequential": {"screen": False}})
    assert responses_parts(off) == 0 and unscreened(off) is None
    # Too large even in MAX_RESPONSE_PARTS ConfigMaps: none made, the reason with the figures; not refused.
    huge = factories.spec(
        variants=two,
        accuracy={"limit": 5000, "margin": 0.5, "maxGenTokens": 4096, "sequential": {"discordance": 0.2}},
    )
    assert responses_parts(huge) == 0 and configmap_problems(huge) == []
    why = unscreened(huge)
    assert why is not None and f"(at most {MAX_RESPONSE_PARTS} are made)" in why and "51.1 MB" in why


def test_quantbench_validate_accepts_a_spec_too_large_to_screen_on_kubernetes_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two = [{"name": "bf16", "precision": "bf16"}, {"name": "fp8", "precision": "fp8"}]
    accuracy = {"limit": 5000, "margin": 0.5, "maxGenTokens": 4096, "sequential": {"discordance": 0.2}}
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(factories.benchmark("huge", variants=two, accuracy=accuracy)))
    assert validate.run(validate_parser().parse_args(["validate", str(path)])) == 0
    out = capsys.readouterr()
    assert "huge ok" in out.out
    assert "on Kubernetes no question would be screened" in out.err and "51.1 MB" in out.err
    # Within the bound: nothing said.
    accuracy["limit"] = 100
    path.write_text(yaml.safe_dump(factories.benchmark("huge", variants=two, accuracy=accuracy)))
    assert validate.run(validate_parser().parse_args(["validate", str(path)])) == 0
    assert capsys.readouterr().err == ""
