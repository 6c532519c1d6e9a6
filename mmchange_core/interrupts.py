"""SIGINT and SIGTERM end a command through Python, never by the signal's default action.

Inside :func:`exit_on_signals` the first SIGINT or SIGTERM raises :class:`Interrupted` in the main
thread, so every ``finally`` and ``except BaseException`` on the way out runs: temporary and stage
files are removed, run folders of a failed command are cleaned up, and what is finished stays
recorded (the run manifest, the caption store). The CLI installs it around every command and exits
with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as a shell reports a process that
the signal ended. Signals that arrive while the first one unwinds are ignored, so the cleanup is not
cut short. Training installs its own graceful handler on top (:mod:`mmchange_core.training.interrupt`).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

#: The signals that stop a command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_exit_code(name: str) -> int:
    """The shell's exit status for a process ended by signal ``name``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signal.Signals[name])


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM stopped the command; carries the exit code a shell would report."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        self.signal = signal.Signals(signum).name
        super().__init__(message or f"interrupted by {self.signal}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process that the signal ended."""
        return signal_exit_code(self.signal)


@contextlib.contextmanager
def exit_on_signals() -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM into :class:`Interrupted` in the main thread (later ones are ignored).

    A no-op outside the main thread (Python delivers signals there only). The previous handlers
    are restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        if fired:  # already unwinding: let the cleanup finish
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous: dict[int, Any] = {}
    try:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, handle)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs (a record is written whole, or not at all); a signal that
    came meanwhile is handled as soon as the block ends. Only the main thread (which handles signals) blocks them."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
