"""Content hashes of bytes and files (sha256), cached per process for files that have not changed.

One implementation for the caption store's provenance, predict's resume manifest and the STAC
Items' checkpoint digest, so a file is read once per process however many of them ask.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, size: int | None = None) -> str:
    """Hex sha256 of a file's bytes, or of its first ``size`` bytes (streamed)."""
    digest = hashlib.sha256()
    remaining = size
    with open(path, "rb") as handle:
        while remaining is None or remaining > 0:
            chunk = handle.read(1 << 20 if remaining is None else min(remaining, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest()


def update_with_stamps(digest: Any, paths: Sequence[str | Path | None], *, inode: bool = False) -> bool:
    """Feed each file's identity (absolute path, size, modification time in ns, and its inode with ``inode``; ``-``
    for ``None``) to ``digest``: a cheap key that changes when a file does. False when a file cannot be stat'ed."""
    for path in paths:
        if path is None:
            digest.update(b"|-")
            continue
        try:
            st = os.stat(path)
        except OSError:
            return False
        digest.update(f"|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode())
        if inode:
            digest.update(f"|{st.st_ino}".encode())
    return True


#: sha256 of files already hashed in this process, by (path, device, inode, size, mtime_ns).
_FILE_HASHES: dict[tuple[str, int, int, int, int], str] = {}


def cached_sha256_file(path: str | Path) -> str:
    """:func:`sha256_file`, computed once per process for a file whose path, inode, size and mtime stay the same."""
    info = os.stat(path)
    key = (os.fspath(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    digest = _FILE_HASHES.get(key)
    if digest is None:
        digest = _FILE_HASHES[key] = sha256_file(path)
    return digest


def sha256_files(paths: Sequence[Path], done: Callable[[int], None] | None = None,
                 workers: int = 8) -> list[str | OSError]:
    """:func:`cached_sha256_file` of every path (threads, I/O bound); the ``OSError`` in place of a failed one.

    ``done(count)`` is called as hashes complete, in order.
    """
    def one(path: Path) -> str | OSError:
        try:
            return cached_sha256_file(path)
        except OSError as exc:
            return exc

    results: list[str | OSError] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for digest in pool.map(one, paths):
            results.append(digest)
            if done is not None:
                done(len(results))
    return results
