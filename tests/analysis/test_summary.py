"""The summary and verdicts for hand-computed result sets, read back from a real results folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quantbench.analysis.run_results import (
    ResultsError,
    RunResults,
    write_accuracy_result,
    write_probe_result,
)
from quantbench.analysis.summary import build_summary, crossover_source
from quantbench.api.summary import QualityVerdict, RunSummary, VariantSummary, Verdict
from quantbench.probe.references import H200_LLAMA_31_8B, load_reference
from quantbench.probe.specs import match_gpu_spec
from quantbench.report.words import verdict_sentence
from quantbench_loadgen.accuracy.results import SequentialRecord
from tests.analysis.builders import (
    DEMO_PRICES,
    VariantData,
    accuracy_result,
    demo_variants,
    paired,
    probe_result,
    write_run,
)


@pytest.fixture
def summary(tmp_path: Path) -> RunSummary:
    return build_summary(RunResults.load(write_run(tmp_path, demo_variants(), "bf16", prices=DEMO_PRICES)))


def row(summary: RunSummary, name: str) -> VariantSummary:
    return next(v for v in summary.variants if v.variant == name)


def test_verdicts(summary: RunSummary) -> None:
    verdicts = {v.variant: v.verdict for v in summary.variants}
    assert verdicts == {
        "bf16": Verdict.BASELINE,
        "fp8": Verdict.FREE_SPEEDUP,
        "awq-int4": Verdict.LATENCY_WIN_LOSES_UNDER_LOAD,
        "gptq-int4": Verdict.SPEEDUP_BUT_INFERIOR,
        "int8": Verdict.MEMORY_WIN_ONLY,
        "awq-legacy": Verdict.SLOW_KERNEL,
        "fp16": Verdict.FAILED,
    }
    assert summary.best == "fp8"


def test_ratios_and_crossover(summary: RunSummary) -> None:
    fp8, awq = row(summary, "fp8"), row(summary, "awq-int4")
    assert fp8.latency_ratio_to_baseline == pytest.approx(0.6)
    assert [p.ratio_to_baseline for p in fp8.throughput] == pytest.approx([1.66, 1.5, 1.2])
    assert fp8.crossover_batch_size is None
    assert fp8.weights_ratio_to_baseline == pytest.approx(8.5 / 15)
    # awq: 1.2x at bs 16, 2000/3000 at bs 64 -> ratio reaches 1 at log2 = 4 + 0.2 / (1.2 - 2/3) * 2 = 4.75
    assert awq.crossover_batch_size == pytest.approx(2**4.75)
    assert any("~27" in e for e in awq.evidence)
    inf = next(p for p in awq.serving if p.request_rate == "inf")
    assert inf.ttft_ratio_to_baseline == pytest.approx(1500 / 900)
    assert inf.throughput_ratio_to_baseline == pytest.approx(1900 / 2800)


def test_accuracy_paired_statistics(summary: RunSummary) -> None:
    base, fp8, gptq = row(summary, "bf16"), row(summary, "fp8"), row(summary, "gptq-int4")
    assert base.accuracy is not None and base.accuracy.accuracy == pytest.approx(0.8)
    assert base.accuracy.interval95.low == pytest.approx(0.7112, abs=1e-4)  # Wilson, 80/100
    assert base.accuracy.interval95.high == pytest.approx(0.8666, abs=1e-4)
    assert fp8.accuracy is not None and gptq.accuracy is not None
    assert fp8.accuracy.delta_to_baseline == pytest.approx(0.0)
    assert (fp8.accuracy.baseline_only_correct, fp8.accuracy.variant_only_correct) == (2, 2)
    assert fp8.accuracy.paired_p_value == pytest.approx(1.0)
    assert (
        fp8.accuracy.minimum_detectable_delta is not None
        and 0.04 < fp8.accuracy.minimum_detectable_delta < 0.1
    )
    # Non-inferiority at the spec's 5-point margin.
    assert fp8.accuracy.margin == pytest.approx(0.05)
    assert fp8.accuracy.quality == QualityVerdict.NON_INFERIOR
    assert fp8.accuracy.delta_bounds is not None and fp8.accuracy.delta_bounds.low > -0.05
    assert any("non-inferior at a 5-point margin" in e for e in fp8.evidence)
    assert gptq.accuracy.delta_to_baseline == pytest.approx(-0.14)
    assert gptq.accuracy.paired_p_value == pytest.approx(2 * 17 / 2**16)
    assert gptq.accuracy.quality == QualityVerdict.INFERIOR
    assert any("15 lost, 1 gained" in e for e in gptq.evidence)
    assert any("inferior at a 5-point margin" in e for e in gptq.evidence)


def test_an_undecided_accuracy_says_how_many_questions_would_settle_it(tmp_path: Path) -> None:
    base, var = paired(100, 80, lost=4, gained=2)
    variants = [
        VariantData("bf16", "bf16", 10.0, {1: 100.0, 8: 700.0}, weights_gib=15.0, correct=base),
        VariantData("fp8", "fp8", 6.0, {1: 160.0, 8: 1100.0}, weights_gib=8.0, correct=var),
    ]
    s = build_summary(RunResults.load(write_run(tmp_path, variants, "bf16")))
    fp8 = row(s, "fp8")
    assert fp8.verdict == Verdict.SPEEDUP_QUALITY_UNDECIDED
    acc = fp8.accuracy
    assert acc is not None and acc.quality == QualityVerdict.UNDECIDED
    assert acc.questions_needed is not None and acc.questions_needed > 100
    assert acc.questions_needed_sequential is not None
    assert acc.questions_needed_sequential < acc.questions_needed
    assert acc.power_at_margin is not None and acc.power_at_margin < 0.8
    assert any("undecided at a 5-point margin" in e and "questions settle it" in e for e in fp8.evidence)


def test_bandwidth_floor_uses_the_gpu_table(summary: RunSummary) -> None:
    assert summary.bandwidth_source == "datasheet: H100 SXM5 80GB"
    base = row(summary, "bf16")
    floor = 15 * 2**30 / 3.35e12 * 1000  # 4.81 ms
    assert base.bandwidth_floor_ms_per_token == pytest.approx(floor)
    assert base.bandwidth_efficiency == pytest.approx(floor / 10.0)


def test_failed_variant_keeps_its_reason(summary: RunSummary) -> None:
    fp16 = row(summary, "fp16")
    assert fp16.phase == "Failed"
    assert fp16.evidence[0] == "OutOfMemory"
    assert "lower maxModelLen" in fp16.evidence[1]


def test_summary_fits_the_status_schema(summary: RunSummary) -> None:
    wire = summary.to_wire()
    assert RunSummary.model_validate(json.loads(json.dumps(wire))) == summary
    assert len(json.dumps(wire)) < 64_000  # stays small enough for a CR status


def test_no_drop_and_no_speedup_is_no_significant_difference(tmp_path: Path) -> None:
    base, var = paired(100, 70, lost=2, gained=2)
    variants = [
        VariantData("bf16", "bf16", 10.0, {1: 100.0, 8: 700.0}, weights_gib=15.0, correct=base),
        VariantData("fp16", "fp16", 10.1, {1: 99.0, 8: 705.0}, weights_gib=15.0, correct=var),
    ]
    s = build_summary(RunResults.load(write_run(tmp_path, variants, "bf16")))
    assert row(s, "fp16").verdict == Verdict.NO_SIGNIFICANT_DIFFERENCE
    assert s.best == "bf16"


def test_speedup_without_accuracy_is_not_called_free(tmp_path: Path) -> None:
    variants = [
        VariantData("bf16", "bf16", 10.0, {1: 100.0}, weights_gib=15.0),
        VariantData("fp8", "fp8", 6.0, {1: 160.0}, weights_gib=8.0),
    ]
    s = build_summary(RunResults.load(write_run(tmp_path, variants, "bf16", gpu=None)))
    fp8 = row(s, "fp8")
    assert fp8.verdict == Verdict.SPEEDUP_QUALITY_UNTESTED
    assert "accuracy not measured" in fp8.evidence
    assert fp8.bandwidth_efficiency is None and s.bandwidth_source is None


def test_slower_variant(tmp_path: Path) -> None:
    variants = [
        VariantData("bf16", "bf16", 10.0, {1: 100.0, 16: 1000.0}, weights_gib=15.0),
        VariantData("awq", "awq-int4", 12.0, {1: 83.0, 16: 700.0}, weights_gib=14.0),
    ]
    s = build_summary(RunResults.load(write_run(tmp_path, variants, "bf16")))
    assert row(s, "awq").verdict == Verdict.SLOWER


def test_unsupported_variant(tmp_path: Path) -> None:
    variants = [
        VariantData("bf16", "bf16", 10.0, weights_gib=15.0),
        VariantData(
            "fp8",
            "fp8",
            phase="Unsupported",
            reason="UnsupportedPrecision",
            message="fp8 needs compute capability 8.9 or newer; this node has an A100 (8.0)",
        ),
    ]
    s = build_summary(RunResults.load(write_run(tmp_path, variants, "bf16")))
    assert row(s, "fp8").verdict == Verdict.UNSUPPORTED
    assert "compute capability" in row(s, "fp8").evidence[1]


def test_results_errors_name_the_file_and_field(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match=r"run\.json: missing"):
        RunResults.load(tmp_path)
    write_run(tmp_path, demo_variants()[:2], "bf16")
    bad = tmp_path / "fp8" / "server.json"
    bad.write_text(json.dumps({"phase": "Exploded"}))
    with pytest.raises(ResultsError, match=r"fp8/server.json: not a valid ServerInfo: phase"):
        RunResults.load(tmp_path)


def test_probe_bandwidth_replaces_the_datasheet(tmp_path: Path) -> None:
    from quantbench.analysis.run_results import write_probe_result
    from quantbench.probe.references import load_reference

    probe = load_reference()
    write_run(tmp_path, demo_variants()[:2], "bf16", gpu=None)
    write_probe_result(tmp_path, probe)
    s = build_summary(RunResults.load(tmp_path))
    assert s.memory_bandwidth_bytes_per_s == pytest.approx(probe.bandwidth.bytes_per_s)
    assert s.bandwidth_source == f"probe: {probe.bandwidth.method}"
    assert s.gpu == probe.gpu.name
    base = row(s, "bf16")
    assert base.bandwidth_efficiency == pytest.approx(15 * 2**30 / probe.bandwidth.bytes_per_s * 1000 / 10.0)


def test_failed_requests_and_early_stops_are_noted(tmp_path: Path) -> None:
    from quantbench.analysis.run_results import write_loadgen_result
    from tests.analysis.builders import throughput_result

    write_run(tmp_path, demo_variants()[:2], "bf16")
    partial = throughput_result({1: 160.0}).model_copy(
        update={"total_failed": 3, "complete": False, "notes": ["server unreachable after 12 s"]}
    )
    write_loadgen_result(tmp_path, "fp8", partial)
    s = build_summary(RunResults.load(tmp_path))
    assert "fp8/throughput: 3 measured requests failed" in s.notes
    assert any("stopped early" in n for n in s.notes)
    assert "fp8/throughput: server unreachable after 12 s" in s.notes


def test_crossover_source_from_the_h100_probe_reference() -> None:
    """The committed H100 probe: tinygemm INT4 falls behind BF16 at batch ~9; FP8 never does up to 4096."""
    probe = load_reference()
    kernel = crossover_source("awq-int4", "awq_marlin", 12.0, probe)
    assert kernel is not None and kernel.startswith("the crossover comes from the kernel")
    assert "batch ~9" in kernel and "the server ran awq_marlin" in kernel
    far = crossover_source("awq-int4", "awq", 64.0, probe)
    assert far is not None and "not ~64: the server changes where the variant loses" in far
    server = crossover_source("fp8", "fp8", 32.0, probe)
    assert server is not None and server.startswith("the crossover comes from the server")
    assert "up to batch 4096" in server
    assert crossover_source("bf16", None, 8.0, probe) is None
    assert crossover_source("awq-int4", "awq_marlin", 12.0, None) is None


def test_crossover_source_from_the_h200_probe_reference() -> None:
    """The committed H200 probe: rowwise FP8 is slower than BF16 at batch 1 and faster from ~24 on, so a
    server whose FP8 throughput falls behind BF16 under load owes that to the server, not the kernel."""
    server = crossover_source("fp8", "fp8", 512.0, load_reference(H200_LLAMA_31_8B))
    assert server is not None and server.startswith("the crossover comes from the server")
    assert "is faster than BF16 from batch ~24 up to batch 4096" in server


def test_a_variant_slower_at_batch_1_that_wins_under_load(tmp_path: Path) -> None:
    """FP8 on an H200 as the probe measured it: the summary says where its throughput rises above BF16's."""
    base, variant = paired(100, 80, lost=1, gained=1)
    variants = [
        VariantData("bf16", "bf16", 10.0, {1: 100.0, 16: 1000.0, 64: 3000.0}, weights_gib=15.0, correct=base),
        VariantData("fp8", "fp8", 10.7, {1: 93.0, 16: 960.0, 64: 4200.0}, weights_gib=8.5, correct=variant),
    ]
    summary = build_summary(RunResults.load(write_run(tmp_path, variants, "bf16")))
    fp8 = row(summary, "fp8")
    assert fp8.crossover_batch_size is None
    assert fp8.wins_from_batch_size == pytest.approx(2 ** (4 + 2 * 0.04 / 0.44))  # 0.96 at 16, 1.4 at 64
    assert "throughput rises above the baseline's from batch size ~18" in fp8.evidence
    sentence = verdict_sentence(fp8, summary)
    assert "faster from about batch size 18 on, 0.93x as fast at batch 1" in sentence


