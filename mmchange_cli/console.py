"""Shared CLI output: progress and messages on stderr, tables and JSON on stdout.

Library functions report :class:`~mmchange_core.progress.ProgressEvent`s; :class:`ProgressDisplay`
renders them: rich bars when stderr is a terminal, plain lines (one every few seconds or every tenth
of a task) when it is not, so CI logs and ``nohup`` runs always show progress.

Text from users and the library (paths, captions, install hints such as ``mmchange[tensorboard]``)
is never read as rich markup: each kind of line has one function here that prints it as plain
text: :func:`note` (and :meth:`ProgressDisplay.print`), :func:`warn`, :func:`error` and the cells,
headers and title of :func:`table`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from mmchange_core.io.jsonio import strict_json
from mmchange_core.progress import ProgressEvent

#: Human-facing diagnostics and progress bars.
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)
#: Results: tables, paths and JSON.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def print_json(data: Any) -> None:
    """Print machine-readable strict JSON on stdout (non-finite numbers as null; nothing else with ``--json``)."""
    sys.stdout.write(strict_json(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def plain(text: Any) -> Text:
    """``text`` as rich text that prints exactly as it is (square brackets kept, no markup read)."""
    return text if isinstance(text, Text) else Text(str(text))


def note(message: str, *, stdout: bool = False) -> None:
    """A one-line note on stderr (what the library chose for the user, e.g. the default checkpoint), printed
    as it is; ``stdout``: on stdout, with the results."""
    (out if stdout else err).print(plain(message), soft_wrap=True)


def warn(message: str, *, indent: str = "") -> None:
    """A one-line warning on stderr; ``message`` is printed as it is."""
    err.print(Text.assemble(indent, ("warning:", "yellow"), " ", str(message)), soft_wrap=True)


def error(message: str) -> None:
    """A one-line error on stderr; ``message`` is printed as it is."""
    err.print(Text.assemble(("error:", "bold red"), " ", str(message)), soft_wrap=True)


def report_size(path: Any) -> str:
    """``PATH (N KiB)``: where a run's report.html is and how big it is, for the run summaries."""
    from pathlib import Path

    return f"{path} ({Path(path).stat().st_size / 1024:.0f} KiB)"


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    """A rich table with the given columns; numbers are right-aligned; title, headers and cells as they are."""
    rows = [list(r) for r in rows]
    tbl = Table(title=plain(title), title_justify="left")
    for i, col in enumerate(columns):
        numeric = bool(rows) and all(isinstance(r[i], (int, float)) for r in rows if i < len(r))
        tbl.add_column(plain(col), justify="right" if numeric else "left")
    for r in rows:
        tbl.add_row(*(plain(_fmt(v)) for v in r))
    return tbl


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _note(event: ProgressEvent) -> str:
    """The event's message and its scalar fields, e.g. ``loss 0.3120 lr 5.00e-04``."""
    parts = [event.message] if event.message else []
    for key, value in (event.fields or {}).items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.2e}" if value and abs(value) < 1e-3 else f"{key} {value:.4f}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key} {value}")
    return " ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class _RateColumn(ProgressColumn):
    """Units per second of a task."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.2f}/s" if speed else "", style="progress.data.speed")


class ProgressDisplay:
    """Renders progress events on stderr; use as a context manager and pass it as the callback.

    On a terminal each task gets a rich bar (count, rate, notes, elapsed, ETA); otherwise a plain
    line is printed for a task's first event, its last, and then at most every ``interval`` seconds
    or every ``step`` of its total, whichever comes first.
    """

    def __init__(self, *, transient: bool = False, plain: bool | None = None, interval: float = 5.0,
                 step: float = 0.1) -> None:
        self.plain = not err.is_terminal if plain is None else plain
        self.interval, self.step = interval, step
        self._tasks: dict[str, Any] = {}
        self._started = False
        # per task: started, time of the last line, fraction and count at the last event
        self._plain_state: dict[str, tuple[float, float, float, int]] = {}
        self._bar = None if self.plain else _Progress(
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
            _RateColumn(), TextColumn("{task.fields[note]}", markup=False), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(),
            console=err, transient=transient)

    def __enter__(self) -> ProgressDisplay:
        if self._bar is not None and not self._started:
            self._bar.start()
            self._started = True
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if self._bar is not None and self._started:
            self._bar.__exit__(exc_type, exc_val, exc_tb)
            self._started = False

    def __call__(self, event: ProgressEvent) -> None:
        if self._bar is None:
            self._plain(event)
            return
        if event.task not in self._tasks:
            self._tasks[event.task] = self._bar.add_task(event.task, total=event.total, note="")
        elif event.done < self._bar.tasks[self._tasks[event.task]].completed:  # the task starts over
            self._bar.reset(self._tasks[event.task])
        self._bar.update(self._tasks[event.task], completed=event.done, total=event.total, note=_note(event))

    def print(self, renderable: RenderableType) -> None:
        """A line (or table) above the bars, or in sequence with the plain lines; text is printed as it is."""
        err.print(plain(renderable) if isinstance(renderable, str) else renderable, soft_wrap=True)

    def _plain(self, event: ProgressEvent) -> None:
        now = time.monotonic()
        started, last_time, last_fraction, last_done = self._plain_state.get(event.task, (now, -1.0, -1.0, 0))
        if event.done < last_done:  # the task starts over (e.g. validation after every epoch)
            started, last_time, last_fraction = now, -1.0, -1.0
        fraction = event.fraction
        final = fraction is not None and fraction >= 1.0
        due = (last_time < 0 or final or now - last_time >= self.interval
               or (fraction is not None and fraction - last_fraction >= self.step))
        if not due:
            self._plain_state[event.task] = (started, last_time, last_fraction, event.done)
            return
        self._plain_state[event.task] = (started, now, fraction if fraction is not None else last_fraction,
                                         event.done)
        elapsed = now - started
        count = f"{event.done}/{event.total}" if event.total else str(event.done)
        pct = f" ({100 * fraction:.0f}%)" if fraction is not None else ""
        timing = f"elapsed {_duration(elapsed)}"
        if fraction and 0 < fraction < 1 and elapsed > 0:
            timing += f", eta {_duration(elapsed * (1 - fraction) / fraction)}"
        note = _note(event)
        err.print(f"{event.task}: {count}{pct}{' ' + note if note else ''} [{timing}]", markup=False,
                  highlight=False, soft_wrap=True)


class _Progress(Progress):
    """A Progress whose bar is erased when the block fails, so the error line stands alone."""

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_type is not None:
            self.live.transient = True
        super().__exit__(exc_type, exc_val, exc_tb)
