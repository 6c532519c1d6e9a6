"""User-facing errors: one actionable line, shown without a traceback by the CLI."""

from __future__ import annotations

import importlib
from types import ModuleType


class MMChangeError(Exception):
    """An error caused by user input or environment, with a one-line message saying what to do.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``; tracebacks are shown
    only with ``--debug``.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(" ".join(message.split()))
        if exit_code is not None:
            self.exit_code = exit_code


class MissingWeightsError(MMChangeError):
    """Pretrained weights are not available locally and cannot be downloaded."""


class InputError(MMChangeError):
    """An input file or value is missing, unreadable or inconsistent."""


class CheckpointError(MMChangeError):
    """A checkpoint or state dict cannot be read or does not match the expected format."""


class OutputError(MMChangeError):
    """A file cannot be written: a link or special file at its name, a full disk, a read-only folder."""


class OneLineWarning(UserWarning):
    """A warning the CLI prints as one ``warning:`` line (library code that has no ``warn`` callback)."""


def install_hint(extra: str) -> str:
    """The pip command that installs mmchange's optional extra ``extra``."""
    return f'pip install "mmchange[{extra}]"'


def require_extra(module: str, what: str, extra: str) -> ModuleType:
    """Import the optional dependency ``module``, or raise a one-line error naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"{module} is not installed (required for {what}); install it with: {install_hint(extra)}") from None
