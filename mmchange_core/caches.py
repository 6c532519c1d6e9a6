"""mmchange's disk caches in one place: where each lives, what it holds, and clearing it (``mmchange cache``).

``int8``: certified int8 exports (:class:`~mmchange_core.inference.int8.Int8Cache`, limit
``$MMCHANGE_INT8_CACHE_GB``); ``decoded``: decoded training pairs
(:class:`~mmchange_core.data.decoded_cache.DecodedCache`, limit ``cache_limit_gb``). Both live under
``$MMCHANGE_CACHE`` (default ``~/.cache/mmchange``); clearing one never touches the other.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from mmchange_core.data.decoded_cache import DEFAULT_LIMIT_GB, DecodedCache, default_cache_dir
from mmchange_core.errors import InputError
from mmchange_core.inference.int8 import Int8Cache

#: The caches ``mmchange cache`` knows, by name.
CACHE_NAMES = ("int8", "decoded")


@dataclass
class CacheUsage:
    """One cache: its name, folder, entries, bytes and size limit."""

    name: str
    folder: Path
    entries: int
    bytes: int
    limit: int


def _open(name: str) -> Int8Cache | DecodedCache:
    if name == "int8":
        return Int8Cache()
    return DecodedCache(default_cache_dir(), int(DEFAULT_LIMIT_GB * 1e9))


def _names(which: str) -> tuple[str, ...]:
    if which == "all":
        return CACHE_NAMES
    if which not in CACHE_NAMES:
        raise InputError(f"unknown cache '{which}'; choose one of {', '.join(CACHE_NAMES)} or all")
    return (which,)


def cache_usage(which: str = "all") -> list[CacheUsage]:
    """What each cache holds now."""
    found = []
    for name in _names(which):
        cache = _open(name)
        entries = cache.entries()
        found.append(CacheUsage(name, cache.folder, len(entries), sum(size for _, size, _ in entries), cache.limit))
    return found


def clear_caches(which: str = "all") -> list[CacheUsage]:
    """Remove every entry of the chosen caches; returns what was removed."""
    removed = []
    for usage in cache_usage(which):
        cache = _open(usage.name)
        if isinstance(cache, Int8Cache):
            cache.clear()
        elif usage.folder.is_dir():
            shutil.rmtree(usage.folder)
        removed.append(usage)
    return removed
