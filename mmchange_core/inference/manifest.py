"""The run manifest of ``mmchange predict``: which units of work are finished, so a killed run resumes.

A unit is one pair (folder mode) or one block of window rows of one large pair (mosaic mode). When
a unit's outputs are safely written, its record is appended to ``mmchange_manifest.jsonl`` in the
output folder, under an exclusive lock on that file (several processes, or nodes on a shared file
system, append to it). A record carries the unit's *fingerprint*: the sha256 of both inputs, of the
checkpoint and of every setting that changes the outputs. A rerun of the same command skips the
units whose fingerprint (and, for whole pairs, whose output files) are unchanged and redoes the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.jsonio import strict_json
from mmchange_core.io.hashing import sha256_bytes

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
def _locked(handle: Any) -> Iterator[None]:
    """An exclusive lock on an open file (POSIX ``flock``; a no-op where it does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: appends of one line are still whole
        yield
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class RunManifest:
    """The append-only record of finished units in ``folder`` (one JSON object per line)."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / MANIFEST_NAME

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, in the order written (a line cut short by a kill is ignored)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        found = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("v") == MANIFEST_VERSION and isinstance(record.get("unit"), str):
                found.append(record)
        return found

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last record of every unit, with ``seq`` (its position in the file) added."""
        return {r["unit"]: {**r, "seq": i} for i, r in enumerate(self.records())}

    def append(self, unit: str, fingerprint: str, **fields: Any) -> None:
        """Record that ``unit`` is finished with ``fingerprint`` (flushed to disk before returning)."""
        line = strict_json({"v": MANIFEST_VERSION, "unit": unit, "fingerprint": fingerprint, **fields},
                           separators=(",", ":"), default=str) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle, _locked(handle):
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def reset(self) -> None:
        """Forget every unit (``--overwrite``): the next run redoes everything."""
        if self.path.exists():
            atomic_write_text(self.path, "")


def finished(record: dict[str, Any] | None, fingerprint: str, outputs: dict[str, Path] | None = None) -> bool:
    """Whether ``record`` says its unit is done with ``fingerprint`` and (if given) ``outputs`` are still as written."""
    if record is None or record.get("fingerprint") != fingerprint or record.get("failed"):
        return False
    if outputs is None:
        return True
    stamps = record.get("stamps") or {}
    return all(stamps.get(kind) is not None and stamps.get(kind) == file_stamp(path) for kind, path in outputs.items())
