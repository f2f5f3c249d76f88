"""`quantbench run`'s progress: state, estimate, the step-progress sources and both displays (a fake clock)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from quantbench.local.progress import (
    LineDisplay,
    LiveDisplay,
    RunProgress,
    footer,
    loadgen_count,
    make_display,
    tqdm_count,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_estimate_comes_from_the_variants_that_ran() -> None:
    clock = Clock()
    progress = RunProgress.of(["bf16", "fp8", "awq", "w8a8"], clock)
    assert progress.remaining_estimate() is None  # nothing finished: no estimate yet
    progress.set_stage("bf16", "starting server")
    clock.now += 120
    progress.set_stage("bf16", "Succeeded")
    progress.set_stage("fp8", "Unsupported")  # takes no time, does not shorten the estimate
    progress.set_stage("awq", "starting server")
    clock.now += 30
    # awq has spent 30 of the 120 s one variant takes; w8a8 has not started: 90 + 120 left.
    assert progress.remaining_estimate() == 210
    assert footer(progress) == "2/4 variants done, 2:30 elapsed, about 3:30 left"


def test_counts_reset_when_the_stage_changes() -> None:
    progress = RunProgress.of(["bf16"], Clock())
    progress.set_stage("bf16", "workload serving")
    progress.set_count("bf16", "rate 2", 10, 24)
    v = progress.variant("bf16")
    assert (v.detail, v.done, v.total) == ("rate 2", 10, 24)
    progress.set_stage("bf16", "accuracy")
    assert (v.detail, v.done, v.total) == ("", None, None)


def test_tqdm_count_reads_the_last_bar(tmp_path: Path) -> None:
    log = tmp_path / "accuracy.log"
    assert tqdm_count(log) is None  # no log yet
    log.write_text(
        "loading\rRequesting API:  10%|#  | 2/20 [00:01<00:09]\rRequesting API:  45%|####5| 9/20 [00:05<00:06]"
    )
    assert tqdm_count(log) == (9, 20)
    log.write_text("no bar here 3/4 of the way")
    assert tqdm_count(log) is None


def test_loadgen_count_reads_the_progress_file(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    assert loadgen_count(path) is None
    path.write_text(json.dumps({"step": "rate=2", "planned": 24, "completed": 9, "failed": 1}))
    assert loadgen_count(path) == ("rate=2", 10, 24)
    path.write_text("{half")
    assert loadgen_count(path) is None


def test_line_display_prints_changes_and_throttles_progress() -> None:
    clock = Clock()
    progress = RunProgress.of(["bf16", "awq"], clock)
    out = io.StringIO()
    display = LineDisplay(progress, out, interval_s=15)
    progress.set_stage("bf16", "workload latency")
    display.refresh("bf16")
    progress.set_count("bf16", "bs=1", 3, 8)
    clock.now += 5
    display.refresh()  # within the interval: nothing
    clock.now += 11
    display.refresh()
    progress.set_stage("bf16", "Succeeded")
    display.refresh("bf16")
    lines = out.getvalue().splitlines()
    assert lines == [
        "[   0 s] bf16: workload latency (0 s)",
        "[  16 s] bf16: workload latency, bs=1 3/8 (16 s)",
        "[  16 s] bf16: Succeeded (16 s) | 1/2 variants done, 16 s elapsed, about 16 s left",
    ]


def test_live_display_draws_a_table_and_plain_streams_get_lines() -> None:
    progress = RunProgress.of(["bf16"], Clock())
    assert isinstance(make_display(progress, io.StringIO()), LineDisplay)
    out = io.StringIO()
    display = LiveDisplay(progress, out)
    progress.set_stage("bf16", "accuracy")
    progress.set_count("bf16", "questions", 7, 20)
    display.refresh()
    display.close()
    text = out.getvalue()
    assert "bf16" in text and "accuracy" in text and "questions 7/20" in text
