"""Graceful stop on Ctrl-C / SIGTERM: finish the current iteration, save, then stop.

Inside :class:`StopSignal` the first SIGINT or SIGTERM only sets :attr:`StopSignal.requested`; the
training loop checks it between iterations and writes a resumable state. A second signal
interrupts immediately (KeyboardInterrupt), keeping the last state that was written.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignal:
    """Context manager that turns the first SIGINT/SIGTERM into a stop request."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
