"""Numerical drift of the fast inference path against the plain fp32 network.

The fast path (folded BatchNorm, bf16, channels_last, CUDA graphs or compilation) changes outputs
only by floating-point rounding; this measures what that does to the decisions: the share of
pixels whose change/no-change decision agrees, and the F1 of each against the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmchange_core.data.dataset import read_labelled_pair
from mmchange_core.data.layouts import detect_layout, resolve_dataset_root
from mmchange_core.data.windows import DEFAULT_OVERLAP
from mmchange_core.evaluation.metrics import ConfusionStats, confusion_stats, f1
from mmchange_core.evaluation.run import checkpoint_text_provider
from mmchange_core.inference.detector import DEFAULT_BATCH_SIZE, ChangeDetector
from mmchange_core.models import load_checkpoint


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

    @property
    def f1_diff_points(self) -> float:
        """|F1 difference| in percentage points."""
        return abs(self.f1_fast - self.f1_reference) * 100


def measure_drift(checkpoint: str | Path, dataset: str | Path, split: str = "test", *, device: str = "auto",
                  precision: str = "auto", channels_last: bool | None = None, cuda_graphs: bool | None = None,
                  compile: bool = False, tile_size: int | None = None, overlap: int = DEFAULT_OVERLAP,
                  batch_size: int = DEFAULT_BATCH_SIZE, captions: str | None = None) -> DriftReport:
    """Predict every labelled pair of ``split`` with the plain fp32 network and with the fast path."""
    model, meta = load_checkpoint(checkpoint)
    root = resolve_dataset_root(dataset)
    layout = detect_layout(root)
    pairs = layout.require_labels(split)
    provider = checkpoint_text_provider(meta, root, captions)
    emb_a = emb_b = None
    if provider is not None:
        emb_a, emb_b = provider(pairs)
    windows = dict(tile_size=tile_size, overlap=overlap, batch_size=batch_size)
    reference = ChangeDetector(model, meta, device=device, precision="fp32", **windows,
                               runner_options=dict(channels_last=False, fold_bn=False, cuda_graphs=False))
    fast = ChangeDetector(model, meta, device=device, precision=precision, compile=compile, **windows,
                          runner_options=dict(channels_last=channels_last, cuda_graphs=cuda_graphs))
    threshold = fast.threshold
    agree = total = 0
    stats_ref, stats_fast = ConfusionStats(), ConfusionStats()
    max_diff = 0.0
    for i, pair in enumerate(pairs):
        image_a, image_b, label = read_labelled_pair(pair)
        text_a = None if emb_a is None else emb_a[i]
        text_b = None if emb_b is None else emb_b[i]
        prob_ref = reference.probability_map(image_a, image_b, text_a, text_b)
        prob_fast = fast.probability_map(image_a, image_b, text_a, text_b)
        mask_ref, mask_fast = prob_ref > threshold, prob_fast > threshold
        agree += int((mask_ref == mask_fast).sum())
        total += mask_ref.size
        max_diff = max(max_diff, float(np.abs(prob_ref - prob_fast).max()))
        stats_ref = stats_ref + confusion_stats(mask_ref, label)
        stats_fast = stats_fast + confusion_stats(mask_fast, label)
    return DriftReport(str(fast.device), fast.runner.precision, len(pairs), total, agree / max(total, 1),
                       f1(stats_ref), f1(stats_fast), max_diff)
