from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from quantbench.probe.assemble import build_result, linear_specs
from quantbench.probe.crossover import find_crossover
from quantbench.probe.floors import memory_floor_seconds, weight_bytes
from quantbench.probe.references import (
    H100_LLAMA_31_8B,
    H100_LLAMA_31_8B_FP8_TENSORWISE,
    H200_LLAMA_31_8B,
    H200_LLAMA_31_8B_FP8_TENSORWISE,
    H200_LLAMA_31_8B_VLLM,
    H200_LLAMA_31_8B_VLLM_FP8_TENSORWISE,
    load_reference,
    reference_names,
)
from quantbench.probe.render import render_markdown
from quantbench.probe.result import (
    Bandwidth,
    GpuInfo,
    MatmulPeak,
    MeasuredPrecision,
    MeasuredStep,
    Measurements,
    PrecisionFailure,
    ProbeResult,
    TimingPass,
)
from quantbench.probe.shapes import derive_shape

from .common import (
    H100_MARKDOWN,
    H100_RESULT,
    H200_MARKDOWN,
    H200_RESULT,
    H200_VLLM_MARKDOWN,
    H200_VLLM_RESULT,
    TINY_CONFIG,
    llama_config,
)

NOW = datetime(2026, 11, 23, tzinfo=UTC)


def _pass(ms: float) -> TimingPass:
    return TimingPass(median_ms=ms, p10_ms=ms * 0.99, p90_ms=ms * 1.01, min_ms=ms * 0.98, repeats=20)


def _raw(times: dict[str, list[float]], errors: dict[str, str] | None = None) -> Measurements:
    errors = errors or {}
    batches = [1, 8, 64]
    return Measurements(
        gpu=GpuInfo(
            name="NVIDIA H100 80GB HBM3",
            compute_capability="9.0",
            sm_count=132,
            memory_bytes=85_000_000_000,
            l2_bytes=52_428_800,
            torch_version="2.11.0",
            cuda_version="13.0",
            triton_version="3.6.0",
        ),
        settings={"passes": 2},
        bandwidths=(
            Bandwidth(
                method="triton-read",
                buffer_bytes=2**32,
                bytes_per_run=2**32,
                passes_bytes_per_s=(3e12, 3.2e12),
            ),
            Bandwidth(
                method="torch-copy-read+write",
                buffer_bytes=2**32,
                bytes_per_run=2**33,
                passes_bytes_per_s=(2.9e12,),
            ),
        ),
        matmul_peaks=(MatmulPeak(dtype="bf16", m=8192, n=8192, k=8192, passes_flops_per_s=(8e14, 8e14)),),
        precisions=tuple(
            MeasuredPrecision(
                precision=name,
                kernel=f"{name} kernel",
                check_relative_error=0.002,
                steps=tuple(
                    MeasuredStep(batch_size=b, passes=(_pass(t), _pass(t * 1.02)))
                    for b, t in zip(batches, ts, strict=True)
                ),
            )
            for name, ts in times.items()
            if name not in errors
        ),
        failures=tuple(PrecisionFailure(precision=name, error=e) for name, e in errors.items()),
        wall_seconds=12.5,
    )


