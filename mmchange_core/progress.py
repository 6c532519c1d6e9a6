"""The one progress event every long-running library function reports through.

A function that takes a while accepts ``progress: ProgressCallback | None`` and calls it with a
:class:`ProgressEvent` as work completes. The library never draws anything: the CLI renders the
events (a rich bar on a terminal, plain lines in CI logs), a Python user may log or ignore them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProgressEvent:
    """``done`` of ``total`` units of ``task`` are finished (``total`` None: unknown).

    ``message`` is an optional short status line; ``fields`` holds live numbers to show beside the
    count (for example ``{"loss": 0.31}``). A new ``task`` name starts a new bar.
    """

    task: str
    done: int
    total: int | None
    message: str | None = None
    fields: Mapping[str, Any] | None = None

    @property
    def fraction(self) -> float | None:
        """Share of the work done, in [0, 1], or None when the total is unknown."""
        if not self.total:
            return None
        return min(max(self.done / self.total, 0.0), 1.0)


#: Receives every progress event of a run.
ProgressCallback = Callable[[ProgressEvent], None]


def report(progress: ProgressCallback | None, task: str, done: int, total: int | None,
           message: str | None = None, **fields: Any) -> None:
    """Send one event to ``progress`` when there is a callback (keeps call sites one line)."""
    if progress is not None:
        progress(ProgressEvent(task, done, total, message, fields or None))
