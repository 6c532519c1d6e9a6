"""Small datasets and configs for the data/train/eval tests (tiny, CPU-friendly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.data.synth import SynthConfig, make_synthetic_dataset
from mmchange_core.training.config import TrainConfig


def write_image(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def synth_dataset(root: Path, pairs: int = 12, size: int = 64, seed: int = 3, text_signal: bool = False) -> Path:
    """A synthetic dataset (train/val/test) written by the real generator."""
    make_synthetic_dataset(root, SynthConfig(pairs=pairs, size=size, seed=seed, text_signal=text_signal))
    return root


def caption_basic(root: Path) -> None:
    """Caption every image with the offline basic captioner + hashing encoder."""
    from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset

    caption_dataset(root, captioner=CaptionerConfig(name="basic"), encoder=TextEncoderConfig(name="hashing"),
                    device="cpu")


def tiny_config(dataset: Path, project: Path, **changes) -> TrainConfig:
    """resnet18, 64 px, batch 4, random trunk, CPU, no workers: a few seconds per epoch."""
    values = dict(dataset=str(dataset), backbone="resnet18", variant="image-only", pretrained=False, iters=4,
                  batch_size=4, crop_size=64, workers=0, device="cpu", project=str(project))
    values.update(changes)
    return TrainConfig(**values)


def assert_metrics_match_counts(metrics: dict) -> None:
    """The reported fractions are the textbook formulas of the reported tp/fp/fn/tn (0 where undefined);
    kappa may be negative, so ranges alone cannot check it."""
    tp, fp, fn, tn = (metrics[k] for k in ("tp", "fp", "fn", "tn"))
    n = tp + fp + fn + tn
    ratio = lambda a, b: a / b if b else 0.0  # noqa: E731
    chance = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
    expected = {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn), "f1": ratio(2 * tp, 2 * tp + fp + fn),
                "iou": ratio(tp, tp + fp + fn), "oa": (tp + tn) / n, "kappa": ratio((tp + tn) / n - chance, 1 - chance)}
    assert {k: metrics[k] for k in expected} == pytest.approx(expected, abs=1e-9)


def spy_on_scales(monkeypatch) -> list:
    """Record the ``(low, high)`` of every call of the one radiometric scaling function
    (:func:`mmchange_core.io.imagery.scale_to_uint8`), which still does the work."""
    import numpy as np

    from mmchange_core.io import imagery

    calls: list = []
    real = imagery.scale_to_uint8

    def spy(values, low, high):
        calls.append((np.array(low, copy=True), np.array(high, copy=True)))
        return real(values, low, high)

    monkeypatch.setattr(imagery, "scale_to_uint8", spy)
    return calls


def components(mask, eight: bool = False) -> list[list[tuple[int, int]]]:
    """The 4- (or 8-) connected regions of a bool ``mask`` as lists of (row, col), by breadth-first search:
    written here by hand, so tests can check the library's polygons and labels against it."""
    from collections import deque

    import numpy as np

    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)] + ([(-1, -1), (-1, 1), (1, -1), (1, 1)] if eight else [])
    seen = np.zeros(mask.shape, dtype=bool)
    regions = []
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        queue, region = deque([start]), []
        while queue:
            r, c = queue.popleft()
            region.append((r, c))
            for dr, dc in steps:
                rr, cc = r + dr, c + dc
                if 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1] and mask[rr, cc] and not seen[rr, cc]:
                    seen[rr, cc] = True
                    queue.append((rr, cc))
        regions.append(region)
    return regions