def test_build_result_derives_floors_ratios_and_crossovers() -> None:
    shape = derive_shape(TINY_CONFIG)
    raw = _raw({"bf16": [1.0, 1.0, 2.0], "int4": [0.5, 1.5, 6.0]})
    result = build_result(shape, "tiny", raw, NOW)
    assert [p.precision for p in result.precisions] == ["bf16", "int4"]
    assert result.bandwidth.method == "triton-read" and result.bandwidth.bytes_per_s == pytest.approx(3.1e12)
    assert result.bandwidth.spread_pct == pytest.approx(20 / 3)
    int4 = result.precision("int4")
    assert int4.floor_ms == pytest.approx(1000 * weight_bytes(shape, "int4") / 3.1e12)
    assert int4.floor_ms_spec == pytest.approx(1000 * weight_bytes(shape, "int4") / 3.35e12)
    step = int4.step(8)
    assert step.median_ms == pytest.approx(1.5 * 1.01) and step.spread_pct == pytest.approx(2.0)
    assert step.ratio_to_baseline == pytest.approx(1.5 / 1.0)
    assert step.efficiency == pytest.approx(step.floor_ms / step.median_ms)
    crossover = int4.crossover_vs_baseline
    assert crossover is not None and crossover.kind == "stops_winning"
    assert crossover.crossings[0].bracket == (1, 8)
    assert result.baseline.crossover_vs_baseline is None
    assert result.step_ms("bf16", 64) == pytest.approx(2.0 * 1.01)
    with pytest.raises(KeyError):
        result.precision("fp8")


def test_a_precision_slower_at_batch_1_that_wins_under_load_says_so() -> None:
    """FP8 on an H200: 1.07x BF16's step time at batch 1, faster from a few dozen tokens on."""
    shape = derive_shape(TINY_CONFIG)
    result = build_result(shape, "tiny", _raw({"bf16": [1.0, 1.0, 2.0], "fp8": [1.07, 1.02, 1.3]}), NOW)
    crossover = result.precision("fp8").crossover_vs_baseline
    assert crossover is not None and crossover.kind == "starts_winning"
    assert crossover.crossings[0].bracket == (8, 64) and crossover.starts_winning_at is not None
    text = render_markdown(result)
    assert f"faster from ~{crossover.starts_winning_at:.0f}" in text and "never faster" not in text


def test_failed_precision_is_reported_and_baseline_is_required() -> None:
    shape = derive_shape(TINY_CONFIG)
    raw = _raw({"bf16": [1.0, 1.0, 2.0], "fp8": [0.0, 0.0, 0.0]}, errors={"fp8": "RuntimeError: no FP8"})
    result = build_result(shape, "tiny", raw, NOW)
    assert [f.precision for f in result.failures] == ["fp8"] and "no FP8" in result.failures[0].error
    assert "fp8 could not run" in render_markdown(result)
    broken = _raw({"bf16": [1.0, 1.0, 1.0]}, errors={"bf16": "RuntimeError: boom"})
    with pytest.raises(ValueError, match=r"bf16 baseline has no measurements.*boom"):
        build_result(shape, "tiny", broken, NOW)


def test_linear_specs_mark_per_layer_and_head() -> None:
    specs = linear_specs(derive_shape(TINY_CONFIG))
    assert [(s.name, s.per_layer, s.quantized) for s in specs] == [
        ("qkv_proj", True, True),
        ("o_proj", True, True),
        ("gate_up_proj", True, True),
        ("down_proj", True, True),
        ("lm_head", False, False),
    ]


def test_result_round_trip_and_rejects_bad_documents() -> None:
    shape = derive_shape(TINY_CONFIG)
    result = build_result(shape, "tiny", _raw({"bf16": [1.0, 1.0, 2.0], "fp8": [0.8, 0.9, 2.5]}), NOW)
    again = ProbeResult.from_json(result.to_json())
    assert again == result
    data = result.model_dump(mode="json")
    bad = copy.deepcopy(data)
    bad["schema_version"] = 3
    with pytest.raises(ValidationError):
        ProbeResult.model_validate(bad)
    bad = copy.deepcopy(data)
    bad["precisions"][0]["steps"][0]["median_ms"] = -1.0
    with pytest.raises(ValidationError):
        ProbeResult.model_validate(bad)