def test_summary_attributes_the_crossover_with_a_probe(tmp_path: Path) -> None:
    root = write_run(tmp_path, demo_variants(), "bf16")
    write_probe_result(root, load_reference())
    rows = {v.variant: v for v in build_summary(RunResults.load(root)).variants}
    awq = rows["awq-int4"]
    assert awq.verdict == Verdict.LATENCY_WIN_LOSES_UNDER_LOAD
    assert any(
        e.startswith("the probe's torch._weight_int4pack_mm") and "the server ran awq_marlin" in e
        for e in awq.evidence
    ), awq.evidence


def test_each_pools_probe_sets_its_variants_floors(tmp_path: Path) -> None:
    """A cross-GPU run: every variant's floor and crossover attribution come from its own pool's probe; a
    pool without one falls back to its GPU's datasheet."""
    h100 = load_reference()
    a100 = probe_result("NVIDIA A100-SXM4-80GB", 1.9e12)
    variants = [
        *demo_variants()[:2],
        VariantData("bf16-a100", "bf16", ms_per_token=12.0, weights_gib=15.0),
        VariantData("bf16-l40s", "bf16", ms_per_token=20.0, weights_gib=15.0, gpu="NVIDIA L40S"),
    ]
    for v, pool in zip(variants, ("h100", "h100", "a100", "l40s"), strict=True):
        v.node_pool = pool
    root = write_run(tmp_path, variants, "bf16", gpu=None)
    write_probe_result(root, h100, "h100")
    write_probe_result(root, a100, "a100")
    assert (root / "probes" / "a100.json").is_file()
    results = RunResults.load(root)
    assert set(results.probes) == {"h100", "a100"} and results.probe is None
    assert results.probe_for("fp8") is not None and results.probe_for("fp8").gpu.name == h100.gpu.name
    assert results.probe_for("bf16-l40s") is None
    s = build_summary(results)
    assert s.gpu == h100.gpu.name and s.memory_bandwidth_bytes_per_s == pytest.approx(
        h100.bandwidth.bytes_per_s
    )
    floor = {v.variant: v.bandwidth_floor_ms_per_token for v in s.variants}
    assert floor["bf16"] == pytest.approx(15 * 2**30 / h100.bandwidth.bytes_per_s * 1000)
    assert floor["bf16-a100"] == pytest.approx(15 * 2**30 / 1.9e12 * 1000)
    l40s = match_gpu_spec("NVIDIA L40S")
    assert l40s is not None
    assert floor["bf16-l40s"] == pytest.approx(15 * 2**30 / l40s.memory_bandwidth_bytes_per_s * 1000)


