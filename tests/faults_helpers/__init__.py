"""Shared material of the fault-injection tests: tiny pairs, file hashes, real ``mmchange`` processes, mounts.

Every case checks the same three things: the exit code, one ``error:`` line (no traceback) naming the
path at fault, and that no input or finished output changed (sha256 of every file before and after).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
from tests import inference_helpers

#: 64-pixel windows, one window row per block (``block_rows=1``): a 170 x 64 pair has 4 blocks of one window.
WINDOWS = ("--tile-size", "64", "--overlap", "16", "--batch-size", "2", "--device", "cpu")
BLOCKS = ("--set", "block_rows=1")
#: Seconds a real process may take (a shared, slow CI machine included).
TIMEOUT = 240


def write_pair(folder: Path, name: str = "pair.png", height: int = 170, width: int = 64,
               seed: int = 0) -> tuple[Path, Path]:
    """``folder/A/name`` and ``folder/B/name``: a 170 x 64 pair by default (four blocks of one window)."""
    return inference_helpers.write_pair(folder, height, width, name, seed)


def hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every regular file under ``roots`` (links are recorded by their target, never followed)."""
    found: dict[str, str] = {}
    for root in roots:
        paths = [root] if not root.is_dir() or root.is_symlink() else sorted(root.rglob("*"))
        for path in paths:
            if path.is_symlink():
                found[str(path)] = "link -> " + os.readlink(path)
            elif path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def error_line(output: str) -> str:
    """The one ``error:`` line of a command's output; fails on a traceback or on several error lines."""
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    return lines[0]


_TEMPORARY = re.compile(r"^\..*\.[A-Za-z0-9_]{8}(\.tiled)?\.\w+$")


def leftovers(folder: Path) -> list[str]:
    """Stage and temporary files under ``folder`` (none may outlive a command; planted links and FIFOs do not count)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and not p.is_symlink() and (p.name.endswith(".stage") or _TEMPORARY.match(p.name)))


def env(**extra: str) -> dict[str, str]:
    """The environment of a child ``mmchange``: this checkout, one CPU thread (bit-identical to the reference)."""
    values = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                  COLUMNS="200")
    for key in ("MMCHANGE_TEST_KILL_AFTER_UNITS", "MMCHANGE_TEST_PAUSE_AFTER_WRITE"):
        values.pop(key, None)
    values.update(extra)
    return values


def mmchange(*args: object, timeout: float = TIMEOUT, **extra: str) -> subprocess.CompletedProcess:
    """Run ``python -m mmchange_cli ARGS`` to the end."""
    return subprocess.run([sys.executable, "-m", "mmchange_cli", *map(str, args)], env=env(**extra),
                          capture_output=True, text=True, timeout=timeout)


def start(*args: object, **extra: str) -> subprocess.Popen:
    """Start ``python -m mmchange_cli ARGS`` (stdout and stderr captured)."""
    return subprocess.Popen([sys.executable, "-m", "mmchange_cli", *map(str, args)], env=env(**extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition: Callable[[], bool], process: subprocess.Popen | None = None, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` until it holds; fails when ``process`` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the process ended ({process.returncode}) before the condition held:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting")
        time.sleep(0.05)


def signal_and_wait(process: subprocess.Popen, signum: int) -> tuple[int, str, str]:
    """Send ``signum`` and collect the exit code, stdout and stderr."""
    process.send_signal(signum)
    out, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, out, err


def can_mount() -> str | None:
    """Why tmpfs mounts are impossible here (``None``: they work)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a small tmpfs needs root (the tests run as an ordinary user)"
    return None


@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only; the test is skipped with the reason otherwise)."""
    reason = can_mount()
    if reason:
        pytest.skip(reason)
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs at {where}: {done.stderr.strip() or done.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` made read-only: a read-only remount of a tmpfs as root (root ignores permission bits),
    else ``chmod a-w``."""
    if can_mount() is None:
        with tmpfs(folder, "4m"):
            done = subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"cannot remount {folder} read-only: {done.stderr.strip()}")
            yield folder
        return
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


def fill(folder: Path, leave: int = 0) -> None:
    """Fill the file system of ``folder`` until at most ``leave`` bytes are free."""
    with open(folder / "filler", "wb") as handle:
        chunk = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
                if free <= leave:
                    break
                handle.write(chunk[:max(1, min(len(chunk), free - leave))])
                handle.flush()


SIGNAL_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
