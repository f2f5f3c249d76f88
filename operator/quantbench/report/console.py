"""The summary as a terminal prints it (`quantbench run`): the report's table drawn as a table, then the
verdicts in words and the run's notes. Same cells as the Markdown and HTML reports (report.words)."""

from __future__ import annotations

from typing import TextIO

from rich.console import Console
from rich.table import Table

from quantbench.api.summary import RunSummary
from quantbench.report.words import COLUMNS, table_row, verdict_sentence


def summary_table(summary: RunSummary) -> Table:
    table = Table(title=f"{summary.baseline} is the baseline", title_justify="left")
    for column in COLUMNS:
        table.add_column(column.title, justify="right" if column.numeric else "left", overflow="fold")
    for row in summary.variants:
        table.add_row(*table_row(row, summary.speed_margin))
    return table


def print_summary(summary: RunSummary, stream: TextIO, width: int | None = None) -> None:
    """The table, each verdict as a sentence, and the notes; plain text where `stream` is not a terminal."""
    console = Console(file=stream, width=width or (None if stream.isatty() else 200))
    console.print(summary_table(summary))
    for row in summary.variants:
        console.print(f"- {verdict_sentence(row, summary)}", highlight=False)
    for note in summary.notes:
        console.print(f"note: {note}", highlight=False)
    if summary.best:
        console.print(f"recommended: {summary.best}", highlight=False)