def test_repetitions_give_intervals_and_equal_means_the_interval_contains_one(tmp_path: Path) -> None:
    """fp8 is 3% faster at batch 1 (inside the old 5% margin) but consistently so over five repetitions:
    with intervals it is faster; int8 is 6% faster on average but noisy: its interval contains 1."""
    base, same = paired(100, 80, lost=0, gained=0)
    steady = [1.0, 1.01, 0.99, 1.005, 0.995]
    noisy = [1.0, 1.25, 0.75, 1.2, 0.8]
    variants = [
        VariantData(
            "bf16", "bf16", 10.0, {1: 100.0, 16: 1000.0}, weights_gib=15.0, correct=base, repetitions=steady
        ),
        VariantData(
            "fp8", "fp8", 9.7, {1: 103.0, 16: 1030.0}, weights_gib=15.0, correct=same, repetitions=steady
        ),
        VariantData(
            "int8",
            "int8-w8a8",
            9.4,
            {1: 106.0, 16: 1000.0},
            weights_gib=15.0,
            correct=same,
            repetitions=noisy,
        ),
    ]
    s = build_summary(RunResults.load(write_run(tmp_path, variants, "bf16")))
    fp8, int8 = row(s, "fp8"), row(s, "int8")
    assert fp8.repetitions == 5 and fp8.latency_ratio_interval95 is not None
    assert fp8.latency_ratio_interval95.high < 1.0
    assert fp8.ms_per_token_interval95 is not None
    assert fp8.ms_per_token_interval95.low < 9.7 < fp8.ms_per_token_interval95.high
    assert fp8.throughput[0].ratio_interval95 is not None and fp8.throughput[0].ratio_interval95.low > 1.0
    assert fp8.verdict == Verdict.FREE_SPEEDUP
    assert any("95% CI of the speed ratio" in e for e in fp8.evidence)
    assert int8.latency_ratio_interval95 is not None
    assert int8.latency_ratio_interval95.low < 1.0 < int8.latency_ratio_interval95.high
    assert int8.verdict == Verdict.NO_SIGNIFICANT_DIFFERENCE


