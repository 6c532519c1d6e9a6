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

K-class networks (a class file): labels are read as class indices, each pixel is decided by the
detector's :class:`~mmchange_core.inference.decision.DecisionRule` (the threshold applies to the total
change probability ``1 - p(no change)``, then the class is the most probable change class) and one
K x K :class:`~mmchange_core.metrics.ClassConfusion` is accumulated beside the binary
statistics of any change against none (:attr:`EvaluationResult.stats`); the threshold histogram stays
on the change probability against "any change". ``pred_dir`` masks are the class file's values as a
palette PNG, overlays tint the predicted classes, and the gallery ranks pairs by their mean F1 over
the change classes present in label or prediction (:func:`class_gallery_score`).
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
from mmchange_core.metrics import (
    ClassConfusion,
    ConfusionStats,
    ProbabilityHistogram,
    change_stats,
    class_confusion,
    class_stats,
    confusion_stats,
    f1,
    summarize,
    summarize_classes,
)
from mmchange_core.inference.decision import DecisionRule
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.predict import pair_name
from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.images import write_palette_png, write_png
from mmchange_core.progress import ProgressCallback, report
from mmchange_core.reporting.thumbnails import (
    THUMB_SIDE,
    class_error_blend,
    class_thumbnail,
    error_blend,
    mask_thumbnail,
    thumbnail,
)
from mmchange_core.reporting.visualize import class_overlay, error_overlay
from mmchange_core.text.features import TextProvider

#: ``transform(image_a, image_b, index) -> (image_a, image_b)`` on uint8 ``[H, W, C]`` arrays, applied
#: before normalisation; ``index`` is the pair's position in the split (for reproducible randomness).
#: Must be picklable when ``num_workers > 0``.
ImageTransform = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class ImageResult:
    """Confusion statistics of one pair (K-class networks: any change against none, and the class confusion)."""

    index: int
    pair: ImagePair
    stats: ConfusionStats
    classes: ClassConfusion | None = None


#: Pairs kept for the report's gallery by default: the worst ``DEFAULT_GALLERY`` by F1.
DEFAULT_GALLERY = 24


def gallery_score(stats: ConfusionStats) -> float:
    """The F1 a gallery ranks a pair by: its F1, or 1.0 when there is no change in label or prediction
    (nothing to find and nothing found is a perfect answer, though F1 is 0 there by convention)."""
    return f1(stats) if 2 * stats.tp + stats.fp + stats.fn else 1.0


def class_gallery_score(classes: ClassConfusion) -> float:
    """The score a K-class gallery ranks a pair by: the mean one-vs-rest F1 over the change classes present in
    the pair's label or prediction (the mean rather than the minimum, so one stray pixel of a class does not
    decide the rank alone); 1.0 when neither holds any change (nothing to find, nothing found)."""
    present = classes.matrix.sum(axis=0) + classes.matrix.sum(axis=1)
    scores = [f1(class_stats(classes, i)) for i in range(1, classes.classes) if present[i]]
    return sum(scores) / len(scores) if scores else 1.0


def _wrong_pixels(stats: ConfusionStats, classes: ClassConfusion | None) -> int:
    """Pixels given the wrong answer: FP + FN, or every pixel off the diagonal of a class confusion."""
    return stats.fp + stats.fn if classes is None else classes.total - int(np.trace(classes.matrix))


@dataclass
class GalleryPair:
    """A pair kept for the report: its statistics and thumbnails (A, B, label, prediction, error overlay on B)."""

    index: int
    pair: ImagePair
    stats: ConfusionStats
    score: float
    pictures: dict[str, np.ndarray]
    classes: ClassConfusion | None = None


class WorstPairs:
    """The ``limit`` pairs with the lowest :func:`gallery_score` (K classes: :func:`class_gallery_score`), then
    the most wrong pixels, then the first seen, kept in a bounded heap so memory does not grow with the split."""

    def __init__(self, limit: int, max_side: int = THUMB_SIDE) -> None:
        self.limit, self.max_side = limit, max_side
        self._heap: list[tuple[tuple[float, int, int], GalleryPair]] = []  # the best kept pair on top

    @staticmethod
    def _goodness(index: int, stats: ConfusionStats, classes: ClassConfusion | None = None) -> tuple[float, int, int]:
        score = gallery_score(stats) if classes is None else class_gallery_score(classes)
        return score, -_wrong_pixels(stats, classes), index

    def wants(self, index: int, stats: ConfusionStats, classes: ClassConfusion | None = None) -> bool:
        """Whether the pair would be kept (checked before its thumbnails are made)."""
        if self.limit <= 0:
            return False
        best_kept = tuple(-k for k in self._heap[0][0]) if self._heap else None
        return len(self._heap) < self.limit or self._goodness(index, stats, classes) < best_kept

    def offer(self, index: int, pair: ImagePair, stats: ConfusionStats, image_a: np.ndarray, image_b: np.ndarray,
              label: np.ndarray, pred: np.ndarray, classes: ClassConfusion | None = None,
              scheme: ClassScheme | None = None) -> None:
        """Keep the pair (with thumbnails) if it is among the worst so far; with ``classes`` (K classes) ``label``
        and ``pred`` are class index maps, drawn in the colours of ``scheme``."""
        if not self.wants(index, stats, classes):
            return
        side = self.max_side
        if classes is None:
            target = label > 0
            pictures = {"A": thumbnail(image_a, side), "B": thumbnail(image_b, side),
                        "label": mask_thumbnail(target, side), "prediction": mask_thumbnail(pred, side),
                        "errors on B": thumbnail(error_blend(image_b, pred, target), side)}
        else:
            scheme = scheme or ClassScheme.numbered(classes.classes)
            values = scheme.index_to_value()
            pictures = {"A": thumbnail(image_a, side), "B": thumbnail(image_b, side),
                        "label": class_thumbnail(values[label], scheme, side),
                        "prediction": class_thumbnail(values[pred], scheme, side),
                        "errors on B": thumbnail(class_error_blend(image_b, pred, label), side)}
        key = self._goodness(index, stats, classes)
        item = GalleryPair(index, pair, stats, key[0], pictures, classes)
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
    confusion: ClassConfusion | None = None
    """K-class networks: the K x K confusion over all pixels (None for binary networks)."""
    scheme: ClassScheme | None = None
    """K-class networks: their classes (names, values, colours); None for binary networks."""

    @property
    def multiclass(self) -> bool:
        """Whether this is the result of a K-class network."""
        return self.confusion is not None

    def metrics(self) -> dict[str, Any]:
        """precision, recall, f1, iou, oa, kappa (fractions) and tp, fp, fn, tn (pixel counts); K-class networks:
        those of any change against none, plus change_f1, mean_f1, miou, class_oa, per_class and confusion
        (:func:`~mmchange_core.metrics.summarize_classes`)."""
        if self.confusion is None:
            return summarize(self.stats)
        scheme = self.scheme or ClassScheme.numbered(self.confusion.classes)
        return summarize_classes(self.confusion, scheme.names, scheme.values)


