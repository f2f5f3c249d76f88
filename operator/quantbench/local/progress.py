"""What `quantbench run` shows while it runs: per variant, the stage it is in (server starting, each workload and
its current step, accuracy questions done out of N), elapsed time and an estimate of what is left.

`RunProgress` holds the state and does the arithmetic (pure, with an injected clock); two displays draw it:
`LiveDisplay` redraws a table in place with rich on a terminal, `LineDisplay` prints a plain line per change
(and a progress line at most every `interval_s` during a long step) where the output is a file or a CI log.

The estimate of what is left assumes each variant still to run takes as long as the ones finished so far took
on average (a server started during the previous variant's untimed steps counts from its start, so the estimate
errs long); before any variant has finished there is none.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

WAITING = "waiting"
DONE_PHASES = ("Succeeded", "Failed", "Unsupported")


@dataclass
class VariantProgress:
    name: str
    stage: str = WAITING
    detail: str = ""
    done: int | None = None
    total: int | None = None
    started: float | None = None
    finished: float | None = None
    stage_started: float | None = None

    @property
    def is_done(self) -> bool:
        return self.stage in DONE_PHASES


@dataclass
class RunProgress:
    """The run's state as the executor reports it; every figure derived from it, nothing stored twice."""

    variants: list[VariantProgress]
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)

    @classmethod
    def of(cls, names: Sequence[str], clock: Callable[[], float] = time.monotonic) -> RunProgress:
        return cls([VariantProgress(n) for n in names], clock, clock())

    def variant(self, name: str) -> VariantProgress:
        return next(v for v in self.variants if v.name == name)

    def set_stage(self, name: str, stage: str, detail: str = "") -> None:
        v = self.variant(name)
        now = self.clock()
        if v.started is None:
            v.started = now
        v.stage, v.detail, v.done, v.total, v.stage_started = stage, detail, None, None, now
        if v.is_done:
            v.finished = now

    def set_count(self, name: str, detail: str, done: int | None, total: int | None) -> None:
        v = self.variant(name)
        v.detail, v.done, v.total = detail, done, total

    def elapsed(self, v: VariantProgress | None = None) -> float:
        now = self.clock()
        if v is None:
            return now - self.started
        if v.started is None:
            return 0.0
        return (v.finished or now) - v.started

    def remaining_estimate(self) -> float | None:
        """Seconds left: the mean duration of the variants that ran to an end (unsupported ones take no time)
        for each one not finished, less what the current one has already spent; None before the first end."""
        ran = [v for v in self.variants if v.is_done and v.stage != "Unsupported"]
        if not ran:
            return None
        mean = sum(self.elapsed(v) for v in ran) / len(ran)
        left = 0.0
        for v in self.variants:
            if not v.is_done:
                left += max(mean - self.elapsed(v), 0.0)
        return left


def format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def describe(progress: RunProgress, v: VariantProgress) -> str:
    """One line of a variant's state: 'bf16: workload serving, rate 2/s 10/24 (1:12)'."""
    parts = [v.stage]
    if v.detail:
        parts.append(v.detail)
    if v.total:
        parts.append(f"{v.done or 0}/{v.total}")
    text = f"{v.name}: " + ", ".join(parts[:2]) + (f" {parts[2]}" if len(parts) > 2 else "")
    if v.started is not None:
        text += f" ({format_seconds(progress.elapsed(v))})"
    return text


def footer(progress: RunProgress) -> str:
    left = progress.remaining_estimate()
    estimate = f", about {format_seconds(left)} left" if left is not None else ""
    done = sum(v.is_done for v in progress.variants)
    return f"{done}/{len(progress.variants)} variants done, {format_seconds(progress.elapsed())} elapsed{estimate}"


# ---------------------------------------------------------------------------------------- step progress sources

# tqdm's bar as lm-eval prints it to the accuracy step's log: "Requesting API:  45%|####5  | 9/20 [00:10<...".
_TQDM = re.compile(r"(\d+)/(\d+) \[")


def tqdm_count(log_path: Path, tail_bytes: int = 4096) -> tuple[int, int] | None:
    """The last `done/total` a tqdm bar wrote to a log, or None."""
    try:
        with log_path.open("rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(fh.tell() - tail_bytes, 0))
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    found = _TQDM.findall(text)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def loadgen_count(progress_file: Path) -> tuple[str, int, int | None] | None:
    """(step, requests done, requests planned) from the load generator's --progress-file, or None."""
    try:
        data = json.loads(progress_file.read_text())
        return str(data["step"]), int(data["completed"]) + int(data["failed"]), data.get("planned")
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ----------------------------------------------------------------------------------------------------- displays


class Display(ABC):
    """Draws a RunProgress; `refresh` is called on every change and a few times a second during a step."""

    def __init__(self, progress: RunProgress) -> None:
        self.progress = progress

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def refresh(self, changed: str | None = None) -> None:
        """`changed`: the variant whose stage just changed (None: only counts moved)."""

    def note(self, text: str) -> None:
        """A message that is not a state (where the results are, a probe figure)."""
        self._print(text)

    @abstractmethod
    def _print(self, text: str) -> None:
        """Write one message."""

    @abstractmethod
    def close(self) -> None:
        """Leave the final state on the screen or in the log."""


class LineDisplay(Display):
    """A line per stage change, with the time since the run started; during a step a progress line at most every
    `interval_s`."""

    def __init__(self, progress: RunProgress, stream: TextIO, interval_s: float = 15.0) -> None:
        super().__init__(progress)
        self.stream = stream
        self.interval_s = interval_s
        self._last_line = 0.0

    def _print(self, text: str) -> None:
        self.stream.write(f"[{format_seconds(self.progress.elapsed()):>6}] {text}\n")
        self.stream.flush()

    def close(self) -> None:
        """Every change was printed as it happened: nothing is left to draw."""

    def refresh(self, changed: str | None = None) -> None:
        now = self.progress.clock()
        if changed is not None:
            v = self.progress.variant(changed)
            line = describe(self.progress, v)
            if v.is_done:
                line += f" | {footer(self.progress)}"
            self._print(line)
            self._last_line = now
        elif now - self._last_line >= self.interval_s:
            running = [v for v in self.progress.variants if not v.is_done and v.stage != WAITING]
            for v in running:
                self._print(describe(self.progress, v))
            self._last_line = now


class LiveDisplay(Display):
    """A table redrawn in place on a terminal (rich): one row per variant, a bar for the current step."""

    def __init__(self, progress: RunProgress, stream: TextIO) -> None:
        super().__init__(progress)
        self.console = Console(file=stream)
        self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def _render(self) -> Table:
        table = Table(title=footer(self.progress), title_justify="left", expand=False)
        for column in ("variant", "stage", "step", "progress", "elapsed"):
            table.add_column(column)
        for v in self.progress.variants:
            bar: ProgressBar | str = ""
            if v.total:
                bar = ProgressBar(total=v.total, completed=v.done or 0, width=24)
            count = f" {v.done or 0}/{v.total}" if v.total else ""
            elapsed = format_seconds(self.progress.elapsed(v)) if v.started is not None else ""
            table.add_row(v.name, v.stage, v.detail + count, bar, elapsed)
        return table

    def _print(self, text: str) -> None:
        self.console.print(text)

    def refresh(self, changed: str | None = None) -> None:
        self.live.update(self._render())

    def close(self) -> None:
        self.live.update(self._render())
        self.live.stop()


def make_display(progress: RunProgress, stream: TextIO) -> Display:
    """The live table on a terminal, plain lines elsewhere."""
    return LiveDisplay(progress, stream) if stream.isatty() else LineDisplay(progress, stream)