def test_schema_1_results_still_load() -> None:
    """A result written before crossovers had two directions (an operator upgraded mid-run reads it)."""
    shape = derive_shape(TINY_CONFIG)
    result = build_result(shape, "tiny", _raw({"bf16": [1.0, 1.0, 2.0], "int4": [0.5, 1.5, 6.0]}), NOW)
    data = result.model_dump(mode="json")
    crossing = data["precisions"][1]["crossover_vs_baseline"]["crossings"][0]
    data["schema_version"] = 1
    data["precisions"][1]["crossover_vs_baseline"] = {
        "kind": "crossed",
        "batch_size": crossing["batch_size"],
        "bracket": crossing["bracket"],
    }
    assert ProbeResult.model_validate(data) == result


# The committed references: they must load, round-trip, and agree with the arithmetic above.

REFERENCES = [
    (H100_RESULT, H100_MARKDOWN, "h100-sxm"),
    (H200_RESULT, H200_MARKDOWN, "h200"),
    (H200_VLLM_RESULT, H200_VLLM_MARKDOWN, "h200"),
]


@pytest.mark.parametrize(("path", "markdown", "gpu"), REFERENCES)
def test_reference_round_trips(path: Path, markdown: Path, gpu: str) -> None:
    text = path.read_text()
    result = ProbeResult.from_json(text)
    assert result.to_json() == text
    assert ProbeResult.from_json(result.to_json()) == result


@pytest.mark.parametrize(("path", "markdown", "gpu"), REFERENCES)
def test_reference_is_consistent_with_shapes_floors_and_crossovers(
    path: Path, markdown: Path, gpu: str
) -> None:
    result = ProbeResult.load(path)
    assert result.model == derive_shape(llama_config())
    assert result.gpu.spec is not None and result.gpu.spec.key == gpu
    assert result.batch_sizes == tuple(2**i for i in range(13))
    assert [p.precision for p in result.precisions] == ["bf16", "fp8", "int4"]
    assert not result.failures
    bw = result.bandwidth.bytes_per_s
    assert result.gpu.spec.memory_bandwidth_bytes_per_s is not None
    assert (
        0.75 * result.gpu.spec.memory_bandwidth_bytes_per_s
        < bw
        < result.gpu.spec.memory_bandwidth_bytes_per_s
    )
    base = result.baseline
    for p in result.precisions:
        assert p.check_relative_error < 2e-2
        assert p.weight_bytes == weight_bytes(result.model, p.precision)
        assert p.floor_ms == pytest.approx(1000 * memory_floor_seconds(result.model, p.precision, bw))
        for step in p.steps:
            assert len(step.passes) == 2
            assert step.median_ms > step.floor_ms  # nothing beats the floor
        if p.precision != "bf16":
            expected = find_crossover(
                list(result.batch_sizes),
                [s.median_ms for s in base.steps],
                [s.median_ms for s in p.steps],
            )
            assert p.crossover_vs_baseline == expected
    # The weight-streaming regime: 4-bit reads the fewest bytes and is fastest at batch 1.
    assert result.step_ms("int4", 1) < min(result.step_ms("fp8", 1), result.step_ms("bf16", 1))


@pytest.mark.parametrize(("path", "markdown", "gpu"), REFERENCES)
def test_reference_markdown_is_rendered_from_the_json(path: Path, markdown: Path, gpu: str) -> None:
    assert markdown.read_text() == render_markdown(ProbeResult.load(path))


def test_h200_reference_says_where_fp8_starts_to_win() -> None:
    """Measured on an H200: rowwise FP8 through torch._scaled_mm is slower than BF16 at batch 1 and faster
    from a few dozen tokens on; the table says so instead of "never faster"."""
    result = load_reference(H200_LLAMA_31_8B)
    fp8 = result.precision("fp8")
    crossover = fp8.crossover_vs_baseline
    assert crossover is not None and crossover.kind == "starts_winning"
    assert fp8.kernel.startswith("torch._scaled_mm") and "rowwise" in fp8.kernel
    assert fp8.step(1).ratio_to_baseline is not None and fp8.step(1).ratio_to_baseline > 1
    assert fp8.step(4096).ratio_to_baseline is not None and fp8.step(4096).ratio_to_baseline < 1
    assert crossover.starts_winning_at is not None and 16 < crossover.starts_winning_at < 32
    text = render_markdown(result)
    assert f"faster from ~{crossover.starts_winning_at:.0f}" in text and "never faster" not in text
    int4 = result.precision("int4").crossover_vs_baseline
    assert int4 is not None and int4.kind == "stops_winning"


