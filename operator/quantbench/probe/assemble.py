"""GPU measurements + model shape + datasheet -> ``ProbeResult`` (pure).

Floors, efficiencies, ratios to the baseline and crossovers are derived here, not on the GPU, so the
arithmetic is unit-tested on a CPU and the same for every producer of measurements.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime

from .crossover import find_crossover
from .floors import memory_floor_seconds, step_floor_seconds, weight_bytes
from .measure import LinearSpec
from .precisions import BASELINE, WEIGHT_FORMATS, WeightFormatName
from .result import (
    Bandwidth,
    MeasuredStep,
    Measurements,
    PrecisionResult,
    ProbeResult,
    StepTiming,
    _spread_pct,
)
from .shapes import ModelShape
from .specs import match_gpu_spec

FLOOR_BANDWIDTH_PREFERENCE = ("triton-read", "torch-sum-read")


def linear_specs(shape: ModelShape) -> tuple[LinearSpec, ...]:
    """The model's matrices as plain data for the measurement module."""
    return tuple(
        LinearSpec(
            name=lin.name,
            in_features=lin.in_features,
            out_features=lin.out_features,
            per_layer=lin.count == shape.num_hidden_layers and lin.name != "lm_head",
            quantized=lin.quantized,
        )
        for lin in shape.linears
    )


def _floor_bandwidth(bandwidths: Sequence[Bandwidth]) -> Bandwidth:
    for method in FLOOR_BANDWIDTH_PREFERENCE:
        for bw in bandwidths:
            if bw.method == method:
                return bw
    raise ValueError("measurements hold no streaming-read bandwidth")


def _step_timings(
    shape: ModelShape,
    precision: WeightFormatName,
    measured: Sequence[MeasuredStep],
    *,
    bandwidth: float,
    bf16_flops: float,
    fp8_flops: float | None,
    baseline_ms: Mapping[int, float] | None,
) -> tuple[StepTiming, ...]:
    steps: list[StepTiming] = []
    for raw in measured:
        passes = raw.passes
        medians = [p.median_ms for p in passes]
        median = statistics.median(medians)
        batch = raw.batch_size
        floor = 1000.0 * step_floor_seconds(
            shape,
            precision,
            batch,
            bandwidth_bytes_per_s=bandwidth,
            bf16_flops=bf16_flops,
            fp8_flops=fp8_flops,
        )
        ratio = None
        if baseline_ms is not None and batch in baseline_ms:
            ratio = median / baseline_ms[batch]
        steps.append(
            StepTiming(
                batch_size=batch,
                median_ms=median,
                passes=passes,
                spread_pct=_spread_pct(medians),
                floor_ms=floor,
                efficiency=floor / median,
                ratio_to_baseline=ratio,
            )
        )
    return tuple(steps)


def build_result(
    shape: ModelShape, model_name: str, measured: Measurements, created_at: datetime
) -> ProbeResult:
    """Derive every figure of the ProbeResult from the measurements (pure)."""
    spec = match_gpu_spec(measured.gpu.name)
    gpu = measured.gpu.model_copy(update={"spec": spec})
    floor_bw = _floor_bandwidth(measured.bandwidths)
    peaks = measured.matmul_peaks
    bf16_peak = next((p.flops_per_s for p in peaks if p.dtype == "bf16"), None)
    fp8_peak = next((p.flops_per_s for p in peaks if p.dtype == "fp8"), None)
    if bf16_peak is None:
        if spec is None:
            raise ValueError("measurements hold no BF16 matmul peak and the GPU is not in the spec table")
        bf16_peak = spec.figures()[1]
    if fp8_peak is None and spec is not None:
        fp8_peak = spec.fp8_dense_flops

    ok = {p.precision: p for p in measured.precisions}
    if BASELINE not in ok:
        failure = next((f.error for f in measured.failures if f.precision == BASELINE), "not measured")
        raise ValueError(f"the {BASELINE} baseline has no measurements ({failure})")

    results: list[PrecisionResult] = []
    baseline_ms: dict[int, float] | None = None
    for name in [BASELINE, *(n for n in ok if n != BASELINE)]:
        entry = ok[name]
        steps = _step_timings(
            shape,
            name,
            entry.steps,
            bandwidth=floor_bw.bytes_per_s,
            bf16_flops=bf16_peak,
            fp8_flops=fp8_peak,
            baseline_ms=baseline_ms,
        )
        if name == BASELINE:
            baseline_ms = {s.batch_size: s.median_ms for s in steps}
            crossover = None
        else:
            assert baseline_ms is not None
            common = [s for s in steps if s.batch_size in baseline_ms]
            crossover = find_crossover(
                [s.batch_size for s in common],
                [baseline_ms[s.batch_size] for s in common],
                [s.median_ms for s in common],
            )
        wbytes = weight_bytes(shape, name)
        results.append(
            PrecisionResult(
                precision=name,
                kernel=entry.kernel,
                activation_quant=entry.activation_quant,
                weight_format=WEIGHT_FORMATS[name].description,
                weight_bytes=wbytes,
                floor_ms=1000.0 * memory_floor_seconds(shape, name, floor_bw.bytes_per_s),
                floor_ms_spec=(
                    1000.0 * memory_floor_seconds(shape, name, spec.figures()[0]) if spec else None
                ),
                check_relative_error=entry.check_relative_error,
                steps=steps,
                crossover_vs_baseline=crossover,
            )
        )
    batch_sizes = tuple(s.batch_size for s in results[0].steps)
    return ProbeResult(
        created_at=created_at,
        model_name=model_name,
        model=shape,
        gpu=gpu,
        settings=measured.settings,
        batch_sizes=batch_sizes,
        bandwidth=floor_bw,
        other_bandwidths=tuple(b for b in measured.bandwidths if b is not floor_bw),
        matmul_peaks=peaks,
        precisions=tuple(results),
        failures=measured.failures,
        notes=measured.notes,
        wall_seconds=measured.wall_seconds,
    )
