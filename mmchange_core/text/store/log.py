"""The caption store's file: an append-only JSONL log, read tolerantly and appended under a lock.

Records are appended one batch per write, followed by flush and fsync, while the writer holds
:func:`store_lock` (a lock file beside the store), so two processes never interleave or duplicate
records. A crash can only leave a truncated last line: :class:`LogScan` ignores it and the next
:func:`append_records` cuts it off (or completes it with the missing newline when the JSON is whole).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

from mmchange_core.errors import InputError
from mmchange_core.text.store.records import dumps, header_record, parse


class LogScan:
    """Iterates the records of a store file; afterwards ``records``, ``valid_bytes`` and ``notes`` hold.

    Reading starts at byte ``start`` (the end of a whole line: what a reader has already seen). A
    truncated last line is ignored and malformed lines are skipped, each with a one-line note;
    ``valid_bytes`` is the length of the prefix that ends after the last whole line.
    """

    def __init__(self, path: Path, start: int = 0) -> None:
        self.path = path
        self.start = start
        self.records = 0
        self.valid_bytes = start
        self.notes: list[str] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        if self.path.is_dir():
            raise InputError(f"caption store {self.path} is a folder; pass a .jsonl file path or its parent folder")
        with open(self.path, "rb") as handle:
            handle.seek(self.start)
            data = handle.read()
        lines = data.split(b"\n")
        offset = self.start
        bad = 0
        for index, line in enumerate(lines):
            last = index == len(lines) - 1
            end = offset + len(line) + (0 if last else 1)
            if line.strip():
                record = parse(line)
                if record is None:
                    if last:
                        self.notes.append(f"{self.path}: ignoring a truncated last line ({len(line)} bytes); "
                                          f"it is removed at the next write")
                    else:
                        bad += 1
                else:
                    yield record
                    self.records += 1
                    self.valid_bytes = end
            elif not last:
                self.valid_bytes = end
            offset = end
        if bad:
            self.notes.append(f"{self.path}: skipped {bad} malformed line(s)")
        if self.start == 0 and data.strip() and self.records == 0:
            raise InputError(f"{self.path} is not an mmchange caption store (no valid records); "
                             f"pass another --captions path")


def store_lock(path: Path) -> FileLock:
    """The exclusive lock of store file ``path`` (``<path>.lock`` beside it), held by a writer while it appends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_name(path.name + ".lock"))


def append_records(path: Path, records: list[dict[str, Any]]) -> tuple[bool, str | None]:
    """Append ``records`` to ``path`` in one fsynced write (a header first in a new file); hold :func:`store_lock`.

    Returns whether a header was written and the note of a tail repair, if one was needed.
    """
    payload = b"".join(dumps(r) for r in records)
    with open(path, "a+b") as handle:
        note = repair_tail(handle, path)
        header = handle.seek(0, os.SEEK_END) == 0
        if header:
            handle.write(dumps(header_record()))
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    return header, note


def repair_tail(handle: IO[bytes], path: Path) -> str | None:
    """Cut off a truncated last line (or add the newline a complete last record lacks).

    Leaves ``handle`` at the end of the file; returns a note when a line was removed.
    """
    size = handle.seek(0, os.SEEK_END)
    if size == 0:
        return None
    handle.seek(size - 1)
    if handle.read(1) == b"\n":
        return None
    start = size
    block = 1 << 16
    while start > 0:
        begin = max(0, start - block)
        handle.seek(begin)
        chunk = handle.read(start - begin)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            start = begin + cut + 1
            break
        start = begin
    handle.seek(start)
    tail = handle.read(size - start)
    note = None
    if parse(tail) is not None:
        handle.write(b"\n")
    else:
        handle.truncate(start)
        note = f"{path}: removed a truncated last line ({len(tail)} bytes)"
    handle.seek(0, os.SEEK_END)
    return note
