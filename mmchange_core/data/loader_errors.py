"""One-line errors from DataLoader workers.

A worker re-raises a library error in the main process with the worker's whole traceback in the
message; the CLI shows messages on one line, so the original message is recovered here.
"""

from __future__ import annotations

from mmchange_core.errors import MMChangeError


def unwrap_worker_error(exc: MMChangeError) -> MMChangeError:
    """``exc`` with its original one-line message when it crossed a DataLoader worker boundary."""
    text = str(exc)
    marker = f"{type(exc).__name__}: "
    if "Original Traceback" in text and marker in text:
        return type(exc)(text.rsplit(marker, 1)[1])
    return exc
