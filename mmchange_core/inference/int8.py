"""int8 on the CPU that a user can trust: a calibrated static-int8 export, its accuracy certificate, a disk cache.

(being written)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmchange_core.data.dataset import read_labelled_pair
from mmchange_core.data.layouts import detect_layout, resolve_dataset_root
from mmchange_core.data.normalize import normalize_batch
from mmchange_core.data.windows import TileGrid, iter_window_batches
from mmchange_core.io.raster import read_images
from mmchange_core.models.checkpoint import CheckpointMeta
from mmchange_core.models.export import import_onnx_module
from mmchange_core.text.features import checkpoint_text_provider


def calibration_batches(meta: CheckpointMeta, dataset: str | Path, split: str = "train", *, windows: int = 32,
                        captions: str | None = None) -> tuple[list[dict[str, np.ndarray]], int]:
    """Up to ``windows`` normalised tile-size windows of ``split``'s pairs as onnxruntime feeds (one window each),
    taken evenly across the pairs; text models get the pairs' caption embeddings. Returns (feeds, pairs used)."""
    root = resolve_dataset_root(dataset)
    layout = detect_layout(root)
    pairs = layout.pairs(split)
    per_pair = max(1, -(-windows // len(pairs)))
    pairs = pairs[:windows]
    provider = checkpoint_text_provider(meta, root, captions, pairs)
    emb_a = emb_b = None
    if provider is not None:
        emb_a, emb_b = provider(pairs)
    norm = meta.normalization
    feeds: list[dict[str, np.ndarray]] = []
    for i, pair in enumerate(pairs):
        image_a, image_b, _ = read_labelled_pair(pair, meta.imagery) if pair.label is not None else \
            (*read_images([pair.image_a, pair.image_b], None, meta.imagery), None)
        grid = TileGrid.plan(image_a.shape[0], image_a.shape[1], meta.tile_size, 0)
        step = max(1, len(grid) // per_pair)
        taken = 0
        for batch in iter_window_batches(grid, lambda y, h: image_a[y:y + h], lambda y, h: image_b[y:y + h], 1):
            index = batch.rows[0] * grid.columns + batch.cols[0]
            if index % step or taken >= per_pair:
                continue
            feed = {name: normalize_batch(torch.from_numpy(arr).permute(0, 3, 1, 2), norm.mean, norm.std).numpy()
                    for name, arr in (("image_a", batch.image_a), ("image_b", batch.image_b))}
            if emb_a is not None and emb_b is not None:
                feed["text_a"] = np.asarray(emb_a[i], dtype=np.float32).reshape(1, -1)
                feed["text_b"] = np.asarray(emb_b[i], dtype=np.float32).reshape(1, -1)
            feeds.append(feed)
            taken += 1
        if len(feeds) >= windows:
            break
    return feeds[:windows], min(len(pairs), i + 1)


def calibration_reader(feeds: list[dict[str, np.ndarray]]) -> Any:
    """An onnxruntime ``CalibrationDataReader`` over ``feeds``."""
    import_onnx_module("onnxruntime", "--quantize int8")
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items: Iterator[dict[str, np.ndarray]] = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._items, None)

    return _Reader()
