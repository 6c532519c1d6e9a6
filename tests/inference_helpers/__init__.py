"""Tiny checkpoints and synthetic image pairs for the inference, io and CLI tests (random weights, CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmchange_core.models import build_model, save_checkpoint


@pytest.fixture(scope="session")
def image_only_checkpoint(tmp_path_factory) -> Path:
    """A random-weight resnet18 image-only checkpoint with a stored threshold."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "image_only.safetensors"
    save_checkpoint(path, build_model("resnet18", "image-only"))
    return path


def scene(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured uint8 RGB pair in which a block of the second date changed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = (np.stack([np.sin(yy / 9.0), np.cos(xx / 7.0), np.sin((xx + yy) / 13.0)], -1) * 60 + 128
            + rng.normal(0, 12, (height, width, 3)))
    image_a = np.clip(base, 0, 255).astype(np.uint8)
    image_b = image_a.copy()
    image_b[height // 4:height // 2, width // 3:2 * width // 3] = (200, 190, 170)
    return image_a, image_b


def write_pair(folder: Path, height: int, width: int, name: str = "pair.png", seed: int = 0) -> tuple[Path, Path]:
    """Write a :func:`scene` pair as ``folder/A/name`` and ``folder/B/name``."""
    paths = []
    for sub, image in zip(("A", "B"), scene(height, width, seed)):
        path = folder / sub / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths[0], paths[1]


def randomise_batchnorm(model: torch.nn.Module) -> None:
    """Give every BatchNorm layer seeded random statistics and affine parameters (so folding them matters)."""
    gen = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


@pytest.fixture
def one_thread():
    """One torch thread, as the child processes use: in-process references are then bit-identical."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
