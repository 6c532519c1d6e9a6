"""The caption store's file: an append-only log of checked JSON lines, read tolerantly and appended under a lock.

Records are appended one batch per write, followed by flush and fsync, while the writer holds
:func:`store_lock` (a lock file beside the store), so two processes never interleave or duplicate
records. Every line carries a checksum (:mod:`mmchange_core.io.logfile`). A crash can only leave a
torn last line: :class:`LogScan` ignores it with one note naming the file and the line, and the next
:func:`append_records` cuts it off (or completes it with the missing newline when it is whole), so
new records always start on a fresh line. The store is never written through a link, and neither a
FIFO nor a device is ever opened as a store.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.interrupts import signals_deferred
from mmchange_core.io.atomic import open_append, open_existing, pause_for_tests, write_all, write_error
from mmchange_core.text.store.records import dumps, header_record, parse


class LogScan:
    """Iterates the records of a store file; afterwards ``records``, ``valid_bytes``, ``valid_lines`` and ``notes`` hold.

    Reading starts at byte ``start`` (the end of a whole line: what a reader has already seen), which
    is line ``first_line``. A truncated last line is ignored and torn or unreadable lines are skipped,
    each kind with one note naming the file and the line numbers; ``valid_bytes`` is the length of the
    prefix that ends after the last whole line, ``valid_lines`` the number of lines in it.
    """

    def __init__(self, path: Path, start: int = 0, first_line: int = 1) -> None:
        self.path = path
        self.start = start
        self.records = 0
        self.valid_bytes = start
        self.valid_lines = first_line - 1
        self.notes: list[str] = []

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        if self.path.is_dir():
            raise InputError(f"caption store {self.path} is a folder; pass a .jsonl file path or its parent folder")
        with os.fdopen(open_existing(self.path, "caption store", follow=True), "rb") as handle:  # never waits on a FIFO
            handle.seek(self.start)
            data = handle.read()
        lines = data.split(b"\n")
        offset = self.start
        bad: list[int] = []
        base = self.valid_lines + 1
        for index, line in enumerate(lines):
            number = base + index
            last = index == len(lines) - 1
            end = offset + len(line) + (0 if last else 1)
            if line.strip():
                record = parse(line)
                if record is None:
                    if last:
                        self.notes.append(f"{self.path}: ignoring a truncated last line (line {number}, {len(line)} "
                                          f"bytes: cut short by a kill, or not UTF-8); it is removed at the next write")
                    else:
                        bad.append(number)
                else:
                    yield record
                    self.records += 1
                    self.valid_bytes, self.valid_lines = end, number
            elif not last:
                self.valid_bytes, self.valid_lines = end, number
            offset = end
        if bad:
            shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
            self.notes.append(f"{self.path}: skipped {len(bad)} torn or unreadable line(s) (line {shown})")
        if self.start == 0 and data.strip() and self.records == 0:
            raise InputError(f"{self.path} is not an mmchange caption store (no valid records); "
                             f"pass another --captions path")


def store_lock(path: Path) -> FileLock:
    """The exclusive lock of store file ``path`` (``<path>.lock`` beside it), held by a writer while it appends."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, path) from exc
    return FileLock(path.with_name(path.name + ".lock"))


def append_records(path: Path, records: list[dict[str, Any]]) -> tuple[bool, str | None]:
    """Append ``records`` to ``path`` in one fsynced write (a header first in a new file); hold :func:`store_lock`.

    Returns whether a header was written and the note of a tail repair, if one was needed. A link or
    special file at ``path`` is refused; a full disk or read-only folder is one line naming ``path``.
    """
    payload = b"".join(dumps(r) for r in records)
    fd = open_append(path, "caption store")
    with os.fdopen(fd, "r+b", buffering=0) as handle, signals_deferred():  # O_APPEND; a signal waits for the batch
        size = None
        try:
            note = repair_tail(handle, path)
            size = handle.seek(0, os.SEEK_END)
            header = size == 0
            write_all(fd, (dumps(header_record()) if header else b"") + payload, path)
            os.fsync(fd)
        except (OSError, MMChangeError) as exc:
            if size is not None:  # a batch cut short by a full disk leaves no torn line behind
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
            if isinstance(exc, OSError):
                raise write_error(exc, path) from exc
            raise
    pause_for_tests()
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
        handle.seek(0)
        number = handle.read(start).count(b"\n") + 1
        handle.truncate(start)
        note = f"{path}: removed a truncated last line (line {number}, {len(tail)} bytes)"
    handle.seek(0, os.SEEK_END)
    return note
