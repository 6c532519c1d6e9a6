"""Per-band normalisation statistics of a training split, streamed and cached.

A multispectral model cannot use ImageNet's RGB statistics, so its mean and std per band are measured
on the pixels the network sees in training: each pair read through the model's bands and radiometric
rule (both dates under one scale, :func:`~mmchange_core.io.raster.open_sources`), by strips of rows,
into a 256-bin histogram per band. Memory does not grow with the dataset, the result is exact (the
values are 8-bit), and it does not depend on the reading order. The statistics are cached in
``<cache_home()>/band_stats/<key>.json``, keyed by every image's path, size and modification time and
by the imagery settings, so a second run on the same split reads nothing; the checkpoint stores them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmchange_core.data.layouts import ImagePair
from mmchange_core.environment import cache_home
from mmchange_core.errors import InputError, OutputError
from mmchange_core.io.atomic import atomic_write_text
from mmchange_core.io.imagery import Imagery
from mmchange_core.io.raster import open_sources

#: Rows read at a time (a strip of both dates).
STRIP_ROWS = 256
#: Format of the cached files (bump when the computation changes).
STATS_FORMAT = 1


def stats_cache_dir() -> Path:
    """Where band statistics are cached: ``<cache_home()>/band_stats``."""
    return cache_home() / "band_stats"


def stats_key(pairs: Sequence[ImagePair], imagery: Imagery) -> str | None:
    """The cache key of ``pairs`` read with ``imagery`` (None when an image cannot be stat'ed)."""
    digest = hashlib.sha256(f"mmchange-band-stats-v{STATS_FORMAT}|"
                            f"{json.dumps(imagery.to_dict(), sort_keys=True)}".encode())
    for pair in pairs:
        for path in (pair.image_a, pair.image_b):
            try:
                st = os.stat(path)
            except OSError:
                return None
            digest.update(f"|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def band_histograms(pairs: Sequence[ImagePair], imagery: Imagery) -> np.ndarray:
    """``[C, 256]`` counts of each band's 8-bit values over both dates of every pair, read by strips."""
    counts: np.ndarray | None = None
    for pair in pairs:
        sources = open_sources([pair.image_a, pair.image_b], None, imagery)
        try:
            for source in sources:
                channels = source.channels
                if counts is None:
                    counts = np.zeros((channels, 256), np.int64)
                for y0 in range(0, source.height, STRIP_ROWS):
                    rows = source.read_rows(y0, min(STRIP_ROWS, source.height - y0)).reshape(-1, channels)
                    for c in range(channels):
                        counts[c] += np.bincount(rows[:, c], minlength=256)
        finally:
            for source in sources:
                source.close()
    if counts is None:
        raise InputError("no training pairs to measure band statistics on; check the dataset's train split")
    return counts


def stats_from_histograms(counts: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std per band of [0, 1] values (``value / 255``) from ``[C, 256]`` histograms."""
    levels = np.arange(256, dtype=np.float64) / 255.0
    total = counts.sum(axis=1).astype(np.float64)
    mean = (counts * levels).sum(axis=1) / total
    var = (counts * levels**2).sum(axis=1) / total - mean**2
    std = np.sqrt(np.maximum(var, 0.0))
    std = np.where(std < 1e-3, 1e-3, std)  # a constant band (e.g. a cirrus band over clear sky) stays usable
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def band_statistics(pairs: Sequence[ImagePair], imagery: Imagery, *, cache: Path | None = None
                    ) -> tuple[tuple[float, ...], tuple[float, ...], bool]:
    """Mean and std per band of ``pairs`` (the training split) under ``imagery``, and whether they were cached.

    ``cache`` (default :func:`stats_cache_dir`) holds one JSON file per key; an unwritable cache only
    means the statistics are measured again next time.
    """
    folder = stats_cache_dir() if cache is None else Path(cache)
    key = stats_key(pairs, imagery)
    path = folder / f"{key}.json" if key is not None else None
    if path is not None and path.is_file():
        try:
            data = json.loads(path.read_text())
            mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
            if len(mean) == len(std) == imagery.channels:
                return mean, std, True
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged entry is measured again and replaced
    mean, std = stats_from_histograms(band_histograms(pairs, imagery))
    if path is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps({"mean": list(mean), "std": list(std), "pairs": len(pairs),
                                                "imagery": imagery.to_dict()}, indent=1), "band statistics")
        except (OSError, OutputError):
            pass
    return mean, std, False