def test_a_legacy_kernel_on_a_marlin_gpu_is_flagged_with_the_fix(tmp_path: Path) -> None:
    base, same = paired(100, 80, lost=0, gained=0)
    variants = [
        VariantData("bf16", "bf16", 10.0, {1: 100.0, 64: 3000.0}, weights_gib=15.0, correct=base),
        VariantData(
            "awq", "awq-int4", 7.0, {1: 140.0, 64: 900.0}, weights_gib=5.4, correct=same, kernel="awq"
        ),
    ]
    s = build_summary(RunResults.load(write_run(tmp_path / "gpu", variants, "bf16")))
    awq = row(s, "awq")
    assert awq.verdict == Verdict.SLOW_KERNEL
    assert awq.kernel_advice is not None and "awq_marlin" in awq.kernel_advice
    assert "remove quantizationKernel: awq" in awq.kernel_advice
    assert "compute capability 9.0" in awq.kernel_advice
    # On a machine without a GPU the legacy kernel is the only one: nothing to flag.
    cpu = build_summary(RunResults.load(write_run(tmp_path / "cpu", variants, "bf16", gpu=None)))
    assert row(cpu, "awq").kernel_advice is None
    assert row(cpu, "awq").verdict == Verdict.LATENCY_WIN_LOSES_UNDER_LOAD


