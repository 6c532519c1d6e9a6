"""Shared CLI output: progress and messages on stderr, tables and JSON on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

#: Human-facing diagnostics and progress bars.
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
#: Results: tables, paths and JSON.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def print_json(data: Any) -> None:
    """Print machine-readable JSON on stdout (nothing else goes to stdout with ``--json``)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def warn(message: str) -> None:
    """A one-line warning on stderr."""
    err.print(f"[yellow]warning:[/yellow] {escape(message)}")


def info(message: str) -> None:
    """A one-line status message on stderr."""
    err.print(escape(message))


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table with the given columns; numbers are right-aligned."""
    rows = [list(r) for r in rows]
    tbl = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        numeric = bool(rows) and all(isinstance(r[i], (int, float)) for r in rows if i < len(r))
        tbl.add_column(col, justify="right" if numeric else "left")
    for r in rows:
        tbl.add_row(*(_fmt(v) for v in r))
    return tbl


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


class _Progress(Progress):
    """A Progress whose bar is erased when the block fails, so the error line stands alone."""

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_type is not None:
            self.live.transient = True
        super().__exit__(exc_type, exc_val, exc_tb)


def progress(*extra_columns: Any, transient: bool = False) -> Progress:
    """A stderr progress bar with count, elapsed time and ETA (plus any extra columns)."""
    return _Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *extra_columns,
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=transient,
    )
