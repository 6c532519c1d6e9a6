"""Append-only logs of JSON lines that survive torn writes (the run manifest, the caption store).

Every line is one JSON object whose last member is ``"crc32":"<8 hex digits>"``: the CRC-32 of the
line's bytes without that member. A line is self-delimiting (it ends with a newline) and checked: a
line cut short by a kill, two lines glued together, bytes that are not UTF-8 or a hand edit all fail
the check, so the reader ignores them instead of trusting them. Lines of the older format (no
``crc32`` member) are still read as they are. Appends start on a fresh line
(:func:`~mmchange_core.io.atomic.append_line`), so a torn last line never swallows the next record.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

#: The member that carries a line's checksum.
CHECK_KEY = "crc32"
_CHECK = re.compile(rb'(,?)"crc32":"([0-9a-f]{8})"\}[ \t\r]*$')


def seal(body: bytes) -> bytes:
    """The log line of the compact JSON object ``body``: its checksum added as the last member, newline-terminated."""
    body = body.strip()
    if not (body.startswith(b"{") and body.endswith(b"}")) or b"\n" in body:
        raise ValueError("a log record is one JSON object on one line")
    separator = b"," if body != b"{}" else b""
    return body[:-1] + separator + b'"%s":"%08x"}\n' % (CHECK_KEY.encode(), zlib.crc32(body))


def unseal(line: bytes) -> dict[str, Any] | None:
    """The record on ``line`` (a dict, its checksum member removed), or ``None`` when the line is torn, glued,
    not UTF-8, not a JSON object or fails its checksum. Lines without a checksum (older files) are parsed as they are."""
    line = line.rstrip(b"\r\n")
    match = _CHECK.search(line)
    body = line if match is None else line[:match.start()] + b"}"
    if match is not None and zlib.crc32(body) != int(match.group(2), 16):
        return None
    try:
        record = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or (match is None and CHECK_KEY in record):
        return None
    return record


@dataclass
class LogLines:
    """The records of a log's bytes with their line numbers (from 1), and the lines that were ignored."""

    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    bad: list[int] = field(default_factory=list)
    """Line numbers of torn, glued or unreadable lines."""
    torn_tail: bool = False
    """The last line has no newline (a writer was killed mid-write); it is among ``bad`` unless it checks out."""

    def describe(self, path: object, consequence: str) -> str | None:
        """One line naming the file and the ignored lines (``None`` when there are none)."""
        if not self.bad:
            return None
        shown = ", ".join(str(n) for n in self.bad[:5]) + (", ..." if len(self.bad) > 5 else "")
        what = "a torn or unreadable line" if len(self.bad) == 1 else f"{len(self.bad)} torn or unreadable lines"
        return f"{path}: ignoring {what} (line {shown}); {consequence}"


def read_lines(data: bytes, first_line: int = 1) -> LogLines:
    """Parse a log's bytes: every whole, checked line is a record; the others are listed as bad."""
    found = LogLines(torn_tail=bool(data) and not data.endswith(b"\n"))
    for number, line in enumerate(data.split(b"\n"), first_line):
        if not line.strip():
            continue
        record = unseal(line)
        if record is None:
            found.bad.append(number)
        else:
            found.records.append((number, record))
    return found