class _EvalPairs(Dataset):
    """Pairs of a split as uint8 arrays, read and transformed in DataLoader workers."""

    def __init__(self, pairs: Sequence[ImagePair], image_transform: ImageTransform | None,
                 imagery: Imagery | None = None, classes: ClassScheme | None = None) -> None:
        self.pairs = list(pairs)
        self.image_transform = image_transform
        self.imagery = imagery
        self.classes = classes  # K classes: labels are read as class indices

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        image_a, image_b, label = read_labelled_pair(self.pairs[index], self.imagery, self.classes)
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
            red FP, blue FN), named after the pair; K-class networks: the predicted classes in their colours.
        pred_dir: when given, the 0/255 mask of each pair is written there as ``<name>.png``, named
            as ``mmchange predict`` names it in folder mode; K-class networks: the class file's values as a
            palette PNG in the classes' colours.
        collect_histogram: also collect a :class:`ProbabilityHistogram` (for threshold tuning).
        gallery: keep thumbnails of the ``gallery`` worst pairs by F1 (:class:`WorstPairs`; K classes: by
            :func:`class_gallery_score`) for the report;
            memory stays bounded by ``gallery``, whatever the split's size.
        progress: receives a ``pairs`` :class:`~mmchange_core.progress.ProgressEvent` after each pair.

    Returns:
        :class:`EvaluationResult` with the global :class:`ConfusionStats`, per-image statistics in the
        split's order, and the histogram when requested; K-class networks also the :class:`ClassConfusion`
        of the split and of each pair.
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
    decision = DecisionRule(threshold, detector.decision.classes)  # the detector's rule at this threshold
    scheme = decision.classes if decision.multiclass else None
    loader = DataLoader(_EvalPairs(pairs, image_transform, detector.imagery, scheme), batch_size=None, shuffle=False,
                        num_workers=workers, collate_fn=_as_is)
    results: list[ImageResult] = []
    worst = WorstPairs(gallery)
    total = ConfusionStats()
    confusion = ClassConfusion.zeros(len(scheme)) if scheme is not None else None
    try:
        for index, image_a, image_b, label in loader:
            text_a = None if emb_a is None else emb_a[index]
            text_b = None if emb_b is None else emb_b[index]
            classes = None
            prob, pred = detector.decision_map(image_a, image_b, text_a, text_b, decision=decision)
            if scheme is None:
                pred = pred > 0  # change where prob > threshold
                stats = confusion_stats(pred, label)
            else:
                classes = class_confusion(pred, label, len(scheme))
                stats = change_stats(classes)
                confusion = confusion + classes
            total = total + stats
            if histogram is not None:
                histogram.update(torch.from_numpy(prob), label)  # K classes: against any change (label > 0)
            pair = pairs[index]
            results.append(ImageResult(index, pair, stats, classes))
            if image_a.shape[-1] != 3 or detector.imagery.rgb_positions() != (0, 1, 2):  # pictures show RGB
                rgb = list(detector.imagery.rgb_positions())
                image_a, image_b = image_a[..., rgb], image_b[..., rgb]
            worst.offer(index, pair, stats, image_a, image_b, label, pred, classes, scheme)
            name = f"{pair_name(pair.image_a, pair.image_b)}.png"
            if vis_path is not None:
                write_png(vis_path / name, error_overlay(pred, label > 0, image_b) if scheme is None
                          else class_overlay(decision.values(pred), image_b, scheme))
            if pred_path is not None:
                if scheme is None:
                    write_png(pred_path / name, pred.astype(np.uint8) * 255)
                else:
                    write_palette_png(pred_path / name, decision.values(pred), scheme.palette(),
                                      text=scheme.raster_tags())  # the file predict writes
            report(progress, "pairs", len(results), len(pairs))
    except MMChangeError as exc:
        raise unwrap_worker_error(exc) from None
    return EvaluationResult(split, threshold, total, results, histogram, time.perf_counter() - start,
                            worst.worst_first(), confusion, scheme)
