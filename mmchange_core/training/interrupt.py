"""Graceful stop on Ctrl-C / SIGTERM: finish the current iteration, save, then stop.

Inside :class:`StopSignal` the first SIGINT or SIGTERM only records the signal; the training loop
checks it between iterations, writes a resumable state and returns, and the CLI exits with
128 + the signal number (130 for SIGINT, 143 for SIGTERM). A second signal stops at once
(:class:`Interrupted`), keeping the last state that was written, except while a save is being
written (:meth:`StopSignal.saving`): then it takes effect as soon as the save is complete, so the
files of a run folder always belong to one iteration.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

from mmchange_core.interrupts import STOP_SIGNALS as _SIGNALS
from mmchange_core.interrupts import Interrupted as _Interrupted
from mmchange_core.interrupts import signal_exit_code

__all__ = ["Interrupted", "StopSignal", "WORKER_GRACE_S", "ignore_stop_signals", "signal_exit_code"]


class Interrupted(_Interrupted):
    """A second signal stopped training at once; the last state written is kept.

    The one exception every command stops with on a signal (:class:`mmchange_core.interrupts.Interrupted`),
    with the message of training's second signal.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum, f"{signal.Signals(signum).name} received twice; stopped at once")


#: Seconds a DataLoader worker lives on after a SIGTERM (the main process saves meanwhile).
WORKER_GRACE_S = 10


def ignore_stop_signals(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGINT/SIGTERM to the main process, which stops them.

    Otherwise Ctrl-C in a terminal (sent to the whole process group) ends the workers first and the
    main process fails with "DataLoader worker exited unexpectedly" instead of saving. SIGINT is
    ignored; a SIGTERM ends the worker :data:`WORKER_GRACE_S` seconds later (SIGALRM), so that the
    main process can finish its iteration first and a worker terminated at interpreter exit (as
    multiprocessing does with leftover workers) never hangs the process.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _end_soon)


def _end_soon(signum: int, frame: FrameType | None) -> None:
    signal.alarm(WORKER_GRACE_S)  # SIGALRM's default action ends the worker


class StopSignal:
    """Context manager that turns the first SIGINT/SIGTERM into a stop request."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._saving = False
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """True once a signal came here (or, after :meth:`agree`, in another process)."""
        return self.signum is not None

    @property
    def name(self) -> str | None:
        """``"SIGINT"`` or ``"SIGTERM"`` once requested."""
        return signal.Signals(self.signum).name if self.signum is not None else None

    @property
    def code(self) -> float:
        """This process's vote for :meth:`agree`: the signal number, 0 when none came."""
        return float(self.signum or 0)

    def agree(self, total: float) -> bool:
        """Whether the processes stop, given ``total``, the sum of their :attr:`code` (one process: its own).

        Under DDP a signal may reach only some processes; the others then record it too (by name
        when the sum is one signal's number, as SIGTERM otherwise) so that every process stops together.
        """
        if total > 0 and self.signum is None:
            self.signum = int(total) if int(total) in _SIGNALS else int(signal.SIGTERM)
        return total > 0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        elif self._saving:
            self._pending = signum
        else:
            raise Interrupted(signum)

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """Hold a second signal while the block writes the run's files; it takes effect after the block."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False
        if self._pending is not None:
            raise Interrupted(self._pending)

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
