"""`quantbench validate` and the pydantic models: good specs pass, every bad spec names its field and fix."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from quantbench.api import v1alpha1 as api
from quantbench.api.validation import SpecError, benchmark_from_dict, load_benchmarks
from quantbench.cli import main
from quantbench_loadgen.schema import duration_seconds, rate_label
from tests.api.bad_specs import BAD_SPECS, BadSpec, good_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_table_is_large_enough() -> None:
    assert len(BAD_SPECS) >= 25
    assert len({b.id for b in BAD_SPECS}) == len(BAD_SPECS)


def test_good_spec_is_good() -> None:
    bench = benchmark_from_dict(good_spec(), "good")
    assert bench.spec.baseline == "bf16"
    serving = bench.spec.workloads[2]
    assert serving.type == "serving"
    assert serving.request_rates[2] == math.inf
    assert [rate_label(r) for r in serving.request_rates] == ["1", "4", "inf"]


@pytest.mark.parametrize("bad", BAD_SPECS, ids=lambda b: b.id)
def test_bad_spec_names_field_and_fix(bad: BadSpec) -> None:
    with pytest.raises(SpecError) as info:
        benchmark_from_dict(bad.doc(), bad.id)
    problems = info.value.problems
    matching = [p for p in problems if p.startswith(bad.field) or f" {bad.field}" in p or bad.field in p]
    assert matching, f"no problem names {bad.field!r}: {problems}"
    text = " ".join(matching).lower()
    for word in bad.words:
        assert word.lower() in text, f"{word!r} missing from {matching}"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    assert load_benchmarks(path)


def test_cli_validate_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", *map(str, EXAMPLES)]) == 0
    assert "llama31-8b ok" in capsys.readouterr().out


def test_cli_validate_rejects_with_field_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    docs = [b.doc() for b in BAD_SPECS[:5]]
    bad.write_text(yaml.safe_dump_all(docs))
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml: invalid" in err
    assert "document 3: spec.baseline: baseline must name one of spec.variants" in err


def test_typo_suggests_the_field() -> None:
    doc = good_spec()
    doc["spec"]["variants"][0]["precison"] = "bf16"
    with pytest.raises(SpecError) as info:
        benchmark_from_dict(doc, "typo")
    assert any("did you mean 'precision'" in p for p in info.value.problems)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "holds no QuantBenchmark"),
        ("spec: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "expected a QuantBenchmark mapping"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=problem):
        load_benchmarks(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the file"):
        load_benchmarks(tmp_path / "nope.yaml")


def test_fractional_rates_must_be_strings() -> None:
    doc = good_spec()
    doc["spec"]["workloads"][2]["requestRates"] = [0.5]
    with pytest.raises(SpecError, match="as a string"):
        benchmark_from_dict(doc, "frac")
    doc["spec"]["workloads"][2]["requestRates"] = ["0.5", 2]
    bench = benchmark_from_dict(doc, "frac")
    assert bench.spec.workloads[2].to_wire()["requestRates"] == [0.5, 2]


def test_placement_override_merges_with_default() -> None:
    doc = good_spec()
    doc["spec"]["variants"][1]["placement"] = {"nodePool": "h200", "gpus": 2}
    spec = benchmark_from_dict(doc, "p").spec
    merged = spec.placement_for(spec.variant("fp8"))
    assert (merged.node_pool, merged.gpus, merged.gpu_resource) == ("h200", 2, "nvidia.com/gpu")
    assert spec.placement_for(spec.variant("bf16")).node_pool == "h100"


def test_durations() -> None:
    assert duration_seconds("20m") == 1200
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("250ms") == 0.25
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds("20 minutes")


def test_defaults_fill_in() -> None:
    spec = api.QuantBenchmarkSpec.model_validate(
        {"model": "m", "baseline": "a", "variants": [{"name": "a", "precision": "bf16"}], "accuracy": {}}
    )
    assert spec.server.image == api.DEFAULT_SERVER_IMAGE
    assert spec.placement.gpus == 1
    assert spec.accuracy is not None and spec.accuracy.num_fewshot == 8


@pytest.mark.parametrize(
    ("variants", "workloads", "probe", "clash"),
    [
        # variant a with workload b-accuracy, variant a-wl-b with the accuracy task: a-wl-b-accuracy twice
        (["a", "a-wl-b"], ["b-accuracy"], False, "a-wl-b-accuracy"),
        # variant a with workload x-server, variant a-wl-x with its server
        (["a", "a-wl-x"], ["x-server"], False, "a-wl-x-server"),
        # distinct names pass
        (["a", "b"], ["accuracy-x"], True, None),
    ],
)
def test_child_names_never_collide(
    variants: list[str], workloads: list[str], probe: bool, clash: str | None
) -> None:
    doc = good_spec()
    doc["spec"]["variants"] = [{"name": v, "precision": "bf16"} for v in variants]
    doc["spec"]["baseline"] = variants[0]
    doc["spec"]["workloads"] = [{"name": w, "type": "latency"} for w in workloads]
    doc["spec"]["probe"] = probe
    if clash is None:
        assert benchmark_from_dict(doc, "ok")
        return
    with pytest.raises(SpecError) as info:
        benchmark_from_dict(doc, "clash")
    assert any("names collide" in p and clash in p for p in info.value.problems), info.value.problems


def test_a_variant_named_like_a_pools_probe_is_rejected() -> None:
    doc = good_spec()
    # pool "x-server" gets the probe child probe-x-server; variant probe-x's server is probe-x-server too
    doc["spec"]["variants"] = [{"name": "probe-x", "precision": "bf16"}]
    doc["spec"]["baseline"] = "probe-x"
    doc["spec"]["placement"] = {"nodePool": "x-server"}
    doc["spec"]["probe"] = True
    with pytest.raises(SpecError, match="roofline probe of pool x-server"):
        benchmark_from_dict(doc, "clash")