def test_h200_reference_with_vllms_kernels_says_what_serving_kernels_do() -> None:
    """Measured on an H200 with vLLM 0.26.0's kernels: its CUTLASS FP8 is faster than BF16 at every batch
    size (0.70x at batch 1, where torch._scaled_mm is 1.06x), and Marlin 4-bit, faster than BF16 in the
    weight-streaming regime, stops winning between batch 32 and 64 and is ~1.9x slower at 4096 (tinygemm
    stops at ~5 and is 21x slower): AWQ wins single requests and loses under load because of its kernel's
    arithmetic, not only its bytes."""
    result = load_reference(H200_LLAMA_31_8B_VLLM)
    assert result == ProbeResult.load(H200_VLLM_RESULT)
    fp8, int4 = result.precision("fp8"), result.precision("int4")
    assert fp8.kernel.startswith("vllm cutlass_scaled_mm (vLLM 0.26.0") and "rowwise" in fp8.kernel
    assert int4.kernel.startswith("vllm marlin_gemm (vLLM 0.26.0")
    assert fp8.crossover_vs_baseline is not None and fp8.crossover_vs_baseline.kind == "always_faster"
    assert all(s.ratio_to_baseline is not None and s.ratio_to_baseline < 0.85 for s in fp8.steps)
    assert fp8.step(1).ratio_to_baseline == pytest.approx(0.70, abs=0.01)
    crossover = int4.crossover_vs_baseline
    assert crossover is not None and crossover.kind == "stops_winning"
    assert crossover.stops_winning_at is not None and 32 < crossover.stops_winning_at < 64
    at_4096 = int4.step(4096).ratio_to_baseline
    assert at_4096 is not None and 1.8 < at_4096 < 2.0
    torch_at_1 = load_reference(H200_LLAMA_31_8B).precision("fp8").step(1).ratio_to_baseline
    assert torch_at_1 is not None and torch_at_1 > 1
    text = render_markdown(result)
    assert "faster up to ~62" in text and "always faster (1-4096)" in text


def test_reference_loader_and_fp8_tensorwise_references() -> None:
    assert load_reference() == ProbeResult.load(H100_RESULT)
    assert load_reference(H200_LLAMA_31_8B) == ProbeResult.load(H200_RESULT)
    assert reference_names() == [
        H100_LLAMA_31_8B,
        H100_LLAMA_31_8B_FP8_TENSORWISE,
        H200_LLAMA_31_8B,
        H200_LLAMA_31_8B_FP8_TENSORWISE,
        H200_LLAMA_31_8B_VLLM,
        H200_LLAMA_31_8B_VLLM_FP8_TENSORWISE,
    ]
    for name in (
        H100_LLAMA_31_8B_FP8_TENSORWISE,
        H200_LLAMA_31_8B_FP8_TENSORWISE,
        H200_LLAMA_31_8B_VLLM_FP8_TENSORWISE,
    ):
        tensorwise = load_reference(name)
        assert [p.precision for p in tensorwise.precisions] == ["bf16", "fp8"]
        assert tensorwise.settings["fp8_scaling"] == "tensorwise"
        assert "per-tensor" in tensorwise.precision("fp8").kernel
        fp8 = tensorwise.precision("fp8")
        assert fp8.crossover_vs_baseline == find_crossover(
            list(tensorwise.batch_sizes),
            [s.median_ms for s in tensorwise.baseline.steps],
            [s.median_ms for s in fp8.steps],
        )
    with pytest.raises(KeyError, match="committed: h100-sxm"):
        load_reference("a100.none")
