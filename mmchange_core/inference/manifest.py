"""The run manifest of ``mmchange predict``: which units of work are finished, so a killed run resumes.

A unit is one pair (folder mode) or one block of window rows of one large pair (mosaic mode). When
a unit's outputs are safely written, its record is appended to ``mmchange_manifest.jsonl`` in the
output folder, under an exclusive lock on that file (several processes, or nodes on a shared file
system, append to it). A record carries the unit's *fingerprint*: the sha256 of both inputs, of the
checkpoint and of every setting that changes the outputs. A rerun of the same command skips the
units whose fingerprint (and, for whole pairs, whose output files) are unchanged and redoes the rest.

Each line is checked (:mod:`mmchange_core.io.logfile`: a CRC-32 per line): a line torn by a kill,
glued to another or not UTF-8 is ignored with one warning naming the file and the line, so its unit
is done again, and the next append starts on a fresh line. The manifest is never written through a
link, nor read from a FIFO.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmchange_core.errors import OneLineWarning
from mmchange_core.io.atomic import append_line, atomic_write_text, open_append, read_regular, pause_for_tests
from mmchange_core.io.hashing import sha256_bytes
from mmchange_core.io.jsonio import strict_json
from mmchange_core.io.logfile import read_lines, seal, unseal

#: File name of the manifest in the output folder.
MANIFEST_NAME = "mmchange_manifest.jsonl"
#: Record format version (a reader skips records of another version).
MANIFEST_VERSION = 1


def fingerprint(**parts: Any) -> str:
    """sha256 of ``parts`` as canonical JSON: equal exactly when every part is equal."""
    return sha256_bytes(json.dumps(parts, sort_keys=True, default=str, separators=(",", ":")).encode("utf-8"))


def file_stamp(path: Path) -> list[int] | None:
    """``[size, mtime_ns]`` of a file, or ``None`` when it is missing: a cheap check that an output is untouched."""
    try:
        info = path.stat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    """An exclusive lock on an open file (POSIX ``flock``; a no-op where it does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: appends of one line are still whole
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class RunManifest:
    """The append-only record of finished units in ``folder`` (one checked JSON object per line)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / MANIFEST_NAME
        self._warned: set[int] = set()

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, in the order written; torn or unreadable lines are ignored, with one warning."""
        try:
            data = read_regular(self.path, "run manifest")
        except FileNotFoundError:
            return []
        lines = read_lines(data)
        new_bad = [n for n in lines.bad if n not in self._warned]
        if new_bad:
            self._warned.update(new_bad)
            message = lines.describe(self.path, "the units they record are done again")
            warnings.warn(message, OneLineWarning, stacklevel=2)
        return [r for _, r in lines.records
                if r.get("v") == MANIFEST_VERSION and isinstance(r.get("unit"), str)]

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last record of every unit, with ``seq`` (its position in the file) added."""
        return {r["unit"]: {**r, "seq": i} for i, r in enumerate(self.records())}

    def append(self, unit: str, fingerprint: str, **fields: Any) -> None:
        """Record that ``unit`` is finished with ``fingerprint`` (on a fresh line, fsynced before returning)."""
        line = seal(strict_json({"v": MANIFEST_VERSION, "unit": unit, "fingerprint": fingerprint, **fields},
                                separators=(",", ":"), default=str).encode("utf-8"))
        fd = open_append(self.path, "run manifest")
        try:
            with _locked(fd):
                append_line(fd, line, self.path)
        finally:
            os.close(fd)
        pause_for_tests()

    def reset(self) -> None:
        """Forget every unit (``--overwrite``): the next run redoes everything."""
        if os.path.lexists(self.path):
            atomic_write_text(self.path, "", "run manifest")
        self._warned.clear()


def parse_record(line: bytes) -> dict[str, Any] | None:
    """The manifest record on one line, or ``None`` when it is torn, unreadable or of another version."""
    record = unseal(line)
    if record is None or record.get("v") != MANIFEST_VERSION or not isinstance(record.get("unit"), str):
        return None
    return record


def finished(record: dict[str, Any] | None, fingerprint: str, outputs: dict[str, Path] | None = None) -> bool:
    """Whether ``record`` says its unit is done with ``fingerprint`` and (if given) ``outputs`` are still as written."""
    if record is None or record.get("fingerprint") != fingerprint or record.get("failed"):
        return False
    if outputs is None:
        return True
    stamps = record.get("stamps") or {}
    return all(stamps.get(kind) is not None and stamps.get(kind) == file_stamp(path) for kind, path in outputs.items())
