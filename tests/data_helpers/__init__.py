"""Small datasets and configs for the data/train/eval tests (tiny, CPU-friendly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
                  batch_size=4, crop_size=64, num_workers=0, device="cpu", project=str(project))
    values.update(changes)
    return TrainConfig(**values)