def test_capacity_is_per_gpu_quality_gated_and_priced(summary: RunSummary) -> None:
    fp8, awq, bf16 = row(summary, "fp8"), row(summary, "awq-int4"), row(summary, "bf16")
    assert fp8.capacity is not None and fp8.capacity.requests_per_second_per_gpu == pytest.approx(11.3)
    assert fp8.capacity.counts and fp8.capacity.slo == "p90 TTFT <= 500 ms"
    assert [t.passed for t in fp8.capacity.trials] == [True, True, True, False, True, False]
    assert awq.capacity is not None and not awq.capacity.counts
    assert awq.capacity.gate == "accuracy Undecided at the margin"
    assert bf16.capacity is not None and bf16.capacity.counts  # the baseline needs no accuracy test
    assert fp8.cost is not None and fp8.cost.usd_per_million_output_tokens == pytest.approx(
        3.0 / (2600 * 3600) * 1e6
    )
    assert summary.best == "fp8"
    assert summary.recommendation is not None
    assert summary.recommendation.startswith(
        "fp8: $0.32 per million output tokens at 11.3 requests/s per GPU"
    )
    assert "awq-int4 $0.83, not counted: accuracy Undecided at the margin" in summary.recommendation


def test_a_sequential_evaluation_decides_the_accuracy_verdict(tmp_path: Path) -> None:
    base, var = paired(200, 150, lost=1, gained=1)
    variants = [
        VariantData("bf16", "bf16", 10.0, {1: 100.0}, weights_gib=15.0, correct=base),
        VariantData("fp8", "fp8", 6.0, {1: 160.0}, weights_gib=8.0, correct=var[:80]),
    ]
    root = write_run(tmp_path, variants, "bf16")
    record = SequentialRecord(
        look_sizes=[80, 160, 240, 320, 400],
        fixed_questions=340,
        look=1,
        questions=80,
        stopped_early=True,
        verdict=QualityVerdict.NON_INFERIOR,
    )
    stopped = accuracy_result(var[:80]).model_copy(update={"sequential": record})
    write_accuracy_result(root, "fp8", stopped)
    fp8 = row(build_summary(RunResults.load(root)), "fp8")
    assert fp8.accuracy is not None and fp8.accuracy.paired_questions == 80
    assert fp8.accuracy.quality == QualityVerdict.NON_INFERIOR
    assert fp8.accuracy.sequential is not None and "stopped early at look 1 of 5" in fp8.accuracy.sequential
    assert fp8.verdict == Verdict.FREE_SPEEDUP
    assert any("sequential evaluation stopped early" in e for e in fp8.evidence)
    assert "screened" not in fp8.accuracy.sequential
    # questions screened by one prefill (the variant's greedy answer is the baseline's) are counted apart
    screened = record.model_copy(update={"screened": 50, "generated": 30})
    write_accuracy_result(root, "fp8", stopped.model_copy(update={"sequential": screened}))
    fp8 = row(build_summary(RunResults.load(root)), "fp8")
    assert fp8.accuracy is not None and fp8.accuracy.sequential is not None
    assert fp8.accuracy.sequential.endswith(
        "; 50 screened (the variant's greedy answer is the baseline's, one prefill each), 30 generated"
    )


