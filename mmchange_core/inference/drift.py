"""Numerical drift of a fast inference path against the plain fp32 network.

The fast path (folded BatchNorm, bf16, channels_last, CUDA graphs or compilation), or an exported
``.onnx`` model run by onnxruntime (fp32, or int8 after ``mmchange export --quantize``), changes
outputs by rounding; this measures what that does to the decisions: the share of pixels whose
change/no-change decision agrees, the F1 of each against the labels, and the time each takes.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmchange_core.data.dataset import read_labelled_pair
from mmchange_core.data.layouts import detect_layout, resolve_dataset_root
from mmchange_core.data.windows import DEFAULT_OVERLAP
from mmchange_core.metrics import ConfusionStats, confusion_stats, f1
from mmchange_core.text.features import checkpoint_text_provider
from mmchange_core.errors import InputError
from mmchange_core.inference.detector import DEFAULT_BATCH_SIZE, ChangeDetector
from mmchange_core.inference.backends import open_model


@dataclass
class DriftReport:
    """Agreement of the fast path's masks with the fp32 reference's, and both F1 scores."""

    device: str
    precision: str
    pairs: int
    pixels: int
    agreement: float
    f1_reference: float
    f1_fast: float
    max_abs_prob_diff: float
    seconds_reference: float = 0.0
    """Median seconds per pair of the reference (plain fp32 torch network)."""
    seconds_fast: float = 0.0
    """Median seconds per pair of the fast path (or of the ``candidate`` model)."""
    candidate: str | None = None
    """The model file compared with the reference (``None``: the checkpoint's own fast path)."""

    @property
    def f1_diff_points(self) -> float:
        """|F1 difference| in percentage points."""
        return abs(self.f1_fast - self.f1_reference) * 100


def measure_drift(checkpoint: str | Path, dataset: str | Path, split: str = "test", *, device: str = "auto",
                  precision: str = "auto", channels_last: bool | None = None, cuda_graphs: bool | None = None,
                  compile: bool = False, tile_size: int | None = None, overlap: int = DEFAULT_OVERLAP,
                  batch_size: int = DEFAULT_BATCH_SIZE, captions: str | None = None,
                  candidate: str | Path | None = None) -> DriftReport:
    """Predict every labelled pair of ``split`` with the plain fp32 network and with the fast path.

    ``checkpoint`` may also be an fp32 ``.onnx`` (the reference of its quantised ``candidate``).

    With ``candidate`` (e.g. the ``.onnx`` export of ``checkpoint``, fp32 or int8) the candidate model
    replaces the fast path; both use the same windows, text embeddings and the reference's threshold.
    """
    windows = dict(tile_size=tile_size, overlap=overlap, batch_size=batch_size)
    model = open_model(checkpoint)  # resolved once: the reference and the fast path share it
    if model.backend.name != "torch":  # an fp32 export as the reference of its int8 version
        if candidate is None:
            raise InputError(f"the drift reference {checkpoint} is an ONNX model; give the model to compare with it "
                             f"(e.g. its int8 version) as the candidate")
        reference = ChangeDetector.load(model, device=device, **windows)
    else:
        reference = ChangeDetector.load(model, device=device, precision="fp32", **windows,
                                        runner_options=dict(channels_last=False, fold_bn=False, cuda_graphs=False))
    if candidate is None:
        fast = ChangeDetector.load(model, device=device, precision=precision, compile=compile, **windows,
                                   runner_options=dict(channels_last=channels_last, cuda_graphs=cuda_graphs))
    else:
        fast = ChangeDetector.load(candidate, device=device, precision=precision, compile=compile, **windows)
        if fast.meta.model != reference.meta.model:
            raise InputError(f"{candidate} holds a {fast.meta.model} network but {checkpoint} a {reference.meta.model}; "
                             f"compare a model with its own export")
    root = resolve_dataset_root(dataset)
    layout = detect_layout(root)
    pairs = layout.require_labels(split)
    provider = checkpoint_text_provider(reference.meta, root, captions)
    emb_a = emb_b = None
    if provider is not None:
        emb_a, emb_b = provider(pairs)
    threshold = reference.threshold
    agree = total = 0
    stats_ref, stats_fast = ConfusionStats(), ConfusionStats()
    max_diff = 0.0
    times_ref: list[float] = []
    times_fast: list[float] = []
    for i, pair in enumerate(pairs):
        # K-class networks: class indices, compared as any change (label > 0) like the change masks
        image_a, image_b, label = read_labelled_pair(pair, reference.imagery, reference.meta.classes)
        text_a = None if emb_a is None else emb_a[i]
        text_b = None if emb_b is None else emb_b[i]
        t0 = time.perf_counter()
        prob_ref = reference.probability_map(image_a, image_b, text_a, text_b)
        t1 = time.perf_counter()
        prob_fast = fast.probability_map(image_a, image_b, text_a, text_b)
        times_ref.append(t1 - t0)
        times_fast.append(time.perf_counter() - t1)
        mask_ref, mask_fast = prob_ref > threshold, prob_fast > threshold
        agree += int((mask_ref == mask_fast).sum())
        total += mask_ref.size
        max_diff = max(max_diff, float(np.abs(prob_ref - prob_fast).max()))
        stats_ref = stats_ref + confusion_stats(mask_ref, label)
        stats_fast = stats_fast + confusion_stats(mask_fast, label)
    return DriftReport(str(fast.device), fast.runner.precision, len(pairs), total, agree / max(total, 1),
                       f1(stats_ref), f1(stats_fast), max_diff, statistics.median(times_ref),
                       statistics.median(times_fast), None if candidate is None else str(candidate))
