"""FIFOs in tests: a command that blocks on one is released (and the test fails) instead of hanging the run."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

#: Seconds a command may wait on a FIFO before the test opens the other end to release it.
FIFO_PATIENCE = 30.0


@contextlib.contextmanager
def released(fifo: Path, after: float = FIFO_PATIENCE) -> Iterator[list[bool]]:
    """Yield a list that gets True when a command waited ``after`` seconds on ``fifo``.

    The watcher then opens the FIFO's other end (read-write, so both a blocked reader and a blocked
    writer get their partner) and closes it again, until the block ends: the command goes on to
    end-of-file or a broken pipe and the test can fail on the list instead of hanging.
    """
    fired: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        if stop.wait(after):
            return
        fired.append(True)
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
            except OSError:
                return
            time.sleep(0.2)
            os.close(fd)
            stop.wait(0.5)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield fired
    finally:
        stop.set()
        thread.join()
