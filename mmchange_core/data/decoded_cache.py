"""A disk cache of decoded training pairs, so that every training crop reads raw pixels instead of a PNG.

Training cuts large images (LEVIR-CD's 1024 x 1024) into several crops; without a cache every crop
decodes its whole pair again. With it, the first crop of a pair decodes it once and writes the pixels
to an uncompressed ``.npy`` file, ``[H, W, 2C + 1]`` uint8 (A's C bands, B's, label as 0/1 or class indices; 7 for RGB), which later
crops memory-map: only the crop's rows are read from disk. The pixels are the decoder's, so samples
are bit-identical to the uncached path.

An entry's key is the sha256 of the three source files' absolute paths, sizes, modification times
(ns) and inodes, the label setting (``change_value``), the bands and radiometric rule (``imagery``) and
:data:`CACHE_FORMAT`; a source file that
changes gets a new entry. Entries are written atomically (:mod:`mmchange_core.io.atomic`) under a
per-key file lock, so DataLoader workers and ranks that want the same pair decode it once.

The folder (default ``$MMCHANGE_CACHE/decoded``, ``~/.cache/mmchange/decoded``) holds at most
``limit`` bytes (default :data:`DEFAULT_LIMIT_GB` GB): :meth:`DecodedCache.prepare` removes the
entries least recently used by a run until the dataset's entries fit, or raises
:class:`CacheError` when the dataset alone is larger than the limit or the free disk space.
Each entry takes ``7 * H * W`` bytes (7.3 MB for a 1024 x 1024 pair, 3.3 GB for LEVIR-CD's 445
training pairs).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock

from mmchange_core.environment import cache_home
from mmchange_core.errors import InputError, OutputError
from mmchange_core.io.atomic import atomic_path
from mmchange_core.io.hashing import update_with_stamps

#: Environment variable of mmchange's cache folder (also used for the torch.compile cache).
#: Default size limit of the decoded cache, in GB (10**9 bytes).
DEFAULT_LIMIT_GB = 20.0
#: Bump when the stored pixels change for the same sources (decoder or layout changes).
CACHE_FORMAT = 1
#: Channels of an entry: A (RGB), B (RGB), label (0/1).
#: Bytes of an entry's ``.npy`` header (numpy pads it to 128 bytes for these shapes).
HEADER_BYTES = 128
#: Open entries each process keeps mapped (each holds one file descriptor).
OPEN_ENTRIES = 16
#: Temporary files older than this (seconds) are left-overs of a killed writer and are removed.
STALE_TEMP_SECONDS = 3600

Decoded = tuple[np.ndarray, np.ndarray, np.ndarray]
# only files named like entries (or atomic_path's temporaries of them) are ever removed
_ENTRY = re.compile(r"[0-9a-f]{64}\.npy")
_TEMP = re.compile(r"\.[0-9a-f]{64}\..+\.npy")


class CacheError(InputError):
    """The decoded cache cannot hold the dataset (size limit, free disk space or an unwritable folder)."""


def default_cache_dir() -> Path:
    """The decoded cache's default folder, ``<cache_home()>/decoded``."""
    return cache_home() / "decoded"


def entry_bytes(height: int, width: int, bands: int = 3) -> int:
    """Bytes one entry of a ``width`` x ``height`` pair of ``bands`` bands takes on disk."""
    return HEADER_BYTES + (2 * bands + 1) * height * width


@dataclass(frozen=True)
class CacheSettings:
    """Whether and where training pairs are cached decoded (``TrainConfig``'s ``decoded_cache*`` keys).

    ``enabled`` None: on when images are cut into several crops. ``folder`` None:
    :func:`default_cache_dir`. ``limit_gb`` None: :data:`DEFAULT_LIMIT_GB`.
    """

    enabled: bool | None = None
    folder: str | Path | None = None
    limit_gb: float | None = None

    def open(self, bands: int = 3) -> DecodedCache:
        """The cache these settings describe, for pairs of ``bands`` bands per date."""
        folder = Path(self.folder).expanduser() if self.folder else default_cache_dir()
        limit = DEFAULT_LIMIT_GB if self.limit_gb is None else self.limit_gb
        return DecodedCache(folder, int(limit * 1e9), bands)


def size_text(n: int) -> str:
    """Bytes in words: ``"7.3 MB"``, ``"3.27 GB"``."""
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