def test_fidelity_figures_come_with_the_evidence(summary: RunSummary) -> None:
    fp8, awq = row(summary, "fp8"), row(summary, "awq-int4")
    assert fp8.fidelity is not None and fp8.fidelity.mean_kl == pytest.approx(0.0021)
    assert awq.fidelity is not None and awq.fidelity.top1_agreement == pytest.approx(0.91)
    assert any("mean KL 0.0021 nats (p99 0.031), top-1 token agreement 98.5%" in e for e in fp8.evidence)
    assert row(summary, "bf16").fidelity is None


def test_a_baseline_near_zero_accuracy_is_noted(tmp_path: Path) -> None:
    """A model that scores ~0 on the task (SmolLM2-135M on GSM8K): the summary says the task cannot show a
    quantization effect there, instead of letting 0% vs 0% pass as 'no difference'."""
    from dataclasses import replace

    variants = demo_variants()[:2]
    write_run(tmp_path, [replace(v, correct=[i == 0 for i in range(40)]) for v in variants], "bf16")
    notes = build_summary(RunResults.load(tmp_path)).notes
    [note] = [n for n in notes if "near zero" in n]
    assert note.startswith("the baseline bf16 scores 2% on the accuracy task (1/40 strict")
    assert "fidelity figures" in note
    write_run(tmp_path, demo_variants()[:2], "bf16")  # the demo's own answers: well above the floor
    assert not any("near zero" in n for n in build_summary(RunResults.load(tmp_path)).notes)


def test_the_verdict_says_in_what_a_variant_is_faster(tmp_path: Path) -> None:
    """A variant as fast as the baseline at batch 1 whose throughput is higher: the sentence names the
    throughput it wins on, not a 'faster (0.99x as fast)' that contradicts itself."""
    base, variant = paired(30, 10, lost=2, gained=2)
    variants = [
        VariantData("bf16", "bf16", 54.0, {1: 18.0, 8: 47.0}, weights_gib=0.25, correct=base),
        VariantData("awq-int4", "awq-int4", 54.6, {1: 22.0, 8: 47.5}, weights_gib=0.1, correct=variant),
    ]
    summary = build_summary(RunResults.load(write_run(tmp_path, variants, "bf16")))
    awq = row(summary, "awq-int4")
    sentence = verdict_sentence(awq, summary)
    assert "as fast at batch 1" not in sentence
    assert "1.22x the throughput at batch size 1" in sentence
