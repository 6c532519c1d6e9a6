"""Run folders: ``<project>/<command>/<name>``, auto-incremented so runs never overwrite each other.

A run name is one plain folder name, so a run stays inside its project folder. A process that
trains a run holds :func:`lock_run` (a lock file in the run folder) for as long as it writes there.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from filelock import FileLock, Timeout

from mmchange_core.config import Rule
from mmchange_core.errors import InputError

#: The lock file a process holds in a run folder while it trains the run.
LOCK_FILE = ".lock"
#: The command folder of training runs: ``<project>/train/<name>``.
TRAIN_RUNS = "train"
#: The checkpoint a training run keeps of its best validation F1: what later commands use by default.
BEST_CHECKPOINT = "best.safetensors"


class RunBusyError(InputError):
    """Another process holds the run folder's lock."""


def is_run_name(name: str) -> bool:
    """Whether ``name`` is one plain folder name: no separators, '.', '..', drive, NUL or outer spaces."""
    parts = {PurePosixPath(name).parts, PureWindowsPath(name).parts}
    plain = name.strip() == name and name not in ("", ".", "..") and "\0" not in name
    return plain and all(p == (name,) for p in parts)


#: The rule of every config's ``name`` field (checked when the config is loaded, before any work).
RUN_NAME = Rule(lambda v: isinstance(v, str) and is_run_name(v),
                "a plain folder name (no '/', '\\', '..', outer spaces or absolute path)")


def check_run_name(name: str) -> str:
    """``name`` when it is one plain folder name; a one-line error for '..', separators or absolute paths."""
    if not is_run_name(name):
        raise InputError(f"run name {name!r} must be {RUN_NAME.allowed}; runs are created inside their "
                         f"project folder")
    return name


def next_run_dir(project: str | Path, command: str, name: str | None = None) -> Path:
    """Create and return a fresh run folder: ``exp``, ``exp2``, ``exp3``... (or ``name``, ``name2``...)."""
    stem = check_run_name(name) if name is not None else "exp"
    base = Path(project) / command
    for folder in (Path(project), base):
        if folder.exists() and not folder.is_dir():
            raise InputError(f"--project {project}: {folder} exists and is not a folder; choose another folder")
    base.mkdir(parents=True, exist_ok=True)
    candidate, index = base / stem, 2
    while True:
        try:
            candidate.mkdir()  # atomic: of two processes asking at once, one gets the next number
            return candidate
        except FileExistsError:
            candidate = base / f"{stem}{index}"
            index += 1


def lock_run(run_dir: str | Path) -> FileLock:
    """The acquired lock of ``run_dir`` (release it, or use it as a context manager); fails at once when held."""
    lock = FileLock(Path(run_dir) / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusyError(f"another process is training {run_dir} (it holds {Path(run_dir) / LOCK_FILE}); "
                           f"wait for it to finish or stop it, then resume") from None
    return lock


def latest_checkpoint(project: str | Path) -> Path:
    """The best checkpoint of the most recent training run under ``project`` (the newest ``best.safetensors``).

    What ``predict``, ``eval`` and ``robustness`` use without ``--checkpoint``; one line to train first
    when there is none.
    """
    base = Path(project) / TRAIN_RUNS
    found = [path for path in base.glob(f"*/{BEST_CHECKPOINT}") if path.is_file()] if base.is_dir() else []
    if not found:
        raise InputError(f"no --checkpoint given and no trained model in {base}; train one first "
                         f"(mmchange train --dataset DATA) or pass --checkpoint FILE")
    return max(found, key=lambda path: (path.stat().st_mtime_ns, str(path)))
