"""Markdown tables of a ProbeResult (also readable as plain text in a terminal). Pure."""

from __future__ import annotations

from collections.abc import Sequence

from .floors import step_floor_seconds, weight_bytes
from .precisions import BASELINE, WEIGHT_FORMATS, WeightFormatName
from .result import ProbeResult
from .shapes import ModelShape
from .specs import GpuSpec

GB = 1e9
TB = 1e12
TFLOP = 1e12


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _passes(values: Sequence[float], scale: float, digits: int) -> str:
    return " / ".join(f"{v / scale:.{digits}f}" for v in values)


def render_markdown(result: ProbeResult) -> str:
    """Summary, floors and crossovers, then step times per batch size per precision."""
    gpu = result.gpu
    spec = gpu.spec
    bw = result.bandwidth
    lines = [
        f"### Roofline probe: {result.model_name} on {gpu.name}",
        "",
        f"- GPU: {gpu.name} (compute capability {gpu.compute_capability}, {gpu.sm_count} SMs, "
        f"L2 {gpu.l2_bytes / 2**20:.0f} MiB); torch {gpu.torch_version}, CUDA {gpu.cuda_version}",
        f"- Streaming read bandwidth ({bw.method}, {bw.buffer_bytes / 2**30:.0f} GiB buffer): "
        f"**{bw.bytes_per_s / TB:.3f} TB/s** (passes {_passes(bw.passes_bytes_per_s, TB, 3)}, "
        f"spread {bw.spread_pct:.1f}%)"
        + (
            f"; datasheet {spec.memory_bandwidth_bytes_per_s / TB:.2f} TB/s"
            if spec and spec.memory_bandwidth_bytes_per_s
            else ""
        ),
    ]
    for other in result.other_bandwidths:
        lines.append(
            f"- {other.method}: {other.bytes_per_s / TB:.3f} TB/s "
            f"(passes {_passes(other.passes_bytes_per_s, TB, 3)})"
        )
    for peak in result.matmul_peaks:
        lines.append(
            f"- {peak.dtype.upper()} {peak.m}x{peak.n}x{peak.k} matmul: "
            f"{peak.flops_per_s / TFLOP:.0f} TFLOP/s "
            f"(passes {_passes(peak.passes_flops_per_s, TFLOP, 0)})"
        )
    lines += [
        "",
        "Floors (one decode step's linear layers, LM head in BF16) and where each precision is faster than BF16 (crossings interpolated in log2(batch)):",
        "",
    ]
    smallest, largest = min(result.batch_sizes), max(result.batch_sizes)
    floor_rows = []
    for p in result.precisions:
        first = p.steps[0]
        crossover = (
            "baseline"
            if p.crossover_vs_baseline is None
            else p.crossover_vs_baseline.describe(smallest, largest)
        )
        floor_rows.append(
            [
                p.precision,
                f"{p.weight_bytes / GB:.2f}",
                f"{p.floor_ms:.3f}",
                f"{p.floor_ms_spec:.3f}" if p.floor_ms_spec else "-",
                f"{first.median_ms:.3f}",
                f"{first.efficiency * 100:.0f}%",
                crossover,
                p.kernel,
            ]
        )
    lines += _table(
        [
            "precision",
            "weights GB",
            "floor ms (measured BW)",
            "floor ms (datasheet BW)",
            f"step ms @ batch {result.precisions[0].steps[0].batch_size}",
            "floor / step",
            "batches where faster than bf16",
            "kernel",
        ],
        floor_rows,
    )
    lines += [
        "",
        "Measured step time per batch size, ms (median of pass medians; spread between the two passes):",
        "",
    ]
    names = [p.precision for p in result.precisions]
    header = ["batch", *(f"{n} ms" for n in names), *(f"{n}/{BASELINE}" for n in names if n != BASELINE)]
    rows = []
    for batch in result.batch_sizes:
        row = [str(batch)]
        for p in result.precisions:
            s = p.step(batch)
            row.append(f"{s.median_ms:.3f} (±{s.spread_pct / 2:.1f}%)")
        for p in result.precisions:
            if p.precision != BASELINE:
                ratio = p.step(batch).ratio_to_baseline
                row.append(f"{ratio:.2f}" if ratio else "-")
        rows.append(row)
    lines += _table(header, rows)
    for failure in result.failures:
        lines += ["", f"- {failure.precision} could not run: {failure.error}"]
    for note in result.notes:
        lines += ["", f"- {note}"]
    return "\n".join(lines) + "\n"


def render_floors(shape: ModelShape, model_name: str, spec: GpuSpec, batch_sizes: Sequence[int]) -> str:
    """Datasheet-only floors (no GPU needed): weight bytes and roofline floor per batch size."""
    precisions: list[WeightFormatName] = [p for p in WEIGHT_FORMATS if p != "fp8" or spec.supports_fp8]
    bandwidth, bf16_flops = spec.figures()
    lines = [
        f"### Datasheet floors: {model_name} on {spec.name}",
        "",
        f"Bandwidth {bandwidth / TB:.2f} TB/s, "
        f"BF16 {bf16_flops / TFLOP:.0f} TFLOP/s dense"
        + (f", FP8 {spec.fp8_dense_flops / TFLOP:.0f} TFLOP/s dense" if spec.fp8_dense_flops else "")
        + ". Floor = max(bytes / bandwidth, FLOPs / peak), ms per decode step (linear layers).",
        "",
    ]
    header = ["batch", *(f"{p} ms" for p in precisions)]
    rows = [["weights GB", *(f"{weight_bytes(shape, p) / GB:.2f}" for p in precisions)]]
    for batch in batch_sizes:
        rows.append([str(batch), *(f"{_spec_floor_ms(shape, p, batch, spec):.3f}" for p in precisions)])
    lines += _table(header, rows)
    return "\n".join(lines) + "\n"


def _spec_floor_ms(shape: ModelShape, precision: WeightFormatName, batch: int, spec: GpuSpec) -> float:
    bandwidth, bf16_flops = spec.figures()
    return 1000.0 * step_floor_seconds(
        shape,
        precision,
        batch,
        bandwidth_bytes_per_s=bandwidth,
        bf16_flops=bf16_flops,
        fp8_flops=spec.fp8_dense_flops,
    )
