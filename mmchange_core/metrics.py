"""Change-detection metrics: confusion statistics first, then named reductions.

The protocol of the paper (and of A2Net's ``metric_tool``) accumulates ONE confusion matrix over
every pixel of a split and reduces it once; a per-image mean would weight small and empty images
differently. So: build :class:`ConfusionStats` per batch or image with :func:`confusion_stats`, add
them up with ``+``, and reduce with :func:`precision`, :func:`recall`, :func:`f1`, :func:`iou`,
:func:`overall_accuracy`, :func:`kappa` or :func:`summarize`.

Every reduction returns a fraction in [0, 1] (kappa in [-1, 1]) and **0.0 when it is undefined**
(a zero denominator: e.g. precision with no predicted change, F1 on an image with no change in
either label or prediction). Pixel counts stay exact Python integers.

K-class networks (a class file) follow the same pattern: :func:`class_confusion` counts one K x K
matrix (:class:`ClassConfusion`, rows = label, columns = prediction), ``+`` accumulates it, and
:func:`class_stats` (one-vs-rest, reduced by the binary functions above), :func:`mean_f1`,
:func:`mean_iou` (over the change classes), :func:`change_stats` (any change against none),
:func:`class_accuracy` and :func:`summarize_classes` reduce it.

For threshold tuning, :class:`ProbabilityHistogram` bins the change probabilities of changed and
unchanged pixels separately, which gives the confusion statistics of every candidate threshold
from a single pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

ArrayLike = Any  # numpy array or torch tensor (bool or 0/1), any shape


@dataclass(frozen=True)
class ConfusionStats:
    """Pixel counts of the change class: true/false positives/negatives. Add them with ``+``."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: ConfusionStats) -> ConfusionStats:
        if not isinstance(other, ConfusionStats):
            return NotImplemented
        return ConfusionStats(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    def __radd__(self, other: Any) -> ConfusionStats:
        if other == 0:  # lets sum() start from its default 0
            return self
        return self.__add__(other)

    @property
    def total(self) -> int:
        """Number of pixels counted."""
        return self.tp + self.fp + self.fn + self.tn

    def as_tensor(self) -> torch.Tensor:
        """``[tp, fp, fn, tn]`` as int64 (for ``all_reduce`` across processes)."""
        return torch.tensor([self.tp, self.fp, self.fn, self.tn], dtype=torch.int64)

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> ConfusionStats:
        """Inverse of :meth:`as_tensor`."""
        tp, fp, fn, tn = (int(v) for v in values.tolist())
        return cls(tp, fp, fn, tn)


def _as_bool(x: ArrayLike) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    return t.bool() if t.dtype == torch.bool else t != 0


def confusion_stats(pred: ArrayLike, target: ArrayLike) -> ConfusionStats:
    """Confusion statistics of a binary prediction against a binary target (same shape, any shape).

    Inputs are bool or 0/1 arrays/tensors (non-zero counts as change). Counting happens on the
    inputs' device; only four integers come back.
    """
    p, t = _as_bool(pred), _as_bool(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction shape {tuple(p.shape)} differs from target shape {tuple(t.shape)}")
    if t.device != p.device:
        t = t.to(p.device)
    tp = int(torch.count_nonzero(p & t))
    npred = int(torch.count_nonzero(p))
    ntarget = int(torch.count_nonzero(t))
    fp, fn = npred - tp, ntarget - tp
    return ConfusionStats(tp, fp, fn, p.numel() - tp - fp - fn)


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def precision(s: ConfusionStats) -> float:
    """TP / (TP + FP); 0 when nothing is predicted as change."""
    return _ratio(s.tp, s.tp + s.fp)


def recall(s: ConfusionStats) -> float:
    """TP / (TP + FN); 0 when the target has no change."""
    return _ratio(s.tp, s.tp + s.fn)


def f1(s: ConfusionStats) -> float:
    """2TP / (2TP + FP + FN) (= harmonic mean of precision and recall); 0 when undefined."""
    return _ratio(2 * s.tp, 2 * s.tp + s.fp + s.fn)


def iou(s: ConfusionStats) -> float:
    """TP / (TP + FP + FN) of the change class; 0 when undefined."""
    return _ratio(s.tp, s.tp + s.fp + s.fn)


def overall_accuracy(s: ConfusionStats) -> float:
    """(TP + TN) / all pixels; 0 for an empty count."""
    return _ratio(s.tp + s.tn, s.total)


def kappa(s: ConfusionStats) -> float:
    """Cohen's kappa of the 2x2 confusion matrix, (OA - PE) / (1 - PE); 0 when PE = 1 (undefined)."""
    n = s.total
    if not n:
        return 0.0
    oa = (s.tp + s.tn) / n
    pe = ((s.tp + s.fp) * (s.tp + s.fn) + (s.fn + s.tn) * (s.fp + s.tn)) / (n * n)
    return _ratio(oa - pe, 1.0 - pe) if pe != 1.0 else 0.0


METRIC_NAMES = ("precision", "recall", "f1", "iou", "oa", "kappa")


def summarize(s: ConfusionStats) -> dict[str, float | int]:
    """All reductions plus the raw counts: precision, recall, f1, iou, oa, kappa, tp, fp, fn, tn."""
    return {
        "precision": precision(s),
        "recall": recall(s),
        "f1": f1(s),
        "iou": iou(s),
        "oa": overall_accuracy(s),
        "kappa": kappa(s),
        "tp": s.tp,
        "fp": s.fp,
        "fn": s.fn,
        "tn": s.tn,
    }


class ProbabilityHistogram:
    """Histograms of change probabilities for changed and unchanged pixels (for threshold tuning).

    With ``bins`` equal bins on [0, 1], the statistics of the rule ``prob > t`` are exact for every
    bin edge ``t`` (up to pixels lying exactly on an edge).
    """

    def __init__(self, bins: int = 1000) -> None:
        self.bins = bins
        self.positive = torch.zeros(bins, dtype=torch.int64)
        self.negative = torch.zeros(bins, dtype=torch.int64)

    def update(self, probabilities: torch.Tensor, target: ArrayLike) -> None:
        """Add the pixels of ``probabilities`` (float in [0, 1]) with their binary ``target``."""
        t = _as_bool(target).to(probabilities.device)
        idx = (probabilities.float().clamp(0, 1) * self.bins).long().clamp_(max=self.bins - 1)
        self.positive += torch.bincount(idx[t], minlength=self.bins).cpu()
        self.negative += torch.bincount(idx[~t], minlength=self.bins).cpu()

    def __iadd__(self, other: ProbabilityHistogram) -> ProbabilityHistogram:
        self.positive += other.positive
        self.negative += other.negative
        return self

    def stats_at(self, threshold: float) -> ConfusionStats:
        """Confusion statistics of ``prob > threshold`` (threshold snapped to the nearest bin edge)."""
        k = int(round(threshold * self.bins))
        tp = int(self.positive[k:].sum())
        fp = int(self.negative[k:].sum())
        return ConfusionStats(tp, fp, int(self.positive.sum()) - tp, int(self.negative.sum()) - fp)

    def best_threshold(self, low: float = 0.05, high: float = 0.95) -> tuple[float, ConfusionStats]:
        """The bin edge in [low, high] with the highest F1 (ties -> the one closest to 0.5)."""
        pos_above = torch.flip(torch.cumsum(torch.flip(self.positive, [0]), 0), [0])
        neg_above = torch.flip(torch.cumsum(torch.flip(self.negative, [0]), 0), [0])
        total_pos = int(self.positive.sum())
        ks = torch.arange(self.bins)
        thresholds = ks.double() / self.bins
        keep = (thresholds >= low - 1e-12) & (thresholds <= high + 1e-12)
        tp = pos_above.double()
        fp = neg_above.double()
        fn = total_pos - tp
        den = 2 * tp + fp + fn
        scores = torch.where(den > 0, 2 * tp / den.clamp(min=1), torch.zeros_like(den))
        scores[~keep] = -1.0
        best = float(scores.max())
        candidates = ks[scores == best]
        k = int(candidates[torch.argmin((thresholds[candidates] - 0.5).abs())])
        threshold = k / self.bins
        return threshold, self.stats_at(threshold)


# ---------------------------------------------------------------------------------------------- K classes

@dataclass(frozen=True, eq=False)
class ClassConfusion:
    """The K x K confusion matrix of a class-aware network (int64; rows = truth, columns = prediction; index 0
    is "no change"). Add them with ``+``; reduce with :func:`class_stats`, :func:`per_class`, :func:`mean_f1`,
    :func:`mean_iou`, :func:`change_stats`, :func:`class_accuracy` or :func:`summarize_classes`."""

    matrix: np.ndarray

    def __post_init__(self) -> None:
        matrix = np.asarray(self.matrix, dtype=np.int64)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
            raise ValueError(f"a class confusion matrix is K x K with K >= 2, got shape {list(matrix.shape)}")
        object.__setattr__(self, "matrix", matrix)

    @classmethod
    def zeros(cls, classes: int) -> ClassConfusion:
        """An empty count of ``classes`` classes (the start of a sum)."""
        return cls(np.zeros((classes, classes), dtype=np.int64))

    @property
    def classes(self) -> int:
        """K, the number of classes (no change included)."""
        return int(self.matrix.shape[0])

    @property
    def total(self) -> int:
        """Number of pixels counted."""
        return int(self.matrix.sum())

    def __add__(self, other: ClassConfusion) -> ClassConfusion:
        if not isinstance(other, ClassConfusion):
            return NotImplemented
        if other.classes != self.classes:
            raise ValueError(f"cannot add confusion matrices of {self.classes} and {other.classes} classes")
        return ClassConfusion(self.matrix + other.matrix)

    def __radd__(self, other: Any) -> ClassConfusion:
        if isinstance(other, int) and other == 0:  # lets sum() start from its default 0
            return self
        return self.__add__(other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassConfusion) and np.array_equal(self.matrix, other.matrix)

    __hash__ = None  # type: ignore[assignment]  # mutable array inside: not hashable

    def as_tensor(self) -> torch.Tensor:
        """The matrix as an int64 tensor (for ``all_reduce`` across processes)."""
        return torch.from_numpy(self.matrix.copy())

    @classmethod
    def from_tensor(cls, values: torch.Tensor) -> ClassConfusion:
        """Inverse of :meth:`as_tensor`."""
        return cls(values.cpu().numpy().astype(np.int64))


def _as_index(x: ArrayLike) -> np.ndarray:
    array = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return array.astype(np.int64, copy=False).reshape(-1)


def class_confusion(pred: ArrayLike, target: ArrayLike, classes: int) -> ClassConfusion:
    """The K x K confusion of a class index prediction against class index targets (same shape, values 0..K-1),
    counted with one ``np.bincount``."""
    p, t = _as_index(pred), _as_index(target)
    if np.shape(pred) != np.shape(target):
        raise ValueError(f"prediction shape {tuple(np.shape(pred))} differs from target shape "
                         f"{tuple(np.shape(target))}")
    for name, values in (("prediction", p), ("target", t)):
        if values.size and (values.min() < 0 or values.max() >= classes):
            bad = int(values.max() if values.max() >= classes else values.min())
            raise ValueError(f"{name} holds class index {bad}, outside 0..{classes - 1}")
    counts = np.bincount(t * classes + p, minlength=classes * classes)
    return ClassConfusion(counts.reshape(classes, classes))


def class_stats(c: ClassConfusion, index: int) -> ConfusionStats:
    """One-vs-rest :class:`ConfusionStats` of class ``index`` (its precision, recall, F1 and IoU as binary ones)."""
    m = c.matrix
    tp = int(m[index, index])
    fp = int(m[:, index].sum()) - tp
    fn = int(m[index, :].sum()) - tp
    return ConfusionStats(tp, fp, fn, c.total - tp - fp - fn)


def change_stats(c: ClassConfusion) -> ConfusionStats:
    """Any change against no change (index 0), the binary statistics of a K-class result: a change pixel
    predicted as another change class still counts as found change."""
    m = c.matrix
    tn = int(m[0, 0])
    fp = int(m[0, 1:].sum())
    fn = int(m[1:, 0].sum())
    return ConfusionStats(c.total - tn - fp - fn, fp, fn, tn)


def _defined_change_classes(c: ClassConfusion) -> list[int]:
    """Change classes (index >= 1) present in the target or the prediction (their F1 and IoU are defined)."""
    present = c.matrix.sum(axis=0) + c.matrix.sum(axis=1)
    return [i for i in range(1, c.classes) if present[i]]


def mean_f1(c: ClassConfusion) -> float:
    """Mean one-vs-rest F1 over the change classes present in target or prediction (index 0 excluded; a class in
    neither is left out, as mmsegmentation's nan-mean does); 0 when no change class is present."""
    defined = _defined_change_classes(c)
    return sum(f1(class_stats(c, i)) for i in defined) / len(defined) if defined else 0.0


def mean_iou(c: ClassConfusion) -> float:
    """mIoU: mean one-vs-rest IoU over the change classes present in target or prediction (as :func:`mean_f1`)."""
    defined = _defined_change_classes(c)
    return sum(iou(class_stats(c, i)) for i in defined) / len(defined) if defined else 0.0


def class_accuracy(c: ClassConfusion) -> float:
    """Overall accuracy over the K classes: pixels given their true class / all pixels; 0 for an empty count."""
    return _ratio(int(np.trace(c.matrix)), c.total)


def per_class(c: ClassConfusion, names: tuple[str, ...] | None = None,
              values: tuple[int, ...] | None = None) -> list[dict[str, Any]]:
    """One dict per class (no change first): index, value, name, precision, recall, f1, iou (one-vs-rest),
    support (target pixels) and predicted (predicted pixels)."""
    names = names or tuple("no change" if i == 0 else f"class {i}" for i in range(c.classes))
    values = values or tuple(range(c.classes))
    rows = []
    for i in range(c.classes):
        s = class_stats(c, i)
        rows.append({"index": i, "value": int(values[i]), "name": names[i], "precision": precision(s),
                     "recall": recall(s), "f1": f1(s), "iou": iou(s), "support": s.tp + s.fn,
                     "predicted": s.tp + s.fp})
    return rows


def summarize_classes(c: ClassConfusion, names: tuple[str, ...] | None = None,
                      values: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The K-class summary: the binary keys of :func:`summarize` for any change against none (``f1`` is the
    change F1, kept for callers that rank by it), then change_f1, mean_f1, miou (change classes), class_oa
    (K-class overall accuracy), per_class (:func:`per_class`) and the confusion matrix with the class names."""
    out: dict[str, Any] = summarize(change_stats(c))
    rows = per_class(c, names, values)
    out.update({"change_f1": out["f1"], "mean_f1": mean_f1(c), "miou": mean_iou(c), "class_oa": class_accuracy(c),
                "per_class": rows,
                "confusion": {"rows": "label", "columns": "prediction", "classes": [r["name"] for r in rows],
                              "values": [r["value"] for r in rows], "matrix": c.matrix.tolist()}})
    return out
