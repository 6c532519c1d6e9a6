"""Evaluation of a change-detection network on one split: the paper's protocol as a library call.

:func:`evaluate` asks a :class:`~mmchange_core.inference.detector.ChangeDetector` for the probability
map of every pair of a split, thresholds it (``prob > threshold``) and accumulates ONE confusion
matrix over all pixels (architecture.md, section c). The windows, their padding and blending are
exactly those of ``mmchange predict`` (:mod:`mmchange_core.data.windows`), so ``eval --save-pred``
writes the masks that ``predict`` writes for the same pair, checkpoint, threshold and windowing.
With ``--overlap 0`` and a tile size dividing the image, the windows are the paper's non-overlapping
crops (LEVIR-CD's 1024 px tiles as sixteen 256 px crops).

The robustness command calls the same function with perturbed inputs (``image_transform``) and the
matching text embeddings (``text_provider``).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from mmchange_core.data.dataset import read_labelled_pair
from mmchange_core.io.imagery import Imagery
from mmchange_core.data.layouts import DatasetLayout, ImagePair, detect_layout, resolve_dataset_root
from mmchange_core.data.loader_errors import unwrap_worker_error
from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.evaluation.metrics import ConfusionStats, ProbabilityHistogram, confusion_stats, f1, summarize
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.predict import pair_name
from mmchange_core.io.images import write_png
from mmchange_core.progress import ProgressCallback, report
from mmchange_core.reporting.thumbnails import THUMB_SIDE, error_blend, mask_thumbnail, thumbnail
from mmchange_core.reporting.visualize import error_overlay
from mmchange_core.text.features import TextProvider

#: ``transform(image_a, image_b, index) -> (image_a, image_b)`` on uint8 ``[H, W, C]`` arrays, applied
#: before normalisation; ``index`` is the pair's position in the split (for reproducible randomness).
#: Must be picklable when ``num_workers > 0``.
ImageTransform = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class ImageResult:
    """Confusion statistics of one pair."""

    index: int
    pair: ImagePair
    stats: ConfusionStats


#: Pairs kept for the report's gallery by default: the worst ``DEFAULT_GALLERY`` by F1.
DEFAULT_GALLERY = 24


def gallery_score(stats: ConfusionStats) -> float:
    """The F1 a gallery ranks a pair by: its F1, or 1.0 when there is no change in label or prediction
    (nothing to find and nothing found is a perfect answer, though F1 is 0 there by convention)."""
    return f1(stats) if 2 * stats.tp + stats.fp + stats.fn else 1.0


@dataclass
class GalleryPair:
    """A pair kept for the report: its statistics and thumbnails (A, B, label, prediction, error overlay on B)."""

    index: int
    pair: ImagePair
    stats: ConfusionStats
    score: float
    pictures: dict[str, np.ndarray]


class WorstPairs:
    """The ``limit`` pairs with the lowest :func:`gallery_score` (then the most wrong pixels, then the first
    seen), kept in a bounded heap so memory does not grow with the split."""

    def __init__(self, limit: int, max_side: int = THUMB_SIDE) -> None:
        self.limit, self.max_side = limit, max_side
        self._heap: list[tuple[tuple[float, int, int], GalleryPair]] = []  # the best kept pair on top

    @staticmethod
    def _goodness(index: int, stats: ConfusionStats) -> tuple[float, int, int]:
        return gallery_score(stats), -(stats.fp + stats.fn), index

    def wants(self, index: int, stats: ConfusionStats) -> bool:
        """Whether the pair would be kept (checked before its thumbnails are made)."""
        if self.limit <= 0:
            return False
        best_kept = tuple(-k for k in self._heap[0][0]) if self._heap else None
        return len(self._heap) < self.limit or self._goodness(index, stats) < best_kept

    def offer(self, index: int, pair: ImagePair, stats: ConfusionStats, image_a: np.ndarray, image_b: np.ndarray,
              label: np.ndarray, pred: np.ndarray) -> None:
        """Keep the pair (with thumbnails) if it is among the worst so far."""
        if not self.wants(index, stats):
            return
        side = self.max_side
        target = label > 0
        pictures = {"A": thumbnail(image_a, side), "B": thumbnail(image_b, side),
                    "label": mask_thumbnail(target, side), "prediction": mask_thumbnail(pred, side),
                    "errors on B": thumbnail(error_blend(image_b, pred, target), side)}
        item = GalleryPair(index, pair, stats, gallery_score(stats), pictures)
        key = self._goodness(index, stats)
        entry = (tuple(-k for k in key), item)  # heapq is a min-heap: negate so the best kept pair is on top
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, entry)  # type: ignore[arg-type]
        else:
            heapq.heapreplace(self._heap, entry)  # type: ignore[arg-type]

    def worst_first(self) -> list[GalleryPair]:
        """The kept pairs, worst first."""
        return [item for _, item in sorted(self._heap, key=lambda e: tuple(-k for k in e[0]))]


@dataclass
class EvaluationResult:
    """Global statistics of a split, per-image statistics and (optionally) a probability histogram."""

    split: str
    threshold: float
    stats: ConfusionStats
    per_image: list[ImageResult] = field(default_factory=list)
    histogram: ProbabilityHistogram | None = None
    seconds: float = 0.0
    gallery: list[GalleryPair] = field(default_factory=list)  # the worst pairs, worst first (``gallery=K``)

    def metrics(self) -> dict[str, float | int]:
        """precision, recall, f1, iou, oa, kappa (fractions) and tp, fp, fn, tn (pixel counts)."""
        return summarize(self.stats)


class _EvalPairs(Dataset):
    """Pairs of a split as uint8 arrays, read and transformed in DataLoader workers."""

    def __init__(self, pairs: Sequence[ImagePair], image_transform: ImageTransform | None,
                 imagery: Imagery | None = None) -> None:
        self.pairs = list(pairs)
        self.image_transform = image_transform
        self.imagery = imagery

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        image_a, image_b, label = read_labelled_pair(self.pairs[index], self.imagery)
        if self.image_transform is not None:
            image_a, image_b = self.image_transform(image_a, image_b, index)
        return index, image_a, image_b, label


def _as_is(item: Any) -> Any:
    """DataLoader collate function that keeps numpy arrays as they are (module level: picklable)."""
    return item


def _as_layout(dataset: DatasetLayout | str | Path) -> DatasetLayout:
    if isinstance(dataset, DatasetLayout):
        return dataset
    return detect_layout(resolve_dataset_root(dataset))


def evaluate(detector: ChangeDetector, dataset: DatasetLayout | str | Path, split: str = "test", *,
             threshold: float | None = None, workers: int = 0, text_provider: TextProvider | None = None,
             image_transform: ImageTransform | None = None, pairs: Sequence[ImagePair] | None = None,
             vis_dir: str | Path | None = None, pred_dir: str | Path | None = None, collect_histogram: bool = False,
             gallery: int = 0, progress: ProgressCallback | None = None) -> EvaluationResult:
    """Evaluate ``detector`` on every labelled pair of ``split`` with one confusion matrix over all pixels.

    Args:
        detector: the network with its windowing (tile size, overlap, batch size) and threshold.
        dataset: a detected layout, a dataset folder, or ``levir``/``whu``/``sysu``.
        split: the split to evaluate (``all`` for unsplit folders).
        threshold: a pixel is predicted as change when its probability is ``> threshold``
            (default: the detector's).
        workers: DataLoader processes that read and prepare pairs.
        text_provider: ``provider(pairs) -> (emb_a, emb_b)`` with ``[len(pairs), D]`` arrays; required
            for text models, ignored by image-only models.
        image_transform: optional ``transform(image_a, image_b, index)`` applied to the uint8 images (it must
            keep their size) before normalisation (robustness perturbations); labels are left as they are.
        pairs: evaluate these pairs instead of the split's (must have labels).
        vis_dir: when given, an error overlay per pair is written there (white TP, black TN,
            red FP, blue FN), named after the pair.
        pred_dir: when given, the 0/255 mask of each pair is written there as ``<name>.png``, named
            as ``mmchange predict`` names it in folder mode.
        collect_histogram: also collect a :class:`ProbabilityHistogram` (for threshold tuning).
        gallery: keep thumbnails of the ``gallery`` worst pairs by F1 (:class:`WorstPairs`) for the report;
            memory stays bounded by ``gallery``, whatever the split's size.
        progress: receives a ``pairs`` :class:`~mmchange_core.progress.ProgressEvent` after each pair.

    Returns:
        :class:`EvaluationResult` with the global :class:`ConfusionStats`, per-image statistics in the
        split's order, and the histogram when requested.
    """
    start = time.perf_counter()
    threshold = detector.threshold if threshold is None else threshold
    layout = _as_layout(dataset)
    pairs = list(pairs) if pairs is not None else layout.require_labels(split)
    missing = [p for p in pairs if p.label is None]
    if missing:
        raise InputError(f"{missing[0].image_a} has no label; evaluation needs a label for every pair")
    emb_a = emb_b = None
    if detector.uses_text:
        if text_provider is None:
            raise InputError(f"this checkpoint uses text ({detector.runner.config.variant}) but no caption "
                             f"embeddings were given for {layout.root}; run 'mmchange caption' on the dataset")
        emb_a, emb_b = (np.asarray(e, dtype=np.float32) for e in text_provider(pairs))
    vis_path = Path(vis_dir) if vis_dir is not None else None
    pred_path = Path(pred_dir) if pred_dir is not None else None
    histogram = ProbabilityHistogram() if collect_histogram else None
    loader = DataLoader(_EvalPairs(pairs, image_transform, detector.imagery), batch_size=None, shuffle=False, num_workers=workers,
                        collate_fn=_as_is)
    results: list[ImageResult] = []
    worst = WorstPairs(gallery)
    total = ConfusionStats()
    try:
        for index, image_a, image_b, label in loader:
            text_a = None if emb_a is None else emb_a[index]
            text_b = None if emb_b is None else emb_b[index]
            prob = detector.probability_map(image_a, image_b, text_a, text_b)
            pred = prob > threshold
            stats = confusion_stats(pred, label)
            total = total + stats
            if histogram is not None:
                histogram.update(torch.from_numpy(prob), label)
            pair = pairs[index]
            results.append(ImageResult(index, pair, stats))
            if image_a.shape[-1] != 3 or detector.imagery.rgb_positions() != (0, 1, 2):  # pictures show RGB
                rgb = list(detector.imagery.rgb_positions())
                image_a, image_b = image_a[..., rgb], image_b[..., rgb]
            worst.offer(index, pair, stats, image_a, image_b, label, pred)
            if vis_path is not None:
                write_png(vis_path / f"{pair_name(pair.image_a, pair.image_b)}.png",
                          error_overlay(pred, label > 0, image_b))
            if pred_path is not None:
                write_png(pred_path / f"{pair_name(pair.image_a, pair.image_b)}.png", pred.astype(np.uint8) * 255)
            report(progress, "pairs", len(results), len(pairs))
    except MMChangeError as exc:
        raise unwrap_worker_error(exc) from None
    return EvaluationResult(split, threshold, total, results, histogram, time.perf_counter() - start,
                            worst.worst_first())
