"""Evaluation of a change-detection network on one split: the paper's protocol as a library call.

:func:`evaluate` runs the network through :class:`~mmchange_core.inference.runner.InferenceRunner`
on every pair of a split, thresholds the change probability (``prob > threshold``) and accumulates
ONE confusion matrix over all pixels (architecture.md, section c). Images larger than the tile size
are cut into tiles (:mod:`mmchange_core.data.tiles`) and stitched back, so every pixel is counted
exactly once; sides that are not multiples of 32 are padded by edge replication and cropped back.

The robustness command calls the same function with perturbed inputs (``image_transform``) and the
matching text embeddings (``text_provider``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from mmchange_core.data.dataset import read_labelled_pair
from mmchange_core.data.layouts import DatasetLayout, ImagePair, detect_layout, resolve_dataset_root
from mmchange_core.data.normalize import to_tensor
from mmchange_core.data.tiles import Window, padded_size, tile_windows
from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.data.loader_errors import unwrap_worker_error
from mmchange_core.text.features import TextProvider
from mmchange_core.reporting.visualize import error_overlay
from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.io.images import write_png
from mmchange_core.evaluation.metrics import ConfusionStats, ProbabilityHistogram, confusion_stats, summarize
from mmchange_core.models.mmchange import MMChange

#: ``transform(image_a, image_b, index) -> (image_a, image_b)`` on uint8 ``[H, W, 3]`` arrays, applied
#: before normalisation; ``index`` is the pair's position in the split (for reproducible randomness).
#: Must be picklable when ``num_workers > 0``.
ImageTransform = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]
#: ``progress(done_pairs, total_pairs)``.
Progress = Callable[[int, int], None]


@dataclass
class ImageResult:
    """Confusion statistics of one pair."""

    index: int
    pair: ImagePair
    stats: ConfusionStats


@dataclass
class EvaluationResult:
    """Global statistics of a split, per-image statistics and (optionally) a probability histogram."""

    split: str
    threshold: float
    stats: ConfusionStats
    per_image: list[ImageResult] = field(default_factory=list)
    histogram: ProbabilityHistogram | None = None
    seconds: float = 0.0

    def metrics(self) -> dict[str, float | int]:
        """precision, recall, f1, iou, oa, kappa (fractions) and tp, fp, fn, tn (pixel counts)."""
        return summarize(self.stats)


class _EvalPairs(Dataset):
    """Pairs of a split, loaded, transformed, normalised and cut into tiles (in DataLoader workers)."""

    def __init__(self, pairs: Sequence[ImagePair], tile_size: int, image_transform: ImageTransform | None) -> None:
        self.pairs = list(pairs)
        self.tile_size = tile_size
        self.image_transform = image_transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        pair = self.pairs[index]
        image_a, image_b, label = read_labelled_pair(pair)
        if self.image_transform is not None:
            image_a, image_b = self.image_transform(image_a, image_b, index)
        h, w = label.shape
        windows = tile_windows(h, w, self.tile_size)
        th, tw = padded_size(windows[0].height), padded_size(windows[0].width)
        tiles = []
        for image in (image_a, image_b):
            full = to_tensor(image)
            stack = []
            for win in windows:
                rows, cols = win.slices()
                tile = full[:, rows, cols]
                if tile.shape[-2:] != (th, tw):
                    tile = F.pad(tile.unsqueeze(0), (0, tw - win.width, 0, th - win.height),
                                 mode="replicate").squeeze(0)
                stack.append(tile)
            tiles.append(torch.stack(stack))
        return {"index": index, "tiles_a": tiles[0], "tiles_b": tiles[1], "label": torch.from_numpy(label),
                "windows": windows}


@dataclass
class _Canvas:
    index: int
    label: torch.Tensor
    windows: list[Window]
    prob: torch.Tensor
    remaining: int


def _as_runner(model: MMChange | InferenceRunner, device: str | torch.device, precision: str) -> InferenceRunner:
    return model if isinstance(model, InferenceRunner) else InferenceRunner(model, device, precision)


def _as_layout(dataset: DatasetLayout | str | Path) -> DatasetLayout:
    if isinstance(dataset, DatasetLayout):
        return dataset
    return detect_layout(resolve_dataset_root(dataset))


def evaluate(model: MMChange | InferenceRunner, dataset: DatasetLayout | str | Path, split: str = "test", *,
             threshold: float = 0.5, tile_size: int = 256, batch_size: int = 8, device: str | torch.device = "auto",
             precision: str = "auto", num_workers: int = 0, text_provider: TextProvider | None = None,
             image_transform: ImageTransform | None = None, pairs: Sequence[ImagePair] | None = None,
             vis_dir: str | Path | None = None, collect_histogram: bool = False,
             progress: Progress | None = None) -> EvaluationResult:
    """Evaluate ``model`` on every labelled pair of ``split`` with one confusion matrix over all pixels.

    Args:
        model: an :class:`MMChange` network (run in eval mode on ``device`` with ``precision``) or a
            ready :class:`InferenceRunner` (then ``device``/``precision`` are ignored).
        dataset: a detected layout, a dataset folder, or ``levir``/``whu``/``sysu``.
        split: the split to evaluate (``all`` for unsplit folders).
        threshold: a pixel is predicted as change when its probability is ``> threshold``.
        tile_size: tile side for images larger than it (the training crop size; multiple of 32).
        batch_size: tiles per forward pass.
        num_workers: DataLoader processes that read and prepare pairs.
        text_provider: ``provider(pairs) -> (emb_a, emb_b)`` with ``[len(pairs), D]`` arrays; required
            for text models, ignored by image-only models.
        image_transform: optional ``transform(image_a, image_b, index)`` applied to the uint8 images (it must
            keep their size) before normalisation (robustness perturbations); labels are left as they are.
        pairs: evaluate these pairs instead of the split's (must have labels).
        vis_dir: when given, an error overlay per pair is written there (white TP, black TN,
            red FP, blue FN), named after the A image.
        collect_histogram: also collect a :class:`ProbabilityHistogram` (for threshold tuning).
        progress: ``progress(done, total)`` after each pair.

    Returns:
        :class:`EvaluationResult` with the global :class:`ConfusionStats`, per-image statistics in the
        split's order, and the histogram when requested.
    """
    start = time.perf_counter()
    if tile_size <= 0 or tile_size % 32:
        raise InputError(f"tile size must be a positive multiple of 32, got {tile_size}")
    runner = _as_runner(model, device, precision)
    layout = _as_layout(dataset)
    pairs = list(pairs) if pairs is not None else layout.require_labels(split)
    missing = [p for p in pairs if p.label is None]
    if missing:
        raise InputError(f"{missing[0].image_a} has no label; evaluation needs a label for every pair")
    text_a = text_b = None
    if runner.uses_text:
        if text_provider is None:
            raise InputError(f"this checkpoint uses text ({runner.model.config.variant}) but no caption "
                             f"embeddings were given for {layout.root}; run 'mmchange caption' on the dataset")
        emb_a, emb_b = text_provider(pairs)
        text_a = torch.as_tensor(np.asarray(emb_a, dtype=np.float32))
        text_b = torch.as_tensor(np.asarray(emb_b, dtype=np.float32))
    vis_path = Path(vis_dir) if vis_dir is not None else None
    histogram = ProbabilityHistogram() if collect_histogram else None

    loader = DataLoader(_EvalPairs(pairs, tile_size, image_transform), batch_size=None, shuffle=False,
                        num_workers=num_workers, pin_memory=runner.device.type == "cuda")
    canvases: dict[int, _Canvas] = {}
    pending: dict[tuple[int, int], list[tuple[int, int, torch.Tensor, torch.Tensor]]] = {}
    results: list[ImageResult] = []
    total = ConfusionStats()

    def finish(canvas: _Canvas) -> None:
        nonlocal total
        prob = canvas.prob
        pred = prob > threshold
        stats = confusion_stats(pred, canvas.label)
        total = total + stats
        if histogram is not None:
            histogram.update(prob, canvas.label)
        pair = pairs[canvas.index]
        results.append(ImageResult(canvas.index, pair, stats))
        if vis_path is not None:
            write_png(vis_path / f"{pair.image_a.stem}.png", error_overlay(pred.numpy(), canvas.label.numpy()))
        del canvases[canvas.index]
        if progress is not None:
            progress(len(results), len(pairs))

    def flush(shape: tuple[int, int]) -> None:
        group = pending.pop(shape, [])
        if not group:
            return
        batch_a = torch.stack([g[2] for g in group])
        batch_b = torch.stack([g[3] for g in group])
        ta = tb = None
        if text_a is not None:
            idx = torch.tensor([g[0] for g in group])
            ta, tb = text_a[idx], text_b[idx]
        probs = torch.sigmoid(runner.logits(batch_a, batch_b, ta, tb))[:, 0].float().cpu()
        for (index, tile, _, _), prob in zip(group, probs):
            canvas = canvases[index]
            win = canvas.windows[tile]
            rows, cols = win.slices()
            canvas.prob[rows, cols] = prob[:win.height, :win.width]
            canvas.remaining -= 1
            if canvas.remaining == 0:
                finish(canvas)

    def add_pair(item: dict) -> None:
        index = int(item["index"])
        label, windows = item["label"], item["windows"]
        canvases[index] = _Canvas(index, label, windows, torch.zeros(label.shape, dtype=torch.float32),
                                  len(windows))
        shape = tuple(item["tiles_a"].shape[-2:])
        for tile in range(len(windows)):
            pending.setdefault(shape, []).append((index, tile, item["tiles_a"][tile], item["tiles_b"][tile]))
            if len(pending[shape]) >= batch_size:
                flush(shape)

    try:
        for item in loader:
            add_pair(item)
    except MMChangeError as exc:
        raise unwrap_worker_error(exc) from None
    for shape in list(pending):
        flush(shape)
    results.sort(key=lambda r: r.index)
    return EvaluationResult(split, threshold, total, results, histogram, time.perf_counter() - start)
