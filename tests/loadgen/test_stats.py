"""Pure statistics: percentiles like numpy's, derived latencies, SLOs, concurrency."""

from __future__ import annotations

import pytest

from quantbench_loadgen.results import FailureReason
from quantbench_loadgen.specs import Slo
from quantbench_loadgen.stats import (
    RequestTiming,
    latency_stats,
    meets_slo,
    peak_concurrency,
    percentile,
    step_fields,
    to_record,
)


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),  # numpy.percentile([1,2,3,4], 50)
        ([1.0, 2.0, 3.0, 4.0], 90, 3.7),
        ([10.0], 99, 10.0),
        ([0.0, 10.0], 99, 9.9),
        ([], 50, 0.0),
    ],
)
def test_percentile_interpolates_like_numpy(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == pytest.approx(expected)


def test_latency_stats() -> None:
    s = latency_stats([4.0, 1.0, 3.0, 2.0])
    assert (s.count, s.mean_ms, s.median_ms, s.min_ms, s.max_ms) == (4, 2.5, 2.5, 1.0, 4.0)
    assert s.std_ms == pytest.approx(1.118033988749895)  # population std, as numpy.std
    assert s.p99_ms == pytest.approx(3.97)
    empty = latency_stats([])
    assert empty.count == 0 and empty.p99_ms == 0


def _timing(
    send: float, chunks: list[float], out: int | None, error: FailureReason | None = None
) -> RequestTiming:
    end = chunks[-1] + 0.001 if chunks else send + 0.5
    return RequestTiming(
        send=send, end=end, chunk_times=chunks, prompt_tokens=10, output_tokens=out, error=error
    )


def test_record_derives_latencies_from_chunks_and_usage() -> None:
    # first token 20 ms after the send, then 3 gaps of 5 ms; the server says 4 output tokens
    t = _timing(100.0, [100.020, 100.025, 100.030, 100.035], 4)
    r = to_record(t, index=0, group="4", origin=99.0, scheduled=99.9995)
    assert r.success
    assert r.ttft_ms == pytest.approx(20.0)
    assert r.e2e_ms == pytest.approx(35.0)
    assert r.tpot_ms == pytest.approx(5.0)
    assert r.itl_ms == pytest.approx([5.0, 5.0, 5.0])
    assert r.send_s == pytest.approx(1.0) and r.scheduled_s == pytest.approx(0.9995)
    assert r.chunk_times_s[0] == pytest.approx(1.020)


def test_tpot_uses_usage_count_not_chunk_count() -> None:
    # two chunks carried 9 tokens between them (a server that batches tokens per chunk)
    r = to_record(_timing(0.0, [0.010, 0.090], 9), index=0, group="g", origin=0.0)
    assert r.tpot_ms == pytest.approx(10.0)
    assert r.itl_ms == pytest.approx([80.0])


def test_slo_checks_every_objective_and_every_gap() -> None:
    r = to_record(_timing(0.0, [0.010, 0.015, 0.030], 3), index=0, group="g", origin=0.0)
    assert meets_slo(r, Slo(ttft_ms=10.0))
    assert not meets_slo(r, Slo(ttft_ms=9.9))
    assert meets_slo(r, Slo(itl_ms=15.0))
    assert not meets_slo(r, Slo(itl_ms=14.9))  # one gap of 15 ms breaks it
    assert meets_slo(r, Slo(tpot_ms=10.0, e2e_ms=30.0))
    failed = to_record(_timing(0.0, [], None, FailureReason.TIMEOUT), index=1, group="g", origin=0.0)
    assert not meets_slo(failed, Slo(ttft_ms=1e9))


def test_step_fields_count_failures_and_tokens_of_completed_only() -> None:
    ok = to_record(_timing(0.0, [0.01, 0.02], 2), index=0, group="g", origin=0.0)
    bad = to_record(_timing(0.0, [0.01], 1, FailureReason.DISCONNECT), index=1, group="g", origin=0.0)
    fields = step_fields([ok, bad], duration_s=2.0)
    assert fields["completed"] == 1 and fields["failed"] == 1
    assert fields["failures"] == {"disconnect": 1}
    assert fields["total_output_tokens"] == 2 and fields["output_tokens_per_s"] == 1.0
    assert fields["request_throughput_per_s"] == 0.5
    assert fields["ttft"].count == 1


def test_peak_concurrency() -> None:
    recs = [
        to_record(_timing(s, [s + 0.5], 1), index=i, group="g", origin=0.0)
        for i, s in enumerate([0.0, 0.1, 0.2, 2.0])
    ]
    assert peak_concurrency(recs) == 3