class DecodedCache:
    """Decoded pairs as memory-mapped ``.npy`` entries in ``folder``, at most ``limit`` bytes in all."""

    def __init__(self, folder: Path, limit: int, bands: int = 3) -> None:
        self.folder = Path(folder)
        self.limit = int(limit)
        #: Bands per date: an entry is ``[H, W, 2 * bands + 1]`` (A, B, label).
        self.bands = int(bands)
        self._open: OrderedDict[str, np.ndarray] = OrderedDict()

    def __reduce__(self) -> tuple:
        return (DecodedCache, (self.folder, self.limit, self.bands))  # mapped entries stay in their process

    # ------------------------------------------------------------------------------------ keys
    @staticmethod
    def key(sources: Sequence[Path | None], setting: str = "") -> str | None:
        """The entry key of ``sources`` (A, B, label) read with ``setting``; None when a file cannot be stat'ed."""
        digest = hashlib.sha256(f"mmchange-decoded-v{CACHE_FORMAT}|{setting}".encode())
        return digest.hexdigest() if update_with_stamps(digest, sources, inode=True) else None

    def path(self, key: str) -> Path:
        """The entry file of ``key``."""
        return self.folder / key[:2] / f"{key}.npy"

    def _lock(self, name: str) -> FileLock:
        locks = self.folder / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / f"{name}.lock"))

    # -------------------------------------------------------------------------------- planning
    def _entries(self) -> list[tuple[float, int, Path]]:
        """(mtime, bytes, path) of every entry; removes temporary files left by killed writers."""
        found = []
        now = time.time()
        for shard in self.folder.glob("[0-9a-f][0-9a-f]"):
            for path in shard.iterdir():
                try:
                    st = path.stat()
                except OSError:
                    continue  # removed meanwhile
                if _TEMP.fullmatch(path.name):
                    if now - st.st_mtime > STALE_TEMP_SECONDS:
                        path.unlink(missing_ok=True)
                elif _ENTRY.fullmatch(path.name):
                    found.append((st.st_mtime, st.st_size, path))
        return found

    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every entry (none when the folder does not exist)."""
        return self._entries() if self.folder.is_dir() else []

    def usage(self) -> int:
        """Bytes the entries take now."""
        return sum(size for _, size, _ in self._entries()) if self.folder.is_dir() else 0

    def prepare(self, needed: Sequence[tuple[str, tuple[int, int]]]) -> int:
        """Make room for the entries ``needed`` (``(key, (height, width))``) and mark them recently used.

        Entries not needed are removed, least recently used first, until the needed ones fit in the
        limit. Returns the bytes of the needed entries; raises :class:`CacheError` when they do not
        fit in the limit or in the free disk space, or the folder cannot be written.
        """
        sizes = {key: entry_bytes(*shape, self.bands) for key, shape in needed}
        total_needed = sum(sizes.values())
        if total_needed > self.limit:
            raise CacheError(f"the decoded cache needs {size_text(total_needed)} for this dataset, more than its "
                             f"limit of {size_text(self.limit)}; raise cache_limit_gb (--set cache_limit_gb="
                             f"{int(total_needed / 1e9) + 1}) or turn the cache off (--set decoded_cache=false)")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with self._lock("folder"):
                now = time.time()
                entries = self._entries()
                present = {path.stem for _, _, path in entries}
                for key in sizes.keys() & present:
                    os.utime(self.path(key), (now, now))
                missing = sum(size for key, size in sizes.items() if key not in present)
                used = sum(size for _, size, _ in entries)
                for _, size, path in sorted(entries):
                    if used + missing <= self.limit:
                        break
                    if path.stem not in sizes:
                        path.unlink(missing_ok=True)
                        used -= size
                free = shutil.disk_usage(self.folder).free
        except OSError as exc:
            raise CacheError(f"cannot use the decoded cache folder {self.folder} ({exc.strerror or exc}); set "
                             f"cache_dir to a writable folder or turn the cache off (--set decoded_cache=false)"
                             ) from None
        if missing > free:
            raise CacheError(f"the decoded cache needs {size_text(missing)} more in {self.folder} but the disk has "
                             f"{size_text(free)} free; set cache_dir to a larger disk or turn the cache off "
                             f"(--set decoded_cache=false)")
        return total_needed

    # --------------------------------------------------------------------------------- reading
    def _load(self, path: Path, shape: tuple[int, int]) -> np.ndarray | None:
        """The mapped entry at ``path``, or None when it is missing or not of ``shape``."""
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if array.shape != (*shape, 2 * self.bands + 1) or array.dtype != np.uint8:
            return None
        return array

    def pixels(self, key: str, shape: tuple[int, int], decode: Callable[[], Decoded]) -> np.ndarray:
        """The ``[H, W, 2C + 1]`` pixels of entry ``key``: mapped from disk, or decoded by ``decode()`` once and stored.

        ``decode`` returns A, B (uint8 ``[H, W, C]``) and the bool label (``[H, W]``) of ``shape``.
        """
        array = self._open.get(key)
        if array is not None:
            self._open.move_to_end(key)
            return array
        path = self.path(key)
        array = self._load(path, shape)
        if array is None:
            with self._lock(key[:2]):
                array = self._load(path, shape)  # another process may have written it meanwhile
                if array is None:
                    array = self._store(path, shape, decode())
        self._open[key] = array
        if len(self._open) > OPEN_ENTRIES:
            self._open.popitem(last=False)
        return array

    def _store(self, path: Path, shape: tuple[int, int], decoded: Decoded) -> np.ndarray:
        image_a, image_b, label = decoded
        c = self.bands
        for array in decoded:
            if array.shape[:2] != shape:
                raise InputError(f"an image of the pair changed size while training read it (now "
                                 f"{array.shape[1]}x{array.shape[0]}, was {shape[1]}x{shape[0]}); run again")
        try:
            with atomic_path(path) as tmp:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(*shape, 2 * c + 1))
                out[..., 0:c] = image_a
                out[..., c:2 * c] = image_b
                out[..., 2 * c] = label
                out.flush()
                del out
        except (OSError, OutputError):  # a full or read-only disk, a link planted: serve from memory, uncached
            packed = np.empty((*shape, 2 * c + 1), np.uint8)
            packed[..., 0:c], packed[..., c:2 * c], packed[..., 2 * c] = image_a, image_b, label
            return packed
        loaded = self._load(path, shape)
        assert loaded is not None, path
        return loaded


def split_pixels(crop: np.ndarray, keep_label: bool = False) -> Decoded:
    """A, B (uint8 ``[h, w, C]`` views) and the label of a crop of an entry (``[h, w, 2C + 1]``): bool, or the
    stored uint8 class indices with ``keep_label``."""
    c = (crop.shape[-1] - 1) // 2
    label = crop[..., 2 * c]
    return crop[..., 0:c], crop[..., c:2 * c], label if keep_label else label != 0
